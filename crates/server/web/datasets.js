// Datasets: fine-tuning files generated from a collection's documents (question-answer pairs
// or RAFT records) by a local model or an OpenAI-compatible endpoint.
//
// #/datasets: the form (POST /v1/datasets/jobs) and the jobs list (GET /v1/datasets/jobs).
// #/datasets/{id}: one job: live progress from its events (GET …/events?stream=true, read with
// fetch so the key goes along), counts (accepted, rejected by reason, redacted by type), the
// result files with downloads, the first rejected records with their reasons, cancel and
// resume, and "Fine-tune on this" (#/fine-tuning?file=… with the training file chosen).

import { api, stream, fetchBlob, saveBlob, readLines, seg } from './api.js';
import { h, append, replace, field, messageArea, announce, formatTime, table } from './dom.js';
import { t } from './i18n.js';
import { jobBadge } from './finetune.js';

const FINAL = ['succeeded', 'failed', 'cancelled'];
const POLL_MS = 3000;
/** Rejected records shown on a job's page (the download has them all). */
const REJECTED_SHOWN = 20;
/** RAFT formats written besides chat. */
const EXTRA_FORMATS = ['completion', 'hf', 'eval'];

/** The translation of `prefix_code`, or the code itself when there is none. */
function label(prefix, code) {
  const key = `${prefix}_${code}`;
  const text = t(key);
  return text === key ? code : text;
}

function sum(obj) {
  return Object.values(obj || {}).reduce((a, n) => a + (typeof n === 'number' ? n : 0), 0);
}

/** "12 accepted, 3 rejected" for a job that has counts. */
function countsText(job) {
  const c = job.counts || {};
  if (typeof c.accepted !== 'number') return '';
  return t('accepted_rejected', { accepted: c.accepted, rejected: sum(c.rejected) });
}

/** What generated a job: a local model's name, or "model at URL". */
function generatorText(g) {
  if (typeof g === 'string') return g;
  if (g && typeof g === 'object') return t('generator_endpoint_value', { model: g.model || '?', url: g.base_url || '?' });
  return '';
}

function radio(id, name, value, text, checked) {
  const input = h('input', { type: 'radio', id, name, value, checked });
  return [input, h('label', { class: 'choice', for: id }, input, ' ', text)];
}

