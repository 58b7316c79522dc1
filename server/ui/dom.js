// dom.js - building the page from nodes: text always goes in as text
// (textContent / text nodes), never as markup; no inline style or handler
// attributes (the Content-Security-Policy forbids them).

let counter = 0;
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    child.forEach((c) => append(el, c));
  } else if (child instanceof Node) {
    el.appendChild(child);
  } else {
    el.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k === 'value' || k === 'checked' || k === 'hidden' || k === 'disabled' || k === 'selected') {
      el[k] = v;
    } else if (k === 'style') {
      throw new Error('no style attributes (CSP)');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

// h('button', {class: 'x', onclick: fn}, 'text', child...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// An error region: role="alert", empty and hidden until an error is shown.
export function alertBox() {
  return h('p', { class: 'error', role: 'alert', hidden: true });
}

export function showError(box, err) {
  if (!box) return;
  box.textContent = err ? errorText(err) : '';
  box.hidden = !err;
}

export function errorText(err) {
  if (!err) return '';
  if (typeof err === 'string') return err;
  if (err.describe) return err.describe();
  return err.message || String(err);
}

// A labelled control: <div class="field"><label for=id>label</label> control hint alert</div>.
// Returns {wrap, input, error}.
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const error = alertBox();
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    const hid = uid('hint');
    control.setAttribute('aria-describedby', hid);
    parts.push(h('small', { id: hid, class: 'hint' }, hint));
  }
  parts.push(error);
  return { wrap: h('div', { class: 'field' }, parts), input: control, error };
}

export function select(options, value) {
  const el = h('select', {});
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    el.appendChild(h('option', { value: v, selected: v === value }, label));
  }
  return el;
}

// Runs fn while region shows a progress element and aria-busy="true".
export async function busy(region, label, fn) {
  const prog = h('progress', { class: 'busy', 'aria-label': label });
  const note = h('span', { class: 'busy-note', role: 'status' }, label);
  region.setAttribute('aria-busy', 'true');
  region.appendChild(prog);
  region.appendChild(note);
  try {
    return await fn((done, total) => {
      if (total) {
        prog.max = total;
        prog.value = done;
      }
      note.textContent = total ? `${label} ${done} / ${total}` : `${label} ${done}`;
    });
  } finally {
    region.setAttribute('aria-busy', 'false');
    prog.remove();
    note.remove();
  }
}

// A table with a header row; rows is an array of <tr> or arrays of cells.
export function table(caption, headers, rows) {
  const t = h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => (r instanceof Node ? r : h('tr', {}, r.map((c) => h('td', {}, c)))))));
  return h('div', { class: 'table-wrap' }, t);
}

export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename, class: 'visually-hidden' }, filename);
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A read-only command or value with a Copy button (and a note if copying fails).
export function copyBlock(text, what) {
  const code = h('pre', { class: 'copy' }, h('code', {}, text));
  const note = h('span', { class: 'copy-note', role: 'status' });
  const btn = h('button', {
    type: 'button',
    class: 'secondary',
    'aria-label': `Copy ${what}`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        note.textContent = 'Copied.';
      } catch (e) {
        note.textContent = 'The browser refused the clipboard: select the text and copy it.';
      }
    },
  }, 'Copy');
  return h('div', { class: 'copy-block' }, code, h('div', { class: 'copy-actions' }, btn, note));
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
}

// An age in milliseconds (a heartbeat's) in words: "0.4 s ago", "12 min ago".
export function fmtAge(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '—';
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function lines(text) {
  return text.split('\n').map((x) => x.trim()).filter((x) => x !== '');
}
