import test from 'node:test';
import assert from 'node:assert/strict';
import { fitView, toImage, toScreen, zoomAt, panBy, clampPt, MAX_SCALE, MIN_SCALE } from '../../../webapp/static/canvas/view.js';

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test('fit: the whole image, centred, as large as the stage allows', () => {
  const v = fitView(800, 400, 1000, 250, null);  // width-bound
  close(v.s, 0.8);
  // the image's corners land symmetric about the stage's centre
  const a = toScreen(v, -0.5, -0.5), b = toScreen(v, 999.5, 249.5);
  close(a.sx, 0); close(b.sx, 800); close((a.sy + b.sy) / 2, 200);
  assert.equal(fitView(0, 400, 1000, 250, null), null);
  assert.equal(fitView(800, 400, 0, 0, null), null);
});

test('fit to a suggested region: the box fills 80 % of the stage, centred', () => {
  const v = fitView(500, 500, 4000, 3000, [1000, 1000, 1100, 1050]);
  close(v.s, 4);
  const c = toScreen(v, 1050 - 0.5, 1025 - 0.5);
  close(c.sx, 250); close(c.sy, 250);
});

test('screen and image coordinates are inverse (pixel centres at +0.5)', () => {
  const v = { s: 3, x: 17, y: -4 };
  const p = toImage(v, 100, 50), q = toScreen(v, p.x, p.y);
  close(q.sx, 100); close(q.sy, 50);
  const c = toImage(v, 17 + 1.5, -4 + 1.5);  // the centre of pixel (0, 0)
  close(c.x, 0); close(c.y, 0);
});

test('the wheel zooms about the pointer and stays within its limits', () => {
  const v = { s: 1, x: 10, y: 20 };
  const before = toImage(v, 300, 200);
  const z = zoomAt(v, 300, 200, -500);
  assert.ok(z.s > v.s);
  const after = toImage(z, 300, 200);
  close(after.x, before.x, 1e-9); close(after.y, before.y, 1e-9);
  assert.equal(zoomAt({ s: 60, x: 0, y: 0 }, 0, 0, -1e6).s, MAX_SCALE);
  assert.equal(zoomAt({ s: 0.05, x: 0, y: 0 }, 0, 0, 1e6).s, MIN_SCALE);
  assert.deepEqual(v, { s: 1, x: 10, y: 20 });  // a new view, the old one untouched
});

test('pan moves from where the drag started', () => {
  assert.deepEqual(panBy({ s: 2, x: 5, y: 6 }, 10, -3), { s: 2, x: 15, y: 3 });
});

test('a stroke point is kept within a brush radius of the image', () => {
  assert.deepEqual(clampPt(100, 50, { x: -40, y: 20 }, 4), [-5, 20]);
  assert.deepEqual(clampPt(100, 50, { x: 200, y: 70 }, 0), [100, 50]);
  assert.deepEqual(clampPt(100, 50, { x: 3, y: 4 }, 8), [3, 4]);
});
