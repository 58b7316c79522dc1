// The Keys page: create, disable, rotate and schedule the deletion of a key
// through the console, each step checked through the admin API.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, goTo, launch, newRole, rowOf, screenshots, settled, signInToken, unique } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function key(name) {
  const r = await api('GET', '/api/v1/keys/' + name);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// Clicks a change button in the key's row; answers a confirmation if the
// console asks for one.  Returns once the region is no longer busy.
async function act(page, name, button) {
  await rowOf(page, name).getByRole('button', { name: button, exact: true }).click();
  await confirmIfAsked(page, button);
  await settled(page);
}

async function confirmIfAsked(page, button) {
  const dialog = page.getByRole('dialog');
  try {
    await dialog.waitFor({ timeout: 1500 });
  } catch {
    return;
  }
  await dialog.getByRole('button', { name: button, exact: true }).click();
  await dialog.waitFor({ state: 'hidden' });
}

async function until(what, fn) {
  const end = Date.now() + 10000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail('timed out waiting for ' + what);
    await new Promise((res) => setTimeout(res, 200));
  }
}

test('create, rotate, disable and schedule deletion of a key through the console', { timeout: 120000 }, async () => {
  const r = await newRole(browser, 'keys');
  const p = r.page;
  const name = unique('ui-key');
  try {
    await signInToken(p);
    await goTo(p, 'Keys');
    // create (AES 256)
    // the form whose submit button is "Create key" (the contract names no
    // field: the one whose label says name); opened first if the page hides it
    const form = p.locator('form').filter({ has: p.getByRole('button', { name: 'Create key', exact: true }) });
    if (!await form.count()) await p.getByRole('button', { name: 'Create key', exact: true }).click();
    await form.getByLabel(/name/i).fill(name);
    await form.getByRole('button', { name: 'Create key', exact: true }).click();
    await settled(p);
    await rowOf(p, name).waitFor();
    const k0 = await key(name);
    assert.equal(k0.type, 'AES');
    assert.equal(k0.state, 'enabled');
    assert.equal(k0.current_version, 1);
    await screenshots(p, 'keys-created');

    // rotate while enabled (the page offers Rotate on enabled keys only)
    await act(p, name, 'Rotate');
    await until('version 2', async () => (await key(name)).current_version === 2);

    await act(p, name, 'Disable');
    await until('disabled', async () => (await key(name)).state === 'disabled');
    await rowOf(p, name).getByRole('button', { name: 'Enable', exact: true }).waitFor();

    // schedule deletion: the console may ask for a waiting time; the harness
    // runs keywardd with deletion_min_wait_seconds = 1, any value the form offers passes
    await rowOf(p, name).getByRole('button', { name: 'Schedule deletion', exact: true }).click();
    await confirmIfAsked(p, 'Schedule deletion');
    await settled(p);
    const k3 = await until('pending deletion', async () => {
      const k = await key(name);
      return k.state === 'pending_deletion' && k;
    });
    assert.ok(k3.delete_at, JSON.stringify(k3));
    await rowOf(p, name).getByRole('button', { name: 'Cancel deletion', exact: true }).waitFor();
    await screenshots(p, 'keys-pending-deletion');

    // each change is in the audit, as the admin token's
    const ev = await api('GET', '/api/v1/audit?key=' + name);
    assert.equal(ev.status, 200, ev.text);
    const actions = ev.json.events.map((e) => e.action);
    for (const a of ['key.create', 'key.disable', 'key.rotate', 'key.schedule_deletion'])
      assert.ok(actions.includes(a), `${a} not in ${actions}`);
    await r.assertClean();
  } finally {
    await r.close();
  }
});
