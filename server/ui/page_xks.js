// page_xks.js - AWS XKS key stores: list (prefixes, endpoint), create, rotate
// the credential (the secret shown once), delete a credential, download the
// import file, and the `aws kms create-custom-key-store` line.
import { h, replace, alertBox, showError, field, select, table, copyBlock, download } from './dom.js';
import { api, can, seg } from './api.js';

const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;
const PREFIX_RE = /^(\/[A-Za-z0-9_-]+)*$/;

export function awsLine(store, endpoint, cred) {
  const path = `${store.uri_prefix || ''}/kms/xks/v1`;
  const akid = cred ? cred.AccessKeyId : (store.access_key_ids || [])[0] || '<AccessKeyId>';
  const secret = cred ? cred.RawSecretAccessKey : '<RawSecretAccessKey from the import file>';
  return [
    'aws kms create-custom-key-store \\',
    `  --region ${store.region || 'us-east-1'} \\`,
    `  --custom-key-store-name ${store.name} \\`,
    '  --custom-key-store-type EXTERNAL_KEY_STORE \\',
    '  --xks-proxy-connectivity PUBLIC_ENDPOINT \\',
    `  --xks-proxy-uri-endpoint ${endpoint} \\`,
    `  --xks-proxy-uri-path ${path} \\`,
    `  --xks-proxy-authentication-credential AccessKeyId=${akid},RawSecretAccessKey=${secret}`,
  ].join('\n');
}

function fileName(store) {
  return `keyward-xks-${store}-import.json`;
}

