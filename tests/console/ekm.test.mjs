// The Azure EKM page: the URL it shows for a key is one an EKM client (mutual
// TLS, a certificate of the configured client CA and allowed name) can call.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { api, goTo, launch, newRole, request, rowOf, screenshots, signInToken, unique } from './lib.mjs';

const EKM_CERT = fs.readFileSync(process.env.KW_EKM_CERT, 'utf8');
const EKM_KEY = fs.readFileSync(process.env.KW_EKM_KEY, 'utf8');
const API_VERSION = '?api-version=0.1-preview';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

function ekmCall(url) {
  const ctx = { request_id: crypto.randomUUID(), correlation_id: crypto.randomUUID(), pool_name: 'console-test' };
  return request('POST', url + API_VERSION, { body: { request_context: ctx }, cert: EKM_CERT, key: EKM_KEY });
}

test("the EKM page's key URL answers an EKM client over mutual TLS", { timeout: 90000 }, async () => {
  const info = await api('GET', '/api/v1/ekm');
  assert.equal(info.status, 200, info.text);
  assert.equal(info.json.enabled, true);
  // a key reachable over EKM: its rules name the path prefix (tests/blackbox/test_ekm.py)
  const name = unique('ekm-key');
  const prefix = '/azureekm/' + info.json.path_prefix.replace(/^\/+/, '');
  const c = await api('POST', '/api/v1/keys', { body: { name, type: 'AES', rules: { ekm: { path_prefixes: [prefix] } } } });
  assert.equal(c.status, 201, c.text);

  const r = await newRole(browser, 'ekm');
  const p = r.page;
  try {
    await signInToken(p);
    await goTo(p, 'Azure EKM');
    const text = await p.getByRole('main').innerText();
    // the key's row (its name in the first cell) shows its URL
    const rowText = await rowOf(p, name).innerText();
    const m = rowText.match(new RegExp(`https://[^\\s"'<>]+/${name}(?![A-Za-z0-9-])`));
    assert.ok(m, `no URL for ${name} in its row of the Azure EKM page:\n${rowText}`);
    const url = m[0];
    assert.equal(url, (await api('GET', '/api/v1/keys/' + name)).json.ekm_url);
    assert.ok(url.startsWith(info.json.url_base + '/'), `${url} is not under ${info.json.url_base}`);
    // the client CA and the allowed client name are shown
    assert.ok(text.includes(process.env.KW_EKM_CN), 'the allowed client name is not shown');
    assert.ok(/az keyvault key create/.test(text), 'no az keyvault key create line');
    await screenshots(p, 'azure-ekm-key');

    // an EKM client calls exactly that URL: the key's metadata, then the proxy info
    const md = await ekmCall(url + '/metadata');
    assert.equal(md.status, 200, md.text);
    assert.equal(md.json.key_type, 'oct');
    const pi = await ekmCall(url.slice(0, url.length - name.length) + 'info');
    assert.equal(pi.status, 200, pi.text);
    await r.assertClean();
  } finally {
    await r.close();
  }
});
