// api.js - the admin API client.  The session lives in the HttpOnly cookie
// (the browser sends it; this code never sees it); the CSRF token is kept in
// memory only and re-read from GET /api/v1/session after a reload.  Every
// request but GET/HEAD carries X-CSRF-Token.

const BASE = '/api/v1';
let csrf = null;
let current = null;
let onSessionEnd = () => {};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  describe() {
    let text = this.message || `The server answered ${this.status}.`;
    if (this.code && this.status) text += ` (${this.status} ${this.code})`;
    if (this.retryAfter) text += ` Try again in ${this.retryAfter} seconds.`;
    return text;
  }
}

export function setSessionEndHandler(fn) {
  onSessionEnd = fn;
}

export function session() {
  return current;
}

export function role() {
  return current ? current.role : null;
}

// What the role may change (docs/api.md's role table): the pages show only
// what the API would allow.
export function can(what) {
  const r = role();
  if (what === 'keys') return r === 'admin' || r === 'operator';
  if (what === 'admin') return r === 'admin';
  return false;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export function seg(name) {
  return encodeURIComponent(name);
}

export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'The server cannot be reached (network error).', null);
  }
  let doc = null;
  const text = await res.text();
  if (text) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      doc = null;
    }
  }
  if (!res.ok) {
    const code = doc && typeof doc.error === 'string' ? doc.error : null;
    const msg = doc && typeof doc.message === 'string' ? doc.message : `The server answered ${res.status}.`;
    const err = new ApiError(res.status, code, msg, res.headers.get('Retry-After'));
    if (res.status === 401 && !opts.signIn && current) {
      current = null;
      csrf = null;
      onSessionEnd('Your session has ended: sign in again.');
    }
    throw err;
  }
  return doc;
}

function adopt(doc) {
  current = doc;
  csrf = doc && typeof doc.csrf === 'string' ? doc.csrf : null;
  return doc;
}

export async function signIn(body) {
  return adopt(await api('POST', '/session', body, { signIn: true }));
}

// After a reload: the cookie may still hold a session; its CSRF token comes back.
export async function resume() {
  return adopt(await api('GET', '/session', undefined, { signIn: true }));
}

export async function signOut() {
  try {
    await api('DELETE', '/session', undefined, { signIn: true });
  } finally {
    current = null;
    csrf = null;
  }
}

// Every page of a listing that pages with `next` (keys: cursor; audit: after/before).
export async function allPages(path, params, listKey, cursorName, progress) {
  const out = [];
  let p = { ...params };
  for (let i = 0; i < 10000; i += 1) {
    const doc = await api('GET', path + query(p));
    const items = doc[listKey] || [];
    out.push(...items);
    if (progress) progress(out.length);
    if (doc.next === null || doc.next === undefined || items.length === 0) break;
    p = { ...p, [cursorName]: doc.next };
  }
  return out;
}