export async function render(el, ctx) {
  const admin = can('admin');
  const err = alertBox();
  const listSec = h('section', { 'aria-labelledby': 'xks-list' }, h('h2', { id: 'xks-list' }, 'Key stores'), err);
  const secretSec = h('section', { class: 'secret-slot', 'aria-live': 'polite' });
  const lineSec = h('section', { 'aria-labelledby': 'xks-line' }, h('h2', { id: 'xks-line' }, 'Create the external key store in AWS KMS'));
  el.append(secretSec, listSec, lineSec);

  // The endpoint AWS calls: this appliance's main listener, public, port 443.
  let guess = `https://${window.location.hostname}`;
  try {
    const e = await api('GET', '/ekm');
    if (e.public_host) guess = `https://${e.public_host.replace(/:443$/, '')}`;
  } catch (e2) { /* the EKM information is optional here */ }
  const endpoint = field('Public endpoint AWS KMS calls', h('input', { type: 'url', value: guess, spellcheck: 'false' }),
    'https://<host> of the main listener, reachable from the internet on port 443 with a certificate of a public CA (AWS\'s rule for public endpoint connectivity).');
  const pick = field('Key store for the aws line', select([], ''));
  const lineHolder = h('div', {});
  let stores = [];
  let lastCred = null;   // {store, cred}: the secret just shown, for the line

  function drawLine() {
    const st = stores.find((x) => x.name === pick.input.value);
    if (!st) {
      replace(lineHolder, h('p', {}, 'No key store yet.'));
      return;
    }
    const cred = lastCred && lastCred.store === st.name ? lastCred.cred : null;
    replace(lineHolder, copyBlock(awsLine(st, endpoint.input.value.replace(/\/+$/, ''), cred), 'aws command'),
      h('p', { class: 'hint' }, cred
        ? 'This line holds the secret shown above: it is in your shell history once run.'
        : 'The secret access key is not shown again: take it from the import file (Download import file) or rotate the credential.'));
  }
  endpoint.input.addEventListener('input', drawLine);
  pick.input.addEventListener('change', drawLine);
  lineSec.append(endpoint.wrap, pick.wrap, lineHolder);

  function showSecret(doc, what) {
    const imp = doc.import_file || {};
    const cred = imp.XksProxyAuthenticationCredential || {};
    lastCred = { store: doc.store, cred };
    const text = JSON.stringify(doc.import_file, null, 2);
    const dl = h('button', { type: 'button', onclick: () => download(fileName(doc.store), `${text}\n`, 'application/json') }, 'Download import file');
    const hide = h('button', { type: 'button', class: 'secondary', onclick: () => { replace(secretSec); lastCred = null; drawLine(); } }, 'I have saved it');
    replace(secretSec, h('div', { class: 'secret card', role: 'region', 'aria-labelledby': 'xks-secret-h' },
      h('h2', { id: 'xks-secret-h' }, `${what}: ${doc.store}`),
      h('p', { class: 'banner warn', role: 'alert' }, 'The secret access key is shown once. Save the import file now: this page does not keep it.'),
      h('dl', { class: 'facts' }, h('dt', {}, 'URI path'), h('dd', {}, h('code', {}, imp.XksProxyUriPath)),
        h('dt', {}, 'Access key ID'), h('dd', {}, h('code', { 'data-field': 'access_key_id' }, cred.AccessKeyId)),
        h('dt', {}, 'Secret access key'), h('dd', {}, h('code', { 'data-field': 'secret' }, cred.RawSecretAccessKey))),
      h('div', { class: 'actions' }, dl, hide)));
    pick.input.value = doc.store;
  }

  async function load() {
    showError(err, null);
    let doc;
    try {
      doc = await api('GET', '/xks/stores');
    } catch (e) {
      showError(err, e);
      return;
    }
    if (!ctx.isCurrent()) return;
    stores = doc.stores || [];
    const keep = pick.input.value;
    replace(pick.input, ...stores.map((x) => h('option', { value: x.name }, x.name)));
    if (stores.some((x) => x.name === keep)) pick.input.value = keep;
    const old = listSec.querySelector('.table-wrap, .empty');
    if (old) old.remove();
    if (!stores.length) {
      listSec.append(h('p', { class: 'empty' }, 'No key store.'));
    } else {
      listSec.append(table(null, ['Name', 'URI prefix', 'Endpoint path', 'Region', 'Source', 'Credentials', 'Actions'],
        stores.map((st) => storeRow(st))));
    }
    drawLine();
  }

  function storeRow(st) {
    const rowErr = alertBox();
    const api2 = async (btn, fn) => {
      showError(rowErr, null);
      btn.disabled = true;
      try {
        await fn();
      } catch (e) {
        showError(rowErr, e);
      } finally {
        btn.disabled = false;
      }
    };
    const fromApi = st.source === 'api';
    const creds = h('ul', { class: 'plain' }, (st.access_key_ids || []).map((id) => h('li', {}, h('code', {}, id),
      admin && fromApi && st.access_key_ids.length > 1 ? h('button', {
        type: 'button',
        class: 'danger small',
        'aria-label': `Delete credential ${id}`,
        onclick: (ev) => api2(ev.target, async () => {
          await api('POST', `/xks/stores/${seg(st.name)}/delete-credential`, { access_key_id: id });
          await load();
        }),
      }, 'Delete credential') : null)));
    const acts = h('div', { class: 'row-actions' });
    if (admin && fromApi) {
      acts.append(h('button', {
        type: 'button',
        onclick: (ev) => api2(ev.target, async () => {
          const doc = await api('POST', `/xks/stores/${seg(st.name)}/rotate`);
          showSecret(doc, 'New credential');
          await load();
        }),
      }, 'Rotate credential'));
    }
    if (admin) {
      acts.append(h('button', {
        type: 'button',
        class: 'secondary',
        onclick: (ev) => api2(ev.target, async () => {
          const doc = await api('GET', `/xks/stores/${seg(st.name)}/import-file`);
          download(fileName(st.name), `${JSON.stringify(doc.import_file, null, 2)}\n`, 'application/json');
        }),
      }, 'Download import file'));
    }
    if (admin && fromApi) {
      acts.append(h('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Delete store ${st.name}`,
        onclick: (ev) => api2(ev.target, async () => {
          await api('DELETE', `/xks/stores/${seg(st.name)}`);
          await load();
        }),
      }, 'Delete store'));
    }
    return h('tr', { 'data-store': st.name }, h('td', {}, st.name), h('td', {}, h('code', {}, st.uri_prefix || '(none)')),
      h('td', {}, h('code', {}, `${st.uri_prefix || ''}/kms/xks/v1`)), h('td', {}, st.region || ''),
      h('td', {}, st.source === 'config' ? 'configuration file' : 'admin API'), h('td', {}, creds), h('td', {}, acts, rowErr));
  }

  if (admin) {
    const name = field('Store name', h('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' }), '1-32 of A-Z a-z 0-9 _ -');
    const prefix = field('URI prefix', h('input', { type: 'text', spellcheck: 'false', placeholder: '/tenant-a' }), 'Empty, or /… (A-Z a-z 0-9 _ - and /), at most 116 characters');
    const region = field('Region', h('input', { type: 'text', value: 'us-east-1', spellcheck: 'false' }));
    const cerr = alertBox();
    const form = h('form', { class: 'card', 'aria-labelledby': 'xks-create', novalidate: true }, h('h2', { id: 'xks-create' }, 'Create a key store'),
      name.wrap, prefix.wrap, region.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create store')), cerr);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError(cerr, null);
      const n = name.input.value.trim();
      const p = prefix.input.value.trim();
      showError(name.error, NAME_RE.test(n) ? null : 'A store name is 1-32 of A-Z a-z 0-9 _ -.');
      const pOk = PREFIX_RE.test(p) && p.length <= 116 && !p.endsWith('/');
      showError(prefix.error, pOk ? null : 'A URI prefix is empty or /segment[/segment…] of A-Z a-z 0-9 _ -, without a trailing /.');
      if (!NAME_RE.test(n) || !pOk) return;
      const body = { name: n, uri_prefix: p };
      if (region.input.value.trim()) body.region = region.input.value.trim();
      try {
        const doc = await api('POST', '/xks/stores', body);
        showSecret(doc, 'Key store created');
        name.input.value = '';
        prefix.input.value = '';
        await load();
        pick.input.value = doc.store;
        drawLine();
      } catch (e) {
        showError(e.code === 'exists' ? (/prefix/.test(e.message) ? prefix.error : name.error) : cerr, e);
      }
    });
    el.append(form);
  }
  await load();
}
