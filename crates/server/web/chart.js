// The live loss chart of a job: an inline SVG with the training loss by step as a polyline
// and the validation loss as points. Redrawn whole on each new step (a few hundred points).

import { h, formatNumber } from './dom.js';
import { t } from './i18n.js';

const W = 640;
const H = 260;
const PAD = { left: 56, right: 16, top: 30, bottom: 40 };

/** Round tick values covering [lo, hi]. */
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

export function lossChart() {
  const train = new Map();
  const valid = new Map();
  const svg = h('svg:svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart',
    id: 'loss-chart',
    role: 'img',
    'aria-labelledby': 'loss-chart-title loss-chart-desc',
    'data-points': '0',
  });

  function draw() {
    const tr = [...train.entries()].sort((a, b) => a[0] - b[0]);
    const va = [...valid.entries()].sort((a, b) => a[0] - b[0]);
    const all = [...tr, ...va];
    svg.replaceChildren();
    svg.setAttribute('data-points', String(tr.length));
    const title = h('svg:title', { id: 'loss-chart-title' }, t('loss_chart'));
    const last = tr.length ? tr[tr.length - 1] : null;
    const desc = h(
      'svg:desc',
      { id: 'loss-chart-desc' },
      last
        ? t('loss_chart_desc', { n: tr.length, step: last[0], loss: formatNumber(last[1]) })
        : t('loss_chart_empty'),
    );
    svg.append(title, desc);
    const x0 = PAD.left;
    const x1 = W - PAD.right;
    const y0 = H - PAD.bottom;
    const y1 = PAD.top;
    svg.append(
      h('svg:line', { class: 'axis', x1: x0, y1: y0, x2: x1, y2: y0 }),
      h('svg:line', { class: 'axis', x1: x0, y1: y0, x2: x0, y2: y1 }),
      h('svg:text', { class: 'axis-label', x: (x0 + x1) / 2, y: H - 6, 'text-anchor': 'middle' }, t('step')),
      h(
        'svg:text',
        { class: 'axis-label', x: 14, y: (y0 + y1) / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${(y0 + y1) / 2})` },
        t('loss'),
      ),
    );
    if (!all.length) {
      svg.append(h('svg:text', { class: 'empty', x: (x0 + x1) / 2, y: (y0 + y1) / 2, 'text-anchor': 'middle' }, t('waiting_for_steps')));
      return;
    }
    const steps = all.map((p) => p[0]);
    const losses = all.map((p) => p[1]);
    let sMin = Math.min(...steps);
    let sMax = Math.max(...steps);
    if (sMax === sMin) {
      sMin -= 1;
      sMax += 1;
    }
    let lMin = Math.min(...losses);
    let lMax = Math.max(...losses);
    const margin = (lMax - lMin) * 0.08 || Math.abs(lMax) * 0.1 || 1;
    lMin = Math.max(0, lMin - margin);
    lMax += margin;
    const x = (s) => x0 + ((s - sMin) / (sMax - sMin)) * (x1 - x0);
    const y = (l) => y0 - ((l - lMin) / (lMax - lMin)) * (y0 - y1);
    for (const v of ticks(lMin, lMax, 4)) {
      svg.append(
        h('svg:line', { class: 'grid', x1: x0, y1: y(v), x2: x1, y2: y(v) }),
        h('svg:text', { class: 'tick', x: x0 - 6, y: y(v) + 4, 'text-anchor': 'end' }, formatNumber(v, 3)),
      );
    }
    const stepTicks = ticks(Math.ceil(sMin), Math.floor(sMax), 6).filter((s) => Number.isInteger(s));
    for (const s of stepTicks) {
      svg.append(h('svg:text', { class: 'tick', x: x(s), y: y0 + 16, 'text-anchor': 'middle' }, String(s)));
    }
    if (tr.length) {
      svg.append(
        h('svg:polyline', {
          class: 'train',
          id: 'train-line',
          fill: 'none',
          points: tr.map(([s, l]) => `${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(' '),
        }),
      );
      if (tr.length <= 80) {
        for (const [s, l] of tr) svg.append(h('svg:circle', { class: 'train-point', cx: x(s), cy: y(l), r: 2.5 }));
      }
    }
    for (const [s, l] of va) svg.append(h('svg:circle', { class: 'valid-point', cx: x(s), cy: y(l), r: 4.5 }));
    // The legend, above the plot.
    const legendY = 12;
    svg.append(
      h('svg:line', { class: 'train', x1: x0, y1: legendY, x2: x0 + 20, y2: legendY }),
      h('svg:text', { class: 'legend', x: x0 + 26, y: legendY + 4 }, t('train_loss')),
      h('svg:circle', { class: 'valid-point', cx: x0 + 200, cy: legendY, r: 4.5 }),
      h('svg:text', { class: 'legend', x: x0 + 208, y: legendY + 4 }, t('valid_loss')),
    );
  }

  draw();
  return {
    el: svg,
    /** A metrics event's data: {step, train_loss, valid_loss}. */
    add(data) {
      if (!data || typeof data.step !== 'number') return;
      let changed = false;
      if (typeof data.train_loss === 'number' && Number.isFinite(data.train_loss)) {
        train.set(data.step, data.train_loss);
        changed = true;
      }
      if (typeof data.valid_loss === 'number' && Number.isFinite(data.valid_loss)) {
        valid.set(data.step, data.valid_loss);
        changed = true;
      }
      if (changed) draw();
    },
    /** Redraws after a language change. */
    redraw: draw,
    get size() {
      return train.size;
    },
  };
}
