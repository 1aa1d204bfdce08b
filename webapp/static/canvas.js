// probeseg annotation canvas: the body of gr.HTML's js_on_load (element, props, watch are given).
// The browser draws every layer; edits travel as operations (webapp/api.py, storage/ops.py), one at a
// time, in order, each retried with the same op_id until the server has committed it.
const root = element.querySelector('.ps-root');
const $ = (sel) => root.querySelector(sel);
const PRED_MAX = 1024;  // longest side of the prediction layer (an exact subsample of core's full-size map)
const SCREEN = 1536;  // storage.thumbnails.SCREEN: a bigger image is drawn from a copy this size first
const S = {
  cfg: null, token: 0, img: null, W: 0, H: 0,
  tool: 'brush', classId: null, radius: 8, pointRadius: 6, opacity: 0.5, labelOpacity: 0.7,
  showPred: true, showLabels: true, predMode: 'classes', hidden: new Set(), autoTrain: true, followEdges: true,
  view: { s: 1, x: 0, y: 0 }, userView: false, mouse: null, spaceDown: false, drag: null, path: null,
  labelCanvas: document.createElement('canvas'), predCanvas: document.createElement('canvas'),
  points: [], pred: null, headVersion: null, knownVersion: -1, queue: [], sending: false, failures: 0,
  retryAt: 0, refused: [], drawQueued: false, strokes: [], toggleMs: [], predAbort: null, labelsFor: null,
  restoreView: null, urlTimer: 0, pictures: new Map(), labelsAhead: new Map(), window: [], winPos: 0, navSeq: 0,
  passed: new Set(), events: null, eventsFor: null, eventSeq: 0, othersEdited: null, wakes: 0, headWake: null, headEventAt: null,
  panelTimer: 0,
};
const api = window.__probeseg = window.__probeseg || {};
api.state = S;
api.strokes = S.strokes;   // per stroke: t_up, t_ack, t_head, t_req, t_resp, t_applied, t_paint, t_edges (performance.now(), for bench/ and tests)
api.toggleMs = S.toggleMs;
api.labelsShown = [];

const canvas = $('canvas.ps-view');
const g = canvas.getContext('2d');
const lc = S.labelCanvas.getContext('2d', { willReadFrequently: true });
const pc = S.predCanvas.getContext('2d');

// ------------------------------------------------------------------ config from Python (props.value)
function config() {
  try { return JSON.parse(props.value || '{}'); } catch (e) { return {}; }
}
function classById(id) { return (S.cfg.classes || []).find((c) => c.id === id); }
function classByIndex(i) { return (S.cfg.classes || []).find((c) => c.index === i); }
function hexRgb(hex) { const n = parseInt(hex.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; }
function apiBase() { return S.cfg.api; }
function queueKey() { return 'probeseg-unsaved:' + apiBase(); }

function saveQueue() {
  try { sessionStorage.setItem(queueKey(), JSON.stringify(S.queue.map((q) => ({ image: q.image, op: q.op })))); }
  catch (e) { /* private mode: the queue still lives in this tab */ }
  status();
}
function loadQueue() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(queueKey()) || '[]');
    const known = new Set(S.queue.map((q) => q.op.op_id));
    for (const q of saved) if (!known.has(q.op.op_id)) S.queue.push({ image: q.image, op: q.op, t0: performance.now() });
  } catch (e) { /* ignore a corrupt entry */ }
}

// The URL holds what a reload restores: image, tool, class, the zoom the user chose, auto-train and
// follow-edges when off.
function setUrl() {
  const u = new URL(location.href);
  if (S.cfg && S.cfg.image) u.searchParams.set('image', S.cfg.image.id);
  u.searchParams.set('tool', S.tool);
  if (S.classId != null) u.searchParams.set('class', S.classId);
  if (S.userView) u.searchParams.set('view', [S.view.s.toFixed(4), S.view.x.toFixed(1), S.view.y.toFixed(1)].join(','));
  else u.searchParams.delete('view');
  if (S.autoTrain) u.searchParams.delete('auto'); else u.searchParams.set('auto', '0');
  if (S.followEdges) u.searchParams.delete('edges'); else u.searchParams.set('edges', '0');
  history.replaceState(history.state, '', u);
}
function setUrlSoon() { clearTimeout(S.urlTimer); S.urlTimer = setTimeout(setUrl, 300); }

function readUrl() {
  const q = new URLSearchParams(location.search);
  if (['brush', 'eraser', 'point', 'pan'].includes(q.get('tool'))) S.tool = q.get('tool');
  if (q.get('class')) S.classId = parseInt(q.get('class'), 10);
  if (q.get('auto') === '0') { S.autoTrain = false; $('.ps-auto').checked = false; }
  if (q.get('edges') === '0') { S.followEdges = false; $('.ps-edges').checked = false; }
  const v = (q.get('view') || '').split(',').map(Number);
  if (v.length === 3 && v.every(Number.isFinite) && v[0] > 0) S.restoreView = { s: v[0], x: v[1], y: v[2] };
}

function applyConfig() {
  const prev = S.cfg;
  S.cfg = config();
  if (!S.cfg.api) return;
  followEvents();
  const im0 = S.cfg.image;
  if (prev && prev.image && (S.cfg.nav || 0) < S.navSeq && im0 && S.passed.has(im0.id)) {
    // a reply to a page turn this tab has since gone past (the server has not followed the latest yet):
    // it must not move the canvas back
    S.cfg.image = prev.image; S.cfg.focus = prev.focus; S.cfg.nonce = prev.nonce;
  } else {
    S.window = S.cfg.window || []; S.winPos = Math.floor(S.window.length / 2);
    if ((S.cfg.nav || 0) >= S.navSeq) S.passed = new Set();
    else if (prev && prev.image && im0 && im0.id !== prev.image.id) clearTimeout(S.navTimer);  // the server's move wins
  }
  // The first config that names a project (the component's first value is an empty one): restore the URL.
  const first = !(prev && prev.api);
  if (first) {
    readUrl();
    loadQueue();
  }
  const classes = S.cfg.classes || [];
  if (!classById(S.classId)) {
    const nonBg = classes.find((c) => c.name.toLowerCase() !== 'background');
    S.classId = (nonBg || classes[0] || { id: null }).id;
  }
  if (S.cfg.select != null && classById(S.cfg.select)) { S.classId = S.cfg.select; if (S.tool === 'eraser') S.tool = 'brush'; }
  buildPalette();
  buildToolbar();
  const im = S.cfg.image;
  const same = prev && prev.image && im && prev.image.id === im.id && prev.nonce === S.cfg.nonce;
  if (!same) openImage();
  else {
    if (JSON.stringify(prev.classes) !== JSON.stringify(S.cfg.classes)) { recolourLabels(); paintPrediction(); }
    ahead();
    const f = S.cfg.focus;  // a new suggested region on the image already open: zoom there
    if (f && JSON.stringify(f) !== JSON.stringify(prev.focus)) { S.focus = f; S.userView = false; fitView(); draw(); }
  }
  setUrl();
  pump();
}

