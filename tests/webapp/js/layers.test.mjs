import test from 'node:test';
import assert from 'node:assert/strict';
import {
  axis, halves, upsample, shownArg, labelsOf, confidence, predictionPixels, labelPixels, labelLut, patched,
} from '../../../webapp/static/canvas/layers.js';

const close = (a, b, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);
const b64 = (typed) => Buffer.from(typed.buffer).toString('base64');

test('float16 decoding: normal, negative, subnormal, zero, infinities', () => {
  const out = halves(new Uint16Array([0x3c00, 0xc000, 0x3800, 0x0001, 0x0000, 0x7c00, 0xfc00, 0x7bff]));
  assert.deepEqual(Array.from(out.slice(0, 3)), [1, -2, 0.5]);
  close(out[3], 2 ** -24, 1e-12);
  assert.equal(out[4], 0);
  assert.equal(out[5], Infinity); assert.equal(out[6], -Infinity);
  assert.equal(out[7], 65504);
  assert.ok(Number.isNaN(halves(new Uint16Array([0x7e00]))[0]));
});

test("bilinear weights follow PyTorch's rule (align_corners=False, clamped at both ends)", () => {
  // 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper neighbour clamped)
  const a = axis(2, 4, 4, 1);
  assert.deepEqual(Array.from(a.i0), [0, 0, 0, 1]);
  assert.deepEqual(Array.from(a.i1), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(a.w1), [0, 0.25, 0.75, 0.25]);
  // a layer of half the image's size samples every other image pixel (1, 3): the same weights there
  const h = axis(2, 4, 2, 2);
  assert.deepEqual(Array.from(h.w1), [0.25, 0.25]);
  assert.deepEqual(Array.from(h.i0), [0, 1]);
  const same = axis(3, 3, 3, 1);  // no resizing: each pixel its own cell
  assert.deepEqual(Array.from(same.i0), [0, 1, 2]);
  assert.deepEqual(Array.from(same.w1), [0, 0, 0]);
});

function prediction(K, h, w, fill, extra = {}) {
  const L = new Float32Array(K * h * w);
  fill(L);
  return Object.assign({ logits: b64(L), dtype: 'float32', grid: [h, w], channels: K, size: [h * 2, w * 2],
    classes: [...Array(K).keys()], generation: 3, version: 5, interim: false }, extra);
}

test('upsampled argmax: a left / right split of a 1x2 grid stays split down the middle', () => {
  // channel 0 wins in the left cell, channel 1 in the right
  const p = prediction(2, 1, 2, (L) => { L.set([2, -2], 0); L.set([-2, 2], 2); });
  const P = upsample(p, 4, 2);
  assert.deepEqual(Array.from(P.plainArg), [0, 0, 1, 1, 0, 0, 1, 1]);
  assert.equal(P.version, 5);
  assert.deepEqual(labelsOf(P, true), [0, 0, 1, 1, 0, 0, 1, 1]);
});

test('float16 scores decode to the same layer as float32', () => {
  const p32 = prediction(2, 1, 2, (L) => { L.set([2, -2], 0); L.set([-2, 2], 2); });
  const h = new Uint16Array([0x4000, 0xc000, 0xc000, 0x4000]);  // 2, -2, -2, 2
  const p16 = Object.assign({}, p32, { logits: b64(h), dtype: 'float16' });
  assert.deepEqual(Array.from(upsample(p16, 4, 2).plainArg), Array.from(upsample(p32, 4, 2).plainArg));
});

test('follow edges shows the server layer once it came, the bilinear one before and when off', () => {
  const P = upsample(prediction(2, 1, 2, () => {}), 4, 2);
  assert.equal(shownArg(P, true), P.plainArg);
  P.edgeArg = new Uint8Array(8).fill(1);
  assert.equal(shownArg(P, true), P.edgeArg);
  assert.equal(shownArg(P, false), P.plainArg);
  P.classes = [0, null];  // a channel of no class reads 255
  assert.deepEqual(labelsOf(P, true), Array(8).fill(255));
});

test('confidence and uncertainty: equal scores give 1/K and full entropy; a sure pixel none', () => {
  const flat = upsample(prediction(3, 1, 1, () => {}), 2, 2);
  confidence(flat);
  for (const c of flat.conf) close(c, 1 / 3);
  for (const e of flat.ent) close(e, 1);
  const sure = upsample(prediction(2, 1, 1, (L) => L.set([50, -50])), 2, 2);
  confidence(sure);
  for (const c of sure.conf) close(c, 1);
  for (const e of sure.ent) close(e, 0, 1e-6);
});

test('the overlay rule: class colours, hidden classes transparent, confidence and uncertainty alpha', () => {
  const P = upsample(prediction(2, 1, 2, (L) => { L.set([2, -2], 0); L.set([-2, 2], 2); }), 4, 2);
  const colours = [[10, 20, 30], null];  // channel 1's class is toggled off
  const out = predictionPixels(P, new Uint8ClampedArray(4 * 8), { colours, mode: 'classes', followEdges: true });
  assert.deepEqual(Array.from(out.slice(0, 4)), [10, 20, 30, 255]);
  assert.deepEqual(Array.from(out.slice(8, 12)), [0, 0, 0, 0]);
  const conf = predictionPixels(P, new Uint8ClampedArray(4 * 8), { colours, mode: 'confidence', followEdges: true });
  assert.ok(conf[3] > 127 && conf[3] <= 255);
  const unc = predictionPixels(P, new Uint8ClampedArray(4 * 8), { colours, mode: 'uncertainty', followEdges: true });
  assert.deepEqual(Array.from(unc.slice(8, 11)), [255, 0, 160]);  // every pixel, shown or not
  assert.equal(unc[3], Math.round(255 * P.ent[0]));
});

test('the label layer: class colours by index, unlabelled transparent, only the box asked for', () => {
  const lut = labelLut([{ index: 0, color: '#ff0000' }, { index: 2, color: '#0000ff' }], (h) => [parseInt(h.slice(1, 3), 16), 0, parseInt(h.slice(5, 7), 16)]);
  const map = Uint8Array.from([0, 255, 2, 2, 0, 255]);  // 3 x 2
  const all = labelPixels(map, 3, [0, 0, 3, 2], lut, new Uint8ClampedArray(4 * 6));
  assert.deepEqual(Array.from(all.slice(0, 12)), [255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 255]);
  const box = labelPixels(map, 3, [1, 1, 3, 2], lut, new Uint8ClampedArray(4 * 2));
  assert.deepEqual(Array.from(box), [255, 0, 0, 255, 0, 0, 0, 0]);
});

test("an edit's delta patches its box in a copy; a delta that does not fit is refused", () => {
  const map = new Uint8Array(4 * 3).fill(255);
  const out = patched(map, 4, 3, [1, 1, 3, 3], Uint8Array.from([1, 2, 3, 4]));
  assert.deepEqual(Array.from(out), [255, 255, 255, 255, 255, 1, 2, 255, 255, 3, 4, 255]);
  assert.ok(map.every((v) => v === 255));
  assert.equal(patched(map, 4, 3, [1, 1, 3, 3], new Uint8Array(3)), null);
  assert.equal(patched(map, 4, 3, [3, 0, 5, 1], new Uint8Array(2)), null);
  assert.equal(patched(null, 4, 3, [0, 0, 1, 1], new Uint8Array(1)), null);
  assert.equal(patched(new Uint8Array(5), 4, 3, [0, 0, 1, 1], new Uint8Array(1)), null);
});
