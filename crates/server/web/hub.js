// The hub: models (base and fine-tuned, with their evaluation) and adapters (download as a
// zip, delete).

import { api, download, seg } from './api.js';
import { h, append, replace, messageArea, announce, formatTime, formatNumber, table, confirmDelete } from './dom.js';
import { t } from './i18n.js';

function evaluationText(e) {
  if (!e || typeof e !== 'object') return '';
  const parts = [];
  if (e.base && typeof e.base.loss === 'number') parts.push(t('eval_base', { loss: formatNumber(e.base.loss) }));
  if (e.adapter && typeof e.adapter.loss === 'number') parts.push(t('eval_adapter', { loss: formatNumber(e.adapter.loss) }));
  return parts.join(' · ');
}

function parametersText(parameters) {
  if (!parameters || typeof parameters !== 'object') return '';
  const p = parameters.hyperparameters && typeof parameters.hyperparameters === 'object' ? parameters.hyperparameters : parameters;
  return ['n_epochs', 'batch_size', 'lora_rank', 'learning_rate_multiplier', 'max_steps']
    .filter((k) => p[k] !== undefined && p[k] !== null)
    .map((k) => `${k}=${p[k]}`)
    .join(', ');
}

export function render(container) {
  const messages = messageArea();
  const modelsArea = h('div', { id: 'hub-models', 'aria-busy': 'true' }, h('p', {}, t('loading')));
  const adaptersArea = h('div', { id: 'hub-adapters', 'aria-busy': 'true' }, h('p', {}, t('loading')));
  append(
    container,
    h('h1', { tabindex: '-1' }, t('hub_title')),
    h('p', { class: 'lead' }, t('hub_intro')),
    messages.el,
    h('h2', {}, t('models')),
    modelsArea,
    h('h2', {}, t('adapters')),
    adaptersArea,
  );

  async function remove(kind, name) {
    if (!confirmDelete(name)) return;
    try {
      await api('DELETE', `/hub/${kind}/${seg(name)}`);
      announce(t('deleted_named', { name }));
      await load();
    } catch (err) {
      messages.error(err);
    }
  }

  async function load() {
    try {
      const [models, adapters] = await Promise.all([api('GET', '/hub/models'), api('GET', '/hub/adapters')]);
      modelsArea.setAttribute('aria-busy', 'false');
      adaptersArea.setAttribute('aria-busy', 'false');
      const modelRows = models.data.map((m) =>
        h(
          'tr',
          { 'data-model-id': m.id, 'data-type': m.type },
          h('th', { scope: 'row' }, m.name),
          h('td', { class: 'mono' }, m.id),
          h('td', {}, h('span', { class: `badge model-${m.type}` }, m.type === 'base' ? t('type_base') : t('type_fine_tuned'))),
          h('td', {}, m.base_model || ''),
          h('td', {}, evaluationText(m.evaluation)),
          h('td', {}, formatTime(m.created_at)),
          h(
            'td',
            { class: 'cell-actions' },
            m.type === 'base'
              ? null
              : h(
                  'button',
                  { type: 'button', class: 'danger', 'aria-label': t('delete_named', { name: m.name }), onclick: () => remove('models', m.id) },
                  t('delete'),
                ),
          ),
        ),
      );
      replace(
        modelsArea,
        modelRows.length
          ? table(t('models'), [t('name'), t('id'), t('type'), t('base_model'), t('evaluation'), t('created'), t('actions')], modelRows, {
              id: 'models-table',
            })
          : h('p', { class: 'empty' }, t('no_models')),
      );
      const adapterRows = adapters.data.map((a) =>
        h(
          'tr',
          { 'data-adapter-id': a.id },
          h('th', { scope: 'row' }, a.name),
          h('td', {}, a.model_id),
          h('td', { class: 'mono' }, a.dataset),
          h('td', {}, parametersText(a.parameters)),
          h('td', {}, formatTime(a.created_at)),
          h(
            'td',
            { class: 'cell-actions' },
            h(
              'button',
              {
                type: 'button',
                class: 'secondary',
                'aria-label': t('download_named', { name: a.name }),
                onclick: async (e) => {
                  const button = e.currentTarget;
                  button.disabled = true;
                  try {
                    const file = await download(`/hub/adapters/${seg(a.name)}/download`, `${a.name}.zip`);
                    announce(t('downloaded_named', { name: file }));
                  } catch (err) {
                    messages.error(err);
                  } finally {
                    button.disabled = false;
                  }
                },
              },
              t('download_zip'),
            ),
            h(
              'button',
              { type: 'button', class: 'danger', 'aria-label': t('delete_named', { name: a.name }), onclick: () => remove('adapters', a.name) },
              t('delete'),
            ),
          ),
        ),
      );
      replace(
        adaptersArea,
        adapterRows.length
          ? table(t('adapters'), [t('name'), t('base_model'), t('dataset'), t('parameters'), t('created'), t('actions')], adapterRows, {
              id: 'adapters-table',
            })
          : h('p', { class: 'empty' }, t('no_adapters')),
      );
    } catch (err) {
      modelsArea.setAttribute('aria-busy', 'false');
      adaptersArea.setAttribute('aria-busy', 'false');
      messages.error(err);
    }
  }

  load();
}
