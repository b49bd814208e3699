// Building DOM nodes. Text always goes in as text nodes (never as HTML):
// every string a plugin supplies is shown as text.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'multiple', 'open']);

/**
 * `h('a', {href: '/ui/', 'data-x': 1, onclick: fn}, 'text', child, [more])`.
 * `on…` keys add listeners, a few keys set properties, the rest are
 * attributes (`true` gives an empty attribute, `false`/null/undefined none).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      element.className = value;
    } else if (PROPERTIES.has(key)) {
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (or lists of them): nodes as they are, anything else as text. */
export function append(element, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** `1234567` ms as `20 min 34 s`, and the like. */
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const parts = [];
  let rest = Math.floor(s);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)} ${unit}`);
      rest %= size;
    }
  }
  parts.push(`${rest} s`);
  return parts.slice(0, 2).join(' ');
}

/** Milliseconds since the epoch as a local date and time. */
export function when(ms) {
  return new Date(ms).toLocaleString();
}

/** Bytes as KiB, MiB… */
export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
