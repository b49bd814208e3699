// A form drawn from a node definition: inputs by port type (text, number,
// boolean, asset, JSON for anything else) and parameters by their type in
// the Nano definition schema, defaults filled in. `read()` gives the
// execute body's `inputs` and `parameters`.

import * as api from './api.js';
import { h } from './dom.js';

/** A value the user entered that cannot be sent; names the field. */
export class FieldError extends Error {
  constructor(control, message) {
    super(message);
    this.name = 'FieldError';
    this.control = control;
  }
}

let nextId = 0;
const fieldId = () => `field-${(nextId += 1)}`;

/** What kind of control an input port of `type` gets. */
export function portKind(type) {
  const t = String(type ?? '').toLowerCase();
  if (t.startsWith('asset')) return 'asset';
  if (['string', 'text', 'str'].includes(t)) return 'text';
  if (['number', 'float', 'int', 'integer', 'double'].includes(t)) return 'number';
  if (['boolean', 'bool'].includes(t)) return 'boolean';
  return 'json';
}

/** The parameter's value in the definition: its `value`, else its `default`. */
function initial(parameter) {
  return parameter.value ?? parameter.default ?? null;
}

/**
 * The form's fields for `definition`. `nanocore`: assets can be uploaded.
 * `busy(true|false)`: an upload started or ended (Run waits for it).
 */
export function buildForm(definition, { nanocore, busy }) {
  const readers = [];
  const inputs = (definition.inputs ?? []).map((port) => inputField(port, nanocore, busy, readers));
  const parameters = (definition.parameters ?? []).map((parameter) => parameterField(parameter, readers));
  const element = h(
    'div',
    { class: 'fields' },
    inputs.length ? h('fieldset', {}, h('legend', {}, 'Inputs'), inputs) : null,
    parameters.length ? h('fieldset', {}, h('legend', {}, 'Parameters'), parameters) : null,
    !inputs.length && !parameters.length ? h('p', { class: 'muted' }, 'This node takes no inputs and no parameters.') : null,
  );
  const read = () => {
    const body = { inputs: {}, parameters: {} };
    for (const reader of readers) reader(body);
    return body;
  };
  return { element, read };
}

function labelled(id, title, name, type, description, control, extra = []) {
  const help = description ? `${id}-help` : null;
  if (help) control.setAttribute('aria-describedby', help);
  return h(
    'div',
    { class: 'field' },
    h(
      'label',
      { for: id },
      title,
      title !== name ? h('code', { class: 'field-name' }, name) : null,
      h('span', { class: 'type' }, type),
    ),
    control,
    extra,
    description ? h('p', { class: 'help', id: help }, description) : null,
  );
}

function inputField(port, nanocore, busy, readers) {
  const id = fieldId();
  const kind = portKind(port.type);
  const optional = port.optional === true;
  const common = { id, name: port.name, 'data-field': port.name, 'data-kind': 'input' };
  const description = [port.description, optional ? 'Optional: left empty, it is not sent.' : null].filter(Boolean).join(' ');
  let control;
  let extra = [];
  let value;
  if (kind === 'boolean') {
    control = h('input', { ...common, type: 'checkbox' });
    value = () => control.checked;
  } else if (kind === 'number') {
    control = h('input', { ...common, type: 'number', step: 'any', inputmode: 'decimal' });
    value = () => {
      if (control.value.trim() === '') {
        if (optional) return undefined;
        throw new FieldError(control, `Enter a number for ${port.name}.`);
      }
      const number = Number(control.value);
      if (!Number.isFinite(number)) throw new FieldError(control, `${port.name} is not a number.`);
      return number;
    };
  } else if (kind === 'json') {
    control = h('textarea', { ...common, rows: 3, spellcheck: false, class: 'code', placeholder: 'JSON, sent as the port\u2019s value' });
    value = () => {
      if (control.value.trim() === '') return undefined;
      try {
        return JSON.parse(control.value);
      } catch (error) {
        throw new FieldError(control, `${port.name} is not valid JSON: ${error.message}`);
      }
    };
  } else if (kind === 'asset') {
    control = h('input', { ...common, type: 'text', spellcheck: false, autocomplete: 'off', class: 'code', placeholder: 'sha256:…' });
    extra = assetPicker(port, control, nanocore, busy);
    value = () => {
      const hash = control.value.trim();
      if (hash === '') {
        if (optional) return undefined;
        throw new FieldError(control, `Choose a file or enter an asset id for ${port.name}.`);
      }
      return hash;
    };
  } else {
    control = h('textarea', { ...common, rows: 2 });
    value = () => (control.value === '' && optional ? undefined : control.value);
  }
  readers.push((body) => {
    const v = value();
    if (v === undefined) return;
    // By the protocol's convention a port carries a list; JSON goes as written.
    body.inputs[port.name] = kind === 'json' ? v : [v];
  });
  return labelled(id, port.name, port.name, port.type, description, control, extra);
}

