// Fetched ahead: the pictures (decoded off the main thread) and labels of the open image and of the images
// p / n open (its neighbours in the window of the gallery's order), so a page turn draws at once. Anything
// else is dropped (a 12 MP picture is 48 MB). A picture is the screen-sized copy or, for the open image
// only, the original (`full`).

export class Ahead {
  // fetchPicture(im, full) -> Promise<ImageBitmap>; fetchLabels(id) -> Promise<{idx, points, version}>;
  // release(bitmap): free a dropped picture
  constructor({ fetchPicture, fetchLabels, release }) {
    Object.assign(this, { fetchPicture, fetchLabels, release });
    this.pictures = new Map();  // `${id}:screen` | `${id}:full` -> Promise
    this.labels = new Map();  // `${id}:${label_version}` -> Promise
  }
  picture(im, full) {
    const key = `${im.id}:${full ? 'full' : 'screen'}`;
    return this._get(this.pictures, key, () => this.fetchPicture(im, full));
  }
  labelsOf(im) {
    // as of the version the server named: a newer version (an edit since) is another entry
    return this._get(this.labels, `${im.id}:${im.label_version}`, () => this.fetchLabels(im.id));
  }
  _get(map, key, fetch) {
    if (!map.has(key)) {
      const got = fetch();
      got.catch(() => { if (map.get(key) === got) map.delete(key); });  // a failure is tried again next time
      map.set(key, got);
    }
    return map.get(key);
  }
  keep(current, near, shown) {
    // keep the open image (`current`, its original too) and `near` (screen copies); fetch `near` ahead (labels
    // only of labelled ones: an unlabelled image's map is empty); release what is dropped but `shown`
    const ids = new Set([current && current.id, ...near.map((i) => i.id)]);
    for (const [key, got] of this.pictures) {
      const id = +key.split(':')[0];
      if (ids.has(id) && ((current && id === current.id) || key.endsWith(':screen'))) continue;
      this.pictures.delete(key);
      got.then((b) => { if (b !== shown) this.release(b); }).catch(() => {});
    }
    for (const key of this.labels.keys()) if (!ids.has(+key.split(':')[0])) this.labels.delete(key);
    for (const im of near) {
      this.picture(im, false).catch(() => {});
      if (im.labelled) this.labelsOf(im).catch(() => {});
    }
  }
}
