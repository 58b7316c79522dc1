// app.js - the console's entry point: sign-in, the shell (header, nav,
// sign-out) and the hash router (#/overview #/keys #/ekm #/xks #/audit
// #/attestation #/access).
import { h, replace, alertBox, showError, field } from './dom.js';
import { ApiError, resume, signIn, signOut, session, setSessionEndHandler } from './api.js';
import * as overview from './page_overview.js';
import * as keys from './page_keys.js';
import * as ekm from './page_ekm.js';
import * as xks from './page_xks.js';
import * as audit from './page_audit.js';
import * as attestation from './page_attestation.js';
import * as access from './page_access.js';

const PAGES = [
  ['overview', 'Overview', overview],
  ['keys', 'Keys', keys],
  ['ekm', 'Azure EKM', ekm],
  ['xks', 'AWS XKS', xks],
  ['audit', 'Audit', audit],
  ['attestation', 'Attestation', attestation],
  ['access', 'Access', access],
];

const root = () => document.getElementById('app');
let shell = null;

function signInView(message) {
  shell = null;
  const notice = h('p', { class: 'notice', role: 'status' }, message || '');
  notice.hidden = !message;

  const token = field('API token', h('input', { type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' }));
  const tokenErr = alertBox();
  const tokenForm = h('form', { class: 'card', 'aria-labelledby': 'signin-token-h' },
    h('h2', { id: 'signin-token-h' }, 'With an API token'),
    token.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in with token')),
    tokenErr);

  const user = field('User name', h('input', { type: 'text', autocomplete: 'username', required: true, spellcheck: 'false' }));
  const pass = field('Password', h('input', { type: 'password', autocomplete: 'current-password', required: true }));
  const userErr = alertBox();
  const userForm = h('form', { class: 'card', 'aria-labelledby': 'signin-user-h' },
    h('h2', { id: 'signin-user-h' }, 'With a user name and password'),
    user.wrap, pass.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
    userErr);

  async function attempt(form, box, body, clearInputs) {
    showError(box, null);
    form.setAttribute('aria-busy', 'true');
    try {
      await signIn(body);
      clearInputs.forEach((i) => { i.value = ''; });
      startShell();
    } catch (e) {
      showError(box, e.code === 'locked'
        ? e.message
        : e);
    } finally {
      form.setAttribute('aria-busy', 'false');
    }
  }
  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    attempt(tokenForm, tokenErr, { token: token.input.value.trim() }, [token.input]);
  });
  userForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    attempt(userForm, userErr, { user: user.input.value.trim(), password: pass.input.value }, [pass.input]);
  });

  replace(root(), h('main', { class: 'signin', id: 'main' },
    h('h1', {}, 'Sign in to Keyward'),
    notice,
    h('div', { class: 'signin-forms' }, tokenForm, userForm),
    h('p', { class: 'hint' }, 'The session is kept in a secure, HttpOnly cookie of this site only; signing out ends it everywhere.')));
}

function startShell() {
  const s = session();
  const menu = h('button', { type: 'button', class: 'menu-toggle', 'aria-expanded': 'false', 'aria-controls': 'nav-list' }, 'Menu');
  const links = PAGES.map(([id, name]) => h('li', {}, h('a', { href: `#/${id}`, 'data-page': id }, name)));
  const out = h('button', { type: 'button', class: 'signout' }, 'Sign out');
  const outErr = alertBox();
  const list = h('ul', { id: 'nav-list', class: 'nav-list' }, links, h('li', {}, out));
  const nav = h('nav', { 'aria-label': 'Main' }, menu, list);
  const who = h('p', { class: 'who' }, `${s.principal || s.name} · ${s.role}`);
  const main = h('main', { id: 'main', tabindex: '-1' });
  menu.addEventListener('click', () => {
    const open = menu.getAttribute('aria-expanded') !== 'true';
    menu.setAttribute('aria-expanded', String(open));
    list.classList.toggle('open', open);
  });
  list.addEventListener('click', (ev) => {
    if (ev.target.tagName === 'A') {
      menu.setAttribute('aria-expanded', 'false');
      list.classList.remove('open');
    }
  });
  out.addEventListener('click', async () => {
    showError(outErr, null);
    try {
      await signOut();
      window.location.hash = '#/overview';
      signInView('Signed out.');
    } catch (e) {
      showError(outErr, e);
    }
  });
  replace(root(),
    h('a', { href: '#main', class: 'skip' }, 'Skip to the page'),
    h('header', { class: 'top' }, h('span', { class: 'brand' }, 'Keyward'), who, nav, outErr),
    main);
  shell = { main, links };
  route();
}

let renderSeq = 0;
function route() {
  if (!shell) return;
  const id = (window.location.hash.match(/^#\/([a-z]+)/) || [])[1] || 'overview';
  const page = PAGES.find(([pid]) => pid === id) || PAGES[0];
  for (const li of shell.links) {
    const a = li.firstChild;
    if (a.dataset.page === page[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${page[1]} · Keyward console`;
  renderSeq += 1;
  const seq = renderSeq;
  const h1 = h('h1', { tabindex: '-1' }, page[1]);
  const body = h('div', { class: 'page' });
  replace(shell.main, h1, body);
  page[2].render(body, { isCurrent: () => seq === renderSeq && shell !== null })
    .catch((e) => {
      const box = alertBox();
      body.appendChild(box);
      showError(box, e instanceof ApiError ? e : `The page failed: ${e.message}`);
    });
  if (document.activeElement && document.activeElement.tagName !== 'BODY') h1.focus();
}

async function boot() {
  setSessionEndHandler((msg) => signInView(msg));
  window.addEventListener('hashchange', route);
  try {
    await resume();
    startShell();
  } catch (e) {
    signInView(e.status === 401 || e.status === 404 ? '' : e.describe());
  }
}

boot();
