// Sign-in (token, password), a failed sign-in and the lockout, sign-out,
// every page with its screenshots at both widths, keyboard navigation.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  PAGES, api, goTo, launch, newRole, openSignIn, screenshots, session, signInPassword,
  signInToken, unique,
} from './lib.mjs';

const T = { timeout: 90000 };
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function createUser(role) {
  const name = unique(role);
  const password = 'correct horse ' + unique('pw');
  const r = await api('POST', '/api/v1/users', { body: { name, role, password } });
  assert.equal(r.status, 201, r.text);
  return { name, password };
}

test('token sign-in: every page, with screenshots at 1280x800 and 390x844', T, async () => {
  const r = await newRole(browser, 'admin token');
  try {
    await openSignIn(r.page);
    await screenshots(r.page, 'sign-in');
    await signInToken(r.page);
    const s = await session(r.page);
    assert.equal(s.doc.kind, 'token');
    assert.equal(s.doc.role, 'admin');
    for (const name of PAGES) {
      await goTo(r.page, name);
      await screenshots(r.page, name);
    }
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('password sign-in, then sign-out ends the session (the old cookie gets 401)', T, async () => {
  const u = await createUser('operator');
  const r = await newRole(browser, 'operator user');
  try {
    await signInPassword(r.page, u.name, u.password);
    const s = await session(r.page);
    assert.equal(s.doc.kind, 'user');
    assert.equal(s.doc.name, u.name);
    assert.equal(s.doc.role, 'operator');
    assert.equal(s.doc.principal, 'user:' + u.name);
    await r.page.getByRole('navigation').getByRole('button', { name: 'Sign out' }).click();
    await r.page.getByLabel('API token', { exact: true }).waitFor();
    const old = await api('GET', '/api/v1/session', { cookie: s.cookie });
    assert.equal(old.status, 401, old.text);
    const keys = await api('GET', '/api/v1/keys', { cookie: s.cookie });
    assert.equal(keys.status, 401, keys.text);
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('a failed sign-in is shown in words; after 3 the account is locked, even for the right password', T, async () => {
  const u = await createUser('operator');
  const r = await newRole(browser, 'lockout');
  try {
    await openSignIn(r.page);
    const form = r.page.locator('form').filter({ has: r.page.getByLabel('Password', { exact: true }) });
    const alert = form.getByRole('alert');
    // one attempt through the form: waits for the server's answer
    const attempt = async (password) => {
      await r.page.getByLabel('User name', { exact: true }).fill(u.name);
      await r.page.getByLabel('Password', { exact: true }).fill(password);
      const [resp] = await Promise.all([
        r.page.waitForResponse((x) => x.url().endsWith('/api/v1/session') && x.request().method() === 'POST'),
        r.page.getByRole('button', { name: 'Sign in', exact: true }).click(),
      ]);
      return resp.status();
    };
    // [console] login_max_failures = 3 (test_console.py)
    for (let i = 0; i < 3; i++) {
      const st = await attempt('not the password ' + i);
      // the failure that reaches the limit may already answer "locked"
      if (i === 2 && st === 429) break;
      assert.equal(st, 401);
      await alert.filter({ hasText: /wrong user name or password/i }).waitFor();
    }
    assert.equal(await attempt(u.password), 429);
    await alert.filter({ hasText: /locked/i }).waitFor();
    await screenshots(r.page, 'sign-in-locked');
    assert.equal(await r.page.getByRole('button', { name: 'Sign out' }).count(), 0);
    // the API agrees: 429 locked with Retry-After, for the right password too
    const a = await api('POST', '/api/v1/session', { token: null, body: { user: u.name, password: u.password } });
    assert.equal(a.status, 429, a.text);
    assert.equal(a.json.error, 'locked', a.text);
    assert.match(String(a.headers['retry-after']), /^[1-9][0-9]*$/);
    const doc = (await api('GET', '/api/v1/users')).json.users.find((x) => x.name === u.name);
    assert.ok(doc.locked_until, JSON.stringify(doc));
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('keyboard: Tab reaches every nav link with a visible focus, Enter follows it', T, async () => {
  const r = await newRole(browser, 'keyboard');
  try {
    await signInToken(r.page);
    const reached = new Set();
    for (let i = 0; i < 60 && reached.size < PAGES.length; i++) {
      await r.page.keyboard.press('Tab');
      const f = await r.page.evaluate(() => {
        const el = document.activeElement;
        if (!el || !el.closest('nav') || el.tagName !== 'A') return null;
        const cs = getComputedStyle(el);
        const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0;
        return { name: el.textContent.trim(), visible: el.matches(':focus-visible') && (outline || cs.boxShadow !== 'none') };
      });
      if (f && PAGES.includes(f.name)) {
        assert.ok(f.visible, `the focus on the nav link ${f.name} is not visible`);
        reached.add(f.name);
      }
    }
    assert.deepEqual([...reached].sort(), [...PAGES].sort(), 'nav links reached with Tab');
    // the last one reached has the focus: Enter opens its page
    const last = await r.page.evaluate(() => document.activeElement.textContent.trim());
    await r.page.keyboard.press('Enter');
    await r.page.getByRole('heading', { level: 1, name: last, exact: true }).waitFor();
    await r.assertClean();
  } finally {
    await r.close();
  }
});
