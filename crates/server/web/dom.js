// Building the page from nodes (never from markup strings: text from the server stays text).

import { t, getLang } from './i18n.js';

/**
 * An element: h('button', {type: 'button', onclick: f, class: 'x'}, 'text', child, [more]).
 * Attributes named on* take a function; `for` sets htmlFor; boolean true sets the attribute,
 * false, null and undefined leave it out.
 */
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value' && !svg) {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends strings (as text), nodes and arrays of them; skips null, undefined and false. */
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled control: <div class="field"><label for=id>label</label>control</div>. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

/** A message area: errors are announced at once (role=alert), statuses politely. */
export function messageArea() {
  const el = h('div', { class: 'messages' });
  return {
    el,
    error(err) {
      replace(el, h('p', { class: 'error', role: 'alert' }, errorText(err)));
    },
    info(text) {
      replace(el, h('p', { class: 'info', role: 'status' }, text));
    },
    clear() {
      el.replaceChildren();
    },
  };
}

/** What to show for a failure: the API's message, or the browser's. */
export function errorText(err) {
  if (err && err.message) return err.message;
  return t('error_unknown');
}

/** Tells screen readers about a change elsewhere on the page. */
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  // A fresh text node is announced even when the text repeats.
  window.setTimeout(() => {
    el.textContent = text;
  }, 50);
}

/** Bytes for people: 1.2 MB. */
export function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${new Intl.NumberFormat(getLang(), { maximumFractionDigits: i === 0 ? 0 : 1 }).format(v)} ${units[i]}`;
}

/** Unix seconds as a local date and time. */
export function formatTime(unix) {
  if (!unix) return '';
  return new Intl.DateTimeFormat(getLang(), { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(unix * 1000));
}

/** A number with a few digits. */
export function formatNumber(x, digits = 4) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '';
  return new Intl.NumberFormat(getLang(), { maximumFractionDigits: digits }).format(x);
}

/** `key=value` lines (or comma-separated pairs) as an object; an empty text gives null. */
export function parsePairs(text) {
  const out = {};
  for (const part of String(text || '').split(/[\n,]/)) {
    const s = part.trim();
    if (!s) continue;
    const i = s.indexOf('=');
    if (i <= 0) throw new Error(t('error_pairs', { pair: s }));
    out[s.slice(0, i).trim()] = s.slice(i + 1).trim();
  }
  return Object.keys(out).length ? out : null;
}

/** A table with a caption and a header row; `rows` are arrays of cells (nodes or text). */
export function table(caption, headers, rows, attrs = {}) {
  return h(
    'table',
    attrs,
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows),
  );
}

/** Asks before something is deleted. */
export function confirmDelete(name) {
  return window.confirm(t('confirm_delete', { name }));
}
