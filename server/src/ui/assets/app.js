// The pages' shell: routes addresses under /ui/ to pages, asks for the
// bearer token when the server wants one, and keeps the header current.

import * as api from './api.js';
import { h, append, replace } from './dom.js';
import { nodesPage } from './nodes.js';
import { nodePage } from './node.js';
import { serverPage } from './server.js';

const main = document.getElementById('main');
const serverName = document.getElementById('server-name');
const forgetButton = document.getElementById('forget-token');

/** The page showing now: aborting it stops its requests and streams. */
let current = null;
/** `GET /server`, fetched once per token. */
let serverInfo = null;
let asking = false;

function route(pathname) {
  const path = pathname.replace(/^\/ui/, '').replace(/\/+$/, '');
  if (path === '') return { name: 'nodes', show: nodesPage };
  if (path === '/server') return { name: 'server', show: serverPage };
  const node = path.match(/^\/nodes\/([^/]+)$/);
  if (node) {
    let uid;
    try {
      uid = decodeURIComponent(node[1]);
    } catch {
      uid = node[1];
    }
    return { name: 'node', show: (context) => nodePage({ ...context, uid }) };
  }
  return { name: 'missing', show: missingPage };
}

function missingPage({ main }) {
  document.title = 'Not found · nano-server';
  append(
    main,
    h('h1', { tabindex: -1 }, 'Nothing here'),
    h('p', {}, 'No page has this address. ', h('a', { href: '/ui/' }, 'See the nodes'), '.'),
  );
}

/** The server's identity (and whether NanoCore is configured), once. */
function server(signal) {
  serverInfo ??= api.json('/server', { signal }).catch((error) => {
    serverInfo = null;
    throw error;
  });
  return serverInfo;
}

async function render({ focus = false } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  asking = false;
  const { name, show } = route(location.pathname);
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  forgetButton.hidden = !api.token();
  replace(main);
  const context = { main, signal: controller.signal, server: () => server(controller.signal) };
  server(controller.signal)
    .then((info) => {
      serverName.textContent = info.serverName;
      serverName.title = `${info.serverUid} · ${info.domain}`;
    })
    .catch(() => {});
  try {
    const shown = show(context);
    if (focus) main.querySelector('h1')?.focus();
    await shown;
    if (focus && !main.contains(document.activeElement)) main.querySelector('h1')?.focus();
  } catch (error) {
    if (controller.signal.aborted || error instanceof api.AuthRequired) return;
    append(main, h('p', { class: 'problem', role: 'alert' }, `Could not load this page: ${error.message}`));
  }
}

/** The server answered 401: ask for the token, once, then show the page again. */
function askForToken() {
  if (asking) return;
  asking = true;
  const refused = Boolean(api.token());
  current?.abort();
  current = null;
  serverInfo = null;
  document.title = 'Token needed · nano-server';
  const input = h('input', {
    type: 'password',
    id: 'token',
    name: 'token',
    autocomplete: 'current-password',
    required: true,
    'data-token': '',
    'aria-describedby': 'token-help',
  });
  const form = h(
    'form',
    {
      class: 'card token',
      onsubmit: (event) => {
        event.preventDefault();
        api.setToken(input.value.trim());
        render({ focus: true });
      },
    },
    h('h1', { tabindex: -1 }, 'This server needs its token'),
    refused ? h('p', { class: 'problem', role: 'alert' }, 'The server refused that token. Try again.') : null,
    h('label', { for: 'token' }, 'Bearer token'),
    input,
    h(
      'p',
      { id: 'token-help', class: 'muted' },
      'The auth_token of its configuration (or NANO_SERVER_TOKEN). It is kept in this tab only and sent as an ',
      h('code', {}, 'Authorization'),
      ' header with every request.',
    ),
    h('button', { type: 'submit', 'data-action': 'sign-in' }, 'Continue'),
  );
  replace(main, form);
  forgetButton.hidden = true;
  input.focus();
}

api.whenUnauthorized(askForToken);

forgetButton.addEventListener('click', () => {
  api.forgetToken();
  serverInfo = null;
  serverName.textContent = '';
  render({ focus: true });
});

// Links within the pages change the page without a reload.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/') || url.hash) return;
  event.preventDefault();
  if (url.pathname !== location.pathname) history.pushState(null, '', url.pathname);
  render({ focus: true });
});

window.addEventListener('popstate', () => render({ focus: true }));

render();
