// visiond's control page: every [data-key] control reads and writes its REST property, and
// /api/v1/events keeps the page in step with the file, other browsers and the pipeline.
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const TOKEN_KEY = 'visiond-token';

function propertyUrl(key) {
  const [section, name] = key.split('.');
  return `/api/v1/config/${encodeURIComponent(section)}/${encodeURIComponent(name)}`;
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function notice(text) {
  const box = $('#notice');
  box.textContent = text;
  box.hidden = !text;
}

// The value a control stands for; flags are the checked boxes of one key together.
function controlValue(control) {
  const key = control.dataset.key;
  if (control.type === 'checkbox' && control.dataset.flag) {
    return $$(`input[data-key="${key}"]`).filter((c) => c.checked).map((c) => c.dataset.flag);
  }
  if (control.type === 'checkbox') return control.checked;
  if (control.type === 'range' || control.type === 'number') return Number(control.value);
  return control.value;
}

// Shows a value on every control of its key, except while the user is handling it or this
// page's own writes of it are under way (their echoes would move it back and forth).
function showValue(key, value, force = false) {
  if (!force && (pending.has(key) || inFlight.has(key))) return;
  for (const control of $$(`[data-key="${key}"]`)) {
    if (control === document.activeElement && control.dataset.busy) continue;
    if (control.type === 'checkbox' && control.dataset.flag) {
      control.checked = Array.isArray(value) && value.includes(control.dataset.flag);
    } else if (control.type === 'checkbox') {
      control.checked = Boolean(value);
    } else {
      control.value = value;
      const output = control.parentElement.querySelector('output');
      if (output) output.textContent = value;
    }
  }
}

// Writes go out one at a time per key, the latest value winning: a slider moved quickly
// must not leave the file at whichever of its many requests happened to arrive last.
const pending = new Map();
const inFlight = new Set();

async function write(control) {
  const key = control.dataset.key;
  pending.set(key, controlValue(control));
  if (inFlight.has(key)) return;
  inFlight.add(key);
  while (pending.has(key)) {
    const value = pending.get(key);
    pending.delete(key);
    await put(key, value);
  }
  inFlight.delete(key);
}

async function put(key, value) {
  const response = await fetch(propertyUrl(key), {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', ...authHeaders() },
    body: JSON.stringify(value),
  });
  if (response.ok) {
    notice('');
    return;
  }
  const error = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401) $('#token-form').hidden = false;
  notice(`${key}: ${error.error}`);
  // Put the control back to what is really in force.
  const current = await fetch(propertyUrl(key), { headers: authHeaders() });
  if (current.ok) showValue(key, await current.json(), true);
}

function bindControls() {
  for (const control of $$('[data-key]')) {
    control.addEventListener('input', () => {
      control.dataset.busy = '1';
      const output = control.parentElement.querySelector('output');
      if (output) output.textContent = control.value;
    });
    control.addEventListener('change', () => {
      delete control.dataset.busy;
      write(control);
    });
  }
  $('#token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $('#token').value);
    $('#token-form').hidden = true;
    notice('token saved; try the change again');
  });
}

async function refreshAll() {
  const response = await fetch('/api/v1/config', { headers: authHeaders() });
  if (!response.ok) return;
  const tree = await response.json();
  for (const [section, keys] of Object.entries(tree)) {
    for (const [name, value] of Object.entries(keys)) showValue(`${section}.${name}`, value);
  }
}

function showConfigError(errors) {
  const banner = $('#config-error');
  banner.hidden = !errors || errors.length === 0;
  $('pre', banner).textContent = (errors || []).join('\n');
}

function describeResult(section, result) {
  if (!result) return '';
  if (section === 'detection' || section === 'pose') {
    const items = Array.isArray(result) ? result : [];
    if (section === 'pose') return `${items.length} ${items.length === 1 ? 'person' : 'people'}`;
    return items.map((d) => `${d.label} ${(d.confidence * 100).toFixed(0)}%`).join(', ') || 'nothing';
  }
  if (result.label !== undefined) return `${result.label} ${(result.confidence * 100).toFixed(1)}%`;
  if (result.classes) {
    return Object.entries(result.classes).map(([label, f]) => `${label} ${(f * 100).toFixed(0)}%`).join(', ');
  }
  return '';
}

