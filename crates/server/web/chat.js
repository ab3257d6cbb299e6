// Chat over a collection: POST /v1/chat/completions streamed (OpenAI chunks; the last one
// carries the sources), citations [file, p. N] that open the cited page with the passage
// marked, the model, k and filters, and the collection's conversations.

import { api, stream, seg } from './api.js';
import { h, append, replace, field, messageArea, announce, formatTime, formatNumber, parsePairs } from './dom.js';
import { t } from './i18n.js';

const MODEL_STORE = 'docraft.chatModel';
// `[file, p. N]`, `[file, pp. A-B]`, `[file]`, several joined by `; `: what a citation looks like.
const BRACKET = /\[([^[\]\n]+)\]/g;
const LABEL = /^(.+?\.[A-Za-z0-9]{1,8})(?:\s*,\s*(?:pp?\.|pages?|págs?\.|página)\s*(\d+)(?:\s*[-–]\s*(\d+))?)?$/;

/** Whitespace-insensitive, lower-case text for comparing passages. */
function norm(s) {
  return String(s || '')
    .replace(/…$/, '')
    .replace(/\s+/g, ' ')
    .trim()
    .toLowerCase();
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Where to mark a source on a page: [start, end) in the page's text (UTF-16 indices), or null.
 * The page's chunks come with byte offsets; the source with its document span and snippet. The
 * page chunk that is the source: the one named by chunk_id, else the one whose text and the
 * snippet overlap (preferring the same length as the source's span), else the chunk that goes on
 * from an earlier page; failing all, the snippet's first words found in the text.
 */
export function citedRange(page, source, n) {
  const bytes = new TextEncoder().encode(page.text || '');
  const decoder = new TextDecoder();
  const toChar = (b) => decoder.decode(bytes.subarray(0, Math.max(0, Math.min(b, bytes.length)))).length;
  const chunks = (page.chunks || []).map((c) => ({
    ...c,
    slice: decoder.decode(bytes.subarray(c.start, c.end)),
  }));
  const range = (c) => [toChar(c.start), toChar(c.end)];
  if (source.chunk_id) {
    const exact = chunks.find((c) => c.chunk_id === source.chunk_id);
    if (exact) return range(exact);
  }
  const snippet = norm(source.snippet ?? source.text);
  const spanLength = Array.isArray(source.span) ? source.span[1] - source.span[0] : -1;
  if (snippet) {
    const overlapping = chunks.filter((c) => {
      const s = norm(c.slice);
      if (!s) return false;
      return snippet.includes(s.slice(0, 48)) || s.includes(snippet.slice(0, 48));
    });
    const sameLength = overlapping.find((c) => c.end - c.start === spanLength);
    if (sameLength) return range(sameLength);
    if (overlapping.length) return range(overlapping[0]);
  }
  const first = Array.isArray(source.pages) ? source.pages[0] : null;
  if (first && n > first) {
    const continued = chunks.find((c) => c.start === 0);
    if (continued) return range(continued);
  }
  if (snippet) {
    const words = String(source.snippet ?? source.text).replace(/…$/, '').trim().split(/\s+/).slice(0, 8);
    const m = new RegExp(words.map(escapeRegExp).join('\\s+'), 'i').exec(page.text || '');
    if (m) {
      const length = String(source.snippet ?? source.text).length;
      return [m.index, Math.min((page.text || '').length, m.index + Math.max(m[0].length, length))];
    }
  }
  return null;
}

/** The source a citation points at: same file, a page range holding the page if any. */
function sourceFor(sources, filename, pageNo) {
  const same = (sources || []).filter((s) => s.filename === filename);
  if (!same.length) return null;
  if (pageNo) {
    const holding = same.find((s) => Array.isArray(s.pages) && s.pages[0] <= pageNo && pageNo <= s.pages[1]);
    if (holding) return holding;
  }
  return same[0];
}

/** A citation label (`file, p. N`) as {source, page}, or null when no source has it. */
function resolveLabel(label, sources) {
  const exact = (sources || []).find((s) => s.label === label);
  if (exact) return { source: exact, page: Array.isArray(exact.pages) ? exact.pages[0] : 1 };
  const m = LABEL.exec(label);
  if (!m) return null;
  const pageNo = m[2] ? Number(m[2]) : null;
  const source = sourceFor(sources, m[1].trim(), pageNo);
  if (!source) return null;
  return { source, page: pageNo || (Array.isArray(source.pages) ? source.pages[0] : 1) };
}

/** The sources with the chunk each citation names (citations carry chunk_id, sources do not). */
function withChunks(sources, citations) {
  return (sources || []).map((s) => {
    const c = (citations || []).find((x) => x.number === s.number && x.chunk_id);
    return c && !s.chunk_id ? { ...s, chunk_id: c.chunk_id } : s;
  });
}

function pagesText(pages) {
  if (!Array.isArray(pages)) return '';
  return pages[0] === pages[1] ? t('page_n', { n: pages[0] }) : t('pages_range', { first: pages[0], last: pages[1] });
}

export function render(container, params) {
  const messages = messageArea();
  const collectionSel = h('select', { id: 'chat-collection', name: 'collection' });
  const modelSel = h('select', { id: 'chat-model', name: 'model' });
  const kInput = h('input', { id: 'chat-k', name: 'k', type: 'number', min: '1', max: '20', value: '5' });
  const maxTokens = h('input', { id: 'chat-max-tokens', name: 'max_tokens', type: 'number', min: '1', step: '1', placeholder: '256' });
  const docSel = h('select', { id: 'chat-document', name: 'document' }, h('option', { value: '' }, t('all_documents')));
  const filterInput = h('textarea', { id: 'chat-filter', name: 'filter', rows: '2', spellcheck: 'false' });
  const newConv = h('button', { type: 'button', class: 'secondary', id: 'new-conversation' }, t('new_conversation'));
  const convList = h('ul', { class: 'conversations', id: 'conversation-list' });
  const transcript = h('div', { class: 'transcript', id: 'transcript' });
  const question = h('textarea', { id: 'question', name: 'question', rows: '3', required: true });
  const send = h('button', { type: 'submit', id: 'ask' }, t('send'));
  const stop = h('button', { type: 'button', class: 'secondary', id: 'stop', hidden: true }, t('stop'));
  const panelTitle = h('h2', { id: 'source-title', tabindex: '-1' }, t('source'));
  const panelMeta = h('p', { class: 'meta' });
  const panelText = h('div', { class: 'page-text', id: 'page-text' });
  const panelNav = h('div', { class: 'actions' });
  const closePanel = h('button', { type: 'button', class: 'secondary', id: 'close-source' }, t('close'));
  const panel = h(
    'aside',
    { class: 'source-panel card', id: 'source-panel', 'aria-labelledby': 'source-title', hidden: true },
    h('div', { class: 'panel-head' }, panelTitle, closePanel),
    panelMeta,
    panelNav,
    panelText,
  );
  const ask = h(
    'form',
    { class: 'ask', id: 'ask-form' },
    field(t('question'), question, t('question_hint')),
    h('div', { class: 'actions' }, send, stop),
  );
  append(
    container,
    h('h1', { tabindex: '-1' }, t('chat_title')),
    messages.el,
    h(
      'div',
      { class: 'chat-layout' },
      h(
        'div',
        { class: 'chat-side card' },
        h(
          'form',
          { id: 'chat-settings', 'aria-labelledby': 'settings-title' },
          h('h2', { id: 'settings-title' }, t('chat_settings')),
          field(t('collection'), collectionSel),
          field(t('model'), modelSel),
          field(t('k_label'), kInput, t('k_hint')),
          field(t('max_tokens'), maxTokens, t('max_tokens_hint')),
          field(t('filter_document'), docSel),
          field(t('filter_metadata'), filterInput, t('pairs_hint')),
        ),
        h('h2', {}, t('conversations')),
        newConv,
        convList,
      ),
      h('section', { class: 'chat-main', 'aria-label': t('chat_title') }, transcript, ask),
      panel,
    ),
  );

  let collection = params.collection || null;
  let conversation = params.conversation || null;
  let conversationsAvailable = true;
  let controller = null;
  let history = [];
  let lastInvoker = null;

  function setCollectionInHash() {
    const path = `#/chat/${seg(collection)}${conversation ? `/${seg(conversation)}` : ''}`;
    if (location.hash !== path) history_replace(path);
  }

  // history.replaceState changes the address without a hashchange (no re-render).
  function history_replace(path) {
    window.history.replaceState(null, '', path);
  }

  async function loadCollections() {
    try {
      const { data } = await api('GET', '/v1/collections');
      replace(
        collectionSel,
        data.map((c) => h('option', { value: c.id }, c.name)),
      );
      if (!data.length) {
        messages.info(t('chat_no_collections'));
        send.disabled = true;
        return false;
      }
      if (!collection || !data.some((c) => c.id === collection)) collection = data[0].id;
      collectionSel.value = collection;
      setCollectionInHash();
      return true;
    } catch (err) {
      messages.error(err);
      return false;
    }
  }

  async function loadModels() {
    try {
      const { data } = await api('GET', '/v1/models');
      replace(
        modelSel,
        data.map((m) => h('option', { value: m.id }, m.id)),
      );
      const saved = sessionStorage.getItem(MODEL_STORE);
      if (saved && data.some((m) => m.id === saved)) modelSel.value = saved;
    } catch (err) {
      messages.error(err);
    }
  }

  async function loadDocuments() {
    try {
      const { data } = await api('GET', `/v1/collections/${seg(collection)}/documents`);
      replace(
        docSel,
        h('option', { value: '' }, t('all_documents')),
        data.filter((d) => d.status === 'indexed').map((d) => h('option', { value: d.id }, d.filename)),
      );
    } catch (err) {
      messages.error(err);
    }
  }

  async function loadConversations() {
    try {
      const { data } = await api('GET', '/v1/conversations');
      const mine = data.filter((c) => (c.collection_id ?? c.collection) === collection);
      if (!mine.length) {
        replace(convList, h('li', { class: 'empty' }, t('no_conversations')));
        return;
      }
      replace(
        convList,
        mine.map((c) =>
          h(
            'li',
            {},
            h(
              'button',
              {
                type: 'button',
                class: 'link',
                'aria-current': c.id === conversation ? 'true' : false,
                onclick: () => openConversation(c.id),
              },
              c.title || c.id,
            ),
            h('small', {}, formatTime(c.updated_at || c.created_at)),
          ),
        ),
      );
    } catch (err) {
      if (err.status === 404) {
        conversationsAvailable = false;
        replace(convList, h('li', { class: 'empty' }, t('conversations_unavailable')));
      } else {
        messages.error(err);
      }
    }
  }

  async function openConversation(id) {
    conversation = id;
    setCollectionInHash();
    transcript.replaceChildren();
    history = [];
    try {
      const c = await api('GET', `/v1/conversations/${seg(id)}`);
      for (const turn of c.turns || []) {
        const view = addTurn(turn.question);
        view.finish(turn.answer || '', Array.isArray(turn.sources) ? turn.sources : [], false, []);
        history.push({ role: 'user', content: turn.question }, { role: 'assistant', content: turn.answer || '' });
      }
      announce(t('conversation_opened', { title: c.title || id }));
    } catch (err) {
      messages.error(err);
    }
    loadConversations();
  }

  /** A question and its (coming) answer in the transcript. */
  function addTurn(text) {
    const answerText = h('div', { class: 'answer-text' });
    const answer = h('div', { class: 'answer', 'aria-live': 'polite', 'aria-busy': 'true' }, answerText);
    const sourcesEl = h('div', { class: 'sources' });
    const turn = h(
      'article',
      { class: 'turn' },
      h('div', { class: 'question' }, h('span', { class: 'who' }, t('you')), h('p', {}, text)),
      h('div', { class: 'reply' }, h('span', { class: 'who' }, t('assistant')), answer, sourcesEl),
    );
    transcript.append(turn);
    turn.scrollIntoView({ block: 'end' });
    const colId = collection;
    return {
      stream(content) {
        answerText.textContent = content;
      },
      finish(content, rawSources, declined, citations) {
        const sources = withChunks(rawSources, citations);
        answer.setAttribute('aria-busy', 'false');
        renderAnswer(answerText, content, sources, colId);
        if (declined) answer.append(h('p', { class: 'note' }, t('declined')));
        renderSources(sourcesEl, sources, colId);
      },
      fail(err) {
        answer.setAttribute('aria-busy', 'false');
        answer.append(h('p', { class: 'error', role: 'alert' }, err.message || t('error_unknown')));
      },
    };
  }

  function citeButton(label, source, pageNo, colId) {
    return h(
      'button',
      {
        type: 'button',
        class: 'link cite',
        'data-document-id': source.document_id,
        'data-page': pageNo,
        'aria-label': t('open_source', { name: source.filename, page: pageNo }),
        onclick: (e) => openSource(source, pageNo, colId, e.currentTarget),
      },
      label,
    );
  }

  function renderAnswer(el, content, sources, colId) {
    el.replaceChildren();
    for (const para of content.split(/\n{2,}/)) {
      const p = h('p', {});
      let last = 0;
      for (const m of para.matchAll(BRACKET)) {
        const parts = m[1].split(/\s*;\s*/);
        const resolved = parts.map((part) => resolveLabel(part.trim(), sources));
        if (!resolved.some(Boolean)) continue;
        p.append(para.slice(last, m.index), '[');
        parts.forEach((part, i) => {
          if (i > 0) p.append('; ');
          const r = resolved[i];
          p.append(r ? citeButton(part.trim(), r.source, r.page, colId) : part);
        });
        p.append(']');
        last = m.index + m[0].length;
      }
      p.append(para.slice(last));
      el.append(p);
    }
  }

  function renderSources(el, sources, colId) {
    el.replaceChildren();
    if (!sources || !sources.length) return;
    el.append(
      h('h3', {}, t('sources')),
      h(
        'ol',
        {},
        sources.map((s) => {
          const page = Array.isArray(s.pages) ? s.pages[0] : 1;
          const label = s.label || [s.filename, pagesText(s.pages)].filter(Boolean).join(', ');
          return h(
            'li',
            { class: s.cited ? 'cited' : null },
            citeButton(label, s, page, colId),
            typeof s.score === 'number' ? h('small', { class: 'score' }, t('score', { score: formatNumber(s.score, 3) })) : null,
            s.snippet || s.text ? h('blockquote', {}, s.snippet ?? s.text) : null,
          );
        }),
      ),
    );
  }

  async function openSource(source, pageNo, colId, invoker) {
    lastInvoker = invoker || null;
    panel.hidden = false;
    panelTitle.textContent = source.filename;
    panelMeta.textContent = t('loading');
    panelNav.replaceChildren();
    panelText.replaceChildren();
    panelTitle.focus();
    try {
      const page = await api(
        'GET',
        `/v1/collections/${seg(colId)}/documents/${seg(source.document_id)}/pages/${pageNo}`,
      );
      panelMeta.textContent = t('page_of', { n: page.page, total: page.pages });
      const prev = h(
        'button',
        { type: 'button', class: 'secondary', disabled: page.page <= 1, onclick: () => openSource(source, page.page - 1, colId, invoker) },
        t('previous_page'),
      );
      const next = h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          disabled: page.page >= page.pages,
          onclick: () => openSource(source, page.page + 1, colId, invoker),
        },
        t('next_page'),
      );
      replace(panelNav, prev, next);
      const text = page.text || '';
      const range = citedRange(page, source, page.page);
      if (range) {
        const mark = h('mark', { id: 'cited' }, text.slice(range[0], range[1]));
        replace(panelText, text.slice(0, range[0]), mark, text.slice(range[1]));
        // Scroll the page's text only, not the window.
        panelText.scrollTop = Math.max(0, mark.offsetTop - panelText.clientHeight / 4);
      } else {
        replace(panelText, text);
      }
    } catch (err) {
      panelMeta.textContent = err.message || t('error_unknown');
    }
  }

  function hidePanel() {
    panel.hidden = true;
    if (lastInvoker && lastInvoker.isConnected) lastInvoker.focus();
  }

  closePanel.addEventListener('click', hidePanel);
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') hidePanel();
  });

  collectionSel.addEventListener('change', () => {
    params.navigate(`#/chat/${seg(collectionSel.value)}`);
  });
  modelSel.addEventListener('change', () => sessionStorage.setItem(MODEL_STORE, modelSel.value));
  newConv.addEventListener('click', () => {
    conversation = null;
    history = [];
    transcript.replaceChildren();
    setCollectionInHash();
    loadConversations();
    question.focus();
  });
  question.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ask.requestSubmit();
    }
  });
  stop.addEventListener('click', () => {
    if (controller) controller.abort();
  });

  ask.addEventListener('submit', async (e) => {
    e.preventDefault();
    messages.clear();
    const text = question.value.trim();
    if (!text || !collection || controller) return;
    let filter;
    try {
      filter = parsePairs(filterInput.value) || {};
    } catch (err) {
      messages.error(err);
      filterInput.focus();
      return;
    }
    if (docSel.value) filter.document_id = docSel.value;
    if (!conversation && conversationsAvailable) {
      try {
        const c = await api('POST', '/v1/conversations', { body: { collection, title: text.slice(0, 80) } });
        conversation = c.id;
        setCollectionInHash();
      } catch (err) {
        if (err.status === 404) conversationsAvailable = false;
        else {
          messages.error(err);
          return;
        }
      }
    }
    const docraft = { collection, k: Number(kInput.value) || 5 };
    if (Object.keys(filter).length) docraft.filter = filter;
    if (conversation) docraft.conversation = conversation;
    // With a conversation the server holds the history; without one the page sends it.
    const messagesBody = conversation ? [{ role: 'user', content: text }] : [...history, { role: 'user', content: text }];
    const view = addTurn(text);
    question.value = '';
    send.disabled = true;
    stop.hidden = false;
    controller = new AbortController();
    let content = '';
    let sources = [];
    let declined = false;
    let citations = [];
    try {
      await stream('POST', '/v1/chat/completions', {
        body: {
          model: modelSel.value,
          messages: messagesBody,
          stream: true,
          ...(maxTokens.value.trim() ? { max_tokens: Number(maxTokens.value) } : {}),
          docraft,
        },
        signal: controller.signal,
        onData(data) {
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || t('error_unknown'));
          const choice = chunk.choices?.[0];
          const delta = choice?.delta?.content ?? choice?.message?.content;
          if (delta) {
            content += delta;
            view.stream(content);
          }
          const extra = chunk.docraft || {};
          if (chunk.sources || extra.sources) sources = chunk.sources || extra.sources;
          if (chunk.citations || extra.citations) citations = chunk.citations || extra.citations;
          if (chunk.declined ?? extra.declined) declined = true;
        },
      });
      view.finish(content, sources, declined, citations);
      history.push({ role: 'user', content: text }, { role: 'assistant', content });
      announce(t('answer_done'));
    } catch (err) {
      if (err.name === 'AbortError') {
        view.finish(content, sources, declined, citations);
        announce(t('answer_stopped'));
      } else {
        view.fail(err);
      }
    } finally {
      controller = null;
      send.disabled = false;
      stop.hidden = true;
      question.focus();
      if (conversationsAvailable) loadConversations();
    }
  });

  (async () => {
    await loadModels();
    if (!(await loadCollections())) return;
    loadDocuments();
    if (conversation) await openConversation(conversation);
    else loadConversations();
  })();

  return () => {
    if (controller) controller.abort();
  };
}
