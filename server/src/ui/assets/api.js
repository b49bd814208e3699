// Talking to the server: every data call carries the bearer token (when
// one was entered) as a header, never in the URL (request logs record
// URLs). Event streams are read through fetch streaming, since EventSource
// cannot send headers.

const TOKEN_KEY = 'nano-server-token';

/** A 401: the page asks for the token and tries again. */
export class AuthRequired extends Error {
  constructor() {
    super('this server needs its bearer token');
    this.name = 'AuthRequired';
  }
}

/** An error answer: its status and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** Who to tell when the server answers 401. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** `fetch` with the token; a 401 throws AuthRequired (after telling the page). */
export async function request(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const all = new Headers(headers);
  const bearer = token();
  if (bearer) all.set('Authorization', `Bearer ${bearer}`);
  const response = await fetch(path, { method, body, headers: all, signal, cache: 'no-store', credentials: 'omit' });
  if (response.status === 401) {
    onUnauthorized();
    throw new AuthRequired();
  }
  return response;
}

/** The JSON of a successful answer, else an ApiError with the server's message. */
export async function json(path, options) {
  const response = await request(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body?.message ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

/** POSTs JSON; the answer's JSON (or an ApiError). */
export function post(path, value, options = {}) {
  return json(path, {
    ...options,
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: value === undefined ? undefined : JSON.stringify(value),
  });
}

/**
 * The Server-Sent Events of a streaming response, as `{event, data}`
 * (data as text), until the stream ends.
 */
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) yield { event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') event = text;
        else if (field === 'data') data.push(text);
      }
    }
  } finally {
    // Leaving early (a final status, or the page went away) closes the stream.
    reader.cancel().catch(() => {});
  }
}

/** Opens an event stream (GET, or POST with a JSON body); throws on an error answer. */
export async function stream(path, { body, signal } = {}) {
  const headers = { Accept: 'text/event-stream' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await request(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    throw new ApiError(response.status, answer?.message ?? `${response.status} ${response.statusText}`);
  }
  return events(response);
}
