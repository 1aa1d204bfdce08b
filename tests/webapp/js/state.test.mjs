import test from 'node:test';
import assert from 'node:assert/strict';
import { createState, hexRgb, classById, classByIndex, defaultClassId, readUrl, writeUrl } from '../../../webapp/static/canvas/state.js';

const CLASSES = [
  { id: 7, name: 'Background', color: '#000000', index: 0 },
  { id: 9, name: 'cell', color: '#ff8000', index: 1 },
];

test('class lookup by id and by index; the brush starts on the first non-background class', () => {
  assert.equal(classById(CLASSES, 9).name, 'cell');
  assert.equal(classByIndex(CLASSES, 0).id, 7);
  assert.equal(classById(CLASSES, 8), undefined);
  assert.equal(defaultClassId(CLASSES), 9);
  assert.equal(defaultClassId([CLASSES[0]]), 7);
  assert.equal(defaultClassId([]), null);
  assert.equal(defaultClassId(null), null);
});

test('hex colours', () => {
  assert.deepEqual(hexRgb('#ff8000'), [255, 128, 0]);
  assert.deepEqual(hexRgb('#0a0b0c'), [10, 11, 12]);
});

test('a fresh state per canvas (nothing shared between two)', () => {
  const a = createState(), b = createState();
  a.hidden.add(1); a.strokes.push({});
  assert.equal(b.hidden.size, 0);
  assert.equal(b.strokes.length, 0);
  assert.equal(a.tool, 'brush');
});

test('what the URL keeps survives the round trip', () => {
  const S = createState();
  Object.assign(S, {
    cfg: { image: { id: 42 } }, tool: 'point', classId: 9, userView: true, view: { s: 2.5, x: -10, y: 3.5 },
    autoTrain: false, followEdges: false,
  });
  const url = writeUrl('http://h/?keep=1&view=1,2,3', S);
  const q = new URL(url).searchParams;
  assert.equal(q.get('keep'), '1');
  assert.deepEqual(readUrl(new URL(url).search), {
    tool: 'point', classId: 9, autoTrain: false, followEdges: false, restoreView: { s: 2.5, x: -10, y: 3.5 }, imageId: 42,
  });
  // the defaults are not written: a plain link stays plain
  Object.assign(S, { userView: false, autoTrain: true, followEdges: true });
  const plain = new URL(writeUrl(url, S)).searchParams;
  assert.equal(plain.has('view') || plain.has('auto') || plain.has('edges'), false);
});

test('a bad URL is ignored, not half applied', () => {
  assert.deepEqual(readUrl('?tool=lasso&class=x&view=0,1,2&image='), {});
  assert.deepEqual(readUrl('?view=1,2'), {});
  assert.deepEqual(readUrl('?view=2,NaN,1'), {});
});
