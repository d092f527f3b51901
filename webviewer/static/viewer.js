// LIIF viewer: panes with locked viewports; each model renders the screen's pixels as tiles.
//
// The view is (cx, cy, z): the input pixel at the centre of every pane and the zoom in screen
// pixels per input pixel. While the view changes, what is there is scaled at once (the input
// image by the browser, and the last level's tiles); SETTLE_MS after it stops, the level
// becomes s = z and the panes ask the server for that level's visible tiles (a new generation:
// the older level's requests are aborted here and refused by the server if still queued).
'use strict';

const SETTLE_MS = 150;
const WHEEL_RATE = 0.0015;
const KEY_ZOOM = 1.25;
const KEY_PAN = 64;

const view = { cx: 0, cy: 0, z: 1 };
let info = null;
let panes = [];
let generation = 0;
// This page's session: the server judges a request stale only against this page's newest view.
const session = Math.random().toString(36).slice(2) + Date.now().toString(36);
let level = null;          // { s, W, H, sx, sy } of the tiles asked for
let settleTimer = null;
let fitZoom = 1;
const timing = { start: 0, first: null, all: null };

const $ = (id) => document.getElementById(id);

function levelOf(s) {
  const W = Math.round(info.width * s), H = Math.round(info.height * s);
  return { s, W, H, sx: W / info.width, sy: H / info.height };
}

function makePane(name, index) {
  const el = document.createElement('div');
  el.className = 'pane';
  el.innerHTML = `<div class="title"><span class="name"></span><span class="psnr"></span></div>
                  <div class="viewport"><img class="base" src="/api/input.png" alt=""></div>`;
  el.querySelector('.name').textContent = name;
  $('panes').appendChild(el);
  const viewport = el.querySelector('.viewport');
  const pane = { name, index, el, viewport, base: el.querySelector('.base'), layers: [],
                 psnr: null };
  bindPointer(viewport);
  return pane;
}

function size(pane) {
  return { w: pane.viewport.clientWidth, h: pane.viewport.clientHeight };
}

// Layer of tiles of one level: { level, el, tiles: Map key -> {img, loaded, controller} }.
function newLayer(pane, lv) {
  const el = document.createElement('div');
  el.className = 'layer';
  pane.viewport.appendChild(el);
  const layer = { level: lv, el, tiles: new Map(), gen: generation };
  pane.layers.push(layer);
  return layer;
}

function dropLayer(pane, layer) {
  for (const t of layer.tiles.values()) {
    if (!t.loaded && t.controller) t.controller.abort();
    if (t.url) URL.revokeObjectURL(t.url);
  }
  layer.el.remove();
  pane.layers = pane.layers.filter((l) => l !== layer);
}

// Screen offset of level pixel (0, 0): integers when the level is the view's zoom, so that
// each tile pixel is one screen pixel.
function layerOffset(pane, lv) {
  const { w, h } = size(pane);
  if (settled(lv)) {
    return { x: Math.round(w / 2 - view.cx * lv.sx), y: Math.round(h / 2 - view.cy * lv.sy),
             kx: 1, ky: 1 };
  }
  return { x: w / 2 - view.cx * view.z, y: h / 2 - view.cy * view.z,
           kx: view.z / lv.sx, ky: view.z / lv.sy };
}

function settled(lv) {
  return lv && lv.s === view.z;
}

function place() {
  $('zoom').textContent = `x${view.z.toFixed(2)}`;
  for (const pane of panes) {
    const { w, h } = size(pane);
    const x = w / 2 - view.cx * view.z, y = h / 2 - view.cy * view.z;
    pane.base.style.transform = `translate(${x}px, ${y}px) scale(${view.z})`;
    for (const layer of pane.layers) {
      const o = layerOffset(pane, layer.level);
      layer.el.style.transform = `translate(${o.x}px, ${o.y}px) scale(${o.kx}, ${o.ky})`;
    }
  }
}

function visibleTiles(pane, lv) {
  const { w, h } = size(pane);
  const o = layerOffset(pane, lv);
  const T = info.tile;
  const c0 = Math.max(0, Math.floor(-o.x / T)), c1 = Math.min(Math.floor((lv.W - 1) / T),
    Math.floor((w - 1 - o.x) / T));
  const r0 = Math.max(0, Math.floor(-o.y / T)), r1 = Math.min(Math.floor((lv.H - 1) / T),
    Math.floor((h - 1 - o.y) / T));
  const tiles = [];
  for (let ty = r0; ty <= r1; ty++) {
    for (let tx = c0; tx <= c1; tx++) {
      const dx = o.x + (tx + 0.5) * T - w / 2, dy = o.y + (ty + 0.5) * T - h / 2;
      tiles.push({ tx, ty, d: dx * dx + dy * dy });
    }
  }
  return tiles.sort((a, b) => a.d - b.d);   // the centre first
}

