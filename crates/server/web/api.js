// Calls to the API of this origin, each with `Authorization: Bearer KEY`. The key lives in
// sessionStorage only (gone when the tab closes). Errors come as {"error": {"message", ...}}
// and are thrown as ApiError with that message; a 401 signs the user out.

import { t } from './i18n.js';

const KEY = 'docraft.key';

let onUnauthorized = () => {};

/** What to do when a call answers 401 (the key was revoked): set by main.js. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
}

/** A refusal of the API: its status, message and code. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || null;
  }
}

async function errorOf(response) {
  let message = '';
  let code = null;
  try {
    const body = await response.json();
    message = body?.error?.message || '';
    code = body?.error?.code || null;
  } catch {
    // Not JSON: a proxy's page, say.
  }
  return new ApiError(response.status, message || t('error_http', { status: response.status }), code);
}

function headers(key, extra = {}) {
  return { Authorization: `Bearer ${key}`, ...extra };
}

/** Handles a failed response: a 401 signs out (unless `quiet`), then the error is thrown. */
async function fail(response, quiet) {
  const err = await errorOf(response);
  if (response.status === 401 && !quiet) {
    clearKey();
    onUnauthorized(err.message);
  }
  throw err;
}

/**
 * Calls the API. `body`: an object (sent as JSON) or FormData. Returns the parsed JSON (or
 * null for an empty body). `key` tries another key without signing out on a 401.
 */
export async function api(method, path, { body, signal, key } = {}) {
  const useKey = key || getKey();
  const init = { method, headers: headers(useKey), signal };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, t('error_network'));
  }
  if (!response.ok) await fail(response, Boolean(key));
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Reads a server-sent event stream (fetch + ReadableStream: EventSource cannot send the key).
 * Calls onData with each event's data until `data: [DONE]` or the end of the stream.
 */
export async function stream(method, path, { body, signal, onData }) {
  const init = { method, headers: headers(getKey(), { Accept: 'text/event-stream' }), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, t('error_network'));
  }
  if (!response.ok) await fail(response, false);
  const type = response.headers.get('Content-Type') || '';
  if (!type.startsWith('text/event-stream')) {
    // A JSON answer (a server that does not stream this route): one event.
    const text = await response.text();
    if (text) onData(text);
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (data.length) {
          const payload = data.join('\n');
          data = [];
          if (payload === '[DONE]') {
            reader.cancel().catch(() => {});
            return;
          }
          onData(payload);
        }
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      // Comments (keep-alives), `event:`, `id:` and `retry:` lines need nothing.
    }
  }
  if (data.length && data.join('\n') !== '[DONE]') onData(data.join('\n'));
}

/**
 * Uploads a form with XMLHttpRequest (for upload progress): onProgress(fraction 0..1).
 * Resolves with the parsed JSON answer.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', `Bearer ${getKey()}`);
    xhr.responseType = 'text';
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(1);
        resolve(body);
        return;
      }
      const err = new ApiError(
        xhr.status,
        body?.error?.message || t('error_http', { status: xhr.status }),
        body?.error?.code,
      );
      if (xhr.status === 401) {
        clearKey();
        onUnauthorized(err.message);
      }
      reject(err);
    };
    xhr.onerror = () => reject(new ApiError(0, t('error_network')));
    xhr.onabort = () => reject(new ApiError(0, t('error_aborted')));
    xhr.send(form);
  });
}

/**
 * Fetches a file the API serves (with the key, so fetch + blob, not a plain link): its blob
 * and the name from Content-Disposition, else `fallbackName`.
 */
export async function fetchBlob(path, fallbackName) {
  let response;
  try {
    response = await fetch(path, { headers: headers(getKey()) });
  } catch {
    throw new ApiError(0, t('error_network'));
  }
  if (!response.ok) await fail(response, false);
  const blob = await response.blob();
  const disposition = response.headers.get('Content-Disposition') || '';
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  return { blob, name: name || 'download' };
}

/** Hands a blob to the browser as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name || 'download';
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** Downloads a file the API serves; returns the name it was saved under. */
export async function download(path, fallbackName) {
  const { blob, name } = await fetchBlob(path, fallbackName);
  saveBlob(blob, name);
  return name;
}

/**
 * The first `max` lines of a text file the API serves, read as they arrive (the rest is not
 * downloaded). Returns { lines, more }: `more` when the file goes on.
 */
export async function readLines(path, max) {
  let response;
  try {
    response = await fetch(path, { headers: headers(getKey()) });
  } catch {
    throw new ApiError(0, t('error_network'));
  }
  if (!response.ok) await fail(response, false);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const lines = [];
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line.trim() === '') continue;
      if (lines.length === max) {
        reader.cancel().catch(() => {});
        return { lines, more: true };
      }
      lines.push(line);
    }
    if (done) break;
  }
  if (buffer.trim() !== '') {
    if (lines.length === max) return { lines, more: true };
    lines.push(buffer);
  }
  return { lines, more: false };
}

/** A path segment, escaped. */
export function seg(s) {
  return encodeURIComponent(s);
}