// ------------------------------------------------------------------ toolbar and palette
function buildPalette() {
  const box = $('.ps-classes');
  box.replaceChildren();
  (S.cfg.classes || []).forEach((c, n) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'ps-class' + (c.id === S.classId ? ' active' : '');
    b.dataset.classId = c.id;
    b.title = `${c.name} (key ${n + 1})`;
    b.innerHTML = `<span class="ps-sw"></span>${n < 9 ? (n + 1) + ' · ' : ''}`;
    b.querySelector('.ps-sw').style.background = c.color;
    b.append(document.createTextNode(c.name));
    b.onclick = () => pickClass(c.id);
    const eye = document.createElement('input');
    eye.type = 'checkbox'; eye.checked = !S.hidden.has(c.index); eye.title = 'show this class in the prediction';
    eye.className = 'ps-eye';
    eye.onclick = (e) => { e.stopPropagation(); toggleClass(c.index, eye.checked); };
    b.append(eye);
    box.append(b);
  });
}
function pickClass(id) {
  S.classId = id;
  if (S.tool === 'eraser' || S.tool === 'pan') S.tool = 'brush';
  root.querySelectorAll('.ps-class').forEach((b) => b.classList.toggle('active', +b.dataset.classId === id));
  buildToolbar(); setUrl(); draw();
}
function buildToolbar() {
  root.querySelectorAll('[data-tool]').forEach((b) => b.classList.toggle('active', b.dataset.tool === S.tool));
  $('.ps-size').value = S.tool === 'point' ? S.pointRadius : S.radius;
  $('.ps-size-label').textContent = S.tool === 'point' ? 'Point size' : 'Brush size';
  canvas.style.cursor = S.tool === 'pan' ? 'grab' : 'none';
}
function setTool(t) { S.tool = t; buildToolbar(); setUrl(); draw(); }
function toggleClass(index, on) {
  const t0 = performance.now();
  if (on) S.hidden.delete(index); else S.hidden.add(index);
  paintPrediction(); drawNow();
  S.toggleMs.push(performance.now() - t0);
}

root.querySelectorAll('[data-tool]').forEach((b) => { b.onclick = () => setTool(b.dataset.tool); });
$('.ps-size').oninput = (e) => {
  const v = +e.target.value;
  if (S.tool === 'point') S.pointRadius = v; else S.radius = v;
  draw();
};
$('.ps-opacity').oninput = (e) => {
  const t0 = performance.now();
  S.opacity = +e.target.value / 100; drawNow();
  S.toggleMs.push(performance.now() - t0);
};
$('.ps-show-pred').onchange = (e) => { S.showPred = e.target.checked; drawNow(); };
$('.ps-show-labels').onchange = (e) => { S.showLabels = e.target.checked; drawNow(); };
$('.ps-mode').onchange = (e) => {
  const t0 = performance.now();
  S.predMode = e.target.value; paintPrediction(); drawNow();
  S.toggleMs.push(performance.now() - t0);
};
$('.ps-auto').onchange = (e) => { S.autoTrain = e.target.checked; setUrl(); };
$('.ps-edges').onchange = (e) => {
  const t0 = performance.now();
  S.followEdges = e.target.checked; paintPrediction(); drawNow(); setUrl();
  S.toggleMs.push(performance.now() - t0);
  if (S.followEdges) fetchEdges(S.token);  // (not fetched while off)
};
$('.ps-undo').onclick = () => history_('undo');
$('.ps-redo').onclick = () => history_('redo');
$('.ps-clear').onclick = () => {
  if (!S.cfg.image) return;
  if (window.confirm(`Clear every label of ${S.cfg.image.name}? (Undo brings them back.)`)) history_('clear');
};
$('.ps-fit').onclick = () => { S.userView = false; S.focus = null; fitView(); draw(); setUrl(); };

// ------------------------------------------------------------------ image, labels, points
async function fetchOk(url, opts) {
  const res = await fetch(url, Object.assign({ credentials: 'same-origin' }, opts || {}));
  if (!res.ok) throw new Error(`${res.status}`);
  return res;
}

async function openImage() {
  const token = ++S.token;
  // The previous image's prediction request is over: abort it (the browser has 6 connections per host; the
  // page keeps one open, its event stream, and every other request is short).
  if (S.predAbort) S.predAbort.abort();
  S.predAbort = null;
  wakePredictions();  // (the previous image's loop, asleep until a head: it sees the new token and ends)
  S.pred = null; S.headVersion = null; S.points = []; S.img = null; S.labelIdx = null;
  S.knownVersion = -1;  // the label version seen of THIS image (another tab's edits are newer ones)
  const im = S.cfg.image;
  if (!im) { S.W = S.H = 0; draw(); status(); return; }
  S.W = im.width; S.H = im.height;
  S.labelCanvas.width = S.W; S.labelCanvas.height = S.H;
  lc.clearRect(0, 0, S.W, S.H);
  const sc = Math.min(1, PRED_MAX / Math.max(S.W, S.H));
  S.predCanvas.width = Math.max(1, Math.round(S.W * sc)); S.predCanvas.height = Math.max(1, Math.round(S.H * sc));
  pc.clearRect(0, 0, S.predCanvas.width, S.predCanvas.height);
  S.userView = false; S.focus = S.cfg.focus || null;
  const imageInUrl = +new URLSearchParams(location.search).get('image') === im.id;
  if (S.restoreView && imageInUrl) { S.view = S.restoreView; S.userView = true; }  // a reload keeps the zoom
  S.restoreView = null;
  resize();
  const show = (bmp) => { if (token === S.token) { S.img = bmp; draw(); } };
  const shown = picture(im, false).then(show).catch(() => {});
  await reloadLabels(token, true);
  predictionLoop(token);
  await shown;
  if (token !== S.token) return;
  ahead();
  // a big image: its full resolution once the user stays on it (paging past it never decodes 12 MP)
  if (Math.max(S.W, S.H) > SCREEN) setTimeout(() => { if (token === S.token) picture(im, true).then(show).catch(() => {}); }, 500);
}

