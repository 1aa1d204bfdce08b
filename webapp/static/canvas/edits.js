// The edit queue: every edit (stroke, point, erase, undo, redo, clear, refine) is an operation with an op_id,
// sent one at a time in order and retried with the same op_id until the server has committed it (the server
// applies an op_id once: storage/ops.py). The queue survives a reload in sessionStorage; an edit the server
// refuses (4xx) is dropped and reported, never retried.

export function newId() {
  return globalThis.crypto && crypto.randomUUID ? crypto.randomUUID()
    : Date.now().toString(36) + Math.random().toString(36).slice(2);
}

export function clientId(storage, make = newId) {
  // this tab's id, sent with its edits: undo and redo take back this tab's own (kept across a reload)
  let id = null;
  try { id = storage.getItem('probeseg-client'); } catch (e) { /* private mode */ }
  if (!id) {
    id = make();
    try { storage.setItem('probeseg-client', id); } catch (e) { /* it lives as long as the page */ }
  }
  return id;
}

export function backoffMs(failures) { return Math.min(10000, 250 * 2 ** Math.min(failures, 6)); }
export function refusedStatus(status) {
  // the server said no for good (bad input, a deleted image or class): retrying the same op cannot help
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export function afterCommit(op, body, knownVersion) {
  // What the open image's label layer needs once the server committed `op` (its reply `body`): 'reload' the
  // stored map, patch it with the reply's 'delta' (undo, redo, clear, erase, unpoint), or nothing (a stroke or
  // point is drawn here already). Each committed edit bumps the version by one: a bigger step means another
  // client's edit came in between, which this page may not have drawn yet.
  const gap = body.applied && !body.duplicate && body.label_version > knownVersion + 1;
  if (gap || (op.kind === 'refine' && body.added)) return 'reload';
  if (body.delta) return 'delta';
  const drawnHere = op.kind === 'stroke' || op.kind === 'point' || op.kind === 'refine';
  if (!drawnHere && (body.applied || body.duplicate)) return 'reload';
  return null;
}

export class EditQueue {
  // send(item) -> {ok, status, body}, or throws when the server cannot be reached. Hooks: committed(item, body)
  // (awaited before the next edit is sent), idle(hadError) when the queue has drained, changed() whenever
  // what the status line shows may have changed.
  constructor({ send, storage, key, committed, idle, changed, sleep, now }) {
    Object.assign(this, { send, storage, key, committed, idle, changed });
    this.sleep = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.now = now || (() => performance.now());
    this.items = []; this.refused = [];
    this.sending = false; this.failures = 0; this.retryAt = 0;
  }

  push(image, op, rec) {
    this.items.push({ image, op, t0: this.now(), rec });
    this.save();
    return this.pump();
  }
  pendingFor(image) { return this.items.some((q) => q.image === image); }
  save() {
    try { this.storage.setItem(this.key, JSON.stringify(this.items.map((q) => ({ image: q.image, op: q.op })))); }
    catch (e) { /* private mode: the queue still lives in this tab */ }
    this.changed();
  }
  load() {
    // the edits a reload interrupted, after any this page queued already (each once: by op_id)
    try {
      const saved = JSON.parse(this.storage.getItem(this.key) || '[]');
      const known = new Set(this.items.map((q) => q.op.op_id));
      for (const q of saved) if (!known.has(q.op.op_id)) this.items.push({ image: q.image, op: q.op, t0: this.now() });
    } catch (e) { /* ignore a corrupt entry */ }
  }

  async pump() {
    if (this.sending) return;
    this.sending = true;
    let hadError = false;
    try {
      while (this.items.length) {
        const item = this.items[0];
        let res = null;
        try { res = await this.send(item); } catch (e) { res = null; }
        if (res && res.ok) {
          this.items.shift(); this.save(); this.failures = 0;
          await this.committed(item, res.body || {});
          continue;
        }
        if (res && refusedStatus(res.status)) {
          this.items.shift(); this.save();
          this.refused.push({ kind: item.op.kind, reason: (res.body && res.body.detail) || `HTTP ${res.status}` });
          hadError = true;
          this.changed();
          continue;
        }
        hadError = true;  // unreachable or 5xx: the same op again, later
        this.failures += 1;
        const wait = backoffMs(this.failures);
        this.retryAt = this.now() + wait;
        this.changed();
        await this.sleep(wait);
      }
    } finally {
      this.sending = false;
      this.retryAt = 0;
      this.idle(hadError);
      this.changed();
    }
  }
}

export function statusLine(q, { hasImage, notice, now }) {
  // the one-line status under the canvas: [text, class]
  const n = q.items.length;
  let text = '', cls = 'ok';
  if (!hasImage) text = 'No image: add some in the Images tab.';
  else if (n) {
    const secs = q.retryAt ? Math.max(0, Math.ceil((q.retryAt - now) / 1000)) : 0;
    text = `${n} unsaved edit${n > 1 ? 's' : ''}` + (secs ? ` · server unreachable, retrying in ${secs} s` : ' · saving…');
    cls = secs ? 'warn' : 'busy';
  } else text = 'All edits saved' + (notice ? ` · ${notice}` : '');
  if (q.refused.length) {
    const last = q.refused[q.refused.length - 1];
    text += ` · ${q.refused.length} edit${q.refused.length > 1 ? 's' : ''} NOT saved (last: ${last.kind}: ${last.reason})`;
    cls = 'bad';
  }
  return [text, cls];
}
