// EmbeddingScatter's canvas: points (or their thumbnails) in 2-D, pan / zoom / hover / click / box or lasso select.
// Hand-written ESM for anywidget: no build step, no imports, works offline.
//
// Data arrives once as binary traits: `points` (float32 x,y pairs), `labels` (int32), `atlas` (one PNG
// holding every thumbnail in a grid of `atlas_columns`, `thumb_size` px each). Drawing happens on a 2-D
// canvas, batched per class colour, only for points inside the view, coalesced to one frame per
// requestAnimationFrame. The selection goes back to Python as the `selected` list trait: a click picks one
// point; shift-drag draws a box or a free-hand lasso, as the `select_mode` trait says.

const DIM = 0.18;        // alpha of unselected points while something is selected
const HIT_PX = 8;        // how close (screen px) a click or hover must be to a point
const LASSO_STEP_PX = 2; // a lasso vertex is kept once the mouse moved this far from the last one
const SVG = "http://www.w3.org/2000/svg";

function bytesOf(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof DataView) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

function typed(value, Kind) {
  const b = bytesOf(value);
  return new Kind(b.slice().buffer);  // copy: aligned for the typed view
}

function rgba(hex, alpha) {  // '#rrggbb' blended over white -> one little-endian RGBA pixel
  const v = parseInt(hex.slice(1, 7), 16) || 0;
  const mix = (c) => Math.round(255 - alpha * (255 - c));
  return (255 << 24 | mix(v & 255) << 16 | mix((v >> 8) & 255) << 8 | mix(v >> 16)) >>> 0;
}

