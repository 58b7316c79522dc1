// page_overview.js - health of each part, the evaluation-mode warning, the
// nodes sharing the key store (GET /api/v1/nodes: one for a single
// appliance, the fleet's on PostgreSQL), the last hour's charts
// (GET /api/v1/metrics/history) and recent audit events.
import { h, alertBox, showError, table, fmtTime, fmtAge } from './dom.js';
import { api, query } from './api.js';
import { lineChart, barChart } from './chart.js';

const ROUTE_NAMES = { xks: 'AWS XKS', ekm: 'Azure EKM', admin: 'Admin API' };

async function healthz() {
  // /healthz is not under /api/v1 and needs no session
  const res = await fetch('/healthz', { cache: 'no-store', credentials: 'same-origin' });
  let doc = {};
  try {
    doc = await res.json();
  } catch (e) {
    doc = {};
  }
  return { status: res.status, doc };
}

function card(title, state, text) {
  const cls = state === 'ok' ? 'ok' : state === 'warn' ? 'warn' : state === 'bad' ? 'bad' : 'unknown';
  const word = { ok: 'OK', warn: 'Warning', bad: 'Problem', unknown: 'Unknown' }[cls];
  return h('section', { class: `health ${cls}`, 'aria-label': title },
    h('h3', {}, title), h('p', { class: 'state' }, word), h('p', {}, text));
}

function settle(p) {
  return p.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e }));
}

function healthCards(st, hz, at) {
  const cards = [];
  if (hz.ok) {
    const d = hz.v.doc;
    const state = hz.v.status === 200 ? (d.status === 'ok' ? 'ok' : 'warn') : 'bad';
    cards.push(card('Liveness (/healthz)', state,
      d.status === 'degraded' ? `Degraded: ${(d.warnings || []).join(', ')}` : d.message || d.status || `HTTP ${hz.v.status}`));
  } else {
    cards.push(card('Liveness (/healthz)', 'bad', 'No answer from /healthz.'));
  }
  if (st.ok) {
    const c = st.v.custody || {};
    cards.push(card('Custody', c.state === 'open' ? 'ok' : 'bad', `Key store ${c.state || 'unknown'}; ${c.keys ?? '?'} keys.`));
    const hsm = c.hsm || {};
    cards.push(card('HSM link', hsm.state === 'up' ? 'ok' : 'bad', `HSM ${hsm.state || 'unknown'}.`));
    const au = c.audit || {};
    const warns = (au.warnings || []).map((w) => w.message || w.code);
    cards.push(card('Database', c.state === 'open' ? (warns.length ? 'warn' : 'ok') : 'bad',
      warns.length ? warns.join(' ') : `${au.records ?? '?'} audit records; ${au.db_bytes ? `${Math.round(au.db_bytes / 1048576)} MiB` : 'size unknown'}.`));
    const un = st.v.unlock;
    if (un && un.state !== 'unknown') {
      cards.push(card('Unlock binding', un.binding === 'recovery' ? 'warn' : 'ok',
        `Opened with ${un.binding || '?'}${un.bindings ? ` (enrolled: ${[].concat(un.bindings).join(', ')})` : ''}${un.time ? ` at ${fmtTime(un.time)}` : ''}.`));
    } else {
      cards.push(card('Unlock binding', 'unknown', un && un.detail ? un.detail : 'No unlock record.'));
    }
  } else {
    cards.push(card('Custody', 'bad', st.e.describe ? st.e.describe() : String(st.e)));
  }
  if (at.ok) {
    const a = at.v;
    if (!a.enabled) cards.push(card('Attestation', 'unknown', 'Attestation is disabled ([attestation] enable = false).'));
    else {
      const tpm = a.tpm && a.tpm.available;
      const snp = a.snp && a.snp.available;
      cards.push(card('Attestation', tpm || snp ? 'ok' : 'warn',
        `TPM ${tpm ? 'available' : `absent${a.tpm && a.tpm.absent ? ` (${a.tpm.absent})` : ''}`}; SEV-SNP ${snp ? 'available' : `absent${a.snp && a.snp.absent ? ` (${a.snp.absent})` : ''}`}.`));
    }
  } else {
    cards.push(card('Attestation', 'unknown', at.e.describe ? at.e.describe() : String(at.e)));
  }
  return h('div', { class: 'health-grid' }, cards);
}

// A node's state (docs/api.md#nodes) -> the badge's colour class.
const NODE_STATE_CLASS = { ACTIVE: 'ok', DEGRADED: 'warn', UNAVAILABLE: 'bad' };
const ENGINE_NAMES = { sqlcipher: 'SQLCipher', postgresql: 'PostgreSQL' };

function text(v) {
  return typeof v === 'string' && v !== '' ? v : '—';
}

function stateBadge(state) {
  const cls = NODE_STATE_CLASS[state] || 'unknown';
  return h('span', { class: `badge ${cls}` }, text(state));
}

