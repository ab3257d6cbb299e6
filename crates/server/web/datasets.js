// Datasets: fine-tuning files generated from a collection's documents (question-answer pairs
// or RAFT records). POST /v1/datasets/jobs and GET /v1/datasets/jobs; a server without them
// answers 404, shown as it comes.

import { api } from './api.js';
import { h, append, replace, field, messageArea, announce, formatTime, table } from './dom.js';
import { t } from './i18n.js';

const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 3000;

export function render(container) {
  const messages = messageArea();
  const collection = h('select', { id: 'ds-collection', name: 'collection', required: true });
  const kind = h(
    'select',
    { id: 'ds-kind', name: 'kind' },
    h('option', { value: 'qa' }, t('kind_qa')),
    h('option', { value: 'raft' }, t('kind_raft')),
  );
  const generator = h('select', { id: 'ds-generator', name: 'generator' });
  const perChunk = h('input', { id: 'ds-per-chunk', name: 'questions_per_chunk', type: 'number', min: '1', max: '10', value: '2' });
  const limit = h('input', { id: 'ds-limit', name: 'limit', type: 'number', min: '1', step: '1' });
  const submit = h('button', { type: 'submit', id: 'ds-start' }, t('generate'));
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'ds-new' },
    h('h2', { id: 'ds-new' }, t('new_dataset')),
    h('div', { class: 'row' }, field(t('collection'), collection), field(t('kind'), kind), field(t('generator'), generator)),
    h('div', { class: 'row' }, field(t('questions_per_chunk'), perChunk), field(t('limit'), limit, t('limit_hint'))),
    h('div', { class: 'actions' }, submit),
  );
  const listArea = h('div', { 'aria-busy': 'true' }, h('p', {}, t('loading')));
  append(
    container,
    h('h1', { tabindex: '-1' }, t('datasets_title')),
    h('p', { class: 'lead' }, t('datasets_intro')),
    messages.el,
    form,
    h('h2', {}, t('dataset_jobs')),
    listArea,
  );

  let timer = null;
  let stopped = false;

  async function loadChoices() {
    try {
      const [cols, models] = await Promise.all([api('GET', '/v1/collections'), api('GET', '/v1/models')]);
      replace(collection, cols.data.map((c) => h('option', { value: c.id }, c.name)));
      replace(generator, models.data.map((m) => h('option', { value: m.id }, m.id)));
    } catch (err) {
      messages.error(err);
    }
  }

  function outputOf(job) {
    const files = (job.result_files || []).map((f) =>
      typeof f === 'string'
        ? h('li', { class: 'mono' }, f)
        : h('li', {}, t('result_file', { name: f.filename || f.id, id: f.id, n: f.records ?? '?' })),
    );
    const counts = job.counts || {};
    return [
      typeof counts.accepted === 'number' ? h('div', {}, t('records_accepted', { n: counts.accepted })) : null,
      files.length ? h('ul', { class: 'plain' }, files) : null,
    ];
  }

  async function load() {
    if (stopped) return;
    window.clearTimeout(timer);
    try {
      const { data } = await api('GET', '/v1/datasets/jobs');
      if (stopped) return;
      listArea.setAttribute('aria-busy', 'false');
      if (!data.length) {
        replace(listArea, h('p', { class: 'empty' }, t('no_dataset_jobs')));
        return;
      }
      const rows = data.map((j) =>
        h(
          'tr',
          { 'data-dataset-job-id': j.id, 'data-status': j.status },
          h('th', { scope: 'row', class: 'mono' }, j.id),
          h('td', {}, j.kind || ''),
          h('td', {}, j.collection_name || j.collection || j.collection_id || ''),
          h('td', {}, h('span', { class: 'badge', 'data-status': j.status }, j.status || '')),
          h('td', {}, j.error ? h('span', { class: 'error-text' }, j.error.message || String(j.error)) : outputOf(j)),
          h('td', {}, formatTime(j.created_at)),
        ),
      );
      replace(
        listArea,
        table(t('dataset_jobs'), [t('job'), t('kind'), t('collection'), t('status'), t('output'), t('created')], rows),
      );
      if (data.some((j) => j.status && !FINAL.includes(j.status))) timer = window.setTimeout(load, POLL_MS);
    } catch (err) {
      listArea.setAttribute('aria-busy', 'false');
      replace(
        listArea,
        h('p', { class: 'error', role: 'alert' }, err.status === 404 ? t('datasets_unavailable', { message: err.message }) : err.message),
      );
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    const body = {
      collection: collection.value,
      kind: kind.value,
      generator: generator.value,
      questions_per_chunk: Number(perChunk.value) || 1,
    };
    if (limit.value.trim()) body.limit = Number(limit.value);
    submit.disabled = true;
    try {
      const job = await api('POST', '/v1/datasets/jobs', { body });
      announce(t('dataset_job_created', { id: job.id }));
      messages.info(t('dataset_job_created', { id: job.id }));
      await load();
    } catch (err) {
      messages.error(err.status === 404 ? new Error(t('datasets_unavailable', { message: err.message })) : err);
    } finally {
      submit.disabled = false;
    }
  });

  loadChoices();
  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

