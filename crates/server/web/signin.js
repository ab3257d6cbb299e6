// Sign in with an API key: checked with GET /v1/models, then kept in sessionStorage.

import { api, setKey } from './api.js';
import { h, field, messageArea, announce } from './dom.js';
import { t } from './i18n.js';

let pending = null;

/** A message for the next sign-in page (signed out, key refused). */
export function setMessage(text) {
  pending = text;
}

export function render(container, { next, navigate }) {
  const messages = messageArea();
  const key = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'dck_…',
  });
  const submit = h('button', { type: 'submit', id: 'signin-submit' }, t('sign_in'));
  const form = h(
    'form',
    { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title', tabindex: '-1' }, t('sign_in_title')),
    h('p', {}, t('sign_in_intro')),
    field(t('api_key'), key, t('api_key_hint')),
    messages.el,
    h('div', { class: 'actions' }, submit),
  );
  if (pending) {
    messages.info(pending);
    pending = null;
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = key.value.trim();
    if (!value) return;
    submit.disabled = true;
    messages.info(t('checking_key'));
    try {
      await api('GET', '/v1/models', { key: value });
      setKey(value);
      announce(t('signed_in'));
      navigate(next && !next.startsWith('#/signin') ? next : '#/collections');
    } catch (err) {
      messages.error(err.status === 401 ? t('key_refused', { message: err.message }) : err);
      submit.disabled = false;
      key.focus();
    }
  });
  container.append(form);
  window.setTimeout(() => key.focus(), 0);
}