// ------------------------------------------------------------------ fetched ahead
// The pictures (decoded off the main thread) and labels of the open image and of the images p / n open
// (their neighbours in the window) are kept, so a switch draws at once; anything else is dropped (a 12 MP
// picture is 48 MB).
// A picture is the screen-sized copy (`full` false) or the original.
function picture(im, full) {
  const key = `${im.id}:${full ? 'full' : 'screen'}`;
  if (!S.pictures.has(key)) {
    const url = `${apiBase()}/images/${im.id}/file${full ? '' : `?side=${SCREEN}`}`;
    const got = fetchOk(url).then((r) => r.blob()).then((b) => createImageBitmap(b));
    got.catch(() => S.pictures.delete(key));  // tried again next time
    S.pictures.set(key, got);
  }
  return S.pictures.get(key);
}
function labelsAhead(im) {
  const key = `${im.id}:${im.label_version}`;  // a newer version (an edit since) is another entry
  if (!S.labelsAhead.has(key)) {
    const got = fetchLabels(im.id);
    got.catch(() => S.labelsAhead.delete(key));
    S.labelsAhead.set(key, got);
  }
  return S.labelsAhead.get(key);
}
function nearImages() {  // the images p and n open, from the window the server sent
  return [S.window[S.winPos - 1], S.window[S.winPos + 1]].filter(Boolean);
}
function ahead() {
  const near = nearImages();
  const keep = new Set([S.cfg.image && S.cfg.image.id, ...near.map((i) => i.id)]);
  const cur = S.cfg.image ? S.cfg.image.id : null;
  for (const [key, got] of S.pictures) {
    const id = +key.split(':')[0];
    if (keep.has(id) && (id === cur || key.endsWith(':screen'))) continue;
    S.pictures.delete(key);
    got.then((b) => { if (b !== S.img) b.close(); }).catch(() => {});
  }
  for (const key of S.labelsAhead.keys()) if (!keep.has(+key.split(':')[0])) S.labelsAhead.delete(key);
  for (const im of near) { picture(im, false).catch(() => {}); if (im.labelled) labelsAhead(im).catch(() => {}); }
}
api.go = (delta) => {
  // p / n and the Previous / Next buttons: page within the window of the gallery's order the server sent,
  // at once, and tell the server (which follows: title, panel, gallery). Past the window's end the server
  // pages from here (its reply opens the image). False: no image open (the button's own event runs).
  const cur = S.cfg && S.cfg.image;
  if (!cur || S.path) return false;
  const im = S.window[S.winPos + delta];
  S.navSeq += 1;
  S.passed.add(cur.id);
  clearTimeout(S.navTimer);
  const seq = S.navSeq;
  if (!im) { trigger('navigated', { image: cur.id, seq, step: delta }); return true; }
  S.winPos += delta;
  S.cfg = Object.assign({}, S.cfg, { image: im, focus: null });
  openImage(); setUrl();
  // the server follows the page a burst of presses ends on (each turn would cost it a panel redraw)
  S.navTimer = setTimeout(() => trigger('navigated', { image: im.id, seq }), 250);
  return true;
};

async function fetchLabels(id) {
  // the stored label map (class index per pixel, 255 unlabelled), its version and the points
  api.labelFetches = (api.labelFetches || 0) + 1;  // (tests: an undo patches the map, fetches nothing)
  const [res, points] = await Promise.all([
    fetchOk(`${apiBase()}/images/${id}/labels?mode=gray`, { cache: 'no-cache' }),
    fetchOk(`${apiBase()}/images/${id}/points`).then((r) => r.json()),
  ]);
  const version = +(res.headers.get('X-Label-Version') || -1);
  return { idx: await grayOf(await res.blob()), points, version };
}

async function reloadLabels(token, opening) {
  token = token || S.token;
  const im = S.cfg.image;
  if (!im) return;
  if (im.labelled === false && token === S.token && S.labelsFor !== im.id) {
    // nothing stored yet: an empty map, without fetching and decoding a full-size PNG of 255s (a 12 MP
    // image's costs hundreds of ms); a later edit by anyone brings the real map (predictionLoop)
    S.labelIdx = new Uint8Array(S.W * S.H).fill(255);
    S.points = [];
    S.labelsFor = im.id;
    S.knownVersion = Math.max(S.knownVersion, im.label_version || 0);
    for (const q of S.queue) if (q.image === im.id) paintOp(q.op);
    draw();
    return;
  }
  try {
    // opening: what was fetched ahead (as of the version the server named); after an edit: fetched anew
    const got = await (opening ? labelsAhead(im) : fetchLabels(im.id));
    if (token !== S.token) return;
    if (got.idx.length !== S.W * S.H) throw new Error('label map of another size');
    S.labelIdx = got.idx;  // read only: the fetched-ahead entry may share it
    S.points = got.points;
    S.labelsFor = im.id;  // the image whose labels are shown (tests and bench/ wait for it)
    S.knownVersion = Math.max(S.knownVersion, got.version);
    recolourLabels();
    for (const q of S.queue) if (q.image === im.id) paintOp(q.op);  // unsaved edits stay visible
    draw();
    // (bench/: when another tab's edit showed here, on the clock all pages share)
    requestAnimationFrame(() => api.labelsShown.push({ version: got.version, t: performance.timeOrigin + performance.now() }));
  } catch (e) {
    if (token === S.token) setTimeout(() => reloadLabels(token), 2000);  // the server is back soon: retry
  }
}

