// The server page: identity, uptime, isolation, libraries (ABI, load time,
// swaps, worker memory and restarts), refusals, executions, workers, the
// last failures and the main counters. Polled every two seconds; a section
// is drawn again only when its data changed, so the keyboard keeps its place.

import * as api from './api.js';
import { h, append, replace, duration, when, bytes } from './dom.js';

const EVERY_MS = 2000;

export async function serverPage({ main, signal }) {
  document.title = 'Server · nano-server';
  const uptime = h('span', { 'data-uptime': '' });
  const sections = {
    identity: h('section', { class: 'card', 'aria-labelledby': 'identity-title', 'data-section': 'identity' }),
    executions: h('section', { class: 'card', 'aria-labelledby': 'executions-title', 'data-section': 'executions' }),
    counters: h('section', { class: 'card', 'aria-labelledby': 'counters-title', 'data-section': 'counters' }),
    libraries: h('section', { class: 'card wide', 'aria-labelledby': 'libraries-title', 'data-section': 'libraries' }),
    refused: h('section', { class: 'card wide', 'aria-labelledby': 'refused-title', 'data-section': 'refused' }),
    failures: h('section', { class: 'card wide', 'aria-labelledby': 'failures-title', 'data-section': 'failures' }),
    metrics: h('section', { class: 'card wide', 'aria-labelledby': 'metrics-title', 'data-section': 'metrics' }),
  };
  // The full list stays open (or closed) across updates: only its table is redrawn.
  const allMetrics = h('div');
  const summary = h('summary', {}, 'Samples');
  append(
    sections.metrics,
    h('h2', { id: 'metrics-title' }, 'Every counter and gauge'),
    h('details', {}, summary, allMetrics),
  );
  append(
    main,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Server'), h('span', { class: 'muted' }, 'Up ', uptime)),
    h('div', { class: 'grid' }, Object.values(sections)),
  );
  const drawn = {};
  const draw = (key, data, render, target = sections[key]) => {
    const text = JSON.stringify(data);
    if (drawn[key] === text) return;
    drawn[key] = text;
    replace(target, render(data));
  };
  while (!signal.aborted) {
    const report = await api.json('/server', { signal });
    uptime.textContent = duration(report.uptimeSeconds * 1000);
    const { uptimeSeconds, libraries, refused, failures, metrics, executions, workers, ...identity } = report;
    draw('identity', identity, identityView);
    draw('executions', { executions, workers, isolation: report.isolation }, executionsView);
    draw('counters', mainCounters(metrics), countersView);
    draw('libraries', { libraries, isolation: report.isolation }, librariesView);
    draw('refused', refused, refusedView);
    draw('failures', failures, failuresView);
    summary.textContent = `${metrics.length} samples, as on /metrics`;
    draw('metrics', metrics, metricsView, allMetrics);
    await new Promise((resolve) => setTimeout(resolve, EVERY_MS));
  }
}

function pairs(entries) {
  return h(
    'dl',
    { class: 'pairs' },
    entries.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]),
  );
}

function identityView(info) {
  return [
    h('h2', { id: 'identity-title' }, 'Identity'),
    pairs([
      ['Name', info.serverName],
      ['Uid', h('code', {}, info.serverUid)],
      ['Domain', info.domain],
      ['Version', `nano-server ${info.version}`],
      ['Isolation', info.isolation],
      ['Started', when(info.startedAtMs)],
      ['NanoCore', info.nanocore ? 'configured' : 'not configured'],
      ['Nodes served', String(info.nodes)],
    ]),
  ];
}

function executionsView({ executions, workers, isolation }) {
  return [
    h('h2', { id: 'executions-title' }, 'Executions and workers'),
    pairs([
      ['In flight', h('span', { 'data-in-flight': '' }, String(executions.active))],
      ['Running on a worker', String(executions.running)],
      ['Waiting for a slot', String(executions.queued)],
      ['Stuck (ignored an abort)', String(executions.stuck)],
      ['Worker processes', isolation === 'process' ? String(workers ?? 0) : 'none (in-process)'],
    ]),
  ];
}

