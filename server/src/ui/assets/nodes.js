// The nodes page: every served node by category, kept current by the
// server's event stream of definition changes; refused libraries with why.

import * as api from './api.js';
import { h, append, replace } from './dom.js';

export async function nodesPage({ main, signal }) {
  document.title = 'Nodes · nano-server';
  const live = h('span', { class: 'live', role: 'status', 'data-live': 'connecting' }, 'Connecting…');
  const filter = h('input', {
    type: 'search',
    id: 'filter',
    placeholder: 'Filter by name, uid, category or library',
    autocomplete: 'off',
    'data-filter': '',
  });
  const list = h('div', { class: 'categories', 'data-node-list': '' });
  const refused = h('section', { class: 'refused', 'data-refused': '', hidden: true, 'aria-labelledby': 'refused-title' });
  append(
    main,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Nodes'), live),
    h('label', { for: 'filter', class: 'visually-hidden' }, 'Filter nodes'),
    filter,
    list,
    refused,
  );

  let definitions = null;
  let libraries = null;
  const draw = () => {
    if (definitions === null) return;
    // Keeps the keyboard's place when the list is drawn again.
    const focused = document.activeElement?.closest?.('[data-node-uid]')?.dataset.nodeUid;
    drawNodes(list, definitions, libraries, filter.value);
    drawRefused(refused, libraries?.refused ?? []);
    if (focused !== undefined) {
      [...list.querySelectorAll('[data-node-uid]')].find((item) => item.dataset.nodeUid === focused)?.querySelector('a')?.focus();
    }
  };
  filter.addEventListener('input', draw);

  // Follows the stream for as long as the page shows, reconnecting with backoff.
  let backoff = 500;
  while (!signal.aborted) {
    try {
      for await (const { event, data } of await api.stream('/events/definitions', { signal })) {
        backoff = 500;
        live.dataset.live = 'live';
        live.textContent = 'Live';
        if (event === 'definitions') definitions = JSON.parse(data);
        else if (event === 'libraries') libraries = JSON.parse(data);
        draw();
      }
    } catch (error) {
      if (signal.aborted || error instanceof api.AuthRequired) throw error;
    }
    live.dataset.live = 'reconnecting';
    live.textContent = 'Reconnecting…';
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function drawNodes(list, definitions, libraries, query) {
  const libraryOf = new Map();
  for (const library of libraries?.libraries ?? []) {
    for (const uid of library.nodes) libraryOf.set(uid, library.path);
  }
  const needle = query.trim().toLowerCase();
  const categories = new Map();
  for (const node of definitions) {
    const category = node.category || 'Uncategorised';
    const haystack = [node.name, node.uid, category, node.description, libraryOf.get(node.uid)].join(' ').toLowerCase();
    if (needle && !haystack.includes(needle)) continue;
    if (!categories.has(category)) categories.set(category, []);
    categories.get(category).push(node);
  }
  if (definitions.length === 0) {
    replace(
      list,
      h('p', { class: 'empty' }, 'No node is served. Put a node library (or, with build_sources, a node crate) into the nodes folder: it shows up here.'),
    );
    return;
  }
  if (categories.size === 0) {
    replace(list, h('p', { class: 'empty' }, 'No node matches the filter.'));
    return;
  }
  const sorted = [...categories.entries()].sort(([a], [b]) => a.localeCompare(b));
  replace(
    list,
    sorted.map(([category, nodes]) =>
      h(
        'section',
        { class: 'category' },
        h('h2', {}, category),
        h(
          'ul',
          { class: 'nodes' },
          nodes
            .sort((a, b) => (a.name || a.uid).localeCompare(b.name || b.uid))
            .map((node) => nodeEntry(node, libraryOf.get(node.uid))),
        ),
      ),
    ),
  );
}

function nodeEntry(node, library) {
  return h(
    'li',
    { class: 'node card', 'data-node-uid': node.uid },
    h(
      'div',
      { class: 'node-title' },
      h('a', { href: `/ui/nodes/${encodeURIComponent(node.uid)}` }, node.name || node.uid),
      node.version ? h('span', { class: 'badge' }, `v${node.version}`) : null,
    ),
    h('code', { class: 'uid' }, node.uid),
    node.description ? h('p', { class: 'description' }, node.description) : null,
    library ? h('p', { class: 'library muted' }, h('span', { class: 'visually-hidden' }, 'Library: '), library) : null,
  );
}

function drawRefused(section, refused) {
  section.hidden = refused.length === 0;
  replace(
    section,
    h('h2', { id: 'refused-title' }, 'Refused libraries'),
    h(
      'ul',
      {},
      refused.map((entry) =>
        h(
          'li',
          { class: 'card problem-card', 'data-refused-library': entry.path },
          h('code', {}, entry.path),
          h('p', { class: 'reason' }, entry.reason),
          entry.previousServing ? h('p', { class: 'muted' }, 'The previous version keeps serving.') : null,
        ),
      ),
    ),
  );
}
