// The single-page app: hash routes, the header (sections, language, sign out), and who may
// see what (without a key, only the sign-in page).

import { getKey, clearKey, setUnauthorizedHandler } from './api.js';
import { h, replace } from './dom.js';
import { t, getLang, setLang, translateStatic } from './i18n.js';
import * as signin from './signin.js';
import * as collections from './collections.js';
import * as chat from './chat.js';
import * as finetune from './finetune.js';
import * as datasets from './datasets.js';
import * as hub from './hub.js';

const main = document.getElementById('main');
let cleanup = null;
let firstRender = true;
let afterSignIn = '#/collections';

/**
 * The page of a hash: [section, render function, parameters]. A query after the path gives
 * parameters too: `#/fine-tuning?file=file-…&validation=file-…` chooses the files.
 */
function resolve(hash) {
  const [path, search = ''] = hash.replace(/^#\/?/, '').split('?', 2);
  const query = new URLSearchParams(search);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const [section = '', a, b] = parts;
  switch (section) {
    case 'signin':
      return ['signin', signin.render, {}];
    case '':
    case 'collections':
      return a
        ? ['collections', collections.renderCollection, { id: a }]
        : ['collections', collections.renderList, {}];
    case 'chat':
      return ['chat', chat.render, { collection: a, conversation: b }];
    case 'fine-tuning':
      return a
        ? ['fine-tuning', finetune.renderJob, { id: a }]
        : ['fine-tuning', finetune.renderList, { file: query.get('file'), validation: query.get('validation') }];
    case 'datasets':
      return a ? ['datasets', datasets.renderJob, { id: a }] : ['datasets', datasets.render, {}];
    case 'hub':
      return ['hub', hub.render, {}];
    default:
      return [null, notFound, {}];
  }
}

function notFound(container) {
  replace(
    container,
    h('h1', { tabindex: '-1' }, t('not_found_title')),
    h('p', {}, t('not_found_text')),
    h('p', {}, h('a', { href: '#/collections' }, t('nav_collections'))),
  );
}

function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // A page that fails to stop must not keep the next from showing.
    }
    cleanup = null;
  }
  const signedIn = Boolean(getKey());
  let hash = location.hash || '#/collections';
  if (!signedIn && !hash.startsWith('#/signin')) {
    afterSignIn = hash;
    history.replaceState(null, '', '#/signin');
    hash = '#/signin';
  } else if (signedIn && hash.startsWith('#/signin')) {
    history.replaceState(null, '', afterSignIn);
    hash = afterSignIn;
  }
  const [section, render, params] = resolve(hash);
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const container = h('div', { class: `page page-${section || 'none'}` });
  replace(main, container);
  const done = render(container, {
    ...params,
    next: afterSignIn,
    navigate(to) {
      location.hash = to;
    },
  });
  cleanup = typeof done === 'function' ? done : null;
  const heading = container.querySelector('h1');
  document.title = heading ? `${heading.textContent} · ${t('app_name')}` : t('app_name');
  if (!firstRender && heading) heading.focus();
  firstRender = false;
}

function start() {
  translateStatic();
  const lang = document.getElementById('lang');
  lang.value = getLang();
  lang.addEventListener('change', () => {
    setLang(lang.value);
    translateStatic();
    route();
    lang.focus();
  });
  document.getElementById('signout').addEventListener('click', () => {
    clearKey();
    signin.setMessage(t('signed_out'));
    afterSignIn = '#/collections';
    location.hash = '#/signin';
  });
  // The skip link moves focus without changing the route.
  document.getElementById('skip').addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });
  setUnauthorizedHandler((message) => {
    // A page's calls may be refused together: each shows the sign-in page with the message
    // at once (pushState fires no hashchange, so no later render drops the message).
    signin.setMessage(t('session_expired', { message }));
    if (!location.hash.startsWith('#/signin')) {
      afterSignIn = location.hash || '#/collections';
      history.pushState(null, '', '#/signin');
    }
    route();
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
