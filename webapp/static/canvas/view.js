// The view transform: screen = view.x + (image + 0.5) * view.s (the +0.5: pixel centres), and the gestures
// that change it. Pure functions of numbers: the canvas applies the result.

export const MIN_SCALE = 0.02, MAX_SCALE = 64;

export function fitView(w, h, W, H, focus) {
  // the view that shows a suggested region (x0, y0, x1, y1) with a margin, or else the whole image, centred
  if (!W || !H || !w || !h) return null;
  const [x0, y0, x1, y1] = focus || [0, 0, W, H];
  const bw = Math.max(1, x1 - x0), bh = Math.max(1, y1 - y0);
  const s = Math.min(w / bw, h / bh) * (focus ? 0.8 : 1);
  return { s, x: w / 2 - (x0 + bw / 2) * s, y: h / 2 - (y0 + bh / 2) * s };
}
export function toImage(view, sx, sy) {
  // a point on the screen (CSS px from the canvas's corner) in image pixel coordinates
  return { x: (sx - view.x) / view.s - 0.5, y: (sy - view.y) / view.s - 0.5 };
}
export function toScreen(view, x, y) {
  return { sx: view.x + (x + 0.5) * view.s, sy: view.y + (y + 0.5) * view.s };
}
export function zoomAt(view, sx, sy, deltaY) {
  // the wheel: zoom about the pointer, so the image point under it stays there
  const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.s * Math.exp(-deltaY * 0.0015)));
  return { s, x: sx - (sx - view.x) * (s / view.s), y: sy - (sy - view.y) * (s / view.s) };
}
export function panBy(start, dx, dy) { return { s: start.s, x: start.x + dx, y: start.y + dy }; }
export function clampPt(W, H, p, r) {
  // a stroke's point kept within a brush radius of the image (a stroke may start just outside its edge)
  const m = r + 0.5;
  return [Math.min(W - 0.5 + m, Math.max(-0.5 - m, p.x)), Math.min(H - 0.5 + m, Math.max(-0.5 - m, p.y))];
}
