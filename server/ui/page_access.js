// page_access.js - API tokens (list, create: shown once, revoke) and console
// users (list, create, delete, change password).  The API refuses to remove
// the last admin credential (409 bad_state): said here in words.
import { h, replace, alertBox, showError, field, select, table, fmtTime, copyBlock } from './dom.js';
import { api, can, session, seg } from './api.js';

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const ROLES = ['admin', 'operator', 'auditor'];

function lastAdminText(e) {
  if (e && e.code === 'bad_state') {
    return `Refused: no administrator would be left. Create another admin token or admin user first. (${e.message})`;
  }
  return e;
}

function passwordProblem(p) {
  if (p.length < 12) return 'A password has at least 12 characters.';
  if (new TextEncoder().encode(p).length > 128) return 'A password has at most 128 bytes.';
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'A password has no control characters.';
  return null;
}

function passwordForm(name, label, onDone) {
  const pw = field(label, h('input', { type: 'password', autocomplete: 'new-password' }), '12 to 128 characters.');
  const err = alertBox();
  const form = h('form', { class: 'inline-form', novalidate: true }, pw.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Set password')), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const p = passwordProblem(pw.input.value);
    showError(pw.error, p);
    if (p) return;
    try {
      await api('POST', `/users/${seg(name)}/password`, { password: pw.input.value });
      pw.input.value = '';
      onDone();
    } catch (e) {
      showError(err, e);
    }
  });
  return form;
}

