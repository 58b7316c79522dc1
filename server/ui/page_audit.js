// page_audit.js - audit events filtered by key, actor, action and time;
// verify the hash chain (the first broken row); export the filtered events
// as JSON lines (every page fetched, then one Blob download).
import { h, replace, alertBox, showError, field, busy, table, fmtTime, download } from './dom.js';
import { api, query } from './api.js';

const PAGE = 50;

function rfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function render(el, ctx) {
  const fKey = field('Key', h('input', { type: 'text', spellcheck: 'false' }));
  const fActor = field('Actor', h('input', { type: 'text', spellcheck: 'false', placeholder: 'user:alice or token:ab12' }), 'Matches the start of the actor.');
  const fAction = field('Action', h('input', { type: 'text', spellcheck: 'false', placeholder: 'key.create' }));
  const fSince = field('Since', h('input', { type: 'datetime-local', step: '1' }), 'Your local time.');
  const fUntil = field('Until', h('input', { type: 'datetime-local', step: '1' }));
  const ferr = alertBox();
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter audit events' },
    fKey.wrap, fActor.wrap, fAction.wrap, fSince.wrap, fUntil.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')), ferr);
  const list = h('section', { 'aria-labelledby': 'audit-ev' }, h('h2', { id: 'audit-ev' }, 'Events'));
  const holder = h('div', {});
  const pager = h('div', { class: 'pager' });
  list.append(form, holder, pager);

  const verifySec = h('section', { 'aria-labelledby': 'audit-verify', class: 'card' }, h('h2', { id: 'audit-verify' }, 'Hash chain'));
  const verifyOut = h('div', { 'aria-live': 'polite' });
  const verr = alertBox();
  const verifyBtn = h('button', { type: 'button' }, 'Verify chain');
  verifySec.append(h('p', {}, 'Recomputes every record\'s hash from the newest checkpoint on.'), h('div', { class: 'actions' }, verifyBtn), verifyOut, verr);

  const exportSec = h('section', { 'aria-labelledby': 'audit-export', class: 'card' }, h('h2', { id: 'audit-export' }, 'Export'));
  const exportBtn = h('button', { type: 'button' }, 'Export JSON lines');
  const xerr = alertBox();
  const xout = h('p', { role: 'status' });
  exportSec.append(h('p', {}, 'Downloads the events that match the filters above, oldest first, one JSON object a line.'),
    h('div', { class: 'actions' }, exportBtn), xout, xerr);
  el.append(list, h('div', { class: 'forms' }, verifySec, exportSec));

  let filters = {};
  let befores = [null];
  let page = 0;

  function readFilters() {
    const f = { key: fKey.input.value.trim(), actor: fActor.input.value.trim(), action: fAction.input.value.trim() };
    const since = rfc3339(fSince.input.value);
    const until = rfc3339(fUntil.input.value);
    showError(fSince.error, since === null ? 'Not a date and time.' : null);
    showError(fUntil.error, until === null ? 'Not a date and time.' : null);
    if (since === null || until === null) return null;
    if (since && until && since > until) {
      showError(fUntil.error, '"Until" is before "Since".');
      return null;
    }
    if (f.action && !/^[A-Za-z0-9._-]{1,64}$/.test(f.action)) {
      showError(fAction.error, 'An action is 1-64 of A-Z a-z 0-9 . _ -, e.g. key.create.');
      return null;
    }
    showError(fAction.error, null);
    return { ...f, since, until };
  }

  async function load() {
    showError(ferr, null);
    try {
      const doc = await api('GET', `/audit${query({ ...filters, order: 'desc', limit: PAGE, before: befores[page] })}`);
      if (!ctx.isCurrent()) return;
      befores[page + 1] = doc.next;
      const rows = (doc.events || []).map((e) => [String(e.seq), fmtTime(e.time), e.actor, e.action, e.key || '—', e.result, e.detail || '']);
      replace(holder, rows.length ? table(null, ['Seq', 'Time', 'Actor', 'Action', 'Key', 'Result', 'Detail'], rows) : h('p', {}, 'No event matches.'));
      const newer = h('button', { type: 'button', class: 'secondary', disabled: page === 0 }, 'Newer events');
      const older = h('button', { type: 'button', class: 'secondary', disabled: doc.next === null || doc.next === undefined }, 'Older events');
      newer.addEventListener('click', () => { page -= 1; load(); });
      older.addEventListener('click', () => { page += 1; load(); });
      replace(pager, newer, h('span', {}, `Page ${page + 1}`), older);
    } catch (e) {
      showError(ferr, e);
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = readFilters();
    if (!f) return;
    filters = f;
    befores = [null];
    page = 0;
    load();
  });

  verifyBtn.addEventListener('click', async () => {
    showError(verr, null);
    replace(verifyOut);
    verifyBtn.disabled = true;
    try {
      const r = await busy(verifySec, 'Verifying the audit chain…', () => api('POST', '/audit/verify'));
      if (r.ok) {
        replace(verifyOut, h('p', { class: 'ok-note', 'data-verify': 'ok' },
          `The chain verifies: ${r.rows} records${r.head ? `, up to record ${r.head.seq}` : ''}${r.checkpoint ? ` from the checkpoint at ${r.checkpoint.seq}` : ''}.`));
      } else {
        replace(verifyOut, h('div', { class: 'banner bad', 'data-verify': 'broken' },
          h('p', {}, h('strong', {}, 'The chain is broken. '), `First broken record: ${r.first_bad_seq}`,
            r.first_bad_batch ? ` (batch ${r.first_bad_batch.first_seq}–${r.first_bad_batch.last_seq})` : '', `: ${r.reason}.`),
          h('p', {}, `${r.rows} records checked.`)));
      }
    } catch (e) {
      showError(verr, e);
    } finally {
      verifyBtn.disabled = false;
    }
  });

  exportBtn.addEventListener('click', async () => {
    showError(xerr, null);
    xout.textContent = '';
    const f = readFilters();
    if (!f) return;
    exportBtn.disabled = true;
    try {
      const out = [];
      await busy(exportSec, 'Exporting events…', async (progress) => {
        let after = null;
        for (let i = 0; i < 100000; i += 1) {
          const doc = await api('GET', `/audit${query({ ...f, order: 'asc', limit: 1000, after })}`);
          (doc.events || []).forEach((e) => out.push(JSON.stringify(e)));
          progress(out.length);
          if (doc.next === null || doc.next === undefined || !(doc.events || []).length) break;
          after = doc.next;
        }
      });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      download(`keyward-audit-${stamp}.jsonl`, out.length ? `${out.join('\n')}\n` : '', 'application/x-ndjson');
      xout.textContent = `${out.length} events exported.`;
    } catch (e) {
      showError(xerr, e);
    } finally {
      exportBtn.disabled = false;
    }
  });

  await load();
}
