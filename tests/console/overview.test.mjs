// The overview's node list (issue 16): on the single appliance the console
// tests start (SQLCipher, [db] node_name from test_console.py), one row,
// this node, ACTIVE in a green badge, marked as this node, with the words
// "Single appliance (SQLCipher)"; the same for an auditor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, newRole, rowOf, screenshots, signInToken, unique } from './lib.mjs';

const T = { timeout: 90000 };
const NODE = process.env.KW_NODE;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function checkNodeTable(p) {
  await p.getByRole('heading', { level: 1, name: 'Overview', exact: true }).waitFor();
  const table = p.getByRole('table', { name: 'Nodes sharing the key store' });
  await table.waitFor();
  const headers = await table.getByRole('columnheader').allInnerTexts();
  assert.deepEqual(headers, ['Node', 'State', 'Address', 'Version', 'Last heartbeat', 'This node']);
  const rows = table.locator('tbody tr');
  assert.equal(await rows.count(), 1, 'a single appliance lists one node');
  const row = rowOf(p, NODE);
  const cells = await row.getByRole('cell').allInnerTexts();
  const doc = (await api('GET', '/api/v1/nodes')).json;
  assert.equal(cells[0], NODE);
  assert.equal(cells[1].trim(), 'ACTIVE');
  assert.equal(cells[2], doc.nodes[0].address);
  assert.equal(cells[3], doc.nodes[0].version);
  assert.match(cells[4], /^\d+\.\d s ago$/);
  assert.equal(cells[5], 'This node');
  // the state is a badge coloured by its class (the word is there too)
  const badge = row.locator('span.badge');
  assert.equal(await badge.getAttribute('class'), 'badge ok');
  assert.equal(await badge.innerText(), 'ACTIVE');
  const color = await badge.evaluate((e) => getComputedStyle(e).color);
  assert.equal(color, 'rgb(30, 123, 52)', 'the ACTIVE badge is not --ok green');
  await p.getByRole('main').getByText('Single appliance (SQLCipher).', { exact: true }).waitFor();
}

test('overview: the node table lists this node, ACTIVE', T, async () => {
  assert.ok(NODE, 'KW_NODE is not set: run through tests/console/test_console.py');
  const n = await api('GET', '/api/v1/nodes');
  assert.equal(n.status, 200, n.text);
  assert.equal(n.json.self, NODE, n.text);
  const r = await newRole(browser, 'overview');
  const p = r.page;
  try {
    await signInToken(p);
    await checkNodeTable(p);
    await screenshots(p, 'overview-nodes');
    await r.assertClean();
  } finally {
    await r.close();
  }
});

test('overview: an auditor sees the node table too', T, async () => {
  const t = await api('POST', '/api/v1/tokens', { body: { name: unique('ov-aud'), role: 'auditor' } });
  assert.equal(t.status, 201, t.text);
  const r = await newRole(browser, 'overview-auditor');
  const p = r.page;
  try {
    await signInToken(p, t.json.token);
    await checkNodeTable(p);
    await r.assertClean();
  } finally {
    await r.close();
  }
});

// A fleet (issue 16) as the API would describe it, replayed over this
// server's real answer (its headers kept): one row per node, each state in
// its colour, this node marked, a DEGRADED node said above the table, and a
// node's text shown as text, never as markup.
test("overview: a fleet's nodes, each state in its badge", T, async () => {
  const now = Date.now();
  const node = (id, state, age, self, detail = '') => ({
    id, address: `10.0.0.${id.length}:9998`, version: '0.1.0', schema: 1, state, detail,
    started_ms: now - 3600000, seen_ms: now - age, age_ms: age, self,
  });
  const fleet = {
    engine: 'postgresql', self: 'kw-a', state: 'DEGRADED', detail: 'the database cannot be reached',
    nodes: [node('kw-a', 'DEGRADED', 300, true, '<b>db</b> down'), node('kw-bb', 'ACTIVE', 800, false),
      node('kw-ccc', 'UNAVAILABLE', 754000, false)],
  };
  const r = await newRole(browser, 'overview-fleet');
  const p = r.page;
  try {
    // the server's own answer's headers (the contract's, checked by newRole), the fleet's body
    const real = await api('GET', '/api/v1/nodes');
    assert.equal(real.status, 200, real.text);
    const headers = Object.fromEntries(Object.entries(real.headers)
      .filter(([k]) => !['content-length', 'connection', 'date', 'keep-alive'].includes(k)));
    await p.route('**/api/v1/nodes', (route) => route.fulfill({ status: 200, headers, body: JSON.stringify(fleet) }));
    await signInToken(p);
    const table = p.getByRole('table', { name: 'Nodes sharing the key store' });
    await table.waitFor();
    assert.equal(await table.locator('tbody tr').count(), 3);
    const want = { 'kw-a': ['DEGRADED', 'warn', 'rgb(138, 90, 0)', 'This node'],
      'kw-bb': ['ACTIVE', 'ok', 'rgb(30, 123, 52)', ''],
      'kw-ccc': ['UNAVAILABLE', 'bad', 'rgb(179, 38, 30)', ''] };
    for (const [id, [state, cls, color, mark]] of Object.entries(want)) {
      const row = rowOf(p, id);
      const badge = row.locator('span.badge');
      assert.equal(await badge.innerText(), state);
      assert.equal(await badge.getAttribute('class'), `badge ${cls}`);
      assert.equal(await badge.evaluate((e) => getComputedStyle(e).color), color, `${id}'s badge colour`);
      const cells = await row.getByRole('cell').allInnerTexts();
      assert.equal(cells[5], mark);
    }
    const a = await rowOf(p, 'kw-a').getByRole('cell').allInnerTexts();
    assert.equal(a[1].replace(/\s+/g, ' ').trim(), 'DEGRADED <b>db</b> down', 'detail shown as text');
    assert.equal(await rowOf(p, 'kw-a').locator('b').count(), 0, 'a node detail became markup');
    assert.equal((await rowOf(p, 'kw-ccc').getByRole('cell').allInnerTexts())[4], '13 min ago');
    const main = p.getByRole('main');
    await main.getByText('A fleet on PostgreSQL: 3 nodes, 1 active.', { exact: true }).waitFor();
    await main.getByText('This node is DEGRADED.').waitFor();
    await main.getByText('the database cannot be reached').waitFor();
    await screenshots(p, 'overview-fleet');
    await r.assertClean();
  } finally {
    await r.close();
  }
});