export function render(container, { navigate }) {
  const messages = messageArea();
  const collection = h('select', { id: 'ds-collection', name: 'collection', required: true });
  const kind = h(
    'select',
    { id: 'ds-kind', name: 'kind' },
    h('option', { value: 'qa' }, t('kind_qa')),
    h('option', { value: 'raft' }, t('kind_raft')),
  );
  // The generator: a local model of GET /v1/models, or an OpenAI-compatible endpoint.
  const [useLocal, useLocalLabel] = radio('ds-gen-local', 'generator_type', 'local', t('generator_local'), true);
  const [useEndpoint, useEndpointLabel] = radio('ds-gen-endpoint', 'generator_type', 'endpoint', t('generator_endpoint'), false);
  const localModel = h('select', { id: 'ds-generator', name: 'generator' });
  const baseUrl = h('input', { id: 'ds-base-url', name: 'base_url', type: 'url', autocomplete: 'off', spellcheck: 'false' });
  const endpointModel = h('input', { id: 'ds-endpoint-model', name: 'model', autocomplete: 'off', spellcheck: 'false' });
  const keyEnv = h('input', { id: 'ds-api-key-env', name: 'api_key_env', autocomplete: 'off', spellcheck: 'false' });
  const localFields = h('div', { class: 'row', id: 'ds-local-fields' }, field(t('local_model'), localModel));
  const endpointFields = h(
    'div',
    { id: 'ds-endpoint-fields', hidden: true },
    h(
      'div',
      { class: 'row' },
      field(t('base_url'), baseUrl, t('base_url_hint')),
      field(t('endpoint_model'), endpointModel),
      field(t('api_key_env'), keyEnv, t('api_key_env_hint')),
    ),
    h('p', { class: 'note', id: 'ds-endpoint-note' }, t('endpoint_note')),
  );
  // RAFT formats besides chat.
  const formatBoxes = EXTRA_FORMATS.map((f) => h('input', { type: 'checkbox', id: `ds-format-${f}`, name: 'formats', value: f }));
  const formats = h(
    'fieldset',
    { id: 'ds-formats', hidden: true },
    h('legend', {}, t('formats')),
    h('p', { class: 'hint' }, t('formats_hint')),
    formatBoxes.map((box) => h('label', { class: 'choice', for: box.id }, box, ' ', label('format', box.value))),
  );
  const perChunk = h('input', { id: 'ds-per-chunk', name: 'questions_per_chunk', type: 'number', min: '1', max: '10', value: '2' });
  const limit = h('input', { id: 'ds-limit', name: 'limit', type: 'number', min: '1', step: '1' });
  const submit = h('button', { type: 'submit', id: 'ds-start' }, t('start_dataset'));
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'ds-new', novalidate: true },
    h('h2', { id: 'ds-new' }, t('new_dataset')),
    h('div', { class: 'row' }, field(t('collection'), collection), field(t('kind'), kind)),
    h(
      'fieldset',
      { id: 'ds-generator-fieldset' },
      h('legend', {}, t('generator')),
      h('div', { class: 'choices' }, useLocalLabel, useEndpointLabel),
      localFields,
      endpointFields,
    ),
    formats,
    h('div', { class: 'row' }, field(t('questions_per_chunk'), perChunk), field(t('limit'), limit, t('limit_hint'))),
    h('div', { class: 'actions' }, submit),
  );
  const listArea = h('div', { id: 'ds-jobs', 'aria-busy': 'true' }, h('p', {}, t('loading')));
  append(
    container,
    h('h1', { tabindex: '-1' }, t('datasets_title')),
    h('p', { class: 'lead' }, t('datasets_intro')),
    messages.el,
    form,
    h('h2', {}, t('dataset_jobs')),
    listArea,
  );

  function showGeneratorFields() {
    const endpoint = useEndpoint.checked;
    localFields.hidden = endpoint;
    endpointFields.hidden = !endpoint;
  }
  useLocal.addEventListener('change', showGeneratorFields);
  useEndpoint.addEventListener('change', showGeneratorFields);
  kind.addEventListener('change', () => {
    formats.hidden = kind.value !== 'raft';
  });

  let timer = null;
  let stopped = false;
  const names = new Map();

  async function loadChoices() {
    try {
      const [cols, models] = await Promise.all([api('GET', '/v1/collections'), api('GET', '/v1/models')]);
      for (const c of cols.data) names.set(c.id, c.name);
      replace(collection, cols.data.map((c) => h('option', { value: c.id }, c.name)));
      if (!cols.data.length) messages.info(t('dataset_needs_collection'));
      const base = models.data.filter((m) => !m.id.startsWith('ft:'));
      replace(
        localModel,
        base.length ? base.map((m) => h('option', { value: m.id }, m.id)) : h('option', { value: '' }, t('no_models')),
      );
      if (!base.length) {
        useEndpoint.checked = true;
        showGeneratorFields();
      }
    } catch (err) {
      messages.error(err);
    }
  }

  async function load() {
    if (stopped) return;
    window.clearTimeout(timer);
    try {
      const { data } = await api('GET', '/v1/datasets/jobs?limit=50');
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
          h('th', { scope: 'row' }, h('a', { href: `#/datasets/${seg(j.id)}`, class: 'mono' }, j.id)),
          h('td', {}, label('kind', j.kind)),
          h('td', {}, names.get(j.collection) || j.collection || ''),
          h('td', { class: 'status' }, jobBadge(j.status)),
          h('td', {}, j.error ? h('span', { class: 'error-text' }, String(j.error.message || j.error)) : countsText(j)),
          h('td', {}, formatTime(j.created_at)),
        ),
      );
      replace(
        listArea,
        table(t('dataset_jobs'), [t('job'), t('kind'), t('collection'), t('status'), t('output'), t('created')], rows, {
          id: 'ds-jobs-table',
        }),
      );
      if (data.some((j) => !FINAL.includes(j.status))) timer = window.setTimeout(load, POLL_MS);
    } catch (err) {
      listArea.setAttribute('aria-busy', 'false');
      replace(
        listArea,
        h('p', { class: 'error', role: 'alert' }, err.code === 'unknown_url' ? t('datasets_unavailable', { message: err.message }) : err.message),
      );
    }
  }

  /** The request of the form, or an error message and the control to fix. */
  function request() {
    if (!collection.value) return { error: t('dataset_needs_collection'), control: collection };
    const body = {
      collection: collection.value,
      kind: kind.value,
      questions_per_chunk: Number(perChunk.value) || 1,
    };
    if (useEndpoint.checked) {
      const url = baseUrl.value.trim();
      const model = endpointModel.value.trim();
      if (!url) return { error: t('endpoint_required'), control: baseUrl };
      if (!/^https?:\/\//i.test(url)) return { error: t('base_url_scheme'), control: baseUrl };
      if (!model) return { error: t('endpoint_required'), control: endpointModel };
      body.generator = { base_url: url, model };
      if (keyEnv.value.trim()) body.generator.api_key_env = keyEnv.value.trim();
    } else {
      if (!localModel.value) return { error: t('choose_generator'), control: localModel };
      body.generator = localModel.value;
    }
    if (limit.value.trim()) body.limit = Number(limit.value);
    if (kind.value === 'raft') {
      const extra = formatBoxes.filter((b) => b.checked).map((b) => b.value);
      if (extra.length) body.formats = ['chat', ...extra];
    }
    return { body };
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    const { body, error, control } = request();
    if (error) {
      messages.error(new Error(error));
      control.focus();
      return;
    }
    submit.disabled = true;
    try {
      const job = await api('POST', '/v1/datasets/jobs', { body });
      announce(t('dataset_job_created', { id: job.id }));
      navigate(`#/datasets/${seg(job.id)}`);
    } catch (err) {
      messages.error(err.code === 'unknown_url' ? new Error(t('datasets_unavailable', { message: err.message })) : err);
      submit.disabled = false;
    }
  });

  loadChoices().then(load);
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