function recolourLabels(box) {
  // the label layer drawn from the stored map, in class colours (`box` [x0, y0, x1, y1): only there)
  if (!S.labelIdx || !S.W) return;
  const [x0, y0, x1, y1] = box || [0, 0, S.W, S.H];
  const lut = new Uint8ClampedArray(256 * 4);
  for (const c of S.cfg.classes || []) { const [r, gg, b] = hexRgb(c.color); lut.set([r, gg, b, 255], c.index * 4); }
  const out = lc.createImageData(x1 - x0, y1 - y0);
  const d = out.data;
  for (let y = y0, j = 0; y < y1; y++) {
    for (let i = y * S.W + x0, end = i + x1 - x0; i < end; i++, j += 4) {
      const k = S.labelIdx[i] * 4;
      d[j] = lut[k]; d[j + 1] = lut[k + 1]; d[j + 2] = lut[k + 2]; d[j + 3] = lut[k + 3];
    }
  }
  lc.putImageData(out, x0, y0);
}

async function applyDelta(token, body) {
  // An undo, redo, clear, erase or unpoint answered with what it changed (POST .../ops): the stored map is
  // patched in that box, the points replaced; nothing is fetched again.
  const im = S.cfg.image;
  const [x0, y0, x1, y1] = body.delta.box;
  const w = x1 - x0, h = y1 - y0;
  const idx = await grayPixels(body.delta.png);
  if (token !== S.token || S.cfg.image !== im) return;
  if (!S.labelIdx || S.labelsFor !== im.id || idx.length !== w * h || x1 > S.W || y1 > S.H) { reloadLabels(token); return; }
  const map = S.labelIdx.slice();  // (the fetched-ahead entry may share the array)
  for (let y = 0; y < h; y++) map.set(idx.subarray(y * w, (y + 1) * w), (y0 + y) * S.W + x0);
  S.labelIdx = map;
  S.points = body.points;
  recolourLabels([x0, y0, x1, y1]);
  for (const q of S.queue) if (q.image === im.id) paintOp(q.op);  // unsaved edits stay visible
  draw();
}

// ------------------------------------------------------------------ prediction (patch-grid scores)
function axis(nIn, nOut, count, scale) {
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

function halves(u) {
  // IEEE 754 binary16 -> float32 (the scores travel as float16: half the bytes)
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i], e = (v >> 10) & 31, m = v & 1023, s = v & 32768 ? -1 : 1;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1024 + m) * 2 ** (e - 25);
  }
  return out;
}
function applyPrediction(p) {
  // Upsample the grid scores separably (rows first, then columns; the same weights as core's
  // interp_matrix) to the layer's pixels and take the argmax; confidence and entropy only when shown.
  const bytes = Uint8Array.from(atob(p.logits), (ch) => ch.charCodeAt(0));
  const L = p.dtype === 'float16' ? halves(new Uint16Array(bytes.buffer)) : new Float32Array(bytes.buffer);
  const [h, w] = p.grid, K = p.channels, [H, W] = p.size;
  const ow = S.predCanvas.width, oh = S.predCanvas.height;
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
  S.pred = {
    plainArg: arg, edgeArg: null, best, R, ax, K, w, oh, ow, conf: null, ent: null, classes: p.classes,
    generation: p.generation, version: p.version, interim: p.interim,
  };
  paintPrediction();
}
function shownArg(P) {
  // "follow edges": the server's classes by core.edges at this layer's size (what predict gives there);
  // off: the bilinear argmax computed here
  return S.followEdges && P.edgeArg ? P.edgeArg : P.plainArg;
}
function grayPixels(b64) {
  return grayOf(new Blob([Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))], { type: 'image/png' }));
}
async function grayOf(blob) {
  // a greyscale PNG's values (class indices or channels), one byte a pixel; the browser decodes it
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const tmp = document.createElement('canvas');
  tmp.width = bmp.width; tmp.height = bmp.height;
  const t = tmp.getContext('2d', { willReadFrequently: true });
  t.drawImage(bmp, 0, 0);
  bmp.close();
  const src = t.getImageData(0, 0, tmp.width, tmp.height).data;
  const out = new Uint8Array(tmp.width * tmp.height);
  for (let i = 0, j = 0; i < out.length; i++, j += 4) out[i] = src[j];
  return out;
}

function confidence(P) {
  // softmax maximum and normalised entropy per layer pixel (lazily: only the confidence views need them)
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

function paintPrediction() {
  const P = S.pred;
  const ow = S.predCanvas.width, oh = S.predCanvas.height;
  if (!P) { pc.clearRect(0, 0, ow, oh); return; }
  const lut = [];
  P.classes.forEach((idx, ch) => {
    const c = idx == null ? null : classByIndex(idx);
    lut[ch] = c && !S.hidden.has(idx) ? hexRgb(c.color) : null;
  });
  if (S.predMode !== 'classes') confidence(P);
  const out = pc.createImageData(ow, oh);
  const d = out.data;
  const arg = shownArg(P);
  for (let i = 0, j = 0; i < arg.length; i++, j += 4) {
    if (S.predMode === 'uncertainty') {
      d[j] = 255; d[j + 1] = 0; d[j + 2] = 160; d[j + 3] = Math.round(255 * P.ent[i]);
      continue;
    }
    const c = lut[arg[i]];
    if (!c) continue;
    d[j] = c[0]; d[j + 1] = c[1]; d[j + 2] = c[2];
    d[j + 3] = S.predMode === 'confidence' ? Math.round(255 * P.conf[i]) : 255;
  }
  pc.putImageData(out, 0, 0);
}
api.predictionLabels = () => {
  // the argmax class index of every pixel of the prediction layer (tests compare it with core's)
  const P = S.pred;
  if (!P) return null;
  return Array.from(shownArg(P), (ch) => (P.classes[ch] == null ? 255 : P.classes[ch]));
};

function wakePredictions() {
  // something worth a prediction request happened (a head, this image's features, a refetch): told by the
  // event stream, so the loop below asks only then, with no request waiting on the server meanwhile
  S.wakes += 1;
  if (S.headWake) S.headWake();
}
function nextWake(ms) {
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); S.headWake = null; resolve(); };
    const timer = setTimeout(done, ms);  // (should the stream be down: ask anyway now and then)
    S.headWake = done;
  });
}