/** A sum over every sample of `name` whose labels match `where`. */
function sum(metrics, name, where = {}) {
  return metrics
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

function mainCounters(metrics) {
  const outcomes = {};
  for (const s of metrics.filter((s) => s.name === 'nano_executions_total')) {
    outcomes[s.labels.outcome] = (outcomes[s.labels.outcome] ?? 0) + s.value;
  }
  return {
    outcomes,
    http: sum(metrics, 'nano_http_requests_total'),
    websockets: sum(metrics, 'nano_websocket_connections'),
    loads: sum(metrics, 'nano_library_loads_total'),
    swaps: sum(metrics, 'nano_library_swaps_total'),
    refusals: sum(metrics, 'nano_library_load_failures_total'),
    restarts: sum(metrics, 'nano_worker_restarts_total'),
  };
}

function countersView(c) {
  const outcomes = Object.entries(c.outcomes).sort(([a], [b]) => a.localeCompare(b));
  return [
    h('h2', { id: 'counters-title' }, 'Counters'),
    pairs([
      ['Executions', outcomes.length ? outcomes.map(([outcome, n]) => `${outcome} ${n}`).join(' · ') : '0'],
      ['HTTP requests', String(c.http)],
      ['WebSockets open', String(c.websockets)],
      ['Library loads', String(c.loads)],
      ['Swaps', String(c.swaps)],
      ['Refusals', String(c.refusals)],
      ['Worker restarts', String(c.restarts)],
    ]),
  ];
}

function table(caption, head, rows, attributes = {}) {
  return h(
    'div',
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption },
    h(
      'table',
      attributes,
      h('thead', {}, h('tr', {}, head.map((title) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, rows),
    ),
  );
}

function librariesView({ libraries, isolation }) {
  if (libraries.length === 0) return [h('h2', { id: 'libraries-title' }, 'Libraries'), h('p', { class: 'muted' }, 'No library is loaded.')];
  const process = isolation === 'process';
  return [
    h('h2', { id: 'libraries-title' }, 'Libraries'),
    table(
      'Libraries',
      ['Library', 'Nodes', 'ABI', 'Loaded', 'Load time', 'Swaps', process ? 'Worker' : null, process ? 'Restarts' : null].filter(Boolean),
      libraries.map((library) => {
        const restarts = Object.entries(library.workerRestarts);
        return h(
          'tr',
          { 'data-library': library.path },
          h('td', {}, h('code', {}, library.path)),
          h('td', {}, [...library.nodes, ...library.shadowed.map((uid) => `${uid} (served by another library)`)].join(', ')),
          h('td', {}, library.abiVersion),
          h('td', {}, when(library.loadedAtMs)),
          h('td', {}, duration(library.loadMs)),
          h('td', { 'data-swaps': '' }, String(library.swaps)),
          process
            ? h('td', {}, library.up ? 'up' : 'down', library.workerRssBytes ? ` · ${bytes(library.workerRssBytes)}` : '')
            : null,
          process
            ? h('td', {}, restarts.length ? restarts.map(([reason, n]) => `${reason} ${n}`).join(', ') : '0')
            : null,
        );
      }),
    ),
  ];
}

function refusedView(refused) {
  return [
    h('h2', { id: 'refused-title' }, 'Refused libraries'),
    refused.length === 0
      ? h('p', { class: 'muted' }, 'None.')
      : h(
          'ul',
          { class: 'plain' },
          refused.map((entry) =>
            h(
              'li',
              { 'data-refused-library': entry.path },
              h('code', {}, entry.path),
              h('p', { class: 'reason' }, entry.reason),
              h('p', { class: 'muted' }, when(entry.atMs), entry.previousServing ? ' · the previous version keeps serving' : ''),
            ),
          ),
        ),
  ];
}

function failuresView(failures) {
  return [
    h('h2', { id: 'failures-title' }, 'Last failures'),
    failures.length === 0
      ? h('p', { class: 'muted' }, 'No execution failed.')
      : table(
          'Last failures',
          ['When', 'Node', 'Instance', 'Outcome', 'Message'],
          failures.map((failure) =>
            h(
              'tr',
              { 'data-failure': failure.node },
              h('td', { class: 'nowrap' }, new Date(failure.atMs).toLocaleTimeString()),
              h('td', {}, h('code', {}, failure.node)),
              h('td', {}, h('code', { 'data-instance': failure.instanceId }, failure.instanceId)),
              h('td', {}, failure.outcome),
              h('td', { class: 'message' }, failure.message),
            ),
          ),
          { class: 'failures' },
        ),
  ];
}

function metricsView(metrics) {
  return table(
    'Metrics',
    ['Name', 'Labels', 'Value'],
    metrics.map((s) =>
      h(
        'tr',
        {},
        h('td', {}, h('code', {}, s.name)),
        h('td', {}, Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(', ')),
        h('td', { class: 'number' }, String(s.value)),
      ),
    ),
  );
}
