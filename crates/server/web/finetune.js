// Fine-tuning: upload a training file, start a job, the jobs list; a job's page with its
// status, the live loss chart and event log (GET …/events?stream=true, read with fetch), and
// pause, resume and cancel.

import { api, upload, stream, seg } from './api.js';
import { h, append, replace, field, messageArea, announce, formatBytes, formatTime, formatNumber, table } from './dom.js';
import { t } from './i18n.js';
import { lossChart } from './chart.js';

const FINAL = ['succeeded', 'failed', 'cancelled'];
const JOB_STATUSES = ['validating_files', 'queued', 'running', 'paused', ...FINAL];
const POLL_MS = 3000;

export function jobBadge(status) {
  const known = JOB_STATUSES.includes(status);
  return h(
    'span',
    { class: `badge job-${known ? status : 'other'}`, 'data-status': status },
    known ? t(`job_${status}`) : status,
  );
}

function progressText(job) {
  const d = job.docraft || {};
  if (typeof d.step !== 'number') return '';
  return d.total_steps ? t('step_of', { step: d.step, total: d.total_steps }) : t('step_n', { step: d.step });
}

function numberInput(id, attrs = {}) {
  return h('input', { id, name: id, type: 'number', inputmode: 'decimal', ...attrs });
}

export function renderList(container, { navigate, file: preselect, validation: preselectValidation }) {
  const messages = messageArea();
  // Upload a training file.
  const fileInput = h('input', { id: 'training-file', name: 'file', type: 'file', accept: '.jsonl,.json,application/jsonl', required: true });
  const uploadBtn = h('button', { type: 'submit', id: 'training-upload' }, t('upload'));
  const bar = h('progress', { max: '100', value: '0', hidden: true, 'aria-label': t('upload_progress') });
  const uploadState = h('p', { class: 'upload-state', role: 'status' });
  const uploadForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'upload-training-title' },
    h('h2', { id: 'upload-training-title' }, t('upload_training_file')),
    field(t('training_file_jsonl'), fileInput, t('training_file_hint')),
    h('div', { class: 'actions' }, uploadBtn, bar),
    uploadState,
  );
  // Start a job.
  const model = h('select', { id: 'job-model', name: 'model', required: true });
  const training = h('select', { id: 'job-training-file', name: 'training_file', required: true });
  const validation = h('select', { id: 'job-validation-file', name: 'validation_file' });
  const suffix = h('input', { id: 'job-suffix', name: 'suffix', maxlength: '64', autocomplete: 'off' });
  const epochs = numberInput('hp-n-epochs', { min: '1', max: '20', step: '1', placeholder: t('auto') });
  const batch = numberInput('hp-batch-size', { min: '1', max: '256', step: '1', placeholder: t('auto') });
  const lr = numberInput('hp-lr-multiplier', { min: '0', step: 'any', placeholder: t('auto') });
  const rank = numberInput('hp-lora-rank', { min: '1', max: '256', step: '1', placeholder: '16' });
  const maxSteps = numberInput('hp-max-steps', { min: '1', step: '1' });
  const start = h('button', { type: 'submit', id: 'job-start' }, t('start_job'));
  const jobForm = h(
    'form',
    { class: 'card', 'aria-labelledby': 'new-job-title' },
    h('h2', { id: 'new-job-title' }, t('new_job')),
    h('div', { class: 'row' }, field(t('base_model'), model), field(t('training_file'), training), field(t('validation_file'), validation)),
    h('div', { class: 'row' }, field(t('suffix'), suffix, t('suffix_hint'))),
    h(
      'fieldset',
      {},
      h('legend', {}, t('hyperparameters')),
      h(
        'div',
        { class: 'row' },
        field(t('n_epochs'), epochs),
        field(t('batch_size'), batch),
        field(t('lr_multiplier'), lr),
        field(t('lora_rank'), rank),
        field(t('max_steps'), maxSteps),
      ),
    ),
    h('div', { class: 'actions' }, start),
  );
  const jobsArea = h('div', { 'aria-busy': 'true' }, h('p', {}, t('loading')));
  append(
    container,
    h('h1', { tabindex: '-1' }, t('finetune_title')),
    h('p', { class: 'lead' }, t('finetune_intro')),
    messages.el,
    h('div', { class: 'two' }, uploadForm, jobForm),
    h('h2', {}, t('jobs')),
    jobsArea,
  );

  let timer = null;
  let stopped = false;

  async function loadModels() {
    try {
      const { data } = await api('GET', '/v1/models');
      const base = data.filter((m) => !m.id.startsWith('ft:'));
      replace(
        model,
        base.map((m) => h('option', { value: m.id }, m.id)),
      );
    } catch (err) {
      messages.error(err);
    }
  }

  // `select` (and `selectValidation`): file ids to choose, e.g. from a dataset job's
  // "Fine-tune on this" (#/fine-tuning?file=file-…&validation=file-…).
  async function loadFiles(select, selectValidation) {
    try {
      const { data } = await api('GET', '/v1/files?purpose=fine-tune');
      const options = data.map((f) => h('option', { value: f.id }, `${f.filename} (${formatBytes(f.bytes)}, ${f.id})`));
      const keep = training.value;
      const keepValidation = validation.value;
      replace(training, options.map((o) => o.cloneNode(true)));
      replace(validation, h('option', { value: '' }, t('none')), options);
      if (select) training.value = select;
      else if (keep) training.value = keep;
      if (selectValidation) validation.value = selectValidation;
      else if (keepValidation) validation.value = keepValidation;
      if (select && training.value !== select) messages.error(new Error(t('file_not_offered', { id: select })));
      else if (select) announce(t('training_file_chosen', { id: select }));
    } catch (err) {
      messages.error(err);
    }
  }

  async function loadJobs() {
    if (stopped) return;
    window.clearTimeout(timer);
    try {
      const { data } = await api('GET', '/v1/fine_tuning/jobs?limit=50');
      if (stopped) return;
      jobsArea.setAttribute('aria-busy', 'false');
      if (!data.length) {
        replace(jobsArea, h('p', { class: 'empty' }, t('no_jobs')));
      } else {
        const rows = data.map((j) =>
          h(
            'tr',
            { 'data-job-id': j.id, 'data-status': j.status },
            h('th', { scope: 'row' }, h('a', { href: `#/fine-tuning/${seg(j.id)}` }, j.user_provided_suffix || j.id)),
            h('td', {}, j.model),
            h('td', { class: 'status' }, jobBadge(j.status)),
            h('td', {}, progressText(j)),
            h('td', { class: 'mono' }, j.fine_tuned_model || ''),
            h('td', {}, formatTime(j.created_at)),
          ),
        );
        replace(
          jobsArea,
          table(t('jobs'), [t('job'), t('base_model'), t('status'), t('progress'), t('fine_tuned_model'), t('created')], rows, {
            id: 'jobs-table',
          }),
        );
      }
      if (data.some((j) => !FINAL.includes(j.status))) timer = window.setTimeout(loadJobs, POLL_MS);
    } catch (err) {
      jobsArea.setAttribute('aria-busy', 'false');
      messages.error(err);
    }
  }

  uploadForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      messages.error(new Error(t('choose_file')));
      fileInput.focus();
      return;
    }
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', file, file.name);
    uploadBtn.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    uploadState.textContent = t('uploading');
    try {
      const f = await upload('/v1/files', form, (x) => {
        bar.value = Math.round(x * 100);
      });
      uploadState.textContent = t('file_uploaded', { name: f.filename, id: f.id });
      uploadState.dataset.fileId = f.id;
      fileInput.value = '';
      await loadFiles(f.id);
    } catch (err) {
      uploadState.textContent = '';
      messages.error(err);
    } finally {
      uploadBtn.disabled = false;
      bar.hidden = true;
    }
  });

  jobForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    if (!training.value) {
      messages.error(new Error(t('choose_training_file')));
      training.focus();
      return;
    }
    const hyperparameters = {};
    const num = (input, key) => {
      if (input.value.trim() !== '') hyperparameters[key] = Number(input.value);
    };
    num(epochs, 'n_epochs');
    num(batch, 'batch_size');
    num(lr, 'learning_rate_multiplier');
    num(rank, 'lora_rank');
    num(maxSteps, 'max_steps');
    const body = { model: model.value, training_file: training.value, hyperparameters };
    if (validation.value) body.validation_file = validation.value;
    if (suffix.value.trim()) body.suffix = suffix.value.trim();
    start.disabled = true;
    try {
      const job = await api('POST', '/v1/fine_tuning/jobs', { body });
      announce(t('job_created', { id: job.id }));
      navigate(`#/fine-tuning/${seg(job.id)}`);
    } catch (err) {
      messages.error(err);
      start.disabled = false;
    }
  });

  loadModels();
  loadFiles(preselect, preselectValidation);
  loadJobs();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