function requestTiles() {
  for (const pane of panes) {
    const layer = pane.layers[pane.layers.length - 1];
    if (!layer || layer.level !== level) continue;
    for (const { tx, ty } of visibleTiles(pane, level)) {
      const key = `${tx},${ty}`;
      if (layer.tiles.has(key)) continue;
      const img = new Image();
      img.style.left = `${tx * info.tile}px`;
      img.style.top = `${ty * info.tile}px`;
      const tile = { img, loaded: false, controller: new AbortController(), url: null };
      layer.tiles.set(key, tile);
      const url = `/api/tile?pane=${pane.index}&scale=${level.s}&x=${tx}&y=${ty}` +
                  `&gen=${layer.gen}&session=${session}`;
      fetch(url, { signal: tile.controller.signal }).then((r) => {
        if (!r.ok) throw new Error(`${r.status}`);
        return r.blob();
      }).then((blob) => {
        tile.url = URL.createObjectURL(blob);
        img.onload = () => {
          tile.loaded = true;
          if (timing.first === null) timing.first = performance.now() - timing.start;
          layer.el.appendChild(img);
          tileArrived(pane, layer);
        };
        img.src = tile.url;
      }).catch(() => { layer.tiles.delete(key); });   // aborted or stale: asked again later
    }
  }
}

function complete(pane, layer) {
  const wanted = visibleTiles(pane, layer.level);
  return wanted.every(({ tx, ty }) => {
    const t = layer.tiles.get(`${tx},${ty}`);
    return t && t.loaded;
  });
}

function tileArrived(pane, layer) {
  if (!complete(pane, layer)) return;
  for (const old of pane.layers.slice(0, -1)) dropLayer(pane, old);   // fully covered now
  if (panes.every((p) => p.layers.length && complete(p, p.layers[p.layers.length - 1]))) {
    if (timing.all === null) timing.all = performance.now() - timing.start;
  }
}

function settle() {
  settleTimer = null;
  if (!level || level.s !== view.z) {
    generation += 1;
    level = levelOf(view.z);
    timing.start = performance.now();
    timing.first = timing.all = null;
    for (const pane of panes) {
      for (const old of pane.layers) {   // stop what is still in flight for older levels
        for (const t of old.tiles.values()) if (!t.loaded) t.controller.abort();
      }
      if (pane.layers.length > 1) dropLayer(pane, pane.layers[0]);
      newLayer(pane, level);
    }
  }
  place();
  requestTiles();
  updatePsnr();
}

function changed() {
  clampView();
  place();
  if (settleTimer !== null) clearTimeout(settleTimer);
  settleTimer = setTimeout(settle, SETTLE_MS);
}

function clampView() {
  view.z = Math.min(info.max_scale, Math.max(Math.min(fitZoom, 1), view.z));
  view.cx = Math.min(info.width, Math.max(0, view.cx));
  view.cy = Math.min(info.height, Math.max(0, view.cy));
}

function fit() {
  const { w, h } = size(panes[0]);
  fitZoom = Math.min(w / info.width, h / info.height);
  view.cx = info.width / 2;
  view.cy = info.height / 2;
  view.z = fitZoom;
  changed();
}

// Zoom by a factor keeping the input point under screen point (px, py) of a pane in place.
function zoomAt(factor, px, py) {
  const { w, h } = size(panes[0]);
  const x = view.cx + (px - w / 2) / view.z, y = view.cy + (py - h / 2) / view.z;
  const z = Math.min(info.max_scale, Math.max(Math.min(fitZoom, 1), view.z * factor));
  view.cx = x - (px - w / 2) / z;
  view.cy = y - (py - h / 2) / z;
  view.z = z;
  changed();
}

function visibleRegion() {
  const { w, h } = size(panes[0]);
  return { x0: Math.max(0, view.cx - w / 2 / view.z), x1: Math.min(info.width, view.cx + w / 2 / view.z),
           y0: Math.max(0, view.cy - h / 2 / view.z), y1: Math.min(info.height, view.cy + h / 2 / view.z) };
}

