import test from 'node:test';
import assert from 'node:assert/strict';
import { EditQueue, afterCommit, clientId, backoffMs, refusedStatus, statusLine } from '../../../webapp/static/canvas/edits.js';

class Storage {  // sessionStorage's interface
  constructor() { this.m = new Map(); }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { this.m.set(k, String(v)); }
}

function queue(replies, extra = {}) {
  // a queue whose server answers from `replies` in turn (a reply: {ok, status, body}, or 'down' to throw)
  const sent = [], committed = [], idles = [], slept = [];
  const q = new EditQueue(Object.assign({
    send: async (item) => {
      sent.push(item.op.op_id);
      const r = replies.shift();
      if (r === 'down' || r === undefined) throw new Error('unreachable');
      return r;
    },
    storage: new Storage(), key: 'k',
    committed: async (item, body) => { committed.push([item.op.op_id, body]); },
    idle: (hadError) => idles.push(hadError),
    changed: () => {},
    sleep: async (ms) => { slept.push(ms); },
    now: () => 0,
  }, extra));
  return { q, sent, committed, idles, slept };
}
const ok = (body = {}) => ({ ok: true, status: 200, body });

test('edits are sent one at a time, in order, each committed before the next', async () => {
  const t = queue([ok({ n: 1 }), ok({ n: 2 }), ok({ n: 3 })]);
  t.q.items.push({ image: 1, op: { op_id: 'a' } }, { image: 1, op: { op_id: 'b' } });
  await t.q.push(2, { op_id: 'c' });
  assert.deepEqual(t.sent, ['a', 'b', 'c']);
  assert.deepEqual(t.committed.map(([id, b]) => [id, b.n]), [['a', 1], ['b', 2], ['c', 3]]);
  assert.equal(t.q.items.length, 0);
  assert.deepEqual(t.idles, [false]);
});

test('an unreachable server: the same op again, after a growing wait, until it is committed', async () => {
  const t = queue(['down', { ok: false, status: 503, body: {} }, { ok: false, status: 429, body: {} }, ok()]);
  await t.q.push(1, { op_id: 'x' });
  assert.deepEqual(t.sent, ['x', 'x', 'x', 'x']);
  assert.deepEqual(t.slept, [backoffMs(1), backoffMs(2), backoffMs(3)]);
  assert.ok(t.slept[0] < t.slept[1] && t.slept[1] < t.slept[2]);
  assert.equal(t.committed.length, 1);
  assert.equal(t.q.failures, 0);  // (a success resets the wait)
  assert.deepEqual(t.idles, [true]);  // (the page reloads what the server has after trouble)
  assert.equal(backoffMs(50), 10000);
});

test('a refused edit is dropped and reported with the server\'s reason, the next one still goes', async () => {
  const t = queue([{ ok: false, status: 404, body: { detail: 'no image 9' } }, ok()]);
  t.q.items.push({ image: 9, op: { op_id: 'a', kind: 'stroke' } });
  await t.q.push(1, { op_id: 'b', kind: 'undo' });
  assert.deepEqual(t.sent, ['a', 'b']);
  assert.deepEqual(t.q.refused, [{ kind: 'stroke', reason: 'no image 9' }]);
  assert.deepEqual(t.committed.map(([id]) => id), ['b']);
  assert.equal(refusedStatus(422), true);
  assert.equal(refusedStatus(408), false);
  assert.equal(refusedStatus(500), false);
});

test('one pump at a time: a push while sending joins the running one', async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const sent = [];
  const q = new EditQueue({
    send: async (item) => { sent.push(item.op.op_id); await gate; return ok(); },
    storage: new Storage(), key: 'k', committed: async () => {}, idle: () => {}, changed: () => {},
  });
  const first = q.push(1, { op_id: 'a' });
  await q.push(1, { op_id: 'b' });  // returns at once: the first pump sends it
  assert.deepEqual(sent, ['a']);
  release();
  await first;
  assert.deepEqual(sent, ['a', 'b']);
});

test('the unsaved edits survive a reload, each once', async () => {
  const storage = new Storage();
  const a = queue([], { storage });
  a.q.sending = true;  // (a server that never answers: nothing leaves the queue)
  await a.q.push(3, { op_id: 'a', kind: 'stroke' });
  await a.q.push(3, { op_id: 'b', kind: 'undo' });
  const b = queue([], { storage });
  b.q.items.push({ image: 3, op: { op_id: 'b', kind: 'undo' } });
  b.q.load();
  assert.deepEqual(b.q.items.map((i) => i.op.op_id), ['b', 'a']);
  assert.equal(b.q.pendingFor(3), true);
  assert.equal(b.q.pendingFor(4), false);
  storage.setItem('k', '{not json');
  const c = queue([], { storage });
  c.q.load();
  assert.equal(c.q.items.length, 0);
});

test('after a commit: drawn edits need nothing, deltas are patched, a version gap or a refine reloads', () => {
  const body = (b) => Object.assign({ applied: true, duplicate: false, label_version: 5 }, b);
  assert.equal(afterCommit({ kind: 'stroke' }, body(), 4), null);
  assert.equal(afterCommit({ kind: 'point' }, body(), 4), null);
  assert.equal(afterCommit({ kind: 'undo' }, body({ delta: { box: [0, 0, 1, 1] } }), 4), 'delta');
  assert.equal(afterCommit({ kind: 'stroke' }, body(), 3), 'reload');  // someone else's edit in between
  assert.equal(afterCommit({ kind: 'undo' }, body({ delta: {} }), 2), 'reload');
  assert.equal(afterCommit({ kind: 'stroke' }, body({ duplicate: true, label_version: 9 }), 3), null);  // (a retry)
  assert.equal(afterCommit({ kind: 'refine' }, body({ added: 120 }), 4), 'reload');
  assert.equal(afterCommit({ kind: 'refine' }, body({ added: 0, applied: false, label_version: 4 }), 4), null);
  assert.equal(afterCommit({ kind: 'undo' }, body({ applied: false, label_version: 4 }), 4), null);  // nothing to undo
  assert.equal(afterCommit({ kind: 'clear' }, body({ duplicate: true, applied: false }), 5), 'reload');
});

test("the tab's client id is made once and kept", () => {
  const s = new Storage();
  let n = 0;
  const make = () => `id${++n}`;
  assert.equal(clientId(s, make), 'id1');
  assert.equal(clientId(s, make), 'id1');
  const broken = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('denied'); } };
  assert.equal(clientId(broken, make), 'id2');
});

test('the status line says what is unsaved, retrying, refused', () => {
  const q = { items: [], refused: [], retryAt: 0 };
  assert.deepEqual(statusLine(q, { hasImage: false, now: 0 }), ['No image: add some in the Images tab.', 'ok']);
  assert.deepEqual(statusLine(q, { hasImage: true, notice: 'Refine labelled 5 px', now: 0 }), ['All edits saved · Refine labelled 5 px', 'ok']);
  q.items.push({}, {});
  assert.deepEqual(statusLine(q, { hasImage: true, now: 0 }), ['2 unsaved edits · saving…', 'busy']);
  q.retryAt = 2500;
  assert.deepEqual(statusLine(q, { hasImage: true, now: 0 }), ['2 unsaved edits · server unreachable, retrying in 3 s', 'warn']);
  q.refused.push({ kind: 'stroke', reason: 'gone' });
  const [text, cls] = statusLine(q, { hasImage: true, now: 0 });
  assert.equal(cls, 'bad');
  assert.match(text, /1 edit NOT saved \(last: stroke: gone\)$/);
});
