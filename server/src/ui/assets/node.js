// A node's page: its form, Run (through the HTTP API's event stream, each
// status shown as it comes), Stop, and the outcome: outputs, the error in
// plain words, the duration.

import * as api from './api.js';
import { h, append, replace, duration } from './dom.js';
import { buildForm, FieldError } from './form.js';

const ASSET_ID = /^sha256:[0-9a-f]{64}$/;

/** A random instance id (crypto.randomUUID needs a secure context; this does not). */
function instanceId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `ui-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export async function nodePage({ main, signal, uid, server }) {
  document.title = `${uid} · nano-server`;
  let definition;
  try {
    definition = await api.json(`/nodes/${encodeURIComponent(uid)}`, { signal });
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 404) {
      append(
        main,
        h('h1', { tabindex: -1 }, uid),
        h('p', { class: 'problem', role: 'alert' }, 'This node is not served (any more).'),
        h('p', {}, h('a', { href: '/ui/' }, 'Back to the nodes')),
      );
      return;
    }
    throw error;
  }
  const [info, libraries] = await Promise.all([server(), api.json('/libraries', { signal }).catch(() => null)]);
  document.title = `${definition.name || uid} · nano-server`;
  const library = libraries?.libraries.find((entry) => entry.nodes.includes(uid));

  const run = h('button', { type: 'submit', class: 'primary', 'data-action': 'run' }, 'Run');
  const stop = h('button', { type: 'button', 'data-action': 'stop', disabled: true }, 'Stop');
  let uploads = 0;
  let running = null;
  const buttons = () => {
    run.disabled = running !== null || uploads > 0;
    stop.disabled = running === null;
  };
  const form = buildForm(definition, {
    nanocore: info.nanocore,
    busy: (started) => {
      uploads += started ? 1 : -1;
      buttons();
    },
  });
  const problem = h('p', { class: 'problem', role: 'alert', hidden: true });
  const result = outcomeView();

  append(
    main,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: -1 }, definition.name || uid),
      definition.version ? h('span', { class: 'badge' }, `v${definition.version}`) : null,
    ),
    h(
      'p',
      { class: 'muted meta' },
      h('code', {}, uid),
      definition.category ? ` · ${definition.category}` : null,
      library ? [' · ', h('span', { 'data-library': '' }, library.path)] : null,
    ),
    definition.description ? h('p', { class: 'description' }, definition.description) : null,
    h(
      'div',
      { class: 'run-layout' },
      h(
        'form',
        {
          class: 'card run-form',
          novalidate: true,
          onsubmit: (event) => {
            event.preventDefault();
            start();
          },
          // Ctrl/⌘+Enter runs from inside a text area too.
          onkeydown: (event) => {
            if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
              event.preventDefault();
              start();
            }
          },
        },
        form.element,
        problem,
        h('div', { class: 'actions' }, run, stop, h('span', { class: 'muted hint' }, 'Ctrl+Enter runs')),
      ),
      result.element,
    ),
  );

  stop.addEventListener('click', async () => {
    if (!running) return;
    stop.disabled = true;
    try {
      await api.post(`/instances/${encodeURIComponent(running.instanceId)}/stop`, undefined, { signal });
    } catch (error) {
      if (!signal.aborted) result.note(`Could not stop the run: ${error.message}`);
      stop.disabled = running === null;
    }
  });

  async function start() {
    if (running || uploads > 0) return;
    problem.hidden = true;
    let body;
    try {
      body = form.read();
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      problem.textContent = error.message;
      problem.hidden = false;
      error.control.focus();
      return;
    }
    running = { instanceId: instanceId(), started: performance.now() };
    buttons();
    result.begin();
    let final = null;
    try {
      const statuses = await api.stream(`/nodes/${encodeURIComponent(uid)}/execute`, {
        body: { ...body, instanceId: running.instanceId },
        signal,
      });
      for await (const { event, data } of statuses) {
        const status = JSON.parse(data).status ?? {};
        result.status(event, status, performance.now() - running.started);
        if (event === 'complete' || event === 'error') {
          final = { event, status };
          break;
        }
      }
      const took = performance.now() - running.started;
      if (final?.event === 'complete') result.complete(final.status.outputs ?? {}, definition, info.nanocore, took, signal);
      else if (final) result.failed(final.status.message ?? 'unknown error', took);
      else result.failed('the connection ended before the run finished', took);
    } catch (error) {
      if (signal.aborted || error instanceof api.AuthRequired) return;
      result.failed(error.message, performance.now() - running.started);
    } finally {
      running = null;
      buttons();
    }
  }
}

/** The run's statuses, progress, outputs or error, and duration. */
function outcomeView() {
  const state = h('p', { class: 'run-state', 'data-run-status': 'idle', role: 'status' }, 'Not run yet.');
  const progress = h('progress', { max: 100, value: 0, 'data-progress': '0', 'aria-label': 'Progress' });
  const progressText = h('span', { class: 'muted' });
  const progressRow = h('div', { class: 'progress', hidden: true }, progress, progressText);
  const error = h('div', { class: 'error-box', 'data-error': '', role: 'alert', hidden: true });
  const outputs = h('div', { class: 'outputs', 'data-outputs': '' });
  const took = h('p', { class: 'muted', 'data-duration': '' });
  const log = h('ol', { class: 'status-log', 'data-status-log': '' });
  const element = h(
    'section',
    { class: 'card outcome', 'aria-labelledby': 'outcome-title' },
    h('h2', { id: 'outcome-title' }, 'Run'),
    state,
    progressRow,
    error,
    outputs,
    took,
    h('details', {}, h('summary', {}, 'Statuses'), log),
  );
  const setState = (value, text) => {
    state.dataset.runStatus = value;
    state.textContent = text;
  };
  return {
    element,
    begin() {
      setState('running', 'Running…');
      progressRow.hidden = true;
      progress.value = 0;
      progress.dataset.progress = '0';
      error.hidden = true;
      replace(error);
      replace(outputs);
      replace(log);
      took.textContent = '';
    },
    status(event, status, elapsed) {
      log.append(
        h(
          'li',
          {},
          h('span', { class: 'at' }, `+${duration(elapsed)}`),
          ' ',
          h('strong', {}, event),
          status.message ? ` ${status.message}` : null,
        ),
      );
      const percent = progressPercent(status.progress);
      if (percent !== null) {
        progressRow.hidden = false;
        progress.value = percent;
        progress.dataset.progress = String(percent);
        progressText.textContent =
          status.progress && typeof status.progress === 'object' && 'step' in status.progress
            ? `${status.progress.step} / ${status.progress.total} (${percent}%)`
            : `${percent}%`;
      }
      if (event === 'running' && status.message) setState('running', status.message);
    },
    complete(values, definition, nanocore, ms, signal) {
      setState('complete', 'Complete.');
      took.textContent = `Finished in ${duration(ms)}.`;
      const ports = definition.outputs ?? [];
      const names = [...ports.map((port) => port.name), ...Object.keys(values).filter((name) => !ports.some((p) => p.name === name))];
      const shown = names.filter((name) => name in values);
      if (shown.length === 0) outputs.append(h('p', { class: 'muted' }, 'No outputs.'));
      for (const name of shown) {
        const type = ports.find((port) => port.name === name)?.type ?? '';
        outputs.append(outputView(name, type, values[name], nanocore, signal));
      }
    },
    failed(message, ms) {
      setState('error', 'Failed.');
      took.textContent = `Ended after ${duration(ms)}.`;
      const [title, detail] = plainWords(message);
      replace(error, h('strong', {}, title), h('p', { class: 'message' }, detail));
      error.hidden = false;
    },
    note(text) {
      log.append(h('li', { class: 'problem' }, text));
    },
  };
}

/** A progress value as a whole percentage, or null. */
function progressPercent(progress) {
  if (progress === null || progress === undefined) return null;
  let fraction = null;
  if (typeof progress === 'object' && Number(progress.total) > 0) fraction = Number(progress.step) / Number(progress.total);
  else if (typeof progress === 'number') fraction = progress <= 1 ? progress : progress / 100;
  if (fraction === null || !Number.isFinite(fraction)) return null;
  return Math.round(Math.min(Math.max(fraction, 0), 1) * 100);
}

/** An error message in plain words: a title and the server's message. */
function plainWords(message) {
  if (message.startsWith('Execution aborted')) return ['Stopped.', message];
  if (message.startsWith('Execution timed out')) return ['The node ran too long and was stopped.', message];
  if (message.startsWith('node crashed')) return ['The node crashed.', message];
  if (message.startsWith('the server is busy') || message.startsWith('the server is shutting down')) {
    return ['The server could not take the run now.', message];
  }
  if (message.startsWith('Node definition not found')) return ['This node is not served (any more).', message];
  return ['The node reported an error.', message];
}

/** One output port's value: text as text, images as images, the rest as JSON. */
function outputView(name, type, value, nanocore, signal) {
  const values = Array.isArray(value) ? value : [value];
  const holder = h('div', { class: 'output-value', 'data-output': name });
  if (String(type).startsWith('asset:image') && nanocore && values.length > 0 && values.every((v) => typeof v === 'string' && ASSET_ID.test(v))) {
    for (const hash of values) holder.append(imageView(hash, signal));
  } else if (values.length > 0 && values.every((v) => ['string', 'number', 'boolean'].includes(typeof v))) {
    holder.append(h('pre', { class: 'text' }, values.map(String).join('\n')));
  } else {
    holder.append(h('pre', { class: 'json' }, JSON.stringify(value, null, 2)));
  }
  return h('figure', { class: 'output' }, h('figcaption', {}, name, type ? h('span', { class: 'type' }, type) : null), holder);
}

/** An asset image, shown through a presigned URL (NanoCore's token stays on the server). */
function imageView(hash, signal) {
  const figure = h('div', { class: 'asset' });
  const caption = h('code', { class: 'hash' }, hash);
  const image = h('img', { alt: `Output image ${hash}`, loading: 'lazy' });
  figure.append(image, caption);
  api
    .json(`/assets/${encodeURIComponent(hash)}/presigned`, { signal })
    .then(({ url }) => {
      if (!/^https?:\/\//i.test(String(url))) throw new Error('NanoCore gave no http(s) URL');
      image.addEventListener('error', () => {
        // Another origin than NanoCore's (the page's policy allows only that): a link.
        image.replaceWith(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, 'Open the image'));
      });
      image.src = url;
    })
    .catch((error) => {
      if (!signal.aborted) image.replaceWith(h('p', { class: 'problem' }, `Cannot show the image: ${error.message}`));
    });
  return figure;
}
