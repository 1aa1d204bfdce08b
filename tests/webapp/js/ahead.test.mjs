import test from 'node:test';
import assert from 'node:assert/strict';
import { Ahead } from '../../../webapp/static/canvas/ahead.js';

function ahead({ failPictures = 0 } = {}) {
  const fetched = [], released = [];
  let fails = failPictures;
  const a = new Ahead({
    fetchPicture: async (im, full) => {
      fetched.push(`${im.id}:${full ? 'full' : 'screen'}`);
      if (fails > 0) { fails -= 1; throw new Error('offline'); }
      return { bitmap: `${im.id}:${full}` };
    },
    fetchLabels: async (id) => { fetched.push(`labels ${id}`); return { idx: new Uint8Array(1), points: [], version: 1 }; },
    release: (b) => released.push(b.bitmap),
  });
  return { a, fetched, released };
}
const tick = () => new Promise((r) => setTimeout(r, 0));
const im = (id, extra = {}) => Object.assign({ id, label_version: 1, labelled: true }, extra);

test('each picture and label map is fetched once, and again only after a failure', async () => {
  const t = ahead({ failPictures: 1 });
  await assert.rejects(t.a.picture(im(1), false));
  await tick();
  assert.equal(t.a.pictures.size, 0);  // the failure is forgotten
  const [p, q] = await Promise.all([t.a.picture(im(1), false), t.a.picture(im(1), false)]);
  assert.equal(p, q);
  await t.a.labelsOf(im(1)); await t.a.labelsOf(im(1));
  await t.a.labelsOf(im(1, { label_version: 2 }));  // an edit since: fetched anew
  assert.deepEqual(t.fetched, ['1:screen', '1:screen', 'labels 1', 'labels 1']);
});

test('keep: the neighbours are fetched ahead, far images dropped and released, the shown picture kept', async () => {
  const t = ahead();
  const shown = await t.a.picture(im(1), true);
  await t.a.picture(im(1), false);
  t.a.keep(im(1), [im(2), im(3, { labelled: false })], shown);
  await tick();
  assert.deepEqual(new Set(t.fetched), new Set(['1:full', '1:screen', '2:screen', 'labels 2', '3:screen']));
  // page on to 3: 1 is now a neighbour (its screen copy stays, its original goes), 2 goes
  const shown3 = await t.a.picture(im(3), false);
  t.a.keep(im(3, { labelled: false }), [im(1)], shown3);
  await tick();
  assert.deepEqual([...t.a.pictures.keys()].sort(), ['1:screen', '3:screen']);
  assert.deepEqual(t.released.sort(), ['1:true', '2:false']);
  assert.deepEqual([...t.a.labels.keys()], ['1:1']);  // 2's labels dropped, 1's (a neighbour now) fetched ahead
  t.a.keep(im(5), [], shown3);  // the picture on screen is never released (the next one replaces it)
  await tick();
  assert.deepEqual(t.released.sort(), ['1:false', '1:true', '2:false']);
  assert.equal(t.a.pictures.size, 0);
});
