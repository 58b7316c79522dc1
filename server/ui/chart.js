// chart.js - small SVG charts drawn from numbers (no library): line charts
// with optional horizontal reference lines, and a horizontal bar chart.
import { s, h } from './dom.js';

const W = 640;
const H = 220;
const PAD = { l: 48, r: 12, t: 12, b: 28 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (v >= 10 || v === 0) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}

// series: [{name, cls, values: [number|null]}], refs: [{name, value, cls}],
// labels: the x labels (first and last shown).
export function lineChart(title, unit, series, refs, labels) {
  const n = Math.max(1, ...series.map((x) => x.values.length));
  const all = series.flatMap((x) => x.values.filter((v) => v !== null && Number.isFinite(v)));
  const top = niceMax(Math.max(0, ...all, ...refs.map((r) => r.value)) * 1.05);
  const x = (i) => PAD.l + (n === 1 ? 0 : (i * (W - PAD.l - PAD.r)) / (n - 1));
  const y = (v) => H - PAD.b - (v / top) * (H - PAD.t - PAD.b);
  const g = [];
  for (let k = 0; k <= 4; k += 1) {
    const v = (top * k) / 4;
    g.push(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: 'grid' }));
    g.push(s('text', { x: PAD.l - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmt(v)));
  }
  if (labels && labels.length) {
    g.push(s('text', { x: PAD.l, y: H - 8, class: 'axis' }, labels[0]));
    g.push(s('text', { x: W - PAD.r, y: H - 8, class: 'axis', 'text-anchor': 'end' }, labels[labels.length - 1]));
  }
  for (const r of refs) {
    g.push(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y(r.value), y2: y(r.value), class: `ref ${r.cls || ''}` }));
    g.push(s('text', { x: W - PAD.r - 4, y: y(r.value) - 4, class: 'ref-label', 'text-anchor': 'end' }, r.name));
  }
  series.forEach((se) => {
    let d = '';
    let pen = false;
    se.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) g.push(s('path', { d, class: `line ${se.cls}` }));
  });
  const summary = series.map((se) => {
    const vals = se.values.filter((v) => v !== null && Number.isFinite(v));
    return `${se.name}: last ${vals.length ? fmt(vals[vals.length - 1]) : 'none'}, max ${vals.length ? fmt(Math.max(...vals)) : 'none'}`;
  }).concat(refs.map((r) => `${r.name}`)).join('; ');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title} (${unit}). ${summary}`, class: 'chart' },
    s('title', {}, title), g);
  const legend = h('ul', { class: 'legend' },
    series.map((se) => h('li', {}, h('span', { class: `swatch ${se.cls}`, 'aria-hidden': 'true' }), se.name)),
    refs.map((r) => h('li', {}, h('span', { class: `swatch ref ${r.cls || ''}`, 'aria-hidden': 'true' }), r.name)));
  return h('figure', { class: 'chart-fig' }, h('figcaption', {}, `${title} (${unit})`), svg, legend);
}

// bars: [{name, value}]
export function barChart(title, bars) {
  if (!bars.length) return h('figure', { class: 'chart-fig' }, h('figcaption', {}, title), h('p', {}, 'No errors in the last hour.'));
  const top = niceMax(Math.max(...bars.map((b) => b.value)));
  const rowH = 22;
  const height = bars.length * rowH + 8;
  const labelW = 170;
  const g = bars.map((b, i) => {
    const w = ((W - labelW - 60) * b.value) / top;
    return s('g', {},
      s('text', { x: labelW - 6, y: i * rowH + 16, class: 'axis', 'text-anchor': 'end' }, b.name),
      s('rect', { x: labelW, y: i * rowH + 4, width: Math.max(1, w), height: rowH - 8, class: 'bar' }),
      s('text', { x: labelW + w + 6, y: i * rowH + 16, class: 'axis' }, String(b.value)));
  });
  const svg = s('svg', { viewBox: `0 0 ${W} ${height}`, role: 'img', class: 'chart',
    'aria-label': `${title}: ${bars.map((b) => `${b.name} ${b.value}`).join(', ')}` }, s('title', {}, title), g);
  return h('figure', { class: 'chart-fig' }, h('figcaption', {}, title), svg);
}
