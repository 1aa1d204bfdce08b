import test from 'node:test';
import assert from 'node:assert/strict';
import { Waker, predictionLoop, EventClient } from '../../../webapp/static/canvas/events.js';

test('a wake ends the wait at once; without one the wait times out', async () => {
  const w = new Waker();
  const t0 = Date.now();
  const p = w.next(10000);
  w.wake();
  await p;
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(w.wakes, 1);
  await w.next(5);  // (no wake: the timeout)
  w.wake();  // a wake with nobody waiting is counted, not lost
  assert.equal(w.wakes, 2);
});

test('the prediction loop asks, applies, and sleeps until woken; errors retry; it ends with its image', async () => {
  const w = new Waker();
  const replies = [null, { status: 500 }, { status: 200, json: async () => ({ version: 1 }) }, { status: 204 },
    { status: 200, json: async () => ({ version: 2 }) }];
  const applied = [], slept = [];
  let asked = 0, alive = true;
  const loop = predictionLoop({
    alive: () => alive, waker: w,
    request: async () => { asked += 1; return replies.shift(); },
    apply: (p) => applied.push(p.version),
    sleep: async (ms) => { slept.push(ms); },
    idleMs: 60000,
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(applied, [1]);  // after two retries
  assert.deepEqual(slept, [2000, 2000]);
  assert.equal(asked, 3);  // asleep now: no request without news
  w.wake();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(asked, 4);  // 204: nothing newer; asleep again
  w.wake();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(applied, [1, 2]);
  alive = false;  // another image opened
  w.wake();
  await loop;
  assert.equal(asked, 5);
});

test('a wake during a request is not lost: the loop asks again instead of sleeping', async () => {
  const w = new Waker();
  let asked = 0, alive = true;
  const loop = predictionLoop({
    alive: () => alive, waker: w, idleMs: 60000,
    request: async () => {
      asked += 1;
      if (asked === 1) w.wake();  // a head came while the first request was on its way
      if (asked === 2) alive = false;
      return { status: 204 };
    },
    apply: () => {},
  });
  await loop;
  assert.equal(asked, 2);
});

// ---------------------------------------------------------------- the event stream, with fake browser parts
function browser() {
  const sources = [], channels = [], waiting = [];
  let held = false;
  class FakeSource {
    constructor(url) { this.url = url; this.listeners = {}; sources.push(this); }
    addEventListener(type, fn) { this.listeners[type] = fn; }
    emit(type, data, id) { this.listeners[type]({ data: JSON.stringify(data), lastEventId: String(id) }); }
  }
  class FakeChannel {
    constructor(name) { this.name = name; channels.push(this); }
    postMessage(data) { for (const c of channels) if (c !== this && c.name === this.name && c.onmessage) c.onmessage({ data }); }
  }
  const locks = {
    request(name, fn) {  // one holder at a time; the next waits until release()
      if (!held) { held = true; fn(); } else waiting.push(fn);
    },
    release() { held = false; const next = waiting.shift(); if (next) { held = true; next(); } },
  };
  return { sources, env: { EventSource: FakeSource, BroadcastChannel: FakeChannel, navigator: { locks } }, locks };
}

test('one stream per browser: the lock holder opens it and passes every event to the other tabs', () => {
  const b = browser();
  const got = { a: [], b: [] };
  const make = (tab) => new EventClient({
    url: '/api/v1/projects/p/events', name: 'probeseg-events:p', types: ['labels', 'head'], env: b.env,
    handle: (type, data) => got[tab].push([type, data]),
  }).start();
  const A = make('a'), B = make('b');
  assert.equal(b.sources.length, 1);  // B waits for the lock
  assert.equal(b.sources[0].url, '/api/v1/projects/p/events');
  b.sources[0].emit('labels', { image_id: 4 }, 7);
  b.sources[0].emit('head', { version: 2 }, 8);
  assert.deepEqual(got.a, [['labels', { image_id: 4 }], ['head', { version: 2 }]]);
  assert.deepEqual(got.b, got.a);
  assert.equal(A.seq, 8); assert.equal(B.seq, 8);
  // A's tab closes: B takes the lock and resumes after the last event it saw (the server replays the rest)
  b.locks.release();
  assert.equal(b.sources.length, 2);
  assert.equal(b.sources[1].url, '/api/v1/projects/p/events?after=8');
});

test('without Web Locks a tab keeps a stream of its own; unknown event types are ignored', () => {
  const b = browser();
  delete b.env.navigator;
  const got = [];
  const c = new EventClient({ url: '/e', name: 'n', types: ['head'], env: b.env, handle: (t) => got.push(t) }).start();
  assert.equal(b.sources.length, 1);
  c.dispatch('mystery', {}, 3);
  b.sources[0].emit('head', {}, 4);
  assert.deepEqual(got, ['head']);
  assert.equal(c.seq, 4);
});
