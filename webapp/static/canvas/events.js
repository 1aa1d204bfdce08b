// The server's news: the project's event stream (GET .../events, engine/events.py) and the prediction client
// it wakes. Nothing here polls: a prediction is asked for when the stream says there is a new head (or the
// image's features), and a request is in flight only then.

export class Waker {
  // wake() ends the current next(ms) at once; `wakes` counts them, so a wake that came while a request was on
  // its way is not lost (the loop asks again instead of sleeping)
  constructor() { this.wakes = 0; this.resolve = null; }
  wake() {
    this.wakes += 1;
    if (this.resolve) this.resolve();
  }
  next(ms) {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); this.resolve = null; resolve(); };
      const timer = setTimeout(done, ms);  // (should the stream be down: ask anyway now and then)
      this.resolve = done;
    });
  }
}

export async function predictionLoop({ alive, request, apply, waker, retryMs = 2000, idleMs = 25000, sleep }) {
  // The open image's prediction: ask (request() -> a Response, or null when aborted or unreachable), apply a
  // 200's JSON, then sleep until woken. 204: nothing newer than the head this page has. Else retry soon.
  sleep = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  while (alive()) {
    const wakes = waker.wakes;
    const res = await request();
    if (!alive()) return;
    if (res && res.status === 200) {
      const p = await res.json();
      if (!alive()) return;
      apply(p);
    } else if (!res || res.status !== 204) {
      await sleep(retryMs);
      continue;
    }
    if (alive() && waker.wakes === wakes) await waker.next(idleMs);
  }
}

export class EventClient {
  // One event stream per browser and project: the tab holding a Web Lock opens it and passes every event to
  // the project's other tabs over a BroadcastChannel; when that tab closes, another takes the lock and reopens
  // the stream after the last event seen (the server replays what was missed). Every tab already holds
  // Gradio's heartbeat, and Chromium allows six connections per host: a stream in each tab would leave none
  // for edits from the third tab on. handle(type, data) gets each event of `types`, in this tab.
  constructor({ url, name, types, handle, env = globalThis }) {
    Object.assign(this, { url, name, types, handle, env });
    this.seq = 0;
    this.source = null;
    this.channel = env.BroadcastChannel ? new env.BroadcastChannel(name) : null;
  }
  start() {
    if (this.channel) this.channel.onmessage = (m) => this.dispatch(m.data.type, m.data.data, m.data.seq);
    const locks = this.env.navigator && this.env.navigator.locks;
    if (locks && this.channel) locks.request(this.name, () => { this.open(); return new Promise(() => {}); });
    else this.open();  // (no Web Locks: a stream of this tab's own)
    return this;
  }
  open() {
    const after = this.seq ? `?after=${this.seq}` : '';
    this.source = new this.env.EventSource(`${this.url}${after}`, { withCredentials: true });
    for (const type of this.types) {
      this.source.addEventListener(type, (e) => {
        const data = e.data ? JSON.parse(e.data) : {}, seq = +e.lastEventId || 0;
        this.dispatch(type, data, seq);
        if (this.channel) this.channel.postMessage({ type, data, seq });
      });
    }
  }
  dispatch(type, data, seq) {
    this.seq = Math.max(this.seq, seq || 0);
    if (this.types.includes(type)) this.handle(type, data);
  }
}
