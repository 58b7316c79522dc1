// The AWS XKS page: create a key store, rotate its credential (the new
// secret shown once), download the import file and check it against the
// admin API's import-file answer.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { api, goTo, launch, newRole, rowOf, screenshots, settled, signInToken, unique } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function store(name) {
  const r = await api('GET', '/api/v1/xks/stores');
  assert.equal(r.status, 200, r.text);
  return r.json.stores.find((s) => s.name === name);
}

test('create an XKS store, rotate its credential, download the import file', { timeout: 120000 }, async () => {
  const r = await newRole(browser, 'xks');
  const p = r.page;
  const name = unique('st').replace('-', '_');
  const prefix = '/ui-test/' + name;
  try {
    await signInToken(p);
    await goTo(p, 'AWS XKS');
    const form = p.locator('form').filter({ has: p.getByRole('button', { name: 'Create store', exact: true }) });
    if (!await form.count()) await p.getByRole('button', { name: 'Create store', exact: true }).click();
    await form.getByLabel(/name/i).fill(name);
    await form.getByLabel(/prefix/i).fill(prefix);
    await form.getByRole('button', { name: 'Create store', exact: true }).click();
    await settled(p);
    await rowOf(p, name).waitFor();
    const s0 = await store(name);
    assert.ok(s0, 'the store is not in the API list');
    assert.equal(s0.uri_prefix, prefix);
    assert.equal(s0.source, 'api');
    assert.equal(s0.access_key_ids.length, 1);

    // rotation: a second credential, its secret shown once in the page
    await rowOf(p, name).getByRole('button', { name: 'Rotate credential', exact: true }).click();
    const dialog = p.getByRole('dialog');
    if (await dialog.isVisible().catch(() => false) &&
        await dialog.getByRole('button', { name: 'Rotate credential', exact: true }).count())
      await dialog.getByRole('button', { name: 'Rotate credential', exact: true }).click();
    await settled(p);
    const s1 = await store(name);
    assert.equal(s1.access_key_ids.length, 2, JSON.stringify(s1));
    const f = await api('GET', `/api/v1/xks/stores/${name}/import-file`);
    assert.equal(f.status, 200, f.text);
    const cred = f.json.import_file.XksProxyAuthenticationCredential;
    assert.ok(s1.access_key_ids.includes(cred.AccessKeyId));
    await p.getByText(cred.RawSecretAccessKey, { exact: false }).first().waitFor();
    await screenshots(p, 'xks-rotated');

    // the download is the API's import file
    const [download] = await Promise.all([
      p.waitForEvent('download', { timeout: 15000 }),
      rowOf(p, name).getByRole('button', { name: 'Download import file', exact: true }).click(),
    ]);
    const file = await download.path();
    const got = JSON.parse(fs.readFileSync(file, 'utf8'));
    const want = (await api('GET', `/api/v1/xks/stores/${name}/import-file`)).json;
    // the file AWS's console imports is the inner object; the wrapped answer is accepted too
    assert.deepEqual(got.import_file ? got : { store: name, import_file: got }, want);
    assert.equal(got.XksProxyUriPath ?? got.import_file.XksProxyUriPath, prefix + '/kms/xks/v1');
    assert.match(download.suggestedFilename(), /\.json$/);
    await r.assertClean();
  } finally {
    await r.close();
  }
});