async function predictionLoop(token) {
  while (token === S.token && S.cfg.image) {
    const id = S.cfg.image.id;
    const after = S.headVersion == null ? '' : `&after=${S.headVersion}`;
    const wakes = S.wakes;  // an event while the request is on its way: ask again at once
    let res = null;
    const abort = new AbortController();
    S.predAbort = abort;
    const tReq = performance.now();
    try {
      res = await fetch(`${apiBase()}/images/${id}/prediction?dtype=float16${after}`,
        { credentials: 'same-origin', cache: 'no-store', signal: abort.signal });
    } catch (e) { res = null; }
    if (S.predAbort === abort) S.predAbort = null;
    if (token !== S.token) return;
    if (!res && abort.signal.reason === 'refetch') continue;
    if (res && res.status === 200) {
      const tResp = performance.now();
      const p = await res.json();
      if (token !== S.token) return;
      S.headVersion = p.version;
      applyPrediction(p);
      const tApplied = performance.now();
      requestAnimationFrame(() => {
        drawNow();
        const t = performance.now();
        for (const s of S.strokes) {
          if (s.t_paint == null && s.gen && p.generation >= s.gen) {
            Object.assign(s, { t_paint: t, t_head: S.headEventAt, t_req: tReq, t_resp: tResp, t_applied: tApplied });
          }
        }
      });
      if (S.followEdges) fetchEdges(token);
      const mine = S.queue.some((q) => q.image === id);
      if (p.label_version > S.knownVersion && !mine) reloadLabels(token);  // another tab edited this image
    } else if (!res || res.status !== 204) {
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (token === S.token && S.wakes === wakes) await nextWake(25000);
  }
}

async function fetchEdges(token) {
  // The boundary rule's layer (core.edges at this layer's size) of a final head, asked for once its grid
  // scores are drawn: the overlay repaints bilinear at once and snaps to the image's edges when it comes.
  const P = S.pred;
  if (!P || P.interim || P.edgeArg || P.edgesAsked || !S.cfg.image) return;
  P.edgesAsked = true;
  const ow = S.predCanvas.width, oh = S.predCanvas.height;
  let d = null;
  try {
    const res = await fetch(`${apiBase()}/images/${S.cfg.image.id}/edges?size=${oh}x${ow}`,
      { credentials: 'same-origin', cache: 'no-store' });
    if (res.status === 200) d = await res.json();
  } catch (e) { d = null; }
  if (!d || token !== S.token || S.pred !== P || d.version !== P.version) { P.edgesAsked = false; return; }
  const arg = await grayPixels(d.png);
  if (S.pred !== P || arg.length !== ow * oh) return;
  P.edgeArg = arg;
  if (!S.followEdges) return;
  paintPrediction();
  requestAnimationFrame(() => {
    drawNow();
    const t = performance.now();
    for (const s of S.strokes) if (s.t_edges == null && s.gen && P.generation >= s.gen) s.t_edges = t;
  });
}

// ------------------------------------------------------------------ the project's event stream
const ON = {  // what the project's events do here
  labels(d) {  // another tab's or client's edit of the open image: its labels, trained on or not
    const im = S.cfg && S.cfg.image;
    if (!im || d.image_id !== im.id || d.client === clientId()) return;  // (its own edits it has drawn)
    if (S.queue.some((q) => q.image === im.id)) S.othersEdited = im.id;  // reloaded once ours are saved
    else if (d.label_version > S.knownVersion) reloadLabels();
  },
  resync() { reloadLabels(); wakePredictions(); refreshPanel(); },
  head(d) {
    S.headEventAt = performance.now();
    if (S.headVersion == null || d.version > S.headVersion) wakePredictions();
    if (!d.interim) refreshPanel();
  },
  features(d) {
    const im = S.cfg && S.cfg.image;
    if (im && d.image_id === im.id && !S.pred) wakePredictions();
    refreshPanel();
  },
  images() { refreshPanel(); },
  async classes() {  // a class added, renamed, recoloured, moved or deleted, here or elsewhere
    let list = null;
    try { list = await (await fetchOk(`${apiBase()}/classes`)).json(); } catch (e) { return; }
    if (!S.cfg || JSON.stringify(list) === JSON.stringify(S.cfg.classes)) return;  // (this page has it)
    S.cfg.classes = list;
    if (!classById(S.classId)) S.classId = (list.find((c) => c.name.toLowerCase() !== 'background') || list[0] || { id: null }).id;
    buildPalette();
    reloadLabels();  // (a deleted class moves the indices after it: the stored map says where things are)
    S.headVersion = null; wakePredictions();  // (and the prediction's channels map to the new indices)
  },
};
function followEvents() {
  // The project's event stream (GET .../events, engine/events.py), one per browser: the tab holding a Web
  // Lock opens it and passes every event to the project's other tabs over a BroadcastChannel; when it
  // closes, another tab takes the lock and reopens the stream after the last event seen (the server
  // replays what was missed). Every tab already holds Gradio's heartbeat, and Chromium allows six
  // connections per host: a stream in each tab would leave none for edits from the third tab on.
  if (S.eventsFor === apiBase()) return;
  S.eventsFor = apiBase();
  const name = `probeseg-events:${location.host}${apiBase()}`;
  const channel = window.BroadcastChannel ? new BroadcastChannel(name) : null;
  const handle = (type, data, seq) => {
    S.eventSeq = Math.max(S.eventSeq || 0, seq || 0);
    if (ON[type]) ON[type](data);
  };
  if (channel) channel.onmessage = (m) => handle(m.data.type, m.data.data, m.data.seq);
  const open = () => {
    const after = S.eventSeq ? `?after=${S.eventSeq}` : '';
    S.events = new EventSource(`${apiBase()}/events${after}`, { withCredentials: true });
    for (const type of Object.keys(ON)) {
      S.events.addEventListener(type, (e) => {
        const data = e.data ? JSON.parse(e.data) : {}, seq = +e.lastEventId || 0;
        handle(type, data, seq);
        if (channel) channel.postMessage({ type, data, seq });
      });
    }
  };
  if (navigator.locks && channel) navigator.locks.request(name, () => { open(); return new Promise(() => {}); });
  else open();  // (no Web Locks: a stream of this tab's own)
}
function refreshPanel() {
  // The side panel, gallery and status line are Gradio components: relay the stream's news to the page's
  // "refresh" event, once a burst of it is over. (A Gradio generator following the stream would hold one
  // more connection per tab beside Gradio's heartbeat and this stream: two tabs would fill Chromium's six
  // connections per host and stall the edits; see ARCHITECTURE.md.)
  clearTimeout(S.panelTimer);
  S.panelTimer = setTimeout(() => trigger('refresh'), 1000);
}

// ------------------------------------------------------------------ operations: queue, send, retry
function opId() {
  return (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
}
function clientId() {
  // this tab's id, sent with its edits: undo and redo take back this tab's own (it survives a reload)
  if (!S.client) {
    try { S.client = sessionStorage.getItem('probeseg-client') || opId(); sessionStorage.setItem('probeseg-client', S.client); }
    catch (e) { S.client = S.client || opId(); }
  }
  return S.client;
}
function enqueue(op, rec) {
  op.client = clientId();
  if (op.kind !== 'refine') S.notice = null;
  const item = { image: S.cfg.image.id, op, t0: performance.now(), rec };
  S.queue.push(item);
  saveQueue();
  pump();
}
function history_(kind) {
  if (!S.cfg.image) return;
  enqueue({ op_id: opId(), kind });
}
api.refine = (threshold) => {
  // the Refine button (webapp/layout.py): an edit of this tab's, queued after its strokes, so Ctrl+Z undoes it;
  // the classes it labels are those the canvas shows (its class toggles, the page's only ones)
  if (!S.cfg || !S.cfg.image) return;
  const shown = (S.cfg.classes || []).filter((c) => !S.hidden.has(c.index)).map((c) => c.id);
  const all = shown.length === (S.cfg.classes || []).length;
  enqueue({ op_id: opId(), kind: 'refine', threshold: +threshold, classes: all ? null : shown });
};

async function pump() {
  if (S.sending || !S.cfg || !S.cfg.api) return;
  S.sending = true;
  let hadError = false;
  try {
    while (S.queue.length) {
      const item = S.queue[0];
      let res = null, body = null;
      try {
        const path = item.op.kind === 'refine' ? 'refine' : `ops${S.autoTrain ? '' : '?train=false'}`;
        res = await fetch(`${apiBase()}/images/${item.image}/${path}`, {
          method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(item.op),
        });
        body = await res.json().catch(() => ({}));
      } catch (e) { res = null; }
      if (res && res.ok) {
        S.queue.shift(); saveQueue(); S.failures = 0;
        const here = S.cfg.image && item.image === S.cfg.image.id;
        // each committed edit bumps the version by one: a bigger step means another client's edit came
        // in between, which this page may not have drawn yet
        const gap = here && body.applied && !body.duplicate && body.label_version > S.knownVersion + 1;
        if (here) S.knownVersion = Math.max(S.knownVersion, body.label_version || 0);
        if (item.rec) Object.assign(item.rec, { t_ack: performance.now(), gen: body.train_generation || 0, version: body.label_version });
        if (item.op.kind === 'refine') {
          S.notice = body.added ? `Refine labelled ${body.added.toLocaleString()} px (Ctrl+Z takes them back)`
            : `Refine: no unlabelled pixel is predicted with confidence ≥ ${item.op.threshold}; lower the threshold`;
        }
        const drawnHere = ['stroke', 'point'].includes(item.op.kind);  // (the rest the server says: delta)
        if (here && (gap || (item.op.kind === 'refine' && body.added))) reloadLabels();
        else if (here && body.delta) await applyDelta(S.token, body);
        else if (here && !drawnHere && item.op.kind !== 'refine' && (body.applied || body.duplicate)) reloadLabels();
        continue;
      }
      if (res && res.status >= 400 && res.status < 500 && ![408, 429].includes(res.status)) {
        S.queue.shift(); saveQueue();
        S.refused.push({ kind: item.op.kind, reason: (body && body.detail) || `HTTP ${res.status}` });
        hadError = true;
        status();
        continue;
      }
      hadError = true;
      S.failures += 1;
      const wait = Math.min(10000, 250 * 2 ** Math.min(S.failures, 6));
      S.retryAt = performance.now() + wait;
      status();
      await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    S.sending = false;
    S.retryAt = 0;
    const im = S.cfg && S.cfg.image;
    const others = im && S.othersEdited === im.id;  // edited by someone else while ours were on their way
    if (others) S.othersEdited = null;
    if (hadError || others) reloadLabels();  // show what the server has (a restart, a refused edit, others')
    status();
  }
}

function status() {
  const el = $('.ps-status');
  const n = S.queue.length;
  root.dataset.unsaved = n;
  root.dataset.refused = S.refused.length;
  let text = '', cls = 'ok';
  if (!S.cfg || !S.cfg.image) text = 'No image: add some in the Images tab.';
  else if (n) {
    const secs = S.retryAt ? Math.max(0, Math.ceil((S.retryAt - performance.now()) / 1000)) : 0;
    text = `${n} unsaved edit${n > 1 ? 's' : ''}` + (secs ? ` · server unreachable, retrying in ${secs} s` : ' · saving…');
    cls = secs ? 'warn' : 'busy';
  } else text = 'All edits saved' + (S.notice ? ` · ${S.notice}` : '');
  if (S.refused.length) {
    const last = S.refused[S.refused.length - 1];
    text += ` · ${S.refused.length} edit${S.refused.length > 1 ? 's' : ''} NOT saved (last: ${last.kind}: ${last.reason})`;
    cls = 'bad';
  }
  el.textContent = text;
  el.title = text;  // (one line, cut with an ellipsis when long: the whole of it on hover)
  el.className = 'ps-status ' + cls;
  if (S.retryAt && !S.statusTimer) S.statusTimer = setTimeout(() => { S.statusTimer = null; status(); }, 1000);
}
$('.ps-status').onclick = () => { if (S.refused.length) { S.refused = []; status(); } };

// ------------------------------------------------------------------ drawing
const BELOW_STAGE = 84;  // px kept in view under the stage: its status line and Previous / Next / Suggest
function fitStage() {
  // the stage takes the rest of the window below its top but what must stay in view under it, so the whole
  // canvas and the navigation are visible without scrolling (at 1366x768 too; the suggestion strip is at
  // the top of the side column)
  const box = $('.ps-stage');
  const top = box.getBoundingClientRect().top + window.scrollY;
  const h = Math.max(320, Math.round(window.innerHeight - top - BELOW_STAGE));
  if (box.style.height !== h + 'px') box.style.height = h + 'px';
}
function resize() {
  fitStage();
  const box = $('.ps-stage');
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(50, box.clientWidth), h = Math.max(50, box.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  if (!S.userView && S.W) fitView();  // follow the window until the user zooms or pans
  drawNow();
}
function fitView() {
  const box = $('.ps-stage');
  const w = box.clientWidth, h = box.clientHeight;
  if (!S.W || !w) return;
  // A suggested region (x0, y0, x1, y1) fills the view with a margin; otherwise the whole image.
  const [x0, y0, x1, y1] = S.focus || [0, 0, S.W, S.H];
  const bw = Math.max(1, x1 - x0), bh = Math.max(1, y1 - y0);
  const s = Math.min(w / bw, h / bh) * (S.focus ? 0.8 : 1);
  S.view = { s, x: w / 2 - (x0 + bw / 2) * s, y: h / 2 - (y0 + bh / 2) * s };
}
function draw() {
  if (S.drawQueued) return;
  S.drawQueued = true;
  requestAnimationFrame(() => { S.drawQueued = false; drawNow(); });
}
function drawNow() {
  const dpr = window.devicePixelRatio || 1;
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!S.W) return;
  const v = S.view;
  g.setTransform(dpr * v.s, 0, 0, dpr * v.s, dpr * v.x, dpr * v.y);
  g.imageSmoothingEnabled = v.s < 1;
  if (S.img) g.drawImage(S.img, 0, 0, S.W, S.H);
  else { g.fillStyle = '#777'; g.fillRect(0, 0, S.W, S.H); }
  g.imageSmoothingEnabled = false;
  if (S.showPred && S.pred) { g.globalAlpha = S.opacity; g.drawImage(S.predCanvas, 0, 0, S.W, S.H); }
  if (S.showLabels) { g.globalAlpha = S.labelOpacity; g.drawImage(S.labelCanvas, 0, 0); }
  g.globalAlpha = 1;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  for (const p of S.points) {
    const c = p.index == null ? null : classByIndex(p.index);
    const [sx, sy] = [v.x + (p.x + 0.5) * v.s, v.y + (p.y + 0.5) * v.s];
    g.beginPath(); g.arc(sx, sy, Math.max(4, p.radius * v.s), 0, 2 * Math.PI);
    g.fillStyle = c ? c.color : '#888'; g.fill();
    g.lineWidth = 2; g.strokeStyle = '#fff'; g.stroke();
  }
  if (S.mouse && S.tool !== 'pan') {
    const r = (S.tool === 'point' ? S.pointRadius : S.radius) * v.s;
    g.beginPath(); g.arc(S.mouse.x, S.mouse.y, Math.max(2, r), 0, 2 * Math.PI);
    g.lineWidth = 1.5; g.strokeStyle = '#000'; g.stroke();
    g.setLineDash([4, 3]); g.strokeStyle = '#fff'; g.stroke(); g.setLineDash([]);
    const c = classById(S.classId);
    if (S.tool !== 'eraser' && c) { g.globalAlpha = 0.35; g.fillStyle = c.color; g.fill(); g.globalAlpha = 1; }
  }
}

// ------------------------------------------------------------------ pointer input
function toImage(e) {
  const r = canvas.getBoundingClientRect();
  const sx = e.clientX - r.left, sy = e.clientY - r.top;
  return { sx, sy, x: (sx - S.view.x) / S.view.s - 0.5, y: (sy - S.view.y) / S.view.s - 0.5 };
}
function clampPt(p, r) {
  const m = r + 0.5;
  return [Math.min(S.W - 0.5 + m, Math.max(-0.5 - m, p.x)), Math.min(S.H - 0.5 + m, Math.max(-0.5 - m, p.y))];
}
function paintOp(op) {
  // draw an edit on the label layer the way the server will store it (approximately: the server decides)
  lc.save();
  if (op.kind === 'stroke' || op.kind === 'point') {
    const c = classById(op.class_id);
    lc.fillStyle = lc.strokeStyle = c ? c.color : '#888';
  } else if (op.kind === 'erase') {
    lc.globalCompositeOperation = 'destination-out';
    lc.strokeStyle = lc.fillStyle = '#000';
  } else { lc.restore(); return; }
  const pts = op.points, r = Math.max(0.5, op.radius);
  lc.lineWidth = 2 * r; lc.lineCap = 'round'; lc.lineJoin = 'round';
  if (pts.length === 1) { lc.beginPath(); lc.arc(pts[0][0] + 0.5, pts[0][1] + 0.5, r, 0, 2 * Math.PI); lc.fill(); }
  else {
    lc.beginPath(); lc.moveTo(pts[0][0] + 0.5, pts[0][1] + 0.5);
    for (const p of pts.slice(1)) lc.lineTo(p[0] + 0.5, p[1] + 0.5);
    lc.stroke();
  }
  lc.restore();
}

canvas.addEventListener('pointerdown', (e) => {
  if (!S.W || !S.cfg.image) return;
  canvas.setPointerCapture(e.pointerId);
  const p = toImage(e);
  if (e.button === 1 || S.spaceDown || S.tool === 'pan') {
    S.drag = { sx: p.sx, sy: p.sy, vx: S.view.x, vy: S.view.y };
    S.userView = true;
    e.preventDefault();
    return;
  }
  if (e.button !== 0) return;
  if (S.tool === 'point') {
    const tol = 8 / S.view.s;
    const near = S.points.map((q) => [Math.hypot(q.x - p.x, q.y - p.y), q]).filter(([d, q]) => d <= Math.max(q.radius, tol))
      .sort((a, b) => a[0] - b[0])[0];
    if (near) {
      S.points = S.points.filter((q) => q !== near[1]);
      enqueue({ op_id: opId(), kind: 'unpoint', points: [[near[1].x, near[1].y]] });
    } else {
      const c = classById(S.classId);
      if (!c) return;
      const op = { op_id: opId(), kind: 'point', class_id: c.id, radius: S.pointRadius, points: [clampPt(p, 0)] };
      S.points.push({ x: op.points[0][0], y: op.points[0][1], radius: S.pointRadius, index: c.index, pending: true });
      paintOp(op);
      const rec = { kind: 'point', t_up: performance.now() };
      S.strokes.push(rec);
      enqueue(op, rec);
    }
    draw();
    return;
  }
  const c = classById(S.classId);
  if (S.tool === 'brush' && !c) return;
  S.path = { kind: S.tool === 'eraser' ? 'erase' : 'stroke', classId: c ? c.id : null, radius: S.radius, pts: [clampPt(p, S.radius)] };
  paintOp({ kind: S.path.kind, class_id: S.path.classId, radius: S.path.radius, points: S.path.pts });
  draw();
});
canvas.addEventListener('pointermove', (e) => {
  const p = toImage(e);
  S.mouse = { x: p.sx, y: p.sy };
  if (S.drag) {
    S.view.x = S.drag.vx + (p.sx - S.drag.sx); S.view.y = S.drag.vy + (p.sy - S.drag.sy);
  } else if (S.path) {
    const last = S.path.pts[S.path.pts.length - 1];
    const q = clampPt(p, S.path.radius);
    if (Math.hypot(q[0] - last[0], q[1] - last[1]) >= Math.max(0.5, S.path.radius / 4)) {
      S.path.pts.push(q);
      paintOp({ kind: S.path.kind, class_id: S.path.classId, radius: S.path.radius, points: [last, q] });
    }
  }
  draw();
});
function endStroke() {
  if (S.drag) { S.drag = null; setUrl(); return; }
  if (!S.path) return;
  const path = S.path;
  S.path = null;
  const op = { op_id: opId(), kind: path.kind, radius: path.radius, points: path.pts };
  if (path.kind === 'stroke') op.class_id = path.classId;
  const rec = { kind: path.kind, t_up: performance.now() };
  S.strokes.push(rec);
  enqueue(op, rec);
}
canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);
canvas.addEventListener('pointerleave', () => { S.mouse = null; draw(); });
canvas.addEventListener('contextmenu', (e) => e.preventDefault());
canvas.addEventListener('wheel', (e) => {
  if (!S.W) return;
  e.preventDefault();
  const p = toImage(e);
  const f = Math.exp(-e.deltaY * 0.0015);
  const s = Math.min(64, Math.max(0.02, S.view.s * f));
  S.view.x = p.sx - (p.sx - S.view.x) * (s / S.view.s);
  S.view.y = p.sy - (p.sy - S.view.y) * (s / S.view.s);
  S.view.s = s;
  S.userView = true;
  draw();
  setUrlSoon();
}, { passive: false });

// ------------------------------------------------------------------ keys (installed once per page)
const typing = (el) => el && (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' ||
  (el.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(el.type)));
api.onKey = (e) => {
  if (typing(e.target) || !S.cfg) return false;
  const k = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && k === 'z') { history_(e.shiftKey ? 'redo' : 'undo'); return true; }
  if ((e.ctrlKey || e.metaKey) && k === 'y') { history_('redo'); return true; }
  if (e.ctrlKey || e.metaKey || e.altKey) return false;
  if (e.key >= '1' && e.key <= '9') {
    const c = (S.cfg.classes || [])[+e.key - 1];
    if (c) { pickClass(c.id); return true; }
    return false;
  }
  const tools = { b: 'brush', e: 'eraser', o: 'point', h: 'pan' };
  if (tools[k]) { setTool(tools[k]); return true; }
  if (k === '[' || k === ']') {
    // a fifth per press (at least 1 px): a few presses go from a fine line to a broad brush
    const step = (r) => Math.min(60, Math.max(1, k === '[' ? Math.min(r - 1, Math.round(r / 1.25)) : Math.max(r + 1, Math.round(r * 1.25))));
    if (S.tool === 'point') S.pointRadius = step(S.pointRadius); else S.radius = step(S.radius);
    buildToolbar(); draw(); return true;
  }
  if (k === 'f') { S.userView = false; S.focus = null; fitView(); draw(); return true; }
  return false;
};
if (!window.__probesegCanvasKeys) {
  window.__probesegCanvasKeys = true;
  document.addEventListener('keydown', (e) => {
    if (e.key === ' ' && !typing(e.target)) {
      window.__probeseg.state.spaceDown = true;
      if (window.__probeseg.state.mouse) e.preventDefault();  // over the canvas: pan, do not scroll the page
    }
    if (window.__probeseg.onKey(e)) e.preventDefault();
  }, true);
  document.addEventListener('keyup', (e) => { if (e.key === ' ') window.__probeseg.state.spaceDown = false; }, true);
  document.addEventListener('click', (e) => {  // Previous / Next, clicked or by p / n (webapp/assets.py)
    const b = e.target.closest && e.target.closest('#next-btn, #prev-btn');
    if (b && window.__probeseg.go(b.id === 'next-btn' ? 1 : -1)) { e.stopPropagation(); e.preventDefault(); }
  }, true);
}

new ResizeObserver(() => resize()).observe($('.ps-stage'));
window.addEventListener('resize', () => resize());
window.addEventListener('online', () => pump());
watch('value', () => applyConfig());
applyConfig();
