// The tools' rules, apart from the DOM: keys, brush sizes, which point a click removes, how a stroke's path
// grows. The canvas (main.js) turns their answers into edits and redraws.

export const KEY_TOOLS = { b: 'brush', e: 'eraser', o: 'point', h: 'pan' };
export const MAX_RADIUS = 60;

export function typing(el) {
  // a key pressed in a text field is the field's, not a shortcut
  return Boolean(el && (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' ||
    (el.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(el.type))));
}

export function keyAction(e) {
  // a key press as an action ({do: 'undo' | 'redo' | 'class' (n) | 'tool' (tool) | 'size' (key) | 'fit'}), or
  // null for a key that is not the canvas's
  const k = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && k === 'z') return { do: e.shiftKey ? 'redo' : 'undo' };
  if ((e.ctrlKey || e.metaKey) && k === 'y') return { do: 'redo' };
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  if (e.key >= '1' && e.key <= '9') return { do: 'class', n: +e.key - 1 };
  if (KEY_TOOLS[k]) return { do: 'tool', tool: KEY_TOOLS[k] };
  if (k === '[' || k === ']') return { do: 'size', key: k };
  if (k === 'f') return { do: 'fit' };
  return null;
}

export function stepRadius(r, key) {
  // a fifth per press (at least 1 px): a few presses go from a fine line to a broad brush
  const next = key === '[' ? Math.min(r - 1, Math.round(r / 1.25)) : Math.max(r + 1, Math.round(r * 1.25));
  return Math.min(MAX_RADIUS, Math.max(1, next));
}

export function pointAt(points, p, tolerance) {
  // the point a click at p (image px) removes: the nearest one it falls on (within its radius, or within
  // `tolerance` image px of a small one), or null
  let best = null, bestD = Infinity;
  for (const q of points) {
    const d = Math.hypot(q.x - p.x, q.y - p.y);
    if (d <= Math.max(q.radius, tolerance) && d < bestD) { best = q; bestD = d; }
  }
  return best;
}

export function extendPath(path, q) {
  // add q to a stroke's path if it moved a quarter radius (at least half a pixel) from the last point: the
  // segment to draw, or null
  const last = path.pts[path.pts.length - 1];
  if (Math.hypot(q[0] - last[0], q[1] - last[1]) < Math.max(0.5, path.radius / 4)) return null;
  path.pts.push(q);
  return [last, q];
}

export function strokeOp(path, id) {
  // the edit a finished path sends (storage/ops.py: stroke with its class, or erase)
  const op = { op_id: id, kind: path.kind, radius: path.radius, points: path.pts };
  if (path.kind === 'stroke') op.class_id = path.classId;
  return op;
}