export function renderJob(container, { id, navigate }) {
  const messages = messageArea();
  const title = h('h1', { tabindex: '-1' }, t('dataset_job_title', { id }));
  const statusEl = h('p', { class: 'job-status', id: 'ds-job-status', role: 'status', 'aria-live': 'polite' });
  const bar = h('progress', { id: 'ds-progress', max: '1', value: '0', hidden: true, 'aria-labelledby': 'ds-progress-text' });
  const barText = h('span', { id: 'ds-progress-text' });
  const cancel = h('button', { type: 'button', class: 'danger', id: 'ds-cancel', disabled: true }, t('cancel'));
  const resume = h('button', { type: 'button', class: 'secondary', id: 'ds-resume', disabled: true }, t('resume'));
  const fineTune = h('button', { type: 'button', id: 'ds-finetune', disabled: true }, t('finetune_on_this'));
  const details = h('dl', { class: 'details', id: 'ds-details' });
  const counts = h('div', { id: 'ds-counts' });
  const filesArea = h('div', { id: 'ds-files' }, h('p', { class: 'empty' }, t('no_result_files')));
  const rejectedArea = h('div', { id: 'ds-rejected' }, h('p', { class: 'empty' }, t('no_rejected_records')));
  const log = h('ol', { class: 'event-log', id: 'ds-event-log' });
  append(
    container,
    h('p', { class: 'crumbs' }, h('a', { href: '#/datasets' }, t('nav_datasets'))),
    title,
    statusEl,
    h('p', { class: 'progress-line' }, bar, ' ', barText),
    messages.el,
    h('div', { class: 'actions' }, cancel, resume, fineTune),
    h(
      'div',
      { class: 'two' },
      h('section', { class: 'card', 'aria-labelledby': 'ds-details-title' }, h('h2', { id: 'ds-details-title' }, t('details')), details),
      h('section', { class: 'card', 'aria-labelledby': 'ds-counts-title' }, h('h2', { id: 'ds-counts-title' }, t('counts')), counts),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'ds-files-title' }, h('h2', { id: 'ds-files-title' }, t('result_files')), filesArea),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'ds-rejected-title' },
      h('h2', { id: 'ds-rejected-title' }, t('rejected_records')),
      rejectedArea,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'ds-log-title' },
      h('h2', { id: 'ds-log-title' }, t('events')),
      h('div', { class: 'log-scroll', tabindex: '0', role: 'region', 'aria-labelledby': 'ds-log-title' }, log),
    ),
  );

  const controller = new AbortController();
  const path = `/v1/datasets/jobs/${seg(id)}`;
  let stopped = false;
  let following = false;
  let job = null;
  let lastStatus = null;
  let refreshTimer = null;
  /** Redaction counts from the events, until the job's own counts come. */
  let liveRedacted = null;
  /** The rejected file shown (read once per file id). */
  let rejectedShown = null;
  let filesShown = null;
  /** The collection's name, once looked up. */
  let collectionName = null;

  function row(term, value) {
    if (value === null || value === undefined || value === '') return [];
    return [h('dt', {}, term), h('dd', {}, value)];
  }

  function trainFile(j) {
    return (j.result_files || []).find((f) => f.split === 'train' && f.format === 'chat' && f.purpose === 'fine-tune');
  }

  function showCounts(j) {
    const c = j.counts || {};
    const g = (j.request || {}).generator;
    const endpoint = g && typeof g === 'object';
    const redacted = c.redacted && Object.keys(c.redacted).length ? c.redacted : liveRedacted || c.redacted;
    const rejected = Object.entries(c.rejected || {}).filter(([, n]) => n > 0);
    let redaction;
    if (!endpoint) {
      redaction = h('p', { class: 'hint' }, t('redaction_local'));
    } else if ((j.request || {}).redact === false) {
      redaction = h('p', { class: 'hint' }, t('redaction_off'));
    } else if (!redacted) {
      redaction = h('p', { class: 'hint' }, FINAL.includes(j.status) ? t('redacted_nothing') : t('loading'));
    } else if (!Object.keys(redacted).length) {
      redaction = h('p', { class: 'hint', id: 'ds-redacted-none' }, t('redacted_nothing'));
    } else {
      redaction = h(
        'ul',
        { class: 'plain', id: 'ds-redacted' },
        Object.entries(redacted).map(([kind, n]) =>
          h('li', { 'data-redacted-kind': kind, 'data-count': n }, t('redacted_count', { n, kind: label('redact', kind) })),
        ),
      );
    }
    replace(
      counts,
      typeof c.accepted === 'number'
        ? h('p', { id: 'ds-accepted', 'data-count': c.accepted }, t('records_accepted', { n: c.accepted }))
        : h('p', { class: 'hint' }, FINAL.includes(j.status) ? t('no_counts') : t('counts_when_done')),
      h('h3', {}, t('rejected_by_reason')),
      rejected.length
        ? h(
            'ul',
            { class: 'plain', id: 'ds-rejected-counts' },
            rejected.map(([reason, n]) =>
              h('li', { 'data-reason': reason, 'data-count': n }, t('reason_count', { n, reason: label('reason', reason) })),
            ),
          )
        : h('p', { class: 'hint' }, typeof c.accepted === 'number' ? t('none_rejected') : '—'),
      h('h3', {}, t('redacted_title')),
      redaction,
    );
  }

  async function downloadFile(button, fileId, filename) {
    button.disabled = true;
    messages.clear();
    try {
      const { blob, name } = await fetchBlob(`/v1/files/${seg(fileId)}/content`, filename);
      saveBlob(blob, name);
      button.dataset.downloadedBytes = String(blob.size);
      announce(t('downloaded_named', { name }));
    } catch (err) {
      messages.error(err);
    } finally {
      button.disabled = false;
    }
  }

  function showFiles(j) {
    const files = j.result_files || [];
    const key = files.map((f) => f.id).join(',');
    if (key === filesShown) return;
    filesShown = key;
    if (!files.length) {
      replace(filesArea, h('p', { class: 'empty' }, FINAL.includes(j.status) ? t('no_result_files') : t('files_when_done')));
      return;
    }
    const rows = files.map((f) => {
      const button = h(
        'button',
        { type: 'button', class: 'secondary', 'data-file-id': f.id, 'aria-label': t('download_named', { name: f.filename }) },
        t('download'),
      );
      button.addEventListener('click', () => downloadFile(button, f.id, f.filename));
      return h(
        'tr',
        { 'data-file-id': f.id, 'data-split': f.split, 'data-format': f.format, 'data-purpose': f.purpose },
        h('th', { scope: 'row', class: 'mono' }, f.filename),
        h('td', {}, f.split),
        h('td', {}, label('format', f.format)),
        h('td', { class: 'num' }, String(f.records ?? '')),
        h('td', { class: 'mono' }, f.purpose),
        h('td', { class: 'cell-actions' }, button),
      );
    });
    replace(
      filesArea,
      table(t('result_files'), [t('file'), t('split'), t('format'), t('records'), t('purpose'), t('actions')], rows, {
        id: 'ds-files-table',
      }),
    );
  }

  /** A rejected record's reason(s) and question, whatever the generator wrote. */
  function rejectedRow(line) {
    let r;
    try {
      r = JSON.parse(line);
    } catch {
      return null;
    }
    const reasons = [r.reason, ...(Array.isArray(r.reasons) ? r.reasons : [r.reasons])].filter(
      (x) => typeof x === 'string' && x,
    );
    const question = r.question ?? r.record?.question ?? r.pair?.question ?? '';
    return { reasons: [...new Set(reasons)], question: String(question), detail: r.detail ? String(r.detail) : '' };
  }

  async function showRejected(j) {
    const fileId = j.rejected_file;
    if (!fileId || fileId === rejectedShown) {
      if (!fileId) {
        rejectedShown = null;
        replace(rejectedArea, h('p', { class: 'empty' }, FINAL.includes(j.status) ? t('no_rejected_records') : t('files_when_done')));
      }
      return;
    }
    rejectedShown = fileId;
    const filename = `${j.id}.rejected.jsonl`;
    const button = h('button', { type: 'button', class: 'secondary', id: 'ds-rejected-download', 'data-file-id': fileId }, t('download_rejected'));
    button.addEventListener('click', () => downloadFile(button, fileId, filename));
    replace(rejectedArea, h('p', {}, t('loading')));
    try {
      const { lines, more } = await readLines(`/v1/files/${seg(fileId)}/content`, REJECTED_SHOWN);
      if (stopped) return;
      const records = lines.map(rejectedRow).filter(Boolean);
      const total = sum((j.counts || {}).rejected);
      const rows = records.map((r) =>
        h(
          'tr',
          { 'data-reason': r.reasons.join(' ') },
          h('td', {}, r.reasons.map((x) => label('reason', x)).join(', ')),
          h('td', { title: r.detail || null }, r.question || h('span', { class: 'hint' }, t('no_question'))),
        ),
      );
      replace(
        rejectedArea,
        records.length
          ? [
              h(
                'p',
                { class: 'hint' },
                more || total > records.length
                  ? t('rejected_shown', { shown: records.length, total: Math.max(total, records.length) })
                  : t('rejected_all', { n: records.length }),
              ),
              table(t('rejected_records'), [t('reason'), t('question')], rows, { id: 'ds-rejected-table' }),
            ]
          : h('p', { class: 'empty' }, t('no_rejected_records')),
        h('div', { class: 'actions' }, button),
      );
    } catch (err) {
      rejectedShown = null;
      replace(rejectedArea, h('p', { class: 'error-text' }, err.message), h('div', { class: 'actions' }, button));
    }
  }

  function showJob(j) {
    job = j;
    title.textContent = t('dataset_job_title', { id: j.id });
    replace(statusEl, t('status'), ': ', jobBadge(j.status));
    if (j.status !== lastStatus) {
      if (lastStatus) announce(t('job_status_now', { status: label('job', j.status) }));
      lastStatus = j.status;
    }
    if (FINAL.includes(j.status) && !bar.hidden && j.status === 'succeeded') bar.value = bar.max;
    const req = j.request || {};
    replace(
      details,
      row(t('job'), h('span', { class: 'mono' }, j.id)),
      row(t('kind'), label('kind', j.kind)),
      row(t('collection'), collectionName ? `${collectionName} (${j.collection})` : h('span', { class: 'mono' }, j.collection)),
      row(t('generator'), generatorText(req.generator)),
      row(t('questions_per_chunk'), req.questions_per_chunk ?? null),
      row(t('limit'), req.limit ?? null),
      row(t('formats'), Array.isArray(req.formats) ? req.formats.join(', ') : null),
      row(t('created'), formatTime(j.created_at)),
      row(t('started'), formatTime(j.started_at)),
      row(t('finished'), formatTime(j.finished_at)),
      row(t('error'), j.error ? h('span', { class: 'error-text', id: 'ds-error' }, String(j.error.message || j.error)) : null),
    );
    showCounts(j);
    showFiles(j);
    showRejected(j);
    cancel.disabled = FINAL.includes(j.status);
    resume.disabled = j.status !== 'cancelled' && j.status !== 'failed';
    fineTune.disabled = !(j.status === 'succeeded' && trainFile(j));
  }

  async function refresh() {
    try {
      const j = await api('GET', path);
      if (!stopped) showJob(j);
      return j;
    } catch (err) {
      if (!stopped) messages.error(err);
      return null;
    }
  }

  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = window.setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, 500);
  }

  function addEvent(e) {
    const item = h(
      'li',
      { class: `level-${e.level || 'info'}` },
      h('time', { datetime: new Date((e.created_at || 0) * 1000).toISOString() }, formatTime(e.created_at)),
      ' ',
      e.message,
    );
    log.append(item);
    const scroller = log.parentElement;
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  function progress(done, total) {
    bar.hidden = false;
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, bar.max);
    barText.textContent = t('chunks_done', { done, total });
  }

  async function follow() {
    // The stream replays the job's events from the first, then follows until the job ends
    // (`data: [DONE]`); a dropped connection is reopened, and events seen are skipped.
    if (following) return;
    following = true;
    const seen = new Set();
    try {
      for (let attempt = 0; !stopped && attempt < 20; attempt += 1) {
        try {
          await stream('GET', `${path}/events?stream=true`, {
            signal: controller.signal,
            onData(data) {
              let e;
              try {
                e = JSON.parse(data);
              } catch {
                return;
              }
              if (seen.has(e.id)) return;
              seen.add(e.id);
              addEvent(e);
              const d = e.data || {};
              if (typeof d.done === 'number' && typeof d.total === 'number') progress(d.done, d.total);
              if (d.redacted && typeof d.redacted === 'object') {
                liveRedacted = d.redacted;
                if (job) showCounts(job);
              }
              refreshSoon();
            },
          });
          const j = await refresh();
          if (!j || FINAL.includes(j.status)) return;
        } catch (err) {
          if (err.name === 'AbortError' || stopped) return;
          messages.error(err);
          if (err.status && err.status < 500) return;
        }
        await new Promise((r) => window.setTimeout(r, 1000));
      }
    } finally {
      following = false;
    }
  }

  async function control(action, button) {
    button.disabled = true;
    messages.clear();
    try {
      const j = await api('POST', `${path}/${action}`);
      showJob(j);
      announce(t(action === 'cancel' ? 'dataset_cancel_requested' : 'dataset_resume_requested'));
      if (!FINAL.includes(j.status)) follow();
    } catch (err) {
      messages.error(err);
      button.disabled = false;
    }
  }
  cancel.addEventListener('click', () => control('cancel', cancel));
  resume.addEventListener('click', () => control('resume', resume));
  fineTune.addEventListener('click', () => {
    const train = job && trainFile(job);
    if (!train) return;
    const valid = (job.result_files || []).find((f) => f.split === 'valid' && f.format === 'chat' && f.purpose === 'fine-tune');
    const query = new URLSearchParams({ file: train.id });
    if (valid) query.set('validation', valid.id);
    navigate(`#/fine-tuning?${query}`);
  });

  refresh().then((j) => {
    if (!j) return;
    follow();
    api('GET', `/v1/collections/${seg(j.collection)}`)
      .then((c) => {
        collectionName = c && c.name;
        if (!stopped && job && collectionName) showJob(job);
      })
      .catch(() => {});
  });

  return () => {
    stopped = true;
    controller.abort();
    window.clearTimeout(refreshTimer);
  };
}
