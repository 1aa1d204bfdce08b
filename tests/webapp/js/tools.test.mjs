import test from 'node:test';
import assert from 'node:assert/strict';
import { typing, keyAction, stepRadius, pointAt, extendPath, strokeOp, MAX_RADIUS } from '../../../webapp/static/canvas/tools.js';

const key = (k, mods = {}) => Object.assign({ key: k, ctrlKey: false, metaKey: false, altKey: false, shiftKey: false }, mods);

test('keys: undo and redo with Ctrl or Cmd, classes 1-9, tools, sizes, fit', () => {
  assert.deepEqual(keyAction(key('z', { ctrlKey: true })), { do: 'undo' });
  assert.deepEqual(keyAction(key('Z', { ctrlKey: true, shiftKey: true })), { do: 'redo' });
  assert.deepEqual(keyAction(key('z', { metaKey: true })), { do: 'undo' });
  assert.deepEqual(keyAction(key('y', { ctrlKey: true })), { do: 'redo' });
  assert.deepEqual(keyAction(key('3')), { do: 'class', n: 2 });
  assert.deepEqual(keyAction(key('E')), { do: 'tool', tool: 'eraser' });
  assert.deepEqual(keyAction(key('o')), { do: 'tool', tool: 'point' });
  assert.deepEqual(keyAction(key(']')), { do: 'size', key: ']' });
  assert.deepEqual(keyAction(key('f')), { do: 'fit' });
  // the browser's and the page's own keys are left alone
  assert.equal(keyAction(key('b', { ctrlKey: true })), null);
  assert.equal(keyAction(key('1', { altKey: true })), null);
  assert.equal(keyAction(key('0')), null);
  assert.equal(keyAction(key('p')), null);  // (p / n: the page's, webapp/assets.py)
});

test('a key typed into a text field is not a shortcut; checkboxes and sliders are not text', () => {
  assert.equal(typing({ tagName: 'INPUT', type: 'text' }), true);
  assert.equal(typing({ tagName: 'TEXTAREA' }), true);
  assert.equal(typing({ tagName: 'SELECT' }), true);
  assert.equal(typing({ tagName: 'DIV', isContentEditable: true }), true);
  assert.equal(typing({ tagName: 'INPUT', type: 'range' }), false);
  assert.equal(typing({ tagName: 'INPUT', type: 'checkbox' }), false);
  assert.equal(typing({ tagName: 'CANVAS' }), false);
  assert.equal(typing(null), false);
});

test('brush size: a fifth per press, at least a pixel, within 1..MAX_RADIUS', () => {
  assert.equal(stepRadius(8, ']'), 10);
  assert.equal(stepRadius(10, '['), 8);
  assert.equal(stepRadius(1, ']'), 2);
  assert.equal(stepRadius(1, '['), 1);
  assert.equal(stepRadius(MAX_RADIUS, ']'), MAX_RADIUS);
  let r = 1, n = 0;
  while (r < MAX_RADIUS) { r = stepRadius(r, ']'); n += 1; }
  assert.ok(n <= 20, `${n} presses from 1 px to the broadest brush`);
});

test('a click removes the nearest point it falls on', () => {
  const pts = [{ x: 10, y: 10, radius: 6 }, { x: 14, y: 10, radius: 6 }, { x: 100, y: 100, radius: 1 }];
  assert.equal(pointAt(pts, { x: 13, y: 10 }, 2), pts[1]);
  assert.equal(pointAt(pts, { x: 11, y: 10 }, 2), pts[0]);
  assert.equal(pointAt(pts, { x: 103, y: 100 }, 4), pts[2]);  // a small point: the tolerance
  assert.equal(pointAt(pts, { x: 103, y: 100 }, 2), null);
  assert.equal(pointAt([], { x: 0, y: 0 }, 8), null);
});

test('a path grows by a quarter radius at a time; its op carries the class only for a stroke', () => {
  const path = { kind: 'stroke', classId: 3, radius: 8, pts: [[0, 0]] };
  assert.equal(extendPath(path, [1, 1]), null);
  assert.deepEqual(extendPath(path, [2, 0]), [[0, 0], [2, 0]]);
  assert.equal(path.pts.length, 2);
  assert.deepEqual(strokeOp(path, 'a'), { op_id: 'a', kind: 'stroke', radius: 8, points: [[0, 0], [2, 0]], class_id: 3 });
  const erase = { kind: 'erase', classId: null, radius: 1, pts: [[0, 0]] };
  assert.deepEqual(extendPath(erase, [0.5, 0]), [[0, 0], [0.5, 0]]);
  assert.equal('class_id' in strokeOp(erase, 'b'), false);
});