function updatePsnr() {
  if (!info.hr) return;
  const r = visibleRegion();
  const gen = generation;
  for (const pane of panes) {
    const span = pane.el.querySelector('.psnr');
    span.textContent = 'PSNR …';
    pane.psnr = null;
    fetch(`/api/psnr?pane=${pane.index}&x0=${r.x0}&y0=${r.y0}&x1=${r.x1}&y1=${r.y1}` +
          `&gen=${gen}&session=${session}`)
      .then((res) => res.json()).then((v) => {
        if (gen !== generation || v.psnr === undefined) return;
        const value = v.identical ? Infinity : v.psnr;  // JSON has no Infinity: a flag
        pane.psnr = { value, region: r };
        span.textContent = v.identical ? 'PSNR ∞ (identical)' : `PSNR ${value.toFixed(4)} dB`;
      }).catch(() => {});
  }
}

// Pointer input on any pane: drag pans all, two pointers pinch-zoom.
const pointers = new Map();
function bindPointer(el) {
  el.addEventListener('pointerdown', (e) => {
    el.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    el.classList.add('dragging');
  });
  el.addEventListener('pointermove', (e) => {
    const p = pointers.get(e.pointerId);
    if (!p) return;
    if (pointers.size === 1) {
      view.cx -= (e.clientX - p.x) / view.z;
      view.cy -= (e.clientY - p.y) / view.z;
      p.x = e.clientX; p.y = e.clientY;
      changed();
    } else if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const before = Math.hypot(a.x - b.x, a.y - b.y);
      p.x = e.clientX; p.y = e.clientY;
      const after = Math.hypot(a.x - b.x, a.y - b.y);
      const rect = el.getBoundingClientRect();
      if (before > 0) zoomAt(after / before, (a.x + b.x) / 2 - rect.left, (a.y + b.y) / 2 - rect.top);
    }
  });
  const end = (e) => { pointers.delete(e.pointerId); el.classList.remove('dragging'); };
  el.addEventListener('pointerup', end);
  el.addEventListener('pointercancel', end);
  el.addEventListener('wheel', (e) => {
    e.preventDefault();
    const rect = el.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * WHEEL_RATE), e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
}

function bindControls() {
  const centre = () => { const { w, h } = size(panes[0]); return [w / 2, h / 2]; };
  $('zoom-in').onclick = () => zoomAt(KEY_ZOOM, ...centre());
  $('zoom-out').onclick = () => zoomAt(1 / KEY_ZOOM, ...centre());
  $('fit').onclick = fit;
  $('one').onclick = () => { view.z = 1; changed(); };
  $('save').onclick = saveView;
  document.addEventListener('keydown', (e) => {
    if (e.target.tagName === 'INPUT') return;
    const keys = { '+': () => zoomAt(KEY_ZOOM, ...centre()), '=': () => zoomAt(KEY_ZOOM, ...centre()),
                   '-': () => zoomAt(1 / KEY_ZOOM, ...centre()), '0': fit, '1': () => { view.z = 1; changed(); },
                   ArrowLeft: () => { view.cx -= KEY_PAN / view.z; changed(); },
                   ArrowRight: () => { view.cx += KEY_PAN / view.z; changed(); },
                   ArrowUp: () => { view.cy -= KEY_PAN / view.z; changed(); },
                   ArrowDown: () => { view.cy += KEY_PAN / view.z; changed(); } };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  window.addEventListener('resize', () => changed());
}

function saveView() {
  const r = visibleRegion();
  $('status').textContent = 'saving…';
  fetch('/api/save', { method: 'POST', headers: { 'Content-Type': 'application/json',
                                                  'X-Viewer-Token': info.token },
                       body: JSON.stringify({ ...r, width: Number($('save-width').value) }) })
    .then((res) => res.json()).then((v) => {
      $('status').textContent = v.error ? `error: ${v.error}` : `saved ${v.files.join(', ')}`;
    });
}

async function init() {
  info = await (await fetch('/api/info')).json();
  panes = info.panes.map(makePane);
  bindControls();
  fit();
}

// For tests and scripts: set and read the view, and know when the model's tiles are all in.
window.viewer = {
  setView(cx, cy, z) { Object.assign(view, { cx, cy, z }); changed(); },
  view: () => ({ ...view }),
  level: () => (level ? { ...level } : null),
  ready: () => settleTimer === null && level !== null && level.s === view.z &&
               panes.every((p) => p.layers.length === 1 && complete(p, p.layers[0])),
  offsets: () => panes.map((p) => { const r = p.viewport.getBoundingClientRect();
                                    const o = layerOffset(p, level);
                                    return { left: r.left, top: r.top, width: r.width,
                                             height: r.height, x: o.x, y: o.y }; }),
  psnr: () => panes.map((p) => p.psnr),
  timing: () => ({ ...timing }),
  visibleRegion,
};

init();
