// The language of the page: English or Spanish, from the browser's language unless the user
// picked one (kept in sessionStorage). Every string the page shows comes from strings.js.

import { DICTIONARIES } from './strings.js';

const STORE = 'docraft.lang';

function initial() {
  const saved = sessionStorage.getItem(STORE);
  if (saved && DICTIONARIES[saved]) return saved;
  const nav = (navigator.language || 'en').toLowerCase();
  return nav.startsWith('es') ? 'es' : 'en';
}

let lang = initial();

/** The current language: `en` or `es`. */
export function getLang() {
  return lang;
}

/** Switches the language (remembered for this tab). */
export function setLang(next) {
  if (!DICTIONARIES[next]) return;
  lang = next;
  sessionStorage.setItem(STORE, next);
  document.documentElement.lang = next;
}

/** The text of `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  const text = DICTIONARIES[lang][key] ?? DICTIONARIES.en[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Translates the static parts of the page: data-i18n (text), -label (aria-label), -placeholder. */
export function translateStatic(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
}
