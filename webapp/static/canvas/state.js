// The canvas's state: one object per mounted canvas, every field listed here, and the pure rules over it
// (class lookup, the default class, what the URL keeps across a reload).

export const PRED_MAX = 1024;  // longest side of the prediction layer (an exact subsample of core's full-size map)
export const SCREEN = 1536;  // storage.thumbnails.SCREEN: a bigger image is drawn from a copy this size first
export const TOOLS = ['brush', 'eraser', 'point', 'pan'];

export function createState(makeCanvas = () => null) {
  return {
    cfg: null, token: 0, img: null, W: 0, H: 0,
    // tools and layer settings
    tool: 'brush', classId: null, radius: 8, pointRadius: 6, opacity: 0.5, labelOpacity: 0.7,
    showPred: true, showLabels: true, predMode: 'classes', hidden: new Set(), autoTrain: true, followEdges: true,
    // view and pointer
    view: { s: 1, x: 0, y: 0 }, userView: false, focus: null, restoreView: null, mouse: null, spaceDown: false,
    drag: null, path: null, drawQueued: false, urlTimer: 0,
    // layers: the label map (class index per pixel, 255 unlabelled) drawn on labelCanvas; the prediction
    labelCanvas: makeCanvas(), predCanvas: makeCanvas(), labelIdx: null, labelsFor: null, points: [],
    pred: null, headVersion: null, knownVersion: -1, predAbort: null,
    // fetched ahead, and the window of the gallery's order p / n page through
    ahead: null, window: [], winPos: 0, navSeq: 0, navTimer: 0, passed: new Set(),
    // edits (the queue itself: edits.js) and what the status line says
    edits: null, client: null, othersEdited: null, notice: null, statusTimer: null,
    // the event stream
    events: null, eventsFor: null, headEventAt: null, panelTimer: 0,
    // measured (bench/ and tests): per stroke t_up, t_ack, t_head, t_req, t_resp, t_applied, t_paint, t_edges
    strokes: [], toggleMs: [],
  };
}

export function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
export function classById(classes, id) { return (classes || []).find((c) => c.id === id); }
export function classByIndex(classes, i) { return (classes || []).find((c) => c.index === i); }
export function defaultClassId(classes) {
  // the brush starts on the first class that is not the background (most strokes mark objects)
  const list = classes || [];
  const c = list.find((k) => k.name.toLowerCase() !== 'background') || list[0];
  return c ? c.id : null;
}

// The URL holds what a reload restores: image, tool, class, the zoom the user chose, and auto-train and
// follow-edges when off.
export function readUrl(search) {
  const q = new URLSearchParams(search);
  const out = {};
  if (TOOLS.includes(q.get('tool'))) out.tool = q.get('tool');
  const cls = parseInt(q.get('class'), 10);
  if (Number.isFinite(cls)) out.classId = cls;
  if (q.get('auto') === '0') out.autoTrain = false;
  if (q.get('edges') === '0') out.followEdges = false;
  const v = (q.get('view') || '').split(',').map(Number);
  if (v.length === 3 && v.every(Number.isFinite) && v[0] > 0) out.restoreView = { s: v[0], x: v[1], y: v[2] };
  const image = parseInt(q.get('image'), 10);
  if (Number.isFinite(image)) out.imageId = image;
  return out;
}
export function writeUrl(href, S) {
  const u = new URL(href);
  if (S.cfg && S.cfg.image) u.searchParams.set('image', S.cfg.image.id);
  u.searchParams.set('tool', S.tool);
  if (S.classId != null) u.searchParams.set('class', S.classId);
  if (S.userView) u.searchParams.set('view', [S.view.s.toFixed(4), S.view.x.toFixed(1), S.view.y.toFixed(1)].join(','));
  else u.searchParams.delete('view');
  if (S.autoTrain) u.searchParams.delete('auto'); else u.searchParams.set('auto', '0');
  if (S.followEdges) u.searchParams.delete('edges'); else u.searchParams.set('edges', '0');
  return u.toString();
}