function make(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

class Scatter {
  constructor(model, el) {
    this.model = model;
    this.root = make("div", "cw-scatter-root", el);
    this.canvas = make("canvas", "cw-scatter-canvas", this.root);
    this.box = make("div", "cw-scatter-box", this.root);
    this.lasso = this.root.appendChild(document.createElementNS(SVG, "svg"));  // the path, drawn over the canvas
    this.lasso.setAttribute("class", "cw-scatter-lasso");
    this.lassoPath = this.lasso.appendChild(document.createElementNS(SVG, "polygon"));
    this.tip = make("div", "cw-scatter-tip", this.root);
    this.tipCanvas = make("canvas", "cw-scatter-tip-image", this.tip);
    this.tipText = make("div", "cw-scatter-tip-text", this.tip);
    this.legend = make("div", "cw-scatter-legend", this.root);
    this.ctx = this.canvas.getContext("2d");
    this.view = null;          // {cx, cy, scale}: data centre and px per data unit
    this.userMoved = false;    // auto-fit new layouts until the user pans or zooms
    this.atlas = null;
    this.frameTimes = [];      // ms per frame while panning / zooming (moving the cached picture)
    this.fullTimes = [];       // ms per full redraw
    this.cache = document.createElement("canvas");
    this.cacheView = null;
    this.pending = false;
    this.canvas.__cwScatter = this;  // handle for browser tests and the frame-time benchmark
    this.readAll();
    this.listen();
    this.resize();
  }

  // --- data from the model -------------------------------------------------------------------
  readAll() {
    this.readPoints();
    this.readLabels();
    this.readSelection();
    this.readAtlas();
    this.drawLegend();
  }

  readPoints() {
    const xy = typed(this.model.get("points"), Float32Array);
    this.n = xy.length >> 1;
    this.xs = new Float32Array(this.n);
    this.ys = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) { this.xs[i] = xy[2 * i]; this.ys[i] = xy[2 * i + 1]; }
    this.fitted = null;
    if (!this.userMoved || !this.view) this.fit();
  }

  readLabels() {
    const labels = typed(this.model.get("labels"), Int32Array);
    this.labels = labels.length === this.n ? labels : new Int32Array(this.n);
    this.groups = new Map();  // label -> point indices, so each colour is set once per frame
    for (let i = 0; i < this.n; i++) {
      const l = this.labels[i];
      if (!this.groups.has(l)) this.groups.set(l, []);
      this.groups.get(l).push(i);
    }
  }

  readSelection() {
    this.selected = new Set(this.model.get("selected") || []);
  }

  readAtlas() {
    const png = bytesOf(this.model.get("atlas"));
    this.atlas = null;
    if (!png.length) return this.schedule();
    const url = URL.createObjectURL(new Blob([png.slice()], { type: "image/png" }));
    const img = new Image();
    img.onload = () => { this.atlas = img; this.root.dataset.atlas = "loaded"; this.schedule(); };
    img.src = url;
  }

  color(label) {
    const colors = this.model.get("colors") || [];
    return colors.length ? colors[((label % colors.length) + colors.length) % colors.length] : "#1f77b4";
  }

  drawLegend() {
    const names = this.model.get("class_names") || [];
    this.legend.innerHTML = "";
    names.forEach((name, i) => {
      const item = make("span", "cw-scatter-legend-item", this.legend);
      make("span", "cw-scatter-swatch", item).style.background = this.color(i);
      item.appendChild(document.createTextNode(name));
    });
  }

  // --- view ----------------------------------------------------------------------------------
  resize() {
    const w = this.model.get("width"), h = this.model.get("height");
    const r = window.devicePixelRatio || 1;
    this.w = w; this.h = h;
    this.root.style.width = w + "px";
    this.lasso.setAttribute("width", w); this.lasso.setAttribute("height", h);
    this.canvas.style.width = w + "px"; this.canvas.style.height = h + "px";
    this.canvas.width = Math.round(w * r); this.canvas.height = Math.round(h * r);
    this.ctx.setTransform(r, 0, 0, r, 0, 0);
    if (!this.userMoved) this.fit();
    this.schedule();
  }

  fit() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < this.n; i++) {
      const x = this.xs[i], y = this.ys[i];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!(x1 >= x0)) { x0 = -1; x1 = 1; y0 = -1; y1 = 1; }
    const w = this.model.get("width"), h = this.model.get("height"), pad = 24;
    const scale = Math.min((w - 2 * pad) / Math.max(x1 - x0, 1e-9), (h - 2 * pad) / Math.max(y1 - y0, 1e-9));
    this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale };
  }

  sx(x) { return this.w / 2 + (x - this.view.cx) * this.view.scale; }
  sy(y) { return this.h / 2 - (y - this.view.cy) * this.view.scale; }
  dataX(px) { return this.view.cx + (px - this.w / 2) / this.view.scale; }
  dataY(py) { return this.view.cy - (py - this.h / 2) / this.view.scale; }

  screenOf(i) {  // page coordinates of point i (tests click there)
    const [left, top] = this.origin();
    return { x: left + this.sx(this.xs[i]), y: top + this.sy(this.ys[i]) };
  }

  panBy(dx, dy) {
    this.view.cx -= dx / this.view.scale;
    this.view.cy += dy / this.view.scale;
    this.userMoved = true;
    this.interact();
  }

  zoomAt(px, py, factor) {
    const x = this.dataX(px), y = this.dataY(py);
    this.view.scale *= factor;
    this.view.cx = x - (px - this.w / 2) / this.view.scale;
    this.view.cy = y + (py - this.h / 2) / this.view.scale;
    this.userMoved = true;
    this.interact();
  }

  sendView() {  // the visible data rectangle, so Python's snapshot() draws what the user sees
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(() => {
      const v = [this.dataX(0), this.dataX(this.w), this.dataY(this.h), this.dataY(0)];
      this.model.set("view", v);
      this.model.save_changes();
    }, 300);
  }

  // --- drawing -------------------------------------------------------------------------------
  schedule() {
    if (!this.interacting) this.cacheView = null;  // data or style changed: redraw in full
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  interact() {  // while panning / zooming, frames move the last full picture; a full redraw follows at rest
    this.interacting = true;
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => { this.interacting = false; this.schedule(); }, 150);
    this.schedule();
  }

  draw() {
    const t0 = performance.now();
    if (this.interacting && this.cacheView) {
      this.blitCache();
      this.frameTimes.push(performance.now() - t0);
    } else {
      this.drawFull();
      this.fullTimes.push(performance.now() - t0);
    }
    if (this.frameTimes.length > 240) this.frameTimes.shift();
    if (this.fullTimes.length > 240) this.fullTimes.shift();
  }

  blitCache() {  // the cached picture, scaled and shifted from the view it was drawn at to the current view
    const c = this.cacheView, v = this.view, a = v.scale / c.scale;
    const bx = this.w / 2 * (1 - a) + (c.cx - v.cx) * v.scale;
    const by = this.h / 2 * (1 - a) - (c.cy - v.cy) * v.scale;
    this.ctx.fillStyle = "#fff";
    this.ctx.fillRect(0, 0, this.w, this.h);
    this.ctx.drawImage(this.cache, 0, 0, this.cache.width, this.cache.height, bx, by, this.w * a, this.h * a);
  }

  drawFull() {
    const ctx = this.ctx;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, this.w, this.h);
    if (this.atlas && this.model.get("show_thumbnails")) this.drawThumbs();
    else this.drawDots();
    this.drawSelection();
    this.cache.width = this.canvas.width; this.cache.height = this.canvas.height;
    this.cache.getContext("2d").drawImage(this.canvas, 0, 0);
    this.cacheView = { ...this.view };
  }

  drawThumbs() {
    const ctx = this.ctx, any = this.selected.size > 0;
    for (const [label, members] of this.groups) {
      ctx.strokeStyle = this.color(label);
      for (const i of members) {
        const px = this.sx(this.xs[i]), py = this.sy(this.ys[i]);
        if (px < -40 || py < -40 || px > this.w + 40 || py > this.h + 40) continue;
        ctx.globalAlpha = any && !this.selected.has(i) ? DIM : 1;
        this.drawThumb(i, px, py);
      }
    }
    ctx.globalAlpha = 1;
  }

  drawDots() {  // straight into the pixel buffer: 100,000 points cost a few ms, not one fillRect each
    const W = this.canvas.width, H = this.canvas.height, r = W / this.w;
    const image = this.ctx.getImageData(0, 0, W, H), px32 = new Uint32Array(image.data.buffer);
    const any = this.selected.size > 0, half = Math.max(1, Math.round(2 * r));
    for (const [label, members] of this.groups) {
      const full = rgba(this.color(label), 1), dim = rgba(this.color(label), DIM);
      for (const i of members) {
        const x = Math.round(this.sx(this.xs[i]) * r), y = Math.round(this.sy(this.ys[i]) * r);
        if (x < half || y < half || x >= W - half || y >= H - half) continue;
        const c = any && !this.selected.has(i) ? dim : full;
        for (let yy = y - half; yy < y + half; yy++) px32.fill(c, yy * W + x - half, yy * W + x + half);
      }
    }
    this.ctx.putImageData(image, 0, 0);
  }

  thumbPx() {  // thumbnails grow a little with zoom, up to twice their atlas size
    const ts = this.model.get("thumb_size");
    const base = Math.min(Math.max(this.w, this.h) / 30, ts);
    return Math.max(8, Math.min(2 * ts, base * Math.sqrt(this.view.scale / this.fitScale())));
  }

  fitScale() {
    if (!this.fitted || this.fitted.n !== this.n) {
      const saved = this.view; this.fit(); this.fitted = { n: this.n, scale: this.view.scale }; this.view = saved;
    }
    return this.fitted.scale;
  }

  drawThumb(i, px, py) {
    const ts = this.model.get("thumb_size"), cols = this.model.get("atlas_columns");
    const s = this.thumbSize || (this.thumbSize = this.thumbPx());
    const ax = (i % cols) * ts, ay = Math.floor(i / cols) * ts;
    this.ctx.drawImage(this.atlas, ax, ay, ts, ts, px - s / 2, py - s / 2, s, s);
    this.ctx.lineWidth = 2;
    this.ctx.strokeRect(px - s / 2, py - s / 2, s, s);
  }

  drawSelection() {
    this.thumbSize = 0;
    if (!this.selected.size) return;
    const ctx = this.ctx;
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    for (const i of this.selected) {
      if (i >= this.n) continue;
      ctx.beginPath();
      ctx.arc(this.sx(this.xs[i]), this.sy(this.ys[i]), 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  // --- picking -------------------------------------------------------------------------------
  nearest(px, py) {
    let best = -1, bestD = HIT_PX * HIT_PX;
    const r = this.atlas && this.model.get("show_thumbnails") ? this.thumbPx() / 2 : HIT_PX;
    bestD = Math.max(bestD, r * r);
    for (let i = 0; i < this.n; i++) {
      const dx = this.sx(this.xs[i]) - px, dy = this.sy(this.ys[i]) - py;
      const d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  }

  inBox(x0, y0, x1, y1) {
    const lo = [Math.min(x0, x1), Math.min(y0, y1)], hi = [Math.max(x0, x1), Math.max(y0, y1)];
    const out = [];
    for (let i = 0; i < this.n; i++) {
      const px = this.sx(this.xs[i]), py = this.sy(this.ys[i]);
      if (px >= lo[0] && px <= hi[0] && py >= lo[1] && py <= hi[1]) out.push(i);
    }
    return out;
  }

  inPolygon(poly) {  // even-odd rule, in data space: inside when a ray to the right crosses the outline an odd
    // number of times (a lasso that crosses itself leaves its doubly-enclosed parts out, as the drawn fill shows)
    const xs = poly.map((v) => v[0]), ys = poly.map((v) => v[1]), out = [];
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    for (let i = 0; i < this.n; i++) {
      const x = this.xs[i], y = this.ys[i];
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;  // outside the bounding box: no need to walk the outline
      let inside = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [xa, ya] = poly[a], [xb, yb] = poly[b];
        if ((ya > y) !== (yb > y) && x < xa + (y - ya) * (xb - xa) / (yb - ya)) inside = !inside;
      }
      if (inside) out.push(i);
    }
    return out;
  }

  select(indices) {
    this.selected = new Set(indices);
    this.model.set("selected", indices);
    this.model.save_changes();
    this.schedule();
  }

  showTip(i, px, py) {
    if (i < 0) { this.tip.style.display = "none"; this.root.dataset.hover = ""; return; }
    const names = this.model.get("class_names") || [];
    const label = this.labels[i];
    this.tipText.textContent = `#${i} · ${names[label] ?? label}`;
    const ts = this.model.get("thumb_size"), cols = this.model.get("atlas_columns");
    this.tipCanvas.style.display = this.atlas ? "block" : "none";
    if (this.atlas) {
      this.tipCanvas.width = 2 * ts; this.tipCanvas.height = 2 * ts;
      const c = this.tipCanvas.getContext("2d");
      c.imageSmoothingEnabled = false;
      c.drawImage(this.atlas, (i % cols) * ts, Math.floor(i / cols) * ts, ts, ts, 0, 0, 2 * ts, 2 * ts);
    }
    this.tip.style.left = Math.min(px + 12, this.w - 2 * ts - 12) + "px";
    this.tip.style.top = Math.min(py + 12, this.h - 2 * ts - 30) + "px";
    this.tip.style.display = "block";
    this.root.dataset.hover = String(i);
  }

  // --- events --------------------------------------------------------------------------------
  origin() {  // page position of the drawing area: inside the canvas' border
    const r = this.canvas.getBoundingClientRect();
    return [r.left + this.canvas.clientLeft, r.top + this.canvas.clientTop];
  }

  local(e) {
    const [left, top] = this.origin();
    return [e.clientX - left, e.clientY - top];
  }

  listen() {
    const c = this.canvas;
    this.handlers = {
      pointerdown: (e) => this.onDown(e), pointermove: (e) => this.onMove(e), pointerup: (e) => this.onUp(e),
      pointercancel: () => { this.drag = null; this.hideShapes(); },
      pointerleave: () => { if (!this.drag) this.showTip(-1); },
      wheel: (e) => { e.preventDefault(); const [x, y] = this.local(e); this.zoomAt(x, y, Math.exp(-e.deltaY * 0.0015)); this.sendView(); },
      dblclick: () => { this.userMoved = false; this.fit(); this.schedule(); this.sendView(); },
    };
    const active = ["wheel", "pointerdown"];  // these two call preventDefault
    for (const [name, fn] of Object.entries(this.handlers)) {
      c.addEventListener(name, fn, { passive: !active.includes(name) });
    }
    this.modelHandlers = {
      "change:points": () => { this.readPoints(); this.readLabels(); this.schedule(); },
      "change:labels": () => { this.readLabels(); this.schedule(); },
      "change:selected": () => { this.readSelection(); this.schedule(); },
      "change:atlas": () => this.readAtlas(),
      "change:colors": () => { this.drawLegend(); this.schedule(); },
      "change:class_names": () => this.drawLegend(),
      "change:show_thumbnails": () => this.schedule(),
      "change:width": () => this.resize(),
      "change:height": () => this.resize(),
    };
    for (const [name, fn] of Object.entries(this.modelHandlers)) this.model.on(name, fn);
  }

  onDown(e) {
    if (e.button !== 0) return;
    // No mouse events follow a cancelled pointerdown: JupyterLab's shift-click cell selection would otherwise
    // swallow every mousemove of a shift-drag. The capture keeps a drag going outside the canvas.
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    const [x, y] = this.local(e);
    const shape = e.shiftKey ? this.model.get("select_mode") : null;  // "box", "lasso", or null: pan
    this.drag = { x, y, lastX: x, lastY: y, shape, moved: false };
    if (shape === "lasso") { this.drag.path = [[this.dataX(x), this.dataY(y)]]; this.drag.screen = [`${x},${y}`]; }
  }

  onMove(e) {
    const [x, y] = this.local(e);
    const d = this.drag;
    if (!d) return this.showTip(this.nearest(x, y), x, y);
    d.moved = d.moved || Math.abs(x - d.x) + Math.abs(y - d.y) > 3;
    if (d.shape === "box") {
      Object.assign(this.box.style, { display: "block", left: Math.min(x, d.x) + "px", top: Math.min(y, d.y) + "px",
        width: Math.abs(x - d.x) + "px", height: Math.abs(y - d.y) + "px" });
    } else if (d.shape === "lasso") {
      if (Math.abs(x - d.lastX) + Math.abs(y - d.lastY) < LASSO_STEP_PX) return;  // keep lastX/Y: the last vertex
      this.addVertex(d, x, y);
    } else {
      this.panBy(x - d.lastX, y - d.lastY);
    }
    d.lastX = x; d.lastY = y;
  }

  addVertex(d, x, y) {  // the canvas is not redrawn while lassoing: only the SVG outline over it changes
    d.path.push([this.dataX(x), this.dataY(y)]);
    d.screen.push(`${x},${y}`);
    this.lassoPath.setAttribute("points", d.screen.join(" "));
    this.lasso.style.display = "block";
  }

  hideShapes() {
    this.box.style.display = "none";
    this.lasso.style.display = "none";
    this.lassoPath.setAttribute("points", "");
  }

  onUp(e) {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    const [x, y] = this.local(e);
    this.hideShapes();
    if (d.shape === "box" && d.moved) return this.select(this.inBox(d.x, d.y, x, y));
    if (d.shape === "lasso" && d.moved) {
      d.path.push([this.dataX(x), this.dataY(y)]);
      return this.select(d.path.length >= 3 ? this.inPolygon(d.path) : []);
    }
    if (d.moved) return this.sendView();
    const i = this.nearest(x, y);
    this.select(i >= 0 ? [i] : []);
  }

  destroy() {
    for (const [name, fn] of Object.entries(this.handlers)) this.canvas.removeEventListener(name, fn);
    for (const [name, fn] of Object.entries(this.modelHandlers)) this.model.off(name, fn);
    clearTimeout(this.viewTimer);
  }
}

function render({ model, el }) {
  el.classList.add("cw-scatter-canvas-host");
  const scatter = new Scatter(model, el);
  return () => scatter.destroy();
}

export default { render };