export function renderJob(container, { id }) {
  const messages = messageArea();
  const title = h('h1', { tabindex: '-1' }, t('job_title', { id }));
  const statusEl = h('p', { class: 'job-status', id: 'job-status', role: 'status', 'aria-live': 'polite' });
  const details = h('dl', { class: 'details' });
  const pause = h('button', { type: 'button', class: 'secondary', id: 'job-pause' }, t('pause'));
  const resume = h('button', { type: 'button', class: 'secondary', id: 'job-resume' }, t('resume'));
  const cancel = h('button', { type: 'button', class: 'danger', id: 'job-cancel' }, t('cancel'));
  const chart = lossChart();
  const log = h('ol', { class: 'event-log', id: 'event-log' });
  append(
    container,
    h('p', { class: 'crumbs' }, h('a', { href: '#/fine-tuning' }, t('nav_finetune'))),
    title,
    statusEl,
    messages.el,
    h('div', { class: 'actions' }, pause, resume, cancel),
    h(
      'div',
      { class: 'two' },
      h('section', { class: 'card', 'aria-labelledby': 'chart-title' }, h('h2', { id: 'chart-title' }, t('loss_chart')), chart.el),
      h('section', { class: 'card', 'aria-labelledby': 'details-title' }, h('h2', { id: 'details-title' }, t('details')), details),
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'log-title' },
      h('h2', { id: 'log-title' }, t('events')),
      h('div', { class: 'log-scroll', tabindex: '0', role: 'region', 'aria-labelledby': 'log-title' }, log),
    ),
  );

  const controller = new AbortController();
  let stopped = false;
  let lastStatus = null;
  let refreshTimer = null;
  const path = `/v1/fine_tuning/jobs/${seg(id)}`;

  function row(term, value) {
    if (value === null || value === undefined || value === '') return [];
    return [h('dt', {}, term), h('dd', {}, value)];
  }

  function showJob(job) {
    title.textContent = t('job_title', { id: job.user_provided_suffix || job.id });
    replace(statusEl, t('status'), ': ', jobBadge(job.status), ' ', progressText(job));
    if (job.status !== lastStatus) {
      if (lastStatus) announce(t('job_status_now', { status: t(`job_${job.status}`) }));
      lastStatus = job.status;
    }
    const hp = job.hyperparameters || {};
    const d = job.docraft || {};
    replace(
      details,
      row(t('job'), h('span', { class: 'mono' }, job.id)),
      row(t('base_model'), job.model),
      row(t('training_file'), h('span', { class: 'mono' }, job.training_file)),
      row(t('validation_file'), job.validation_file ? h('span', { class: 'mono' }, job.validation_file) : null),
      row(t('fine_tuned_model'), job.fine_tuned_model ? h('a', { href: '#/hub', class: 'mono' }, job.fine_tuned_model) : null),
      row(
        t('hyperparameters'),
        Object.entries(hp)
          .filter(([, v]) => v !== null && v !== undefined)
          .map(([k, v]) => `${k}=${v}`)
          .join(', '),
      ),
      row(t('train_loss'), formatNumber(d.train_loss)),
      row(t('valid_loss'), formatNumber(d.valid_loss)),
      row(t('trained_tokens'), job.trained_tokens ?? null),
      row(t('elapsed'), typeof d.elapsed_s === 'number' ? t('seconds', { s: formatNumber(d.elapsed_s, 1) }) : null),
      row(t('created'), formatTime(job.created_at)),
      row(t('finished'), formatTime(job.finished_at)),
      row(t('error'), job.error ? job.error.message : null),
    );
    const final = FINAL.includes(job.status);
    pause.disabled = final || job.status === 'paused';
    resume.disabled = job.status !== 'paused';
    cancel.disabled = final;
  }

  async function refresh() {
    try {
      const job = await api('GET', path);
      if (!stopped) showJob(job);
      return job;
    } catch (err) {
      if (!stopped) messages.error(err);
      return null;
    }
  }

  // Message events change the status: refresh at most twice a second.
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
      { class: `level-${e.level || 'info'}`, 'data-type': e.type },
      h('time', { datetime: new Date((e.created_at || 0) * 1000).toISOString() }, formatTime(e.created_at)),
      ' ',
      e.message,
    );
    log.append(item);
    const scroller = log.parentElement;
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  async function follow() {
    // The stream replays the job's events from the first, then follows until it ends. A
    // paused job's stream goes on (pause is not final); a dropped connection is reopened
    // after the last event seen.
    const seen = new Set();
    let lastId = null;
    for (let attempt = 0; !stopped && attempt < 20; attempt += 1) {
      try {
        const after = lastId ? `&after=${encodeURIComponent(lastId)}` : '';
        await stream('GET', `${path}/events?stream=true${after}`, {
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
            lastId = e.id;
            addEvent(e);
            if (e.type === 'metrics') chart.add(e.data);
            else if (e.data && typeof e.data.step === 'number') chart.add({ step: e.data.step, valid_loss: e.data.valid_loss });
            if (e.type !== 'metrics') refreshSoon();
          },
        });
        const job = await refresh();
        if (!job || FINAL.includes(job.status)) return;
      } catch (err) {
        if (err.name === 'AbortError' || stopped) return;
        messages.error(err);
        if (err.status && err.status < 500) return;
      }
      await new Promise((r) => window.setTimeout(r, 1000));
    }
  }

  async function control(action, button) {
    button.disabled = true;
    messages.clear();
    try {
      const job = await api('POST', `${path}/${action}`);
      showJob(job);
      announce(t(`job_${action}_requested`));
    } catch (err) {
      messages.error(err);
      button.disabled = false;
    }
  }
  pause.addEventListener('click', () => control('pause', pause));
  resume.addEventListener('click', () => {
    control('resume', resume);
  });
  cancel.addEventListener('click', () => {
    if (window.confirm(t('confirm_cancel'))) control('cancel', cancel);
  });

  refresh().then((job) => {
    if (job) follow();
  });

  return () => {
    stopped = true;
    controller.abort();
    window.clearTimeout(refreshTimer);
  };
}
