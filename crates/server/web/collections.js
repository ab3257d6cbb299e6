// Collections: the list (create, delete) and one collection's documents (upload with
// per-file progress, status polled while ingesting, download the original, delete).

import { api, upload, download, seg } from './api.js';
import {
  h,
  append,
  replace,
  field,
  messageArea,
  announce,
  formatBytes,
  formatTime,
  parsePairs,
  table,
  confirmDelete,
  errorText,
} from './dom.js';
import { t } from './i18n.js';

const STATUSES = ['queued', 'ingesting', 'indexed', 'failed'];
const POLL_MS = 2000;

/** A document status for people, with the raw status in data-status. */
export function statusBadge(status) {
  const known = STATUSES.includes(status);
  return h('span', { class: `badge status-${known ? status : 'other'}`, 'data-status': status }, known ? t(`status_${status}`) : status);
}

function countsText(documents) {
  const parts = [];
  for (const s of STATUSES) {
    if (documents && documents[s]) parts.push(t(`count_${s}`, { n: documents[s] }));
  }
  return parts.length ? parts.join(', ') : t('no_documents_short');
}

function metadataText(metadata) {
  if (!metadata || typeof metadata !== 'object') return '';
  return Object.entries(metadata)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

export function renderList(container) {
  const messages = messageArea();
  const listArea = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', {}, t('loading')));
  const name = h('input', { id: 'collection-name', name: 'name', required: true, maxlength: '128', autocomplete: 'off' });
  const meta = h('textarea', { id: 'collection-metadata', name: 'metadata', rows: '2', spellcheck: 'false' });
  const create = h('button', { type: 'submit', id: 'collection-create' }, t('create'));
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'new-collection' },
    h('h2', { id: 'new-collection' }, t('new_collection')),
    h('div', { class: 'row' }, field(t('name'), name), field(t('metadata'), meta, t('pairs_hint'))),
    h('div', { class: 'actions' }, create),
  );
  append(
    container,
    h('h1', { tabindex: '-1' }, t('collections_title')),
    h('p', { class: 'lead' }, t('collections_intro')),
    messages.el,
    form,
    listArea,
  );

  async function load() {
    try {
      const { data } = await api('GET', '/v1/collections');
      listArea.setAttribute('aria-busy', 'false');
      if (!data.length) {
        replace(listArea, h('p', { class: 'empty' }, t('no_collections')));
        return;
      }
      const rows = data.map((c) =>
        h(
          'tr',
          { 'data-collection-id': c.id },
          h('th', { scope: 'row' }, h('a', { href: `#/collections/${seg(c.id)}` }, c.name)),
          h('td', {}, countsText(c.documents)),
          h('td', {}, metadataText(c.metadata)),
          h('td', {}, formatTime(c.created_at)),
          h(
            'td',
            { class: 'cell-actions' },
            h('a', { class: 'button secondary', href: `#/chat/${seg(c.id)}` }, t('chat')),
            h(
              'button',
              {
                type: 'button',
                class: 'danger',
                'aria-label': t('delete_named', { name: c.name }),
                onclick: () => remove(c),
              },
              t('delete'),
            ),
          ),
        ),
      );
      replace(
        listArea,
        table(t('collections_title'), [t('name'), t('documents'), t('metadata'), t('created'), t('actions')], rows, {
          id: 'collections-table',
        }),
      );
    } catch (err) {
      listArea.setAttribute('aria-busy', 'false');
      replace(listArea);
      messages.error(err);
    }
  }

  async function remove(c) {
    if (!confirmDelete(c.name)) return;
    try {
      await api('DELETE', `/v1/collections/${seg(c.id)}`);
      announce(t('deleted_named', { name: c.name }));
      await load();
    } catch (err) {
      messages.error(err);
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    let metadata;
    try {
      metadata = parsePairs(meta.value);
    } catch (err) {
      messages.error(err);
      meta.focus();
      return;
    }
    create.disabled = true;
    try {
      const body = { name: name.value.trim() };
      if (metadata) body.metadata = metadata;
      const c = await api('POST', '/v1/collections', { body });
      name.value = '';
      meta.value = '';
      messages.info(t('created_named', { name: c.name }));
      await load();
    } catch (err) {
      messages.error(err);
    } finally {
      create.disabled = false;
    }
  });

  load();
}

