// page_keys.js - keys: search and filter with paging, create (AES, RSA
// 2048/3072/4096), import (AES raw 32 bytes, RSA PEM), enable/disable,
// rotate, schedule and cancel deletion, and per key its versions, allowed
// operations and rules (EKM client names, XKS stores, principal patterns).
import { h, replace, alertBox, showError, field, select, busy, table, fmtTime, lines } from './dom.js';
import { api, can, query, seg } from './api.js';

const OPS = ['encrypt', 'decrypt', 'wrap', 'unwrap'];
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const STORE_RE = /^[A-Za-z0-9_-]{1,32}$/;
const PAGE = 25;
const DAY = 86400;

function validName(n) {
  return NAME_RE.test(n) && n !== '.' && n !== '..';
}

function opsBoxes(legend, checked) {
  const boxes = OPS.map((op) => h('input', { type: 'checkbox', value: op, checked: checked.includes(op) }));
  const fs = h('fieldset', { class: 'ops' }, h('legend', {}, legend),
    boxes.map((b) => h('label', { class: 'check' }, b, ` ${b.value}`)));
  return { fs, value: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

function parseTags(text) {
  const tags = {};
  for (const l of lines(text)) {
    const i = l.indexOf('=');
    if (i < 1) throw new Error(`"${l}" is not key=value`);
    tags[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  return tags;
}

function base64(bytes) {
  let bin = '';
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin);
}

export async function render(el, ctx) {
  const writer = can('keys');
  const state = { filters: {}, cursors: [null], page: 0, stores: null };
  const listRegion = h('section', { 'aria-labelledby': 'keys-list-h', class: 'keys-list' },
    h('h2', { id: 'keys-list-h' }, 'Key list'));
  const detailRegion = h('section', { 'aria-live': 'polite', class: 'key-detail' });

  // ---- search and filter ----
  const fPrefix = field('Name prefix', h('input', { type: 'search', spellcheck: 'false' }));
  const fState = field('State', select([['', 'any'], 'enabled', 'disabled', 'pending_deletion', 'destroyed'], ''));
  const fType = field('Type', select([['', 'any'], 'AES', 'RSA'], ''));
  const fTag = field('Tag', h('input', { type: 'text', placeholder: 'env=prod', spellcheck: 'false' }));
  const filterErr = alertBox();
  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Search keys' },
    fPrefix.wrap, fState.wrap, fType.wrap, fTag.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')), filterErr);
  const waitDays = field('Deletion waiting period (days)', h('input', { type: 'number', min: '7', max: '3650', value: '30', step: '1' }),
    'At least 7 days; used by "Schedule deletion".');
  const tableHolder = h('div', {});
  const pager = h('div', { class: 'pager' });
  waitDays.wrap.classList.add('narrow');
  listRegion.append(filterForm, writer ? waitDays.wrap : null, tableHolder, pager);

  filterForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    showError(filterErr, null);
    if (fPrefix.input.value && !/^[A-Za-z0-9._-]{1,64}$/.test(fPrefix.input.value)) {
      showError(fPrefix.error, 'A prefix is 1-64 of A-Z a-z 0-9 . _ -');
      return;
    }
    showError(fPrefix.error, null);
    if (fTag.input.value && fTag.input.value.indexOf('=') < 1) {
      showError(fTag.error, 'A tag filter is key=value.');
      return;
    }
    showError(fTag.error, null);
    state.filters = { prefix: fPrefix.input.value, state: fState.input.value, type: fType.input.value, tag: fTag.input.value };
    state.cursors = [null];
    state.page = 0;
    load();
  });

  async function load() {
    try {
      const doc = await api('GET', `/keys${query({ ...state.filters, limit: PAGE, cursor: state.cursors[state.page] })}`);
      if (!ctx.isCurrent()) return;
      state.cursors[state.page + 1] = doc.next;
      replace(tableHolder, keysTable(doc.keys || []));
      const prev = h('button', { type: 'button', class: 'secondary', disabled: state.page === 0 }, 'Previous page');
      const next = h('button', { type: 'button', class: 'secondary', disabled: doc.next === null || doc.next === undefined }, 'Next page');
      prev.addEventListener('click', () => { state.page -= 1; load(); });
      next.addEventListener('click', () => { state.page += 1; load(); });
      replace(pager, prev, h('span', {}, `Page ${state.page + 1}`), next);
    } catch (e) {
      showError(filterErr, e);
    }
  }

  function keysTable(keys) {
    if (!keys.length) return h('p', {}, 'No key matches.');
    const rows = keys.map((k) => {
      const err = alertBox();
      const acts = h('div', { class: 'row-actions' });
      const act = (label, path, body) => h('button', {
        type: 'button',
        class: label === 'Schedule deletion' ? 'danger' : '',
        onclick: async (ev) => {
          showError(err, null);
          let b = body;
          if (label === 'Schedule deletion') {
            const days = Number(waitDays.input.value);
            if (!Number.isInteger(days) || days < 7) {
              showError(err, 'The waiting period is a whole number of days, at least 7.');
              waitDays.input.focus();
              return;
            }
            b = { wait_seconds: days * DAY };
          }
          ev.target.disabled = true;
          try {
            await api('POST', `/keys/${seg(k.name)}/${path}`, b);
            await load();
          } catch (e2) {
            ev.target.disabled = false;
            showError(err, e2);
          }
        },
      }, label);
      if (writer) {
        if (k.state === 'enabled') acts.append(act('Disable', 'disable'), act('Rotate', 'rotate'), act('Schedule deletion', 'schedule-deletion'));
        if (k.state === 'disabled') acts.append(act('Enable', 'enable'), act('Schedule deletion', 'schedule-deletion'));
        if (k.state === 'pending_deletion') acts.append(act('Cancel deletion', 'cancel-deletion'));
      }
      acts.prepend(h('button', { type: 'button', class: 'secondary', 'aria-label': `Details of ${k.name}`, onclick: () => showDetail(k.name) }, 'Details'));
      return h('tr', { 'data-key': k.name },
        h('td', {}, k.name), h('td', {}, k.type), h('td', {}, String(k.size)),
        h('td', {}, h('span', { class: `state s-${k.state}` }, k.state),
          k.delete_at ? h('small', {}, ` destroyed at ${fmtTime(k.delete_at)}`) : null),
        h('td', {}, String(k.current_version)), h('td', {}, fmtTime(k.updated)),
        h('td', {}, acts, err));
    });
    return table(null, ['Name', 'Type', 'Size', 'State', 'Version', 'Updated', 'Actions'], rows);
  }

  // ---- details: versions, operations, rules ----
  async function showDetail(name) {
    const err = alertBox();
    replace(detailRegion, h('h2', { id: 'key-detail-h', tabindex: '-1' }, `Key ${name}`), err);
    detailRegion.querySelector('h2').focus();
    let k;
    try {
      k = await api('GET', `/keys/${seg(name)}`);
    } catch (e) {
      showError(err, e);
      return;
    }
    const facts = h('dl', { class: 'facts' },
      h('dt', {}, 'ID'), h('dd', {}, k.id), h('dt', {}, 'Type'), h('dd', {}, `${k.type} ${k.size}`),
      h('dt', {}, 'State'), h('dd', {}, k.state), h('dt', {}, 'Created'), h('dd', {}, fmtTime(k.created)),
      h('dt', {}, 'Tags'), h('dd', {}, Object.entries(k.tags || {}).map(([a, b]) => `${a}=${b}`).join(', ') || '—'),
      k.ekm_url ? [h('dt', {}, 'EKM key URL'), h('dd', {}, h('code', {}, k.ekm_url))] : null);
    const versions = h('section', { 'aria-labelledby': 'kv-h' }, h('h3', { id: 'kv-h' }, 'Versions'));
    detailRegion.append(facts, versions, operationsEditor(k), rulesEditor(k));
    try {
      const v = await api('GET', `/keys/${seg(name)}/versions`);
      versions.append(table(null, ['Version', 'Created', 'Current'],
        (v.versions || []).map((x) => [String(x.version), fmtTime(x.created), x.current ? 'current' : ''])));
    } catch (e) {
      const box = alertBox();
      versions.append(box);
      showError(box, e);
    }
  }

  function operationsEditor(k) {
    const ops = opsBoxes('Allowed operations', k.operations || []);
    const sec = h('section', { 'aria-labelledby': 'kops-h' }, h('h3', { id: 'kops-h' }, 'Allowed operations'));
    if (!writer) {
      ops.fs.querySelectorAll('input').forEach((i) => { i.disabled = true; });
      sec.append(ops.fs);
      return sec;
    }
    const err = alertBox();
    const ok = h('p', { role: 'status', class: 'ok-note' });
    const form = h('form', {}, ops.fs, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save operations')), err, ok);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError(err, null);
      ok.textContent = '';
      if (!ops.value().length) {
        showError(err, 'Choose at least one operation.');
        return;
      }
      try {
        await api('PATCH', `/keys/${seg(k.name)}`, { operations: ops.value() });
        ok.textContent = 'Operations saved.';
        load();
      } catch (e) {
        showError(err, e);
      }
    });
    sec.append(form);
    return sec;
  }

  function rulesEditor(k) {
    const rules = k.rules || {};
    const ekmR = rules.ekm || {};
    const xksR = rules.xks || {};
    const sec = h('section', { 'aria-labelledby': 'krules-h' }, h('h3', { id: 'krules-h' }, 'Access rules'),
      h('p', { class: 'hint' }, 'A key is reachable over EKM only when EKM client names (or path prefixes) are set, and over XKS only through the stores listed. Patterns may use * for any run of characters.'));
    const cns = field('EKM client names (one per line)', h('textarea', { rows: '3', spellcheck: 'false' }), 'The subject CN of Managed HSM\'s client certificate, e.g. contoso.managedhsmclient.azure.net');
    const stores = field('XKS key stores (one per line)', h('textarea', { rows: '2', spellcheck: 'false' }));
    const princ = field('XKS principal patterns (one per line)', h('textarea', { rows: '3', spellcheck: 'false' }), 'e.g. arn:aws:iam::111122223333:role/app-*');
    cns.input.value = (ekmR.client_cns || []).join('\n');
    stores.input.value = (xksR.key_stores || []).join('\n');
    princ.input.value = (xksR.principals || []).join('\n');
    if (!writer) {
      [cns, stores, princ].forEach((f) => { f.input.readOnly = true; });
      sec.append(cns.wrap, stores.wrap, princ.wrap);
      return sec;
    }
    const err = alertBox();
    const ok = h('p', { role: 'status', class: 'ok-note' });
    const form = h('form', { novalidate: true }, cns.wrap, stores.wrap, princ.wrap,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save rules')), err, ok);
    const checkList = (f, re, what) => {
      const vals = lines(f.input.value);
      const bad = vals.find((v) => !re.test(v));
      const dup = vals.find((v, i) => vals.indexOf(v) !== i);
      if (vals.length > 64) return `At most 64 ${what}.`;
      if (bad !== undefined) return `"${bad}" is not a valid ${what.replace(/s$/, '')}.`;
      if (dup !== undefined) return `"${dup}" is listed twice.`;
      return null;
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      ok.textContent = '';
      showError(err, null);
      if (state.stores === null) {
        try {
          state.stores = ((await api('GET', '/xks/stores')).stores || []).map((x) => x.name);
        } catch (e) {
          state.stores = [];
        }
      }
      const problems = [
        [cns, checkList(cns, /^[\x21-\x7e]{1,2048}$/, 'client names')],
        [stores, checkList(stores, STORE_RE, 'store names')
          || lines(stores.input.value).filter((x) => state.stores.length && !state.stores.includes(x)).map((x) => `No XKS key store is named "${x}".`)[0] || null],
        [princ, checkList(princ, /^[\x21-\x7e]{1,2048}$/, 'patterns')],
      ];
      problems.forEach(([f, p]) => showError(f.error, p));
      const first = problems.find(([, p]) => p);
      if (first) {
        first[0].input.focus();
        return;
      }
      const next = JSON.parse(JSON.stringify(rules));
      const setList = (sect, key, vals) => {
        next[sect] = next[sect] || {};
        if (vals.length) next[sect][key] = vals;
        else delete next[sect][key];
        if (!Object.keys(next[sect]).length) delete next[sect];
      };
      setList('ekm', 'client_cns', lines(cns.input.value));
      setList('xks', 'key_stores', lines(stores.input.value));
      setList('xks', 'principals', lines(princ.input.value));
      try {
        await api('PATCH', `/keys/${seg(k.name)}`, { rules: next });
        ok.textContent = 'Rules saved.';
        Object.assign(rules, next);
      } catch (e) {
        // the API names the member it refused: show it beside that field
        const m = e.message || '';
        const target = /client_cns|ekm/.test(m) ? cns : /key_stores/.test(m) ? stores : /principals/.test(m) ? princ : null;
        showError(target ? target.error : err, e);
      }
    });
    sec.append(form);
    return sec;
  }

  // ---- create and import ----
  function createForm() {
    const name = field('Key name', h('input', { type: 'text', required: true, spellcheck: 'false', autocomplete: 'off' }), '1-64 of A-Z a-z 0-9 . _ -');
    const type = field('Key type', select(['AES', 'RSA'], 'AES'));
    const size = field('Key size', select([['256', '256 bits']], '256'));
    type.input.addEventListener('change', () => {
      const rsa = type.input.value === 'RSA';
      replace(size.input, ...(rsa ? [['2048', '2048 bits'], ['3072', '3072 bits'], ['4096', '4096 bits']] : [['256', '256 bits']])
        .map(([v, l]) => h('option', { value: v, selected: v === (rsa ? '3072' : '256') }, l)));
    });
    const ops = opsBoxes('Operations (none checked: the default)', []);
    const tags = field('Tags (key=value, one per line)', h('textarea', { rows: '2', spellcheck: 'false' }));
    const err = alertBox();
    const ok = h('p', { role: 'status', class: 'ok-note' });
    const region = h('div', { class: 'progress-slot' });
    const form = h('form', { class: 'card', 'aria-labelledby': 'kc-h', novalidate: true },
      h('h2', { id: 'kc-h' }, 'Create a key'), name.wrap, type.wrap, size.wrap, ops.fs, tags.wrap,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create key')), region, err, ok);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      ok.textContent = '';
      showError(err, null);
      showError(tags.error, null);
      const n = name.input.value.trim();
      showError(name.error, validName(n) ? null : 'A key name is 1-64 of A-Z a-z 0-9 . _ - (not . or ..).');
      if (!validName(n)) {
        name.input.focus();
        return;
      }
      let t;
      try {
        t = parseTags(tags.input.value);
      } catch (e) {
        showError(tags.error, e.message);
        return;
      }
      const body = { name: n, type: type.input.value, size: Number(size.input.value) };
      if (ops.value().length) body.operations = ops.value();
      if (Object.keys(t).length) body.tags = t;
      const btn = form.querySelector('button[type=submit]');
      btn.disabled = true;
      try {
        const label = body.type === 'RSA' ? `Generating an RSA ${body.size} key…` : 'Creating the key…';
        await busy(form, label, () => api('POST', '/keys', body));
        ok.textContent = `Key ${n} created.`;
        name.input.value = '';
        load();
      } catch (e) {
        showError(/exists|name/.test(e.code || '') ? name.error : err, e);
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }

  function importForm() {
    const name = field('Imported key name', h('input', { type: 'text', required: true, spellcheck: 'false', autocomplete: 'off' }));
    const type = field('Imported key type', select([['AES', 'AES (raw 32-byte file)'], ['RSA', 'RSA (PEM private key)']], 'AES'));
    const file = field('Key file', h('input', { type: 'file' }), 'AES: the raw 32 bytes. RSA: an unencrypted PEM private key (PKCS#8 or PKCS#1). The file is read in this browser and sent once.');
    const err = alertBox();
    const ok = h('p', { role: 'status', class: 'ok-note' });
    const form = h('form', { class: 'card', 'aria-labelledby': 'ki-h', novalidate: true },
      h('h2', { id: 'ki-h' }, 'Import a key'), name.wrap, type.wrap, file.wrap,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Import key')), err, ok);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      ok.textContent = '';
      showError(err, null);
      const n = name.input.value.trim();
      showError(name.error, validName(n) ? null : 'A key name is 1-64 of A-Z a-z 0-9 . _ - (not . or ..).');
      if (!validName(n)) return;
      const f = file.input.files && file.input.files[0];
      if (!f) {
        showError(file.error, 'Choose the key file.');
        return;
      }
      let body;
      if (type.input.value === 'AES') {
        const bytes = new Uint8Array(await f.arrayBuffer());
        if (bytes.length !== 32) {
          showError(file.error, `An AES key file holds exactly 32 bytes; this one has ${bytes.length}.`);
          return;
        }
        body = { name: n, type: 'AES', material: base64(bytes) };
        bytes.fill(0);
      } else {
        const pem = await f.text();
        if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(pem)) {
          showError(file.error, 'Not an unencrypted PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY).');
          return;
        }
        body = { name: n, type: 'RSA', pem };
      }
      showError(file.error, null);
      try {
        await busy(form, 'Importing…', () => api('POST', '/keys/import', body));
        ok.textContent = `Key ${n} imported.`;
        name.input.value = '';
        load();
      } catch (e) {
        showError(/material|pem|bad_encoding|bad_length/.test(`${e.code} ${e.message}`) ? file.error : err, e);
      } finally {
        file.input.value = '';
        body = null;
      }
    });
    return form;
  }

  el.append(listRegion, detailRegion);
  if (writer) el.append(h('div', { class: 'forms' }, createForm(), importForm()));
  await load();
}