// The engine in words, the answering node's own state when it is not ACTIVE,
// and the table of nodes (the answering node marked).
function nodesView(doc) {
  const nodes = Array.isArray(doc.nodes) ? doc.nodes : [];
  const engine = ENGINE_NAMES[doc.engine] || text(doc.engine);
  const parts = [];
  if (doc.engine === 'sqlcipher') {
    parts.push(h('p', { class: 'nodes-summary' }, 'Single appliance (SQLCipher).'));
  } else {
    const active = nodes.filter((n) => n && n.state === 'ACTIVE').length;
    parts.push(h('p', { class: 'nodes-summary' },
      `A fleet on ${engine}: ${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${active} active.`));
  }
  if (doc.state !== 'ACTIVE') {
    parts.push(h('p', { class: 'banner warn', role: 'note' },
      h('strong', {}, `This node is ${text(doc.state)}. `), typeof doc.detail === 'string' ? doc.detail : ''));
  }
  const rows = nodes.filter((n) => n && typeof n === 'object').map((n) => h('tr', { class: n.self === true ? 'self' : null },
    h('td', {}, text(n.id)),
    h('td', {}, stateBadge(n.state), n.detail ? h('span', { class: 'node-detail' }, ` ${n.detail}`) : null),
    h('td', {}, text(n.address)),
    h('td', {}, text(n.version)),
    h('td', {}, fmtAge(n.age_ms)),
    h('td', {}, n.self === true ? 'This node' : '')));
  parts.push(table('Nodes sharing the key store', ['Node', 'State', 'Address', 'Version', 'Last heartbeat', 'This node'], rows));
  return parts;
}

function charts(hist) {
  const series = hist.series || [];
  const first = series.find((x) => x.points && x.points.length);
  const labels = first ? [fmtTime(first.points[0].t), fmtTime(first.points[first.points.length - 1].t)] : [];
  const interval = hist.interval_seconds || 60;
  const throttle = hist.throttle || {};
  const budget = hist.budget_ms || {};
  const refs = [];
  if (throttle.xks_per_store_rps) refs.push({ name: `XKS throttle ${throttle.xks_per_store_rps}/s per store`, value: throttle.xks_per_store_rps, cls: 'throttle' });
  if (throttle.ekm_rps) refs.push({ name: `EKM throttle ${throttle.ekm_rps}/s`, value: throttle.ekm_rps, cls: 'throttle2' });
  const rps = lineChart('Requests per second, last hour', 'requests/s',
    series.map((se) => ({ name: ROUTE_NAMES[se.route] || se.route, cls: `c-${se.route}`, values: se.points.map((p) => p.requests / interval) })),
    refs, labels);
  const lat = series.map((se) => {
    const r = [];
    const b = budget[se.route];
    if (b) r.push({ name: `${se.route === 'ekm' ? 'Azure' : 'AWS'} budget ${b} ms`, value: b, cls: 'budget' });
    return lineChart(`${ROUTE_NAMES[se.route] || se.route} latency`, 'ms',
      ['p50', 'p95', 'p99'].map((q) => ({ name: q, cls: `c-${q}`, values: se.points.map((p) => p[`${q}_ms`]) })), r, labels);
  });
  const codes = new Map();
  for (const se of series) {
    for (const p of se.points) {
      for (const [code, n] of Object.entries(p.codes || {})) {
        const k = `${ROUTE_NAMES[se.route] || se.route}: ${code}`;
        codes.set(k, (codes.get(k) || 0) + n);
      }
    }
  }
  const bars = [...codes.entries()].map(([name, value]) => ({ name, value })).sort((a, b) => b.value - a.value).slice(0, 12);
  return h('div', { class: 'charts' }, rps, lat, barChart('Errors by code, last hour', bars));
}

export async function render(el, ctx) {
  const banner = h('div', {});
  const healthRegion = h('section', { 'aria-labelledby': 'ov-health' }, h('h2', { id: 'ov-health' }, 'Health'));
  const nodeRegion = h('section', { 'aria-labelledby': 'ov-nodes' }, h('h2', { id: 'ov-nodes' }, 'Nodes'));
  const chartRegion = h('section', { 'aria-labelledby': 'ov-charts' }, h('h2', { id: 'ov-charts' }, 'Traffic'));
  const auditRegion = h('section', { 'aria-labelledby': 'ov-audit' }, h('h2', { id: 'ov-audit' }, 'Recent audit events'));
  el.append(banner, healthRegion, nodeRegion, chartRegion, auditRegion);

  const [st, hz, at, nodes, hist, ev] = await Promise.all([
    settle(api('GET', '/status')), settle(healthz()), settle(api('GET', '/attestation')),
    settle(api('GET', '/nodes')),
    settle(api('GET', '/metrics/history')), settle(api('GET', `/audit${query({ order: 'desc', limit: 10 })}`)),
  ]);
  if (!ctx.isCurrent()) return;
  const evaluation = (st.ok && st.v.evaluation) || (hz.ok && hz.v.doc.evaluation);
  if (evaluation) {
    banner.append(h('p', { class: 'banner warn', role: 'note' },
      h('strong', {}, 'Evaluation appliance. '),
      'The master key is in a local SoftHSM2 token, not a hardware HSM: do not keep production keys here.'));
  }
  healthRegion.append(healthCards(st, hz, at));
  if (nodes.ok) nodeRegion.append(...nodesView(nodes.v || {}));
  else {
    const box = alertBox();
    nodeRegion.append(box);
    showError(box, nodes.e);
  }
  if (hist.ok) chartRegion.append(charts(hist.v));
  else {
    const box = alertBox();
    chartRegion.append(box);
    showError(box, hist.e);
  }
  if (ev.ok) {
    const rows = (ev.v.events || []).map((e) => [String(e.seq), fmtTime(e.time), e.actor, e.action, e.key || '—', e.result]);
    auditRegion.append(rows.length ? table('The ten newest audit events', ['Seq', 'Time', 'Actor', 'Action', 'Key', 'Result'], rows)
      : h('p', {}, 'No audit events.'));
  } else {
    const box = alertBox();
    auditRegion.append(box);
    showError(box, ev.e);
  }
}
