// Audit verify; the auditor (no change buttons, and the API refuses a change
// made with its session); CSRF (a change with the cookie but without the
// token is refused and changes nothing).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  PAGES, api, goTo, launch, newRole, screenshots, session, settled, signInPassword, signInToken, unique,
} from './lib.mjs';

const T = { timeout: 120000 };
// the buttons of the contract that change something
const CHANGE_BUTTONS = ['Create key', 'Disable', 'Enable', 'Rotate', 'Schedule deletion', 'Cancel deletion',
  'Create store', 'Rotate credential', 'Create token', 'Revoke', 'Create user', 'Delete user'];

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function newKey() {
  const name = unique('aud-key');
  const r = await api('POST', '/api/v1/keys', { body: { name, type: 'AES' } });
  assert.equal(r.status, 201, r.text);
  return name;
}

test('audit: Verify chain shows the chain is ok', T, async () => {
  const r = await newRole(browser, 'audit');
  const p = r.page;
  try {
    await signInToken(p);
    await goTo(p, 'Audit');
    await p.getByRole('button', { name: 'Verify chain', exact: true }).click();
    await settled(p);
    const v = await api('POST', '/api/v1/audit/verify');
    assert.equal(v.status, 200, v.text);
    assert.equal(v.json.ok, true, v.text);
    await p.getByRole('main').getByText(/chain verifies|\bok\b|intact/i).first().waitFor();
    await screenshots(p, 'audit-verified');
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('an auditor sees no change button, and the API refuses its changes (403)', T, async () => {
  const name = await newKey();
  const password = 'auditor password ' + unique('pw');
  const user = unique('auditor');
  const c = await api('POST', '/api/v1/users', { body: { name: user, role: 'auditor', password } });
  assert.equal(c.status, 201, c.text);
  const r = await newRole(browser, 'auditor');
  const p = r.page;
  try {
    await signInPassword(p, user, password);
    for (const page of PAGES) {
      await goTo(p, page);
      for (const b of CHANGE_BUTTONS)
        assert.equal(await p.getByRole('main').getByRole('button', { name: b, exact: true }).count(), 0,
          `the auditor sees "${b}" on ${page}`);
      await screenshots(p, 'auditor-' + page);
    }
    // with its own session and CSRF token, a change is refused by role
    const s = await session(p);
    assert.equal(s.doc.role, 'auditor');
    const d = await api('POST', `/api/v1/keys/${name}/disable`, { cookie: s.cookie, csrf: s.csrf });
    assert.equal(d.status, 403, d.text);
    assert.equal(d.json.error, 'forbidden', d.text);
    const k = await api('POST', '/api/v1/keys', { cookie: s.cookie, csrf: s.csrf, body: { name: unique('nope'), type: 'AES' } });
    assert.equal(k.status, 403, k.text);
    assert.equal((await api('GET', '/api/v1/keys/' + name)).json.state, 'enabled');
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('CSRF: a change with the session cookie but without X-CSRF-Token is refused and changes nothing', T, async () => {
  const name = await newKey();
  const r = await newRole(browser, 'csrf');
  try {
    await signInToken(r.page);
    const s = await session(r.page);
    for (const [what, opts] of [['no token', {}], ['a wrong token', { csrf: 'A'.repeat(43) }],
      ['cross-site', { csrf: s.csrf, headers: { 'sec-fetch-site': 'cross-site' } }]]) {
      const d = await api('POST', `/api/v1/keys/${name}/disable`, { cookie: s.cookie, ...opts });
      assert.equal(d.status, 403, `${what}: ${d.text}`);
      assert.equal(d.json.error, 'csrf', `${what}: ${d.text}`);
    }
    assert.equal((await api('GET', '/api/v1/keys/' + name)).json.state, 'enabled');
    const audit = await api('GET', '/api/v1/audit?key=' + name);
    assert.ok(!audit.json.events.some((e) => e.action === 'key.disable'), audit.text);
    // the same change with the token passes (the session itself is fine)
    const ok = await api('POST', `/api/v1/keys/${name}/disable`, { cookie: s.cookie, csrf: s.csrf });
    assert.equal(ok.status, 200, ok.text);
    await r.assertClean();
  } finally {
    await r.close();
  }
});