export function renderCollection(container, { id }) {
  const messages = messageArea();
  const title = h('h1', { tabindex: '-1' }, t('collection'));
  const summary = h('p', { class: 'lead' });
  const files = h('input', { id: 'doc-files', name: 'file', type: 'file', multiple: true, required: true });
  const meta = h('textarea', { id: 'doc-metadata', name: 'metadata', rows: '2', spellcheck: 'false' });
  const send = h('button', { type: 'submit', id: 'doc-upload' }, t('upload'));
  const progressList = h('ul', { class: 'uploads', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title' }, t('upload_documents')),
    h('div', { class: 'row' }, field(t('files'), files, t('files_hint')), field(t('metadata'), meta, t('doc_pairs_hint'))),
    h('div', { class: 'actions' }, send),
    progressList,
  );
  const docsArea = h('div', { id: 'documents', 'aria-busy': 'true' }, h('p', {}, t('loading')));
  append(
    container,
    h('p', { class: 'crumbs' }, h('a', { href: '#/collections' }, t('nav_collections'))),
    title,
    summary,
    h('p', {}, h('a', { class: 'button secondary', href: `#/chat/${seg(id)}` }, t('chat_with_collection'))),
    messages.el,
    form,
    h('h2', {}, t('documents')),
    docsArea,
  );

  let timer = null;
  let stopped = false;
  const base = `/v1/collections/${seg(id)}`;

  async function loadCollection() {
    try {
      const c = await api('GET', base);
      title.textContent = c.name;
      document.title = `${c.name} · ${t('app_name')}`;
      summary.textContent = [countsText(c.documents), metadataText(c.metadata)].filter(Boolean).join(' · ');
    } catch (err) {
      messages.error(err);
    }
  }

  async function loadDocuments() {
    if (stopped) return;
    window.clearTimeout(timer);
    try {
      const { data } = await api('GET', `${base}/documents`);
      if (stopped) return;
      docsArea.setAttribute('aria-busy', 'false');
      renderDocuments(data);
      const busy = data.some((d) => d.status === 'queued' || d.status === 'ingesting');
      if (busy) {
        timer = window.setTimeout(loadDocuments, POLL_MS);
      } else {
        loadCollection();
      }
    } catch (err) {
      docsArea.setAttribute('aria-busy', 'false');
      messages.error(err);
    }
  }

  function renderDocuments(docs) {
    if (!docs.length) {
      replace(docsArea, h('p', { class: 'empty' }, t('no_documents')));
      return;
    }
    const rows = docs.map((d) =>
      h(
        'tr',
        { 'data-doc-id': d.id, 'data-filename': d.filename, 'data-status': d.status },
        h('th', { scope: 'row' }, d.filename),
        h('td', { class: 'status' }, statusBadge(d.status), d.error ? h('div', { class: 'error-text' }, d.error) : null),
        h('td', { class: 'num' }, d.pages ?? ''),
        h('td', { class: 'num' }, d.chunks ?? ''),
        h('td', { class: 'num' }, formatBytes(d.bytes)),
        h('td', {}, metadataText(d.metadata)),
        h('td', {}, formatTime(d.created_at)),
        h(
          'td',
          { class: 'cell-actions' },
          h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              'aria-label': t('download_named', { name: d.filename }),
              disabled: d.status === 'failed' && !d.bytes,
              onclick: async () => {
                try {
                  await download(`${base}/documents/${seg(d.id)}/content`, d.filename);
                } catch (err) {
                  messages.error(err);
                }
              },
            },
            t('download'),
          ),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              'aria-label': t('delete_named', { name: d.filename }),
              onclick: async () => {
                if (!confirmDelete(d.filename)) return;
                try {
                  await api('DELETE', `${base}/documents/${seg(d.id)}`);
                  announce(t('deleted_named', { name: d.filename }));
                  await loadDocuments();
                  await loadCollection();
                } catch (err) {
                  messages.error(err);
                }
              },
            },
            t('delete'),
          ),
        ),
      ),
    );
    replace(
      docsArea,
      table(
        t('documents'),
        [t('file'), t('status'), t('pages'), t('chunks'), t('size'), t('metadata'), t('created'), t('actions')],
        rows,
        { id: 'documents-table' },
      ),
    );
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    const chosen = Array.from(files.files || []);
    if (!chosen.length) {
      messages.error(new Error(t('choose_files')));
      files.focus();
      return;
    }
    let metadata;
    try {
      metadata = parsePairs(meta.value);
    } catch (err) {
      messages.error(err);
      meta.focus();
      return;
    }
    send.disabled = true;
    progressList.replaceChildren();
    // One request per file, so each has its own progress bar and its own answer.
    const jobs = chosen.map((file) => {
      const bar = h('progress', { max: '100', value: '0', 'aria-label': t('progress_of', { name: file.name }) });
      const state = h('span', { class: 'upload-state' }, t('uploading'));
      progressList.append(h('li', { 'data-upload': file.name }, h('span', { class: 'upload-name' }, file.name), bar, state));
      const body = new FormData();
      if (metadata) body.append('metadata', JSON.stringify(metadata));
      body.append('file', file, file.name);
      return upload(`${base}/documents`, body, (f) => {
        bar.value = Math.round(f * 100);
      })
        .then((res) => {
          const doc = res?.data?.[0];
          state.textContent = doc?.status === 'failed' ? doc.error || t('status_failed') : t('uploaded');
          loadDocuments();
        })
        .catch((err) => {
          state.textContent = errorText(err);
          state.classList.add('error-text');
          throw err;
        });
    });
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((r) => r.status === 'rejected').length;
    announce(failed ? t('uploads_failed', { n: failed }) : t('uploads_done', { n: results.length }));
    files.value = '';
    send.disabled = false;
    await loadDocuments();
    loadCollection();
  });

  loadCollection();
  loadDocuments();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
