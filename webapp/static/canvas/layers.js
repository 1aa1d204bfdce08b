// The layers' pixels, as typed arrays (the canvas puts them on screen): the prediction overlay from the
// patch-grid scores (the same bilinear rule as core.features, so the layer is what `predict` gives at its
// size), its confidence and uncertainty views, and the label layer from the stored label map.

export function axis(nIn, nOut, count, scale) {
  // core.features._axis_weights for the output pixels sampled by the layer: source index rule of
  // PyTorch's bilinear upsampling (align_corners=False), lower clamp at 0, upper neighbour clamped.
  const i0 = new Int32Array(count), i1 = new Int32Array(count), w1 = new Float64Array(count);
  for (let u = 0; u < count; u++) {
    const d = Math.min(nOut - 1, Math.floor((u + 0.5) * scale));  // the image pixel this layer pixel shows
    const src = Math.max(0, (d + 0.5) * nIn / nOut - 0.5);
    const a = Math.min(nIn - 1, Math.floor(src));
    i0[u] = a; i1[u] = a < nIn - 1 ? a + 1 : a; w1[u] = src - a;
  }
  return { i0, i1, w1 };
}

export function halves(u) {
  // IEEE 754 binary16 -> float32 (the scores travel as float16: half the bytes)
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i], e = (v >> 10) & 31, m = v & 1023, s = v & 32768 ? -1 : 1;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1024 + m) * 2 ** (e - 25);
  }
  return out;
}

export function base64Bytes(b64) { return Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0)); }

export function upsample(p, ow, oh) {
  // The grid scores of GET .../prediction upsampled separably (rows first, then columns; the same weights as
  // core's interp_matrix) to an ow x oh layer, and their argmax; confidence and entropy later, when shown.
  const bytes = base64Bytes(p.logits);
  const L = p.dtype === 'float16' ? halves(new Uint16Array(bytes.buffer)) : new Float32Array(bytes.buffer);
  const [h, w] = p.grid, K = p.channels, [H, W] = p.size;
  const ax = axis(w, W, ow, W / ow), ay = axis(h, H, oh, H / oh);
  const R = new Float32Array(K * oh * w);  // [K, oh, w]: the grid interpolated to the layer's rows
  for (let k = 0; k < K; k++) {
    for (let y = 0; y < oh; y++) {
      const a = k * h * w + ay.i0[y] * w, b = k * h * w + ay.i1[y] * w, ly = ay.w1[y], o = (k * oh + y) * w;
      for (let x = 0; x < w; x++) R[o + x] = L[a + x] * (1 - ly) + L[b + x] * ly;
    }
  }
  const arg = new Uint8Array(ow * oh), best = new Float32Array(ow * oh).fill(-Infinity);
  for (let k = 0; k < K; k++) {
    for (let y = 0; y < oh; y++) {
      const o = (k * oh + y) * w, row = y * ow;
      for (let x = 0; x < ow; x++) {
        const lx = ax.w1[x];
        const val = R[o + ax.i0[x]] * (1 - lx) + R[o + ax.i1[x]] * lx;
        if (val > best[row + x]) { best[row + x] = val; arg[row + x] = k; }
      }
    }
  }
  return {
    plainArg: arg, edgeArg: null, edgesAsked: false, best, R, ax, K, w, oh, ow, conf: null, ent: null,
    classes: p.classes, generation: p.generation, version: p.version, interim: p.interim,
  };
}

export function shownArg(P, followEdges) {
  // "follow edges": the server's classes by core.edges at this layer's size (what predict gives there);
  // off, or until they come: the bilinear argmax computed here
  return followEdges && P.edgeArg ? P.edgeArg : P.plainArg;
}
export function labelsOf(P, followEdges) {
  // the class index of every layer pixel (255: a channel of no class)
  return Array.from(shownArg(P, followEdges), (ch) => (P.classes[ch] == null ? 255 : P.classes[ch]));
}

export function confidence(P) {
  // softmax maximum and normalised entropy per layer pixel (once: only the confidence views need them)
  if (P.conf) return;
  const n = P.ow * P.oh, z = new Float32Array(n), hs = new Float32Array(n);
  for (let k = 0; k < P.K; k++) {
    for (let y = 0; y < P.oh; y++) {
      const o = (k * P.oh + y) * P.w, row = y * P.ow;
      for (let x = 0; x < P.ow; x++) {
        const lx = P.ax.w1[x], i = row + x;
        const d = P.R[o + P.ax.i0[x]] * (1 - lx) + P.R[o + P.ax.i1[x]] * lx - P.best[i];
        const e = Math.exp(d);
        z[i] += e; hs[i] -= e * d;
      }
    }
  }
  const norm = P.K > 1 ? Math.log(P.K) : 1;
  P.conf = new Float32Array(n); P.ent = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    P.conf[i] = 1 / z[i];
    P.ent[i] = Math.max(0, (hs[i] / z[i] + Math.log(z[i])) / norm);  // H = log Z - sum(p d)
  }
}

export function predictionPixels(P, out, { colours, mode, followEdges }) {
  // The overlay rule, into `out` (RGBA, the layer's size): `colours` maps a channel to [r, g, b], or null for a
  // channel not shown (no class, or a class toggled off). classes: opaque class colours (the canvas applies
  // the opacity); confidence: the colour with alpha = softmax maximum; uncertainty: magenta, alpha = entropy.
  if (mode !== 'classes') confidence(P);
  const arg = shownArg(P, followEdges);
  for (let i = 0, j = 0; i < arg.length; i++, j += 4) {
    if (mode === 'uncertainty') {
      out[j] = 255; out[j + 1] = 0; out[j + 2] = 160; out[j + 3] = Math.round(255 * P.ent[i]);
      continue;
    }
    const c = colours[arg[i]];
    if (!c) continue;
    out[j] = c[0]; out[j + 1] = c[1]; out[j + 2] = c[2];
    out[j + 3] = mode === 'confidence' ? Math.round(255 * P.conf[i]) : 255;
  }
  return out;
}

export function labelPixels(map, W, box, lut, out) {
  // The label layer within box [x0, y0, x1, y1) of a W-wide label map, into `out` (RGBA, the box's size);
  // lut: 256 x RGBA by class index (255, unlabelled, stays transparent).
  const [x0, y0, x1, y1] = box;
  for (let y = y0, j = 0; y < y1; y++) {
    for (let i = y * W + x0, end = i + x1 - x0; i < end; i++, j += 4) {
      const k = map[i] * 4;
      out[j] = lut[k]; out[j + 1] = lut[k + 1]; out[j + 2] = lut[k + 2]; out[j + 3] = lut[k + 3];
    }
  }
  return out;
}
export function labelLut(classes, rgbOf) {
  const lut = new Uint8ClampedArray(256 * 4);
  for (const c of classes || []) { const [r, g, b] = rgbOf(c.color); lut.set([r, g, b, 255], c.index * 4); }
  return lut;
}

export function patched(map, W, H, box, idx) {
  // A label map with the box [x0, y0, x1, y1) replaced by `idx` (the box's values, row by row): an edit's
  // delta. A copy (the fetched-ahead entry may share the map); null when the delta does not fit.
  const [x0, y0, x1, y1] = box;
  const w = x1 - x0, h = y1 - y0;
  if (!map || map.length !== W * H || idx.length !== w * h || x0 < 0 || y0 < 0 || x1 > W || y1 > H) return null;
  const out = map.slice();
  for (let y = 0; y < h; y++) out.set(idx.subarray(y * w, (y + 1) * w), (y0 + y) * W + x0);
  return out;
}