export async function render(el, ctx) {
  const me = session();
  if (!can('admin')) {
    el.append(h('p', {}, 'Only an admin manages API tokens and console users.'));
    if (me && me.kind === 'user' && me.role !== 'auditor') {
      const ok = h('p', { role: 'status', class: 'ok-note' });
      el.append(h('section', { class: 'card', 'aria-labelledby': 'acc-me' }, h('h2', { id: 'acc-me' }, 'My password'),
        passwordForm(me.name, 'New password', () => { ok.textContent = 'Password changed; your other sessions have ended.'; }), ok));
    }
    return;
  }
  const tokSec = h('section', { 'aria-labelledby': 'acc-tok' }, h('h2', { id: 'acc-tok' }, 'API tokens'));
  const tokList = h('div', {});
  const tokErr = alertBox();
  const userSec = h('section', { 'aria-labelledby': 'acc-users' }, h('h2', { id: 'acc-users' }, 'Console users'));
  const userList = h('div', {});
  const userErr = alertBox();
  const shown = h('div', { 'aria-live': 'polite' });
  tokSec.append(shown, tokErr, tokList);
  userSec.append(userErr, userList);
  el.append(tokSec, userSec);

  async function loadTokens() {
    showError(tokErr, null);
    try {
      const doc = await api('GET', '/tokens');
      if (!ctx.isCurrent()) return;
      const rows = (doc.tokens || []).map((t) => {
        const err = alertBox();
        const cell = h('td', {});
        if (!t.revoked) {
          cell.append(h('button', {
            type: 'button',
            class: 'danger',
            'aria-label': `Revoke ${t.name}`,
            onclick: async (ev) => {
              showError(err, null);
              ev.target.disabled = true;
              try {
                await api('DELETE', `/tokens/${seg(t.id)}`);
                await loadTokens();
              } catch (e) {
                ev.target.disabled = false;
                showError(err, lastAdminText(e));
              }
            },
          }, 'Revoke'));
        }
        cell.append(err);
        return h('tr', { 'data-token': t.id }, h('td', {}, t.name), h('td', {}, h('code', {}, t.id)), h('td', {}, t.role),
          h('td', {}, fmtTime(t.created)), h('td', {}, t.revoked ? fmtTime(t.revoked) : 'active'), cell);
      });
      replace(tokList, table(null, ['Name', 'ID', 'Role', 'Created', 'Revoked', 'Actions'], rows));
    } catch (e) {
      showError(tokErr, e);
    }
  }

  async function loadUsers() {
    showError(userErr, null);
    try {
      const doc = await api('GET', '/users');
      if (!ctx.isCurrent()) return;
      const rows = (doc.users || []).map((u) => {
        const err = alertBox();
        const slot = h('div', {});
        const pwBtn = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-label': `Change password of ${u.name}` }, 'Change password');
        pwBtn.addEventListener('click', () => {
          if (slot.firstChild) {
            replace(slot);
            pwBtn.setAttribute('aria-expanded', 'false');
            return;
          }
          pwBtn.setAttribute('aria-expanded', 'true');
          replace(slot, passwordForm(u.name, `New password for ${u.name}`, () => {
            replace(slot, h('p', { role: 'status', class: 'ok-note' }, 'Password changed.'));
            pwBtn.setAttribute('aria-expanded', 'false');
          }));
        });
        const del = h('button', {
          type: 'button',
          class: 'danger',
          'aria-label': `Delete user ${u.name}`,
          onclick: async (ev) => {
            showError(err, null);
            ev.target.disabled = true;
            try {
              await api('DELETE', `/users/${seg(u.name)}`);
              await loadUsers();
            } catch (e) {
              ev.target.disabled = false;
              showError(err, lastAdminText(e));
            }
          },
        }, 'Delete user');
        return h('tr', { 'data-user': u.name }, h('td', {}, u.name), h('td', {}, u.role), h('td', {}, fmtTime(u.created)),
          h('td', {}, fmtTime(u.last_login)), h('td', {}, String(u.failed_logins ?? 0)),
          h('td', {}, u.locked_until ? `until ${fmtTime(u.locked_until)}` : 'no'),
          h('td', {}, h('div', { class: 'row-actions' }, pwBtn, del), slot, err));
      });
      replace(userList, rows.length ? table(null, ['Name', 'Role', 'Created', 'Last sign-in', 'Failed sign-ins', 'Locked', 'Actions'], rows)
        : h('p', {}, 'No console user yet.'));
    } catch (e) {
      showError(userErr, e);
    }
  }

  // create a token
  const tName = field('Token name', h('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' }));
  const tRole = field('Token role', select(ROLES, 'operator'));
  const tErr = alertBox();
  const tForm = h('form', { class: 'card', 'aria-labelledby': 'acc-tc', novalidate: true }, h('h3', { id: 'acc-tc' }, 'Create a token'),
    tName.wrap, tRole.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create token')), tErr);
  tForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(tErr, null);
    const n = tName.input.value.trim();
    showError(tName.error, NAME_RE.test(n) ? null : 'A token name is 1-64 of A-Z a-z 0-9 . _ -.');
    if (!NAME_RE.test(n)) return;
    try {
      const doc = await api('POST', '/tokens', { name: n, role: tRole.input.value });
      tName.input.value = '';
      replace(shown, h('div', { class: 'secret card' },
        h('p', { class: 'banner warn', role: 'alert' }, `Token ${doc.name} (${doc.role}) is shown once: copy it now. Only its SHA-256 is kept.`),
        copyBlock(doc.token, 'new token'),
        h('button', { type: 'button', class: 'secondary', onclick: () => replace(shown) }, 'I have saved it')));
      await loadTokens();
    } catch (e) {
      showError(e.code === 'exists' ? tName.error : tErr, e);
    }
  });
  tokSec.append(tForm);

  // create a user
  const uName = field('New user name', h('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' }));
  const uRole = field('User role', select(ROLES, 'operator'));
  const uPw = field('Initial password', h('input', { type: 'password', autocomplete: 'new-password' }), '12 to 128 characters.');
  const uErr = alertBox();
  const uForm = h('form', { class: 'card', 'aria-labelledby': 'acc-uc', novalidate: true }, h('h3', { id: 'acc-uc' }, 'Create a user'),
    uName.wrap, uRole.wrap, uPw.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create user')), uErr);
  uForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(uErr, null);
    const n = uName.input.value.trim();
    showError(uName.error, NAME_RE.test(n) ? null : 'A user name is 1-64 of A-Z a-z 0-9 . _ -.');
    const p = passwordProblem(uPw.input.value);
    showError(uPw.error, p);
    if (!NAME_RE.test(n) || p) return;
    try {
      await api('POST', '/users', { name: n, role: uRole.input.value, password: uPw.input.value });
      uName.input.value = '';
      uPw.input.value = '';
      await loadUsers();
    } catch (e) {
      showError(e.code === 'exists' ? uName.error : /password/.test(e.message) ? uPw.error : uErr, e);
    }
  });
  userSec.append(uForm);
  await Promise.all([loadTokens(), loadUsers()]);
}