function showStatus({ status, results }) {
  const pipeline = status.pipeline || {};
  $('[data-stat="fps"]').textContent = (pipeline.fps || 0).toFixed(1);
  $('[data-stat="frames"]').textContent = pipeline.frames || 0;
  $('[data-stat="dropped"]').textContent = pipeline.dropped || 0;
  const input = status.input || {};
  const why = input.error || input.detail;
  $('[data-stat="input"]').textContent = `${input.uri || ''} ${input.state || ''}${why ? `: ${why}` : ''}`;
  // The broker's state, and why it is in error (refused login, unreachable, ...).
  const mqtt = status.mqtt || {};
  $('[data-stat="mqtt"]').textContent = `${mqtt.state || ''}${mqtt.error ? `: ${mqtt.error}` : ''}`;
  showConfigError(status.config && status.config.error ? status.config.error.split('\n') : []);
  for (const [section, model] of Object.entries(status.models || {})) {
    const state = $(`[data-state-for="${section}"]`);
    if (!state) continue;
    state.textContent = model.state;
    state.dataset.state = model.state;
    state.title = model.error || '';
    const timing = $(`[data-timing-for="${section}"]`);
    timing.textContent = model.state === 'ready' ? `${model.last_ms.toFixed(1)} ms (avg ${model.avg_ms.toFixed(1)}) on ${placementText(model)}` : model.error || model.detail || '';
    const result = (results || {})[section];
    const shown = $(`[data-result-for="${section}"]`);
    if (result && result.colors) showLegend(shown, result);
    else shown.textContent = describeResult(section, result);
  }
}

// The classes a segmentation found, largest first, each with its colour on the video.
function showLegend(element, { classes, colors }) {
  const items = Object.entries(classes).sort(([, a], [, b]) => b - a).map(([label, share]) => {
    const item = document.createElement('span');
    item.className = 'legend-item';
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = colors[label];
    item.append(swatch, `${label} ${(share * 100).toFixed(0)}%`);
    return item;
  });
  element.replaceChildren(...items);
}

// The provider the session really runs on, how much of the graph was left to the CPU, and
// whether its input is made on the GPU (engine.frame_on_gpu) and it runs as a CUDA graph
// (engine.cuda_graphs).
function placementText(model) {
  const onCpu = model.cpu_nodes ? `, ${model.cpu_nodes} of ${model.nodes} nodes on the CPU` : '';
  const input = model.input_on_gpu ? ', input made on the GPU' : '';
  const graph = model.cuda_graph ? ', as a CUDA graph' : '';
  const fallback = model.fallback ? ` (${model.fallback})` : '';
  return `${model.provider}${onCpu}${input}${graph}${fallback}`;
}

// EventSource cannot send the token that auth_viewers asks for: with a token saved the
// stream is read by fetch, and handed out as the same events.
class TokenEventSource extends EventTarget {
  constructor(url) {
    super();
    this.read(url);
  }

  async read(url) {
    for (;;) {
      try {
        const response = await fetch(url, { headers: authHeaders() });
        if (response.ok) {
          this.dispatchEvent(new Event('open'));
          await this.dispatchAll(response.body.pipeThrough(new TextDecoderStream()).getReader());
        }
      } catch (error) {
        // Reconnect below, as EventSource does.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async dispatchAll(reader) {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const field = (name) => block.split('\n').filter((l) => l.startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).trim());
        const data = field('data');
        if (data.length) this.dispatchEvent(new MessageEvent(field('event')[0] || 'message', { data: data.join('\n') }));
      }
    }
  }
}

function listen() {
  const url = '/api/v1/events';
  const events = localStorage.getItem(TOKEN_KEY) ? new TokenEventSource(url) : new EventSource(url);
  // After a (re)connect, anything may have changed meanwhile.
  events.addEventListener('open', refreshAll);
  events.addEventListener('resync', refreshAll);
  events.addEventListener('change', (event) => {
    const { key, value } = JSON.parse(event.data);
    showValue(key, value);
  });
  events.addEventListener('config_error', (event) => showConfigError(JSON.parse(event.data).errors));
  events.addEventListener('config_ok', () => showConfigError([]));
  events.addEventListener('status', (event) => showStatus(JSON.parse(event.data)));
}

bindControls();
listen();
