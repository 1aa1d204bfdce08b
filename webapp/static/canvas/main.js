// probeseg's annotation canvas: mount() wires one gr.HTML element (webapp/canvas.py) to the modules beside
// this one: state (the one state object), view (the transform), layers (the overlay rule and label layer),
// edits (the edit queue), events (the event stream and prediction client), tools (keys, sizes, paths) and
// ahead (what is fetched ahead).
// Everything here touches the DOM; the rules live in those modules, with unit tests (tests/webapp/js).
import { PRED_MAX, SCREEN, createState, hexRgb, classById, classByIndex, defaultClassId, readUrl, writeUrl } from './state.js';
import { fitView as fitOf, toImage, toScreen, zoomAt, panBy, clampPt } from './view.js';
import { upsample, shownArg, labelsOf, predictionPixels, labelPixels, labelLut, patched, base64Bytes } from './layers.js';
import { EditQueue, afterCommit, clientId, newId, statusLine } from './edits.js';
import { EventClient, Waker, predictionLoop } from './events.js';
import { typing, keyAction, stepRadius, pointAt, extendPath, strokeOp } from './tools.js';
import { Ahead } from './ahead.js';

const BELOW_STAGE = 84;  // px kept in view under the stage: its status line and Previous / Next / Suggest

export function mount({ element, props, watch, events }) {
  const root = element.querySelector('.ps-root');
  const $ = (sel) => root.querySelector(sel);
  const S = createState(() => document.createElement('canvas'));
  const waker = new Waker();
  const api = window.__probeseg = window.__probeseg || {};
  api.state = S;
  api.strokes = S.strokes;
  api.toggleMs = S.toggleMs;
  api.labelsShown = [];

  const canvas = $('canvas.ps-view');
  const g = canvas.getContext('2d');
  const lc = S.labelCanvas.getContext('2d', { willReadFrequently: true });
  const pc = S.predCanvas.getContext('2d');
  const classes = () => (S.cfg && S.cfg.classes) || [];
  const apiBase = () => S.cfg.api;
  const timed = (fn) => { const t0 = performance.now(); fn(); S.toggleMs.push(performance.now() - t0); };

  // ---------------------------------------------------------------- config from Python (props.value)
  function config() {
    try { return JSON.parse(props.value || '{}'); } catch (e) { return {}; }
  }
  function setUrl() { history.replaceState(history.state, '', writeUrl(location.href, S)); }
  function setUrlSoon() { clearTimeout(S.urlTimer); S.urlTimer = setTimeout(setUrl, 300); }

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
    if (!(prev && prev.api)) {  // the first config that names a project: restore the URL and unsaved edits
      const u = readUrl(location.search);
      for (const k of ['tool', 'classId', 'autoTrain', 'followEdges', 'restoreView']) if (k in u) S[k] = u[k];
      $('.ps-auto').checked = S.autoTrain; $('.ps-edges').checked = S.followEdges;
      S.edits = editQueue();
      S.edits.load();
    }
    if (!classById(classes(), S.classId)) S.classId = defaultClassId(classes());
    if (S.cfg.select != null && classById(classes(), S.cfg.select)) { S.classId = S.cfg.select; if (S.tool === 'eraser') S.tool = 'brush'; }
    buildPalette();
    buildToolbar();
    const im = S.cfg.image;
    const same = prev && prev.image && im && prev.image.id === im.id && prev.nonce === S.cfg.nonce;
    if (!same) openImage();
    else {
      if (JSON.stringify(prev.classes) !== JSON.stringify(S.cfg.classes)) { recolourLabels(); paintPrediction(); }
      keepAhead();
      const f = S.cfg.focus;  // a new suggested region on the image already open: zoom there
      if (f && JSON.stringify(f) !== JSON.stringify(prev.focus)) { S.focus = f; S.userView = false; fitView(); draw(); }
    }
    setUrl();
    S.edits.pump();
  }

  // ---------------------------------------------------------------- toolbar and palette
  function buildPalette() {
    const box = $('.ps-classes');
    box.replaceChildren();
    classes().forEach((c, n) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'ps-class' + (c.id === S.classId ? ' active' : '');
      b.dataset.classId = c.id;
      b.title = `${c.name} (key ${n + 1})`;
      b.innerHTML = `<span class="ps-sw"></span>${n < 9 ? (n + 1) + ' · ' : ''}`;
      b.querySelector('.ps-sw').style.background = c.color;
      b.append(document.createTextNode(c.name));
      b.onclick = () => pickClass(c.id);
      const eye = document.createElement('input');  // the page's one set of class toggles
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
    timed(() => { if (on) S.hidden.delete(index); else S.hidden.add(index); paintPrediction(); drawNow(); });
  }
  function fitAll() { S.userView = false; S.focus = null; fitView(); draw(); setUrl(); }

  root.querySelectorAll('[data-tool]').forEach((b) => { b.onclick = () => setTool(b.dataset.tool); });
  $('.ps-size').oninput = (e) => {
    const v = +e.target.value;
    if (S.tool === 'point') S.pointRadius = v; else S.radius = v;
    draw();
  };
  $('.ps-opacity').oninput = (e) => timed(() => { S.opacity = +e.target.value / 100; drawNow(); });
  $('.ps-show-pred').onchange = (e) => { S.showPred = e.target.checked; drawNow(); };
  $('.ps-show-labels').onchange = (e) => { S.showLabels = e.target.checked; drawNow(); };
  $('.ps-mode').onchange = (e) => timed(() => { S.predMode = e.target.value; paintPrediction(); drawNow(); });
  $('.ps-auto').onchange = (e) => { S.autoTrain = e.target.checked; setUrl(); };
  $('.ps-edges').onchange = (e) => {
    timed(() => { S.followEdges = e.target.checked; paintPrediction(); drawNow(); });
    setUrl();
    if (S.followEdges) fetchEdges(S.token);  // (not fetched while off)
  };
  $('.ps-undo').onclick = () => history_('undo');
  $('.ps-redo').onclick = () => history_('redo');
  $('.ps-clear').onclick = () => {
    if (!S.cfg.image) return;
    if (window.confirm(`Clear every label of ${S.cfg.image.name}? (Undo brings them back.)`)) history_('clear');
  };
  $('.ps-fit').onclick = fitAll;

  // ---------------------------------------------------------------- image, labels, points
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
    waker.wake();  // (the previous image's loop, asleep until a head: it sees the new token and ends)
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
    if (S.restoreView && readUrl(location.search).imageId === im.id) { S.view = S.restoreView; S.userView = true; }  // a reload keeps the zoom
    S.restoreView = null;
    resize();
    const show = (bmp) => { if (token === S.token) { S.img = bmp; draw(); } };
    const shown = picture(im, false).then(show).catch(() => {});
    await reloadLabels(token, true);
    followPredictions(token);
    await shown;
    if (token !== S.token) return;
    keepAhead();
    // a big image: its full resolution once the user stays on it (paging past it never decodes 12 MP)
    if (Math.max(S.W, S.H) > SCREEN) setTimeout(() => { if (token === S.token) picture(im, true).then(show).catch(() => {}); }, 500);
  }

  // ---------------------------------------------------------------- fetched ahead (ahead.js)
  const ahead = new Ahead({
    fetchPicture: (im, full) => fetchOk(`${apiBase()}/images/${im.id}/file${full ? '' : `?side=${SCREEN}`}`)
      .then((r) => r.blob()).then((b) => createImageBitmap(b)),
    fetchLabels: (id) => fetchLabels(id),
    release: (bitmap) => bitmap.close(),
  });
  S.ahead = ahead;
  const picture = (im, full) => ahead.picture(im, full);
  function keepAhead() {
    const near = [S.window[S.winPos - 1], S.window[S.winPos + 1]].filter(Boolean);  // the images p and n open
    ahead.keep(S.cfg.image, near, S.img);
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
    if (!im) { events.navigated({ image: cur.id, seq, step: delta }); return true; }
    S.winPos += delta;
    S.cfg = Object.assign({}, S.cfg, { image: im, focus: null });
    openImage(); setUrl();
    // the server follows the page a burst of presses ends on (each turn would cost it a panel redraw)
    S.navTimer = setTimeout(() => events.navigated({ image: im.id, seq }), 250);
    return true;
  };

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
  const grayPixels = (b64) => grayOf(new Blob([base64Bytes(b64)], { type: 'image/png' }));

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
  function paintPending(id) {  // unsaved edits stay visible
    for (const q of S.edits.items) if (q.image === id) paintOp(q.op);
  }

  async function reloadLabels(token, opening) {
    token = token || S.token;
    const im = S.cfg.image;
    if (!im) return;
    if (im.labelled === false && token === S.token && S.labelsFor !== im.id) {
      // nothing stored yet: an empty map, without fetching and decoding a full-size PNG of 255s (a 12 MP
      // image's costs hundreds of ms); a later edit by anyone brings the real map (the event stream)
      S.labelIdx = new Uint8Array(S.W * S.H).fill(255);
      S.points = [];
      S.labelsFor = im.id;
      S.knownVersion = Math.max(S.knownVersion, im.label_version || 0);
      paintPending(im.id);
      draw();
      return;
    }
    try {
      // opening: what was fetched ahead (as of the version the server named); after an edit: fetched anew
      const got = await (opening ? ahead.labelsOf(im) : fetchLabels(im.id));
      if (token !== S.token) return;
      if (got.idx.length !== S.W * S.H) throw new Error('label map of another size');
      S.labelIdx = got.idx;  // read only: the fetched-ahead entry may share it
      S.points = got.points;
      S.labelsFor = im.id;  // the image whose labels are shown (tests and bench/ wait for it)
      S.knownVersion = Math.max(S.knownVersion, got.version);
      recolourLabels();
      paintPending(im.id);
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
    const b = box || [0, 0, S.W, S.H];
    const out = lc.createImageData(b[2] - b[0], b[3] - b[1]);
    labelPixels(S.labelIdx, S.W, b, labelLut(classes(), hexRgb), out.data);
    lc.putImageData(out, b[0], b[1]);
  }

  async function applyDelta(token, body) {
    // An undo, redo, clear, erase or unpoint answered with what it changed (POST .../ops): the stored map is
    // patched in that box, the points replaced; nothing is fetched again.
    const im = S.cfg.image;
    const idx = await grayPixels(body.delta.png);
    if (token !== S.token || S.cfg.image !== im) return;
    const map = S.labelsFor === im.id ? patched(S.labelIdx, S.W, S.H, body.delta.box, idx) : null;
    if (!map) { reloadLabels(token); return; }
    S.labelIdx = map;
    S.points = body.points;
    recolourLabels(body.delta.box);
    paintPending(im.id);
    draw();
  }

  // ---------------------------------------------------------------- prediction
  function paintPrediction() {
    const P = S.pred;
    const ow = S.predCanvas.width, oh = S.predCanvas.height;
    if (!P) { pc.clearRect(0, 0, ow, oh); return; }
    const colours = P.classes.map((idx) => {
      const c = idx == null ? null : classByIndex(classes(), idx);
      return c && !S.hidden.has(idx) ? hexRgb(c.color) : null;
    });
    const out = pc.createImageData(ow, oh);
    predictionPixels(P, out.data, { colours, mode: S.predMode, followEdges: S.followEdges });
    pc.putImageData(out, 0, 0);
  }
  api.predictionLabels = () => (S.pred ? labelsOf(S.pred, S.followEdges) : null);  // (tests compare with core's)

  function followPredictions(token) {
    const alive = () => token === S.token && Boolean(S.cfg.image);
    let tReq = 0, tResp = 0;
    const request = async () => {
      const id = S.cfg.image.id;
      const after = S.headVersion == null ? '' : `&after=${S.headVersion}`;
      const abort = new AbortController();
      S.predAbort = abort;
      tReq = performance.now();
      let res = null;
      try {
        res = await fetch(`${apiBase()}/images/${id}/prediction?dtype=float16${after}`,
          { credentials: 'same-origin', cache: 'no-store', signal: abort.signal });
        tResp = performance.now();
      } catch (e) { res = null; }
      if (S.predAbort === abort) S.predAbort = null;
      return res;
    };
    const apply = (p) => {
      S.headVersion = p.version;
      S.pred = upsample(p, S.predCanvas.width, S.predCanvas.height);
      paintPrediction();
      const tApplied = performance.now(), t0 = { t_head: S.headEventAt, t_req: tReq, t_resp: tResp, t_applied: tApplied };
      requestAnimationFrame(() => {
        drawNow();
        const t = performance.now();
        for (const s of S.strokes) if (s.t_paint == null && s.gen && p.generation >= s.gen) Object.assign(s, t0, { t_paint: t });
      });
      if (S.followEdges) fetchEdges(token);
      if (p.label_version > S.knownVersion && !S.edits.pendingFor(S.cfg.image.id)) reloadLabels(token);  // another tab edited it
    };
    return predictionLoop({ alive, request, apply, waker });
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

  // ---------------------------------------------------------------- the project's event stream
  const ON = {  // what the project's events do here
    labels(d) {  // another tab's or client's edit of the open image: its labels, trained on or not
      const im = S.cfg && S.cfg.image;
      if (!im || d.image_id !== im.id || d.client === client()) return;  // (its own edits it has drawn)
      if (S.edits.pendingFor(im.id)) S.othersEdited = im.id;  // reloaded once ours are saved
      else if (d.label_version > S.knownVersion) reloadLabels();
    },
    resync() { reloadLabels(); waker.wake(); refreshPanel(); },
    head(d) {
      S.headEventAt = performance.now();
      if (S.headVersion == null || d.version > S.headVersion) waker.wake();
      if (!d.interim) refreshPanel();
    },
    features(d) {
      const im = S.cfg && S.cfg.image;
      if (im && d.image_id === im.id && !S.pred) waker.wake();
      refreshPanel();
    },
    images() { refreshPanel(); },
    async classes() {  // a class added, renamed, recoloured, moved or deleted, here or elsewhere
      let list = null;
      try { list = await (await fetchOk(`${apiBase()}/classes`)).json(); } catch (e) { return; }
      if (!S.cfg || JSON.stringify(list) === JSON.stringify(S.cfg.classes)) return;  // (this page has it)
      S.cfg.classes = list;
      if (!classById(list, S.classId)) S.classId = defaultClassId(list);
      buildPalette();
      reloadLabels();  // (a deleted class moves the indices after it: the stored map says where things are)
      S.headVersion = null; waker.wake();  // (and the prediction's channels map to the new indices)
    },
  };
  function followEvents() {
    if (S.eventsFor === apiBase()) return;
    S.eventsFor = apiBase();
    S.events = new EventClient({
      url: `${apiBase()}/events`, name: `probeseg-events:${location.host}${apiBase()}`, types: Object.keys(ON),
      handle: (type, data) => ON[type](data),
    }).start();
  }
  function refreshPanel() {
    // The side panel, gallery and status line are Gradio components: relay the stream's news to the page's
    // "refresh" event, once a burst of it is over. (A Gradio generator following the stream would hold one
    // more connection per tab beside Gradio's heartbeat and this stream: two tabs would fill Chromium's six
    // connections per host and stall the edits; see ARCHITECTURE.md.)
    clearTimeout(S.panelTimer);
    S.panelTimer = setTimeout(() => events.refresh(), 1000);
  }

  // ---------------------------------------------------------------- edits
  function client() { return S.client || (S.client = clientId(window.sessionStorage)); }
  function editQueue() {
    const send = async (item) => {
      const path = item.op.kind === 'refine' ? 'refine' : `ops${S.autoTrain ? '' : '?train=false'}`;
      const res = await fetch(`${apiBase()}/images/${item.image}/${path}`, {
        method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(item.op),
      });
      return { ok: res.ok, status: res.status, body: await res.json().catch(() => ({})) };
    };
    const committed = async (item, body) => {
      const here = S.cfg.image && item.image === S.cfg.image.id;
      const todo = here ? afterCommit(item.op, body, S.knownVersion) : null;
      if (here) S.knownVersion = Math.max(S.knownVersion, body.label_version || 0);
      if (item.rec) Object.assign(item.rec, { t_ack: performance.now(), gen: body.train_generation || 0, version: body.label_version });
      if (item.op.kind === 'refine') {
        S.notice = body.added ? `Refine labelled ${body.added.toLocaleString()} px (Ctrl+Z takes them back)`
          : `Refine: no unlabelled pixel is predicted with confidence ≥ ${item.op.threshold}; lower the threshold`;
      }
      if (todo === 'reload') reloadLabels();
      else if (todo === 'delta') await applyDelta(S.token, body);
    };
    const idle = (hadError) => {
      const im = S.cfg && S.cfg.image;
      const others = im && S.othersEdited === im.id;  // edited by someone else while ours were on their way
      if (others) S.othersEdited = null;
      if (hadError || others) reloadLabels();  // show what the server has (a restart, a refused edit, others')
    };
    return new EditQueue({
      send, committed, idle, changed: status, storage: window.sessionStorage, key: 'probeseg-unsaved:' + apiBase(),
    });
  }
  function enqueue(op, rec) {
    op.client = client();
    if (op.kind !== 'refine') S.notice = null;
    S.edits.push(S.cfg.image.id, op, rec);
  }
  function history_(kind) {
    if (S.cfg.image) enqueue({ op_id: newId(), kind });
  }
  api.refine = (threshold) => {
    // the Refine button (webapp/layout.py): an edit of this tab's, queued after its strokes, so Ctrl+Z undoes
    // it; the classes it labels are those the canvas shows (its class toggles, the page's only ones)
    if (!S.cfg || !S.cfg.image) return;
    const shown = classes().filter((c) => !S.hidden.has(c.index)).map((c) => c.id);
    const all = shown.length === classes().length;
    enqueue({ op_id: newId(), kind: 'refine', threshold: +threshold, classes: all ? null : shown });
  };

  function status() {
    const el = $('.ps-status');
    if (!S.edits) return;
    root.dataset.unsaved = S.edits.items.length;
    root.dataset.refused = S.edits.refused.length;
    const [text, cls] = statusLine(S.edits, { hasImage: Boolean(S.cfg && S.cfg.image), notice: S.notice, now: performance.now() });
    el.textContent = text;
    el.title = text;  // (one line, cut with an ellipsis when long: the whole of it on hover)
    el.className = 'ps-status ' + cls;
    if (S.edits.retryAt && !S.statusTimer) S.statusTimer = setTimeout(() => { S.statusTimer = null; status(); }, 1000);
  }
  $('.ps-status').onclick = () => { if (S.edits && S.edits.refused.length) { S.edits.refused.length = 0; status(); } };

  // ---------------------------------------------------------------- drawing
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
    const v = fitOf(box.clientWidth, box.clientHeight, S.W, S.H, S.focus);
    if (v) S.view = v;
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
      const c = p.index == null ? null : classByIndex(classes(), p.index);
      const { sx, sy } = toScreen(v, p.x, p.y);
      g.beginPath(); g.arc(sx, sy, Math.max(4, p.radius * v.s), 0, 2 * Math.PI);
      g.fillStyle = c ? c.color : '#888'; g.fill();
      g.lineWidth = 2; g.strokeStyle = '#fff'; g.stroke();
    }
    if (S.mouse && S.tool !== 'pan') {  // the brush outline, filled with the class colour
      const r = (S.tool === 'point' ? S.pointRadius : S.radius) * v.s;
      g.beginPath(); g.arc(S.mouse.x, S.mouse.y, Math.max(2, r), 0, 2 * Math.PI);
      g.lineWidth = 1.5; g.strokeStyle = '#000'; g.stroke();
      g.setLineDash([4, 3]); g.strokeStyle = '#fff'; g.stroke(); g.setLineDash([]);
      const c = classById(classes(), S.classId);
      if (S.tool !== 'eraser' && c) { g.globalAlpha = 0.35; g.fillStyle = c.color; g.fill(); g.globalAlpha = 1; }
    }
  }

  // ---------------------------------------------------------------- pointer input
  function pointer(e) {
    const r = canvas.getBoundingClientRect();
    const sx = e.clientX - r.left, sy = e.clientY - r.top;
    return Object.assign({ sx, sy }, toImage(S.view, sx, sy));
  }
  function paintOp(op) {
    // draw an edit on the label layer the way the server will store it (approximately: the server decides)
    lc.save();
    if (op.kind === 'stroke' || op.kind === 'point') {
      const c = classById(classes(), op.class_id);
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
  function clickPoint(p) {
    // the point tool: a click on a point removes it, anywhere else adds one of the brush's class
    const near = pointAt(S.points, p, 8 / S.view.s);
    if (near) {
      S.points = S.points.filter((q) => q !== near);
      enqueue({ op_id: newId(), kind: 'unpoint', points: [[near.x, near.y]] });
    } else {
      const c = classById(classes(), S.classId);
      if (!c) return;
      const op = { op_id: newId(), kind: 'point', class_id: c.id, radius: S.pointRadius, points: [clampPt(S.W, S.H, p, 0)] };
      S.points.push({ x: op.points[0][0], y: op.points[0][1], radius: S.pointRadius, index: c.index, pending: true });
      paintOp(op);
      const rec = { kind: 'point', t_up: performance.now() };
      S.strokes.push(rec);
      enqueue(op, rec);
    }
    draw();
  }

  canvas.addEventListener('pointerdown', (e) => {
    if (!S.W || !S.cfg.image) return;
    canvas.setPointerCapture(e.pointerId);
    const p = pointer(e);
    if (e.button === 1 || S.spaceDown || S.tool === 'pan') {
      S.drag = { sx: p.sx, sy: p.sy, view: S.view };
      S.userView = true;
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    if (S.tool === 'point') { clickPoint(p); return; }
    const c = classById(classes(), S.classId);
    if (S.tool === 'brush' && !c) return;
    S.path = { kind: S.tool === 'eraser' ? 'erase' : 'stroke', classId: c ? c.id : null, radius: S.radius, pts: [clampPt(S.W, S.H, p, S.radius)] };
    paintOp({ kind: S.path.kind, class_id: S.path.classId, radius: S.path.radius, points: S.path.pts });
    draw();
  });
  canvas.addEventListener('pointermove', (e) => {
    const p = pointer(e);
    S.mouse = { x: p.sx, y: p.sy };
    if (S.drag) S.view = panBy(S.drag.view, p.sx - S.drag.sx, p.sy - S.drag.sy);
    else if (S.path) {
      const seg = extendPath(S.path, clampPt(S.W, S.H, p, S.path.radius));
      if (seg) paintOp({ kind: S.path.kind, class_id: S.path.classId, radius: S.path.radius, points: seg });
    }
    draw();
  });
  function endStroke() {
    if (S.drag) { S.drag = null; setUrl(); return; }
    if (!S.path) return;
    const op = strokeOp(S.path, newId());
    S.path = null;
    const rec = { kind: op.kind, t_up: performance.now() };
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
    const p = pointer(e);
    S.view = zoomAt(S.view, p.sx, p.sy, e.deltaY);
    S.userView = true;
    draw();
    setUrlSoon();
  }, { passive: false });

  // ---------------------------------------------------------------- keys (installed once per page)
  api.onKey = (e) => {
    if (typing(e.target) || !S.cfg) return false;
    const a = keyAction(e);
    if (!a) return false;
    if (a.do === 'undo' || a.do === 'redo') history_(a.do);
    else if (a.do === 'class') {
      const c = classes()[a.n];
      if (!c) return false;
      pickClass(c.id);
    } else if (a.do === 'tool') setTool(a.tool);
    else if (a.do === 'size') {
      if (S.tool === 'point') S.pointRadius = stepRadius(S.pointRadius, a.key); else S.radius = stepRadius(S.radius, a.key);
      buildToolbar(); draw();
    } else if (a.do === 'fit') fitAll();
    return true;
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
  window.addEventListener('online', () => S.edits && S.edits.pump());
  watch('value', () => applyConfig());
  applyConfig();
}
