// Shared helpers of the console's browser tests (run by test_console.py,
// which starts keywardd and passes it in the environment):
//   KW_URL        https://127.0.0.1:PORT (the admin listener)
//   KW_CA         the server's TLS certificate (self-signed: it is its own CA)
//   KW_TOKEN      an admin API token
//   KW_ARTEFACTS  where screenshots go (build/artefacts/console/)
//   KW_EKM_CERT, KW_EKM_KEY, KW_EKM_CN  an EKM client identity the server allows
// Chromium is Debian's (/usr/bin/chromium), driven by playwright-core; no
// browser is ever downloaded.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const URL_BASE = need('KW_URL');
export const CA_FILE = need('KW_CA');
export const ADMIN_TOKEN = need('KW_TOKEN');
export const ARTEFACTS = need('KW_ARTEFACTS');
export const CA_PEM = fs.readFileSync(CA_FILE, 'utf8');
export const UI = URL_BASE + '/ui/';
// every wait is bounded: a locator's action or assertion, a navigation
export const STEP_MS = 15000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through tests/console/test_console.py (make test-console)`);
  return v;
}

// The contract's headers (docs/console.md), on every response of the admin listener.
export const CSP = "default-src 'self'; frame-ancestors 'none'";

// The server certificate's SPKI pin: Chromium trusts that one key, and only it,
// instead of ignoring every certificate error.
function spkiPin(pem) {
  const der = new crypto.X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.KW_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    // Playwright gives each launch a fresh --user-data-dir of its own
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--ignore-certificate-errors-spki-list=' + spkiPin(CA_PEM)],
  });
}

// One browser context (one cookie jar: one role) with its page, and the
// checks every test ends with: headers of every response, no console error,
// no uncaught exception (CSP violations are console errors in Chromium).
// opts.consoleErrors false: only headers are checked (pages that are not
// the console's, where Chromium logs its own 404s).
export async function newRole(browser, label, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  const problems = [];
  const pending = new Set();
  page.on('response', (resp) => {
    const p = checkResponse(resp).then((errs) => problems.push(...errs.map((e) => `${label}: ${e}`)),
      (e) => problems.push(`${label}: ${resp.url()}: headers unreadable: ${e.message}`));
    pending.add(p);
    p.finally(() => pending.delete(p));
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error' || opts.consoleErrors === false) return;
    const url = msg.location()?.url || '';
    // an API error answer (4xx) that the page shows in words is expected;
    // Chromium logs every non-2xx fetch as "Failed to load resource"
    if (/Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text()) &&
        url.startsWith(URL_BASE + '/api/v1/')) return;
    problems.push(`${label}: console error: ${msg.text()} (${url})`);
  });
  page.on('pageerror', (err) => problems.push(`${label}: uncaught: ${err.message}`));
  return {
    context, page, label,
    // call at the end of a test: every response seen so far passed the checks
    async assertClean() {
      await Promise.allSettled([...pending]);
      assert.deepEqual(problems, [], 'header, cookie, console or CSP problems');
    },
    async close() { await context.close(); },
  };
}

function contentKind(resp) {
  const ct = (resp.headers()['content-type'] || '').toLowerCase();
  const u = new URL(resp.url());
  if (resp.status() !== 200 && resp.status() !== 304) return 'document';
  // the console's static files but its HTML (CSS, JS, the icon): revalidated
  if (/^(text|application)\/(javascript|css)/.test(ct) || /\.(m?js|css)$/.test(u.pathname) ||
      (u.pathname.startsWith('/ui/') && !ct.startsWith('text/html') && /\.[a-z]+$/.test(u.pathname))) return 'asset';
  return 'document';   // HTML, API JSON, errors, health: never stored
}

// The list of what is wrong with one response (empty: all right).
export async function checkResponse(resp) {
  // a file the page makes itself (a download) is not an answer of the server
  if (/^(blob|data):/.test(resp.url())) return [];
  if (!resp.url().startsWith(URL_BASE + '/')) return [`${resp.url()}: a request left the server`];
  const errs = [];
  const where = `${resp.request().method()} ${new URL(resp.url()).pathname} ${resp.status()}`;
  const arr = await resp.headersArray();
  const one = (n) => {
    const v = arr.filter((h) => h.name.toLowerCase() === n).map((h) => h.value);
    return v.length === 1 ? v[0] : (v.length ? v.join(' | ') : undefined);
  };
  const want = { 'content-security-policy': CSP, 'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer', 'x-content-type-options': 'nosniff' };
  for (const [n, v] of Object.entries(want))
    if (one(n) !== v) errs.push(`${where}: ${n} is ${JSON.stringify(one(n))}, want ${JSON.stringify(v)}`);
  const cc = one('cache-control');
  if (contentKind(resp) === 'asset') {
    if (cc !== 'no-cache') errs.push(`${where}: cache-control ${JSON.stringify(cc)}, want "no-cache" (CSS/JS)`);
    const etag = one('etag');
    if (!etag || !/^"[^"]+"$/.test(etag)) errs.push(`${where}: etag ${JSON.stringify(etag)}, want a strong ETag`);
  } else if (cc !== 'no-store') {
    errs.push(`${where}: cache-control ${JSON.stringify(cc)}, want "no-store"`);
  }
  for (const h of arr.filter((x) => x.name.toLowerCase() === 'set-cookie'))
    for (const line of h.value.split('\n')) errs.push(...cookieProblems(line).map((e) => `${where}: ${e}`));
  return errs;
}

// Set-Cookie attributes the contract asks for: __Host- name, HttpOnly,
// Secure, SameSite=Strict, Path=/ and no Domain.
export function cookieProblems(line) {
  const [nv, ...attrs] = line.split(';').map((s) => s.trim());
  const a = new Map(attrs.map((s) => { const i = s.indexOf('='); return i < 0 ? [s.toLowerCase(), true] : [s.slice(0, i).toLowerCase(), s.slice(i + 1)]; }));
  const errs = [];
  if (!nv.startsWith('__Host-')) errs.push(`cookie ${nv.split('=')[0]} is not __Host- prefixed`);
  if (!a.has('httponly')) errs.push('cookie without HttpOnly');
  if (!a.has('secure')) errs.push('cookie without Secure');
  if (String(a.get('samesite')).toLowerCase() !== 'strict') errs.push('cookie without SameSite=Strict');
  if (a.get('path') !== '/') errs.push('cookie without Path=/');
  if (a.has('domain')) errs.push('cookie with a Domain');
  return errs;
}

// ---- the console ----------------------------------------------------------

export const PAGES = ['Overview', 'Keys', 'Azure EKM', 'AWS XKS', 'Audit', 'Attestation', 'Access'];

export async function openSignIn(page) {
  await page.goto(UI, { waitUntil: 'load' });
  await page.getByLabel('API token', { exact: true }).waitFor();
}

export async function signInToken(page, token = ADMIN_TOKEN) {
  await openSignIn(page);
  await page.getByLabel('API token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Sign in with token' }).click();
  await signedIn(page);
}

export async function signInPassword(page, user, password) {
  await openSignIn(page);
  await page.getByLabel('User name', { exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await signedIn(page);
}

export async function signedIn(page) {
  await page.getByRole('navigation').getByRole('button', { name: 'Sign out' }).waitFor();
}

// Goes to a page through its nav link; waits for its h1 and for the end of
// any aria-busy loading.
export async function goTo(page, name) {
  await page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { level: 1, name, exact: true }).waitFor();
  await settled(page);
}

export async function settled(page) {
  await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'), null, { timeout: STEP_MS });
}

// A table row whose first cell holds name (a key, a store).
export function rowOf(page, name) {
  return page.getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }).first() });
}

// The current session's cookie and CSRF token, as the page holds them.
export async function session(page) {
  const cookies = await page.context().cookies(URL_BASE);
  const c = cookies.find((x) => x.name.startsWith('__Host-'));
  assert.ok(c, 'no __Host- session cookie in the browser');
  const r = await api('GET', '/api/v1/session', { cookie: `${c.name}=${c.value}` });
  assert.equal(r.status, 200, r.text);
  return { cookie: `${c.name}=${c.value}`, csrf: r.json.csrf, doc: r.json };
}

// Screenshots of the current page at 1280x800 and 390x844 (full page) into
// KW_ARTEFACTS; at 390 px the page must not scroll sideways.
export async function screenshots(page, name) {
  fs.mkdirSync(ARTEFACTS, { recursive: true });
  const file = name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  const before = page.viewportSize();
  try {
    for (const [w, h] of [[1280, 800], [390, 844]]) {
      await page.setViewportSize({ width: w, height: h });
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      await page.screenshot({ path: path.join(ARTEFACTS, `${file}-${w}.png`), fullPage: true, timeout: STEP_MS });
      if (w === 390) {
        const m = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth }));
        assert.ok(m.sw <= m.cw, `${name} at 390 px scrolls sideways (scrollWidth ${m.sw} > ${m.cw})`);
      }
    }
  } finally {
    await page.setViewportSize(before);
  }
}

// ---- the API, as a client outside the browser -----------------------------

// One HTTPS request to the server, trusting its certificate only.  headers:
// {authorization} defaults to the admin token unless a cookie is given.
// Returns {status, headers, text, json}.
export function api(method, p, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.cookie) headers.cookie = opts.cookie;
  else if (opts.token !== null) headers.authorization = 'Bearer ' + (opts.token || ADMIN_TOKEN);
  if (opts.csrf) headers['x-csrf-token'] = opts.csrf;
  return request(method, URL_BASE + p, { headers, body: opts.body, cert: opts.cert, key: opts.key });
}

export function request(method, url, { headers = {}, body, cert, key } = {}) {
  const data = body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body));
  if (data !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca: CA_PEM, cert, key, timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

// A name no other test uses.
export function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(3).toString('hex')}`;
}