/** A file picker that uploads through the server to NanoCore and fills in the asset id. */
function assetPicker(port, hashField, nanocore, busy) {
  const subtype = String(port.type).split(':')[1] || '';
  const status = h('p', { class: 'upload-status muted', role: 'status' });
  const picker = h('input', {
    type: 'file',
    'data-upload': port.name,
    'aria-label': `Upload a file for ${port.name}`,
    accept: subtype === 'image' ? 'image/*' : subtype === 'audio' ? 'audio/*' : subtype === 'video' ? 'video/*' : null,
    disabled: !nanocore,
  });
  if (!nanocore) {
    status.textContent = 'NanoCore is not configured on this server (NANOCORE_HTTP_ENDPOINT): enter an asset id.';
    return [picker, status];
  }
  picker.addEventListener('change', async () => {
    const file = picker.files?.[0];
    if (!file) return;
    const form = new FormData();
    if (subtype) form.append('type', subtype);
    form.append('file', file, file.name);
    status.textContent = `Uploading ${file.name}…`;
    status.classList.remove('problem');
    busy(true);
    try {
      const answer = await api.json('/assets', { method: 'POST', body: form });
      hashField.value = answer.hash ?? '';
      status.textContent = `Uploaded ${file.name} (${answer.size ?? file.size} bytes).`;
      status.dataset.uploaded = answer.hash ?? '';
    } catch (error) {
      status.textContent = `Upload failed: ${error.message}`;
      status.classList.add('problem');
    } finally {
      busy(false);
    }
  });
  return [picker, status];
}

function number(value, fallback) {
  const n = Number(value);
  return value !== undefined && value !== null && value !== '' && Number.isFinite(n) ? n : fallback;
}

function parameterField(parameter, readers) {
  const id = fieldId();
  const name = parameter.name;
  const type = String(parameter.type ?? '');
  const value = initial(parameter);
  const common = { id, name, 'data-field': name, 'data-kind': 'parameter' };
  let control;
  let extra = [];
  let read;
  switch (type) {
    case 'number':
    case 'slider': {
      const limits = {
        min: number(parameter.min, undefined),
        max: number(parameter.max, undefined),
        step: number(parameter.step, undefined),
      };
      if (type === 'slider') {
        control = h('input', {
          ...common,
          type: 'range',
          min: limits.min ?? 0,
          max: limits.max ?? 100,
          step: limits.step ?? 'any',
          value: String(number(value, limits.min ?? 0)),
        });
        const shown = h('output', { for: id }, control.value);
        control.addEventListener('input', () => {
          shown.textContent = control.value;
        });
        extra = [shown];
      } else {
        control = h('input', {
          ...common,
          type: 'number',
          min: limits.min,
          max: limits.max,
          step: limits.step ?? 'any',
          inputmode: 'decimal',
          value: value === null ? '' : String(value),
        });
      }
      read = () => {
        if (control.value.trim() === '') throw new FieldError(control, `Enter a number for ${name}.`);
        const n = Number(control.value);
        if (!Number.isFinite(n)) throw new FieldError(control, `${name} is not a number.`);
        return n;
      };
      break;
    }
    case 'boolean':
      control = h('input', { ...common, type: 'checkbox', checked: value === true || value === 'true' });
      read = () => control.checked;
      break;
    case 'select': {
      const options = (parameter.options ?? []).map((option) =>
        option !== null && typeof option === 'object'
          ? { value: option.value, label: String(option.label ?? option.value) }
          : { value: option, label: String(option) },
      );
      control = h(
        'select',
        common,
        options.map((option, index) =>
          h('option', { value: String(index), selected: JSON.stringify(option.value) === JSON.stringify(value) }, option.label),
        ),
      );
      read = () => options[Number(control.value)]?.value ?? null;
      break;
    }
    case 'color': {
      const hex = typeof value === 'string' && /^#[0-9a-f]{6}$/i.test(value);
      control = h('input', { ...common, type: hex ? 'color' : 'text', value: value ?? '#000000' });
      read = () => control.value;
      break;
    }
    case 'text':
    case 'string':
      control =
        parameter.multiline === true || parameter.multiline === 'true'
          ? h('textarea', { ...common, rows: 4, value: value ?? '' })
          : h('input', { ...common, type: 'text', value: value ?? '' });
      read = () => control.value;
      break;
    default:
      // A type this page does not know (filepicker…): its JSON value.
      control = h('textarea', { ...common, rows: 2, class: 'code', spellcheck: false, value: JSON.stringify(value) });
      read = () => {
        try {
          return JSON.parse(control.value);
        } catch (error) {
          throw new FieldError(control, `${name} is not valid JSON: ${error.message}`);
        }
      };
  }
  readers.push((body) => {
    body.parameters[name] = read();
  });
  return labelled(id, parameter.label || name, name, type, parameter.description, control, extra);
}
