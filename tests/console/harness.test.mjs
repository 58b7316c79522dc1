// The harness itself: its cookie check rejects what it must, the browser
// reaches the server through the pinned certificate, and the admin
// listener's answers outside the console carry the contract's headers too.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { URL_BASE, api, checkResponse, cookieProblems, launch, newRole } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('cookie check: the contract cookie passes, each missing attribute is named', () => {
  const good = '__Host-keyward_session=abc; Path=/; Secure; HttpOnly; SameSite=Strict';
  assert.deepEqual(cookieProblems(good), []);
  assert.deepEqual(cookieProblems('__Host-keyward_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0'), []);
  assert.match(cookieProblems('keyward_session=abc; Path=/; Secure; HttpOnly; SameSite=Strict').join(), /__Host-/);
  assert.match(cookieProblems('__Host-a=b; Path=/; HttpOnly; SameSite=Strict').join(), /Secure/);
  assert.match(cookieProblems('__Host-a=b; Path=/; Secure; SameSite=Strict').join(), /HttpOnly/);
  assert.match(cookieProblems('__Host-a=b; Path=/; Secure; HttpOnly; SameSite=Lax').join(), /SameSite/);
  assert.match(cookieProblems('__Host-a=b; Path=/x; Secure; HttpOnly; SameSite=Strict').join(), /Path/);
  assert.match(cookieProblems('__Host-a=b; Path=/; Secure; HttpOnly; SameSite=Strict; Domain=127.0.0.1').join(), /Domain/);
});

test('every kind of admin-listener answer carries the headers', { timeout: 60000 }, async () => {
  const r = await newRole(browser, 'anonymous', { consoleErrors: false });
  try {
    const seen = [];
    r.page.on('response', (x) => seen.push(x.status()));
    // health, metrics, an API error, an unknown route: through the browser,
    // so checkResponse runs on each (and the certificate pin is used)
    for (const p of ['/healthz', '/metrics', '/api/v1/keys', '/no-such-route']) {
      const resp = await r.page.goto(URL_BASE + p);
      assert.ok(resp, p);
    }
    assert.deepEqual(seen.slice(0, 2), [200, 200]);
    assert.equal(seen[2], 401);
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('the API answers node with the test CA (the harness client works)', async () => {
  const r = await api('GET', '/api/v1/status');
  assert.equal(r.status, 200, r.text);
  assert.equal(typeof r.json, 'object');
});
