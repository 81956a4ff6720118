// fractured review screen — plain JS, no dependencies, works offline.
// Sections: helpers · api · state · auth · worklist · image loading · rendering ·
// pointer interaction · findings panel · actions · keys · export · boot.
'use strict';

(function () {

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }

  const pad = (n) => String(n).padStart(2, '0');

  // "2026-11-28 10:00" in local time; the raw string if it does not parse.
  function fmtTime(iso) {
    const d = new Date(iso);
    if (!iso || isNaN(d)) return iso || '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function localDate(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);
  const fmtScore = (s) => (typeof s === 'number' ? s.toFixed(2) : '—');

  function badge(status) {
    const b = el('span', 'badge st-' + status, status);
    b.dataset.status = status;
    return b;
  }

  function show(node, visible) { node.hidden = !visible; }

  const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  // ---------------------------------------------------------------- api

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  // Same-origin JSON request. Throws ApiError with the server's {"error"} text.
  // opts.raw returns the Response (binary bodies); opts.signal aborts.
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: opts.raw ? '*/*' : 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: opts.signal };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && path !== '/api/login' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'Cannot reach the server (' + e.message + ')');
    }
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`.trim();
      try {
        const j = await res.json();
        if (j && j.error) msg = j.error;
      } catch (_) { /* not JSON */ }
      if (res.status === 401 && path !== '/api/login') onUnauthorized();
      throw new ApiError(res.status, msg, res.headers.get('Retry-After'));
    }
    if (opts.raw) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // POST with CSRF; on 403 refresh the token once (it may have rotated) and retry.
  async function post(path, body, opts) {
    try {
      return await api('POST', path, body, opts);
    } catch (e) {
      if (e.status === 403 && (await refreshCsrf())) return api('POST', path, body, opts);
      throw e;
    }
  }

  async function refreshCsrf() {
    try {
      const s = await api('GET', '/api/session');
      const changed = s && s.csrf && s.csrf !== state.csrf;
      if (changed) state.csrf = s.csrf;
      return !!changed;
    } catch (_) {
      return false;
    }
  }

  // ---------------------------------------------------------------- state

  const DEFAULT_WL = { c: 32768, w: 65536 };
  // Window presets in 0..65535 units; 5 = auto (histogram 1 %..99 %).
  const PRESETS = {
    1: { c: 32768, w: 65536 }, // full range
    2: { c: 46000, w: 18000 }, // bone: narrow, high
    3: { c: 24000, w: 36000 }, // soft tissue: lower, wider
    4: { c: 32768, w: 16384 }, // high contrast
  };
  const WL_PER_PX = 128;          // window/level change per dragged screen pixel
  const POLL_MS = 3000;
  const COLORS = {
    definite: '#ff9100', suspicious: '#ffd600', accepted: '#00e676',
    rejected: '#9e9e9e', missed: '#ff4dff',
  };

  const state = {
    user: null, role: null, csrf: null, idleS: 0, lastActivity: Date.now(),
    filter: 'all', list: [], counts: {}, listKey: '', listSeq: 0, listBusy: false,
    lastIndex: 0, pollTimer: null,
    currentId: null, image: null, loadCtl: null,
    pix: null,                      // { w, h, data: Uint16Array, p1, p99 }
    off: null, offCtx: null, imgData: null, u32: null, lut: null,
    wl: { c: DEFAULT_WL.c, w: DEFAULT_WL.w, invert: false },
    view: { s: 1, tx: 0, ty: 0, fitted: true },
    needImage: false, rafPending: false,
    overlays: true, drawMode: false, wlMode: false,
    drag: null,                     // active pointer gesture
    pendingMissed: null,            // drawn, unsaved box in image pixels
    selectedFid: null, rejectingFid: null, busy: false,
  };

  const canDecide = () => state.role === 'reviewer' || state.role === 'admin';
  const canExport = () => state.role === 'auditor' || state.role === 'admin';

  // ---------------------------------------------------------------- auth

  function startSession(s) {
    state.user = s.user;
    state.role = s.role;
    state.csrf = s.csrf;
    state.idleS = Number(s.session_idle_s) || 0;
    state.lastActivity = Date.now();
    $('whoami').textContent = `${s.user} (${s.role})`;
    show($('logout'), true);
    show($('login-view'), false);
    show($('app-view'), true);
    document.body.dataset.role = s.role;
    show($('export-panel'), canExport());
    initExportDates();
    state.listKey = '';
    refreshList(true);
    startPolling();
    updateControls();
    requestAnimationFrame(resizeCanvas);
    const m = /^#image=(\d+)$/.exec(location.hash);
    if (m) openImage(Number(m[1]));
  }

  // Drops everything patient-related and shows the login form.
  function showLogin(message) {
    state.user = state.role = state.csrf = null;
    stopPolling();
    closeImage();
    state.list = [];
    state.listKey = '';
    $('worklist').textContent = '';
    $('whoami').textContent = '';
    delete document.body.dataset.role;
    show($('logout'), false);
    show($('app-view'), false);
    show($('login-view'), true);
    setLoginError(message || '');
    $('login-user').focus();
  }

  function onUnauthorized() {
    if (state.user) showLogin('Your session has ended. Please sign in again.');
  }

  function setLoginError(msg) {
    const e = $('login-error');
    e.textContent = msg;
    show(e, !!msg);
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const user = $('login-user').value.trim();
    const secret = $('login-secret').value;
    if (!user || !secret) { setLoginError('Enter user and secret.'); return; }
    const btn = $('login-submit');
    btn.disabled = true;
    let lockS = 0;
    try {
      const s = await api('POST', '/api/login', { user, secret });
      $('login-secret').value = '';
      setLoginError('');
      startSession(s);
    } catch (e) {
      lockS = e.status === 429 ? parseInt(e.retryAfter, 10) || 0 : 0;
      setLoginError(e.message + (lockS ? ` (try again in ${lockS} s)` : ''));
    } finally {
      if (lockS) setTimeout(() => { btn.disabled = false; }, lockS * 1000);
      else btn.disabled = false;
    }
  }

  async function logout(message) {
    try { await post('/api/logout'); } catch (_) { /* signed out either way */ }
    showLogin(message || 'Signed out.');
  }

  // ---------------------------------------------------------------- worklist

  function startPolling() {
    stopPolling();
    state.pollTimer = setInterval(pollTick, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer) clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function pollTick() {
    if (!state.user) return;
    // Client-side inactivity sign-out (polling must not keep a walked-away screen open).
    if (state.idleS > 0 && Date.now() - state.lastActivity > state.idleS * 1000) {
      const span = state.idleS >= 120 ? `${Math.round(state.idleS / 60)} min` : `${state.idleS} s`;
      logout(`Signed out after ${span} without activity.`);
      return;
    }
    if (!state.listBusy) refreshList(false);
  }

  // Fetches the list; re-renders only when filter|version changed.
  async function refreshList(force) {
    const seq = ++state.listSeq;
    const filter = state.filter;
    state.listBusy = true;
    try {
      const data = await api('GET', `/api/images?status=${encodeURIComponent(filter)}&limit=500`);
      if (seq !== state.listSeq || filter !== state.filter || !state.user) return;
      showListError('');
      const key = filter + '|' + data.version;
      if (!force && key === state.listKey) return;
      state.listKey = key;
      state.list = data.images || [];
      state.counts = data.counts || {};
      renderCounts();
      renderList();
      maybeReloadCurrent();
    } catch (e) {
      if (e.status !== 401 && seq === state.listSeq) showListError('Worklist update failed: ' + e.message);
    } finally {
      if (seq === state.listSeq) state.listBusy = false;
    }
  }

  function showListError(msg) {
    $('worklist-error').textContent = msg;
    show($('worklist-error'), !!msg);
  }

  function renderCounts() {
    for (const opt of $('status-filter').options) {
      const n = state.counts[opt.value];
      opt.textContent = opt.value + (n != null ? ` (${n})` : '');
    }
  }

  function renderList() {
    const ul = $('worklist');
    const active = document.activeElement;
    const focusId = active && active.classList && active.classList.contains('wl-item') ? active.dataset.imageId : null;
    const scroll = ul.scrollTop;
    ul.textContent = '';
    if (!state.list.length) ul.appendChild(el('li', 'wl-empty muted', 'No images'));
    for (const im of state.list) {
      const li = el('li', 'wl-item');
      li.tabIndex = 0;
      li.setAttribute('role', 'option');
      li.dataset.imageId = im.id;
      li.dataset.status = im.status;
      const top = el('div', 'wl-top');
      top.append(el('span', 'wl-name', im.name), badge(im.status));
      const meta = el('div', 'wl-meta');
      const n = im.findings || 0;
      meta.append(
        el('span', 'wl-time', fmtTime(im.created_at)),
        el('span', 'wl-count', `${n} finding${n === 1 ? '' : 's'}` + (n ? ` · max ${fmtScore(im.max_score)}` : '')),
      );
      if (im.reviewed) meta.append(el('span', 'wl-reviewed', '✓ reviewed'));
      li.append(top, meta);
      ul.appendChild(li);
    }
    ul.scrollTop = scroll;
    markSelectedInList();
    if (focusId) {
      const f = ul.querySelector(`.wl-item[data-image-id="${CSS.escape(focusId)}"]`);
      if (f) f.focus({ preventScroll: true });
    }
  }

  function markSelectedInList() {
    for (const li of $('worklist').querySelectorAll('.wl-item')) {
      const sel = Number(li.dataset.imageId) === state.currentId;
      li.classList.toggle('selected', sel);
      li.setAttribute('aria-selected', sel ? 'true' : 'false');
    }
    const i = state.list.findIndex((im) => im.id === state.currentId);
    if (i >= 0) state.lastIndex = i;
  }

  // When the open image finishes analysis (pending -> something) load its results.
  function maybeReloadCurrent() {
    if (!state.image) return;
    const item = state.list.find((im) => im.id === state.currentId);
    if (item && state.image.status === 'pending' && item.status !== 'pending') {
      openImage(state.currentId, { keepView: !!state.pix });
    }
  }

  // ArrowUp/ArrowDown: previous/next image in the shown list.
  function stepImage(dir) {
    const list = state.list;
    if (!list.length) return;
    let i = list.findIndex((im) => im.id === state.currentId);
    if (i < 0) {
      // The open image left the filtered list: continue from where it was.
      i = dir > 0 ? clamp(state.lastIndex, 0, list.length - 1) : clamp(state.lastIndex - 1, 0, list.length - 1);
      if (state.currentId == null) i = 0;
    } else {
      i = clamp(i + dir, 0, list.length - 1);
      if (list[i].id === state.currentId) return;
    }
    openImage(list[i].id, { focusList: true });
  }

  // ---------------------------------------------------------------- image loading

  async function openImage(id, opts = {}) {
    id = Number(id);
    if (state.loadCtl) state.loadCtl.abort();
    const ctl = new AbortController();
    state.loadCtl = ctl;
    const reloadSame = opts.keepView && id === state.currentId && state.pix;
    state.currentId = id;
    closeRejectForm();
    setDrawMode(false);
    setActionError('');
    setActionStatus('');
    markSelectedInList();
    if (opts.focusList) {
      const li = $('worklist').querySelector(`.wl-item[data-image-id="${id}"]`);
      if (li) { li.focus({ preventScroll: true }); li.scrollIntoView({ block: 'nearest' }); }
    }
    history.replaceState(null, '', '#image=' + id);
    if (!reloadSame) {
      state.image = null;
      state.pix = null;
      setViewerMessage('Loading…');
      renderPanel();
      draw();
    }
    const pixP = reloadSame ? null : loadPixels(id, ctl.signal);
    if (pixP) pixP.catch(() => {}); // handled below; avoid an unhandled-rejection warning
    try {
      const detail = await api('GET', `/api/images/${id}`, undefined, { signal: ctl.signal });
      if (ctl !== state.loadCtl) return;
      state.image = detail;
      selectDefaultFinding();
      renderPanel();
      requestDraw();
    } catch (e) {
      if (e.name === 'AbortError' || ctl !== state.loadCtl) return;
      setViewerMessage('Cannot open image: ' + e.message);
      renderPanel();
      return;
    }
    if (!pixP) return;
    try {
      const pix = await pixP;
      if (ctl !== state.loadCtl) return;
      setPixels(pix);
    } catch (e) {
      if (e.name === 'AbortError' || ctl !== state.loadCtl) return;
      setViewerMessage('Image pixels unavailable: ' + e.message);
    }
  }

  async function loadPixels(id, signal) {
    const res = await api('GET', `/api/images/${id}/pixels`, undefined, { signal, raw: true });
    const w = parseInt(res.headers.get('X-Width'), 10);
    const h = parseInt(res.headers.get('X-Height'), 10);
    const buf = await res.arrayBuffer();
    if (!(w > 0 && h > 0) || buf.byteLength !== w * h * 2) {
      throw new Error(`unexpected pixel data (${w}×${h}, ${buf.byteLength} bytes)`);
    }
    let data;
    if (LITTLE_ENDIAN) {
      data = new Uint16Array(buf);
    } else {
      const dv = new DataView(buf);
      data = new Uint16Array(w * h);
      for (let i = 0; i < data.length; i++) data[i] = dv.getUint16(i * 2, true);
    }
    return Object.assign({ w, h, data }, percentiles(data));
  }

  // 1 % and 99 % points of the grey-value histogram (for the auto window).
  function percentiles(data) {
    const hist = new Uint32Array(65536);
    for (let i = 0; i < data.length; i++) hist[data[i]]++;
    const lo = data.length * 0.01, hi = data.length * 0.99;
    let acc = 0, p1 = 0, p99 = 65535, gotLo = false;
    for (let v = 0; v < 65536; v++) {
      acc += hist[v];
      if (!gotLo && acc > lo) { p1 = v; gotLo = true; }
      if (acc >= hi) { p99 = v; break; }
    }
    return { p1, p99 };
  }

  function setPixels(pix) {
    state.pix = pix;
    state.off = document.createElement('canvas');
    state.off.width = pix.w;
    state.off.height = pix.h;
    state.offCtx = state.off.getContext('2d');
    state.imgData = state.offCtx.createImageData(pix.w, pix.h);
    state.u32 = new Uint32Array(state.imgData.data.buffer);
    setViewerMessage('');
    resetView(); // each image opens fitted, with the default window
    updateControls();
  }

  function closeImage() {
    if (state.loadCtl) state.loadCtl.abort();
    state.loadCtl = null;
    state.currentId = null;
    state.image = null;
    state.pix = state.off = state.offCtx = state.imgData = state.u32 = null;
    state.selectedFid = null;
    closeRejectForm();
    setDrawMode(false);
    setViewerMessage('Select an image from the worklist.');
    renderPanel();
    draw();
  }

  function setViewerMessage(msg) {
    $('viewer-message').textContent = msg;
    show($('viewer-message'), !!msg);
  }

  // ---------------------------------------------------------------- rendering

  // Window/level LUT: 65536 grey values -> packed RGBA.
  function buildLut() {
    const lut = state.lut || (state.lut = new Uint32Array(65536));
    const { c, w, invert } = state.wl;
    const lo = c - w / 2, k = 255 / w;
    for (let v = 0; v < 65536; v++) {
      let g = (v - lo) * k + 0.5;
      g = g <= 0 ? 0 : g >= 255 ? 255 : g | 0;
      if (invert) g = 255 - g;
      lut[v] = LITTLE_ENDIAN ? (0xff000000 | (g << 16) | (g << 8) | g) >>> 0 : ((g << 24) | (g << 16) | (g << 8) | 0xff) >>> 0;
    }
    return lut;
  }

  function renderOffscreen() {
    const lut = buildLut(), src = state.pix.data, out = state.u32;
    for (let i = 0, n = src.length; i < n; i++) out[i] = lut[src[i]];
    state.offCtx.putImageData(state.imgData, 0, 0);
  }

  // Coalesces redraws into one animation frame; imageToo re-applies the LUT.
  // A timer backs up requestAnimationFrame, which some hosts throttle or pause.
  function requestDraw(imageToo) {
    if (imageToo) state.needImage = true;
    if (state.rafPending) return;
    state.rafPending = true;
    let raf = 0, timer = 0;
    const run = () => {
      cancelAnimationFrame(raf);
      clearTimeout(timer);
      if (!state.rafPending) return;
      state.rafPending = false;
      draw();
    };
    raf = requestAnimationFrame(run);
    timer = setTimeout(run, 100);
  }

  function resizeCanvas() {
    const cv = $('viewer-canvas'), dpr = window.devicePixelRatio || 1;
    const w = Math.round(cv.clientWidth * dpr), h = Math.round(cv.clientHeight * dpr);
    if (!w || !h) return;
    if (cv.width !== w || cv.height !== h) {
      cv.width = w;
      cv.height = h;
    }
    if (state.view.fitted && state.pix) fitView();
    draw();
  }

  function draw() {
    const cv = $('viewer-canvas'), ctx = cv.getContext('2d'), dpr = window.devicePixelRatio || 1;
    if (state.needImage && state.pix) { state.needImage = false; renderOffscreen(); }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, cv.width, cv.height);
    updateViewInfo();
    if (!state.pix) return;
    const v = state.view;
    ctx.setTransform(dpr * v.s, 0, 0, dpr * v.s, dpr * v.tx, dpr * v.ty);
    ctx.imageSmoothingEnabled = v.s * dpr < 3; // show pixels when zoomed far in
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(state.off, 0, 0);
    // Overlays in CSS pixels so line widths do not scale with zoom.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (state.overlays && state.image) drawOverlays(ctx);
    drawPendingMissed(ctx);
  }

  function findingStyle(f) {
    const kind = f.decision ? f.decision.kind : null;
    if (kind === 'reject') return { color: COLORS.rejected, dash: [7, 5], strike: true };
    const dotted = f.operating_point === 'suspicious';
    const color = kind === 'accept' ? COLORS.accepted : dotted ? COLORS.suspicious : COLORS.definite;
    return { color, dash: dotted ? [1, 5] : [], strike: false };
  }

  function drawOverlays(ctx) {
    const im = state.image;
    const findings = (im.findings || []).slice();
    // Selected finding last, so it is on top.
    findings.sort((a, b) => (a.id === state.selectedFid) - (b.id === state.selectedFid));
    for (const f of findings) {
      const st = findingStyle(f), sel = f.id === state.selectedFid;
      strokeBox(ctx, f, st.color, st.dash, sel ? 3.5 : 2);
      drawLabel(ctx, f, fmtScore(f.score), st.color, st.strike, sel);
    }
    for (const m of im.missed || []) {
      strokeBox(ctx, m, COLORS.missed, [], 2);
      drawLabel(ctx, m, 'missed', COLORS.missed, false, false);
    }
  }

  function drawPendingMissed(ctx) {
    const d = state.drag;
    const r = d && d.mode === 'draw' && d.moved ? normRect(d.i0, d.i) : state.pendingMissed;
    if (!r) return;
    strokeBox(ctx, r, COLORS.missed, [6, 4], 2);
    drawLabel(ctx, r, 'missed (unsaved)', COLORS.missed, false, false);
  }

  function toScreen(b) {
    const v = state.view;
    return { x1: b.x1 * v.s + v.tx, y1: b.y1 * v.s + v.ty, x2: b.x2 * v.s + v.tx, y2: b.y2 * v.s + v.ty };
  }

  function strokeBox(ctx, box, color, dash, width) {
    const r = toScreen(box);
    ctx.lineCap = dash.length && dash[0] <= 1 ? 'round' : 'butt';
    ctx.setLineDash(dash);
    ctx.lineWidth = width + 2; // dark halo for contrast on bright bone
    ctx.strokeStyle = 'rgba(0,0,0,0.65)';
    ctx.strokeRect(r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1);
    ctx.lineWidth = width;
    ctx.strokeStyle = color;
    ctx.strokeRect(r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1);
    ctx.setLineDash([]);
  }

  function drawLabel(ctx, box, text, color, strike, selected) {
    const r = toScreen(box);
    ctx.font = `${selected ? 700 : 600} 13px system-ui, sans-serif`;
    const tw = ctx.measureText(text).width, th = 16;
    let x = Math.min(r.x1, r.x2), y = Math.min(r.y1, r.y2) - th - 2;
    if (y < 0) y = Math.min(r.y1, r.y2) + 2; // no room above: put it inside
    ctx.fillStyle = 'rgba(0,0,0,0.75)';
    ctx.fillRect(x, y, tw + 8, th);
    ctx.fillStyle = color;
    ctx.textBaseline = 'middle';
    ctx.fillText(text, x + 4, y + th / 2 + 1);
    if (strike) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(x + 3, y + th / 2 + 1);
      ctx.lineTo(x + tw + 5, y + th / 2 + 1);
      ctx.stroke();
    }
  }

  function updateViewInfo() {
    const info = $('view-info');
    if (!state.pix) { info.textContent = ''; return; }
    const { c, w, invert } = state.wl;
    info.textContent = `W ${Math.round(w)} / C ${Math.round(c)}${invert ? ' · inverted' : ''} · ${Math.round(state.view.s * 100)} %` +
      (state.overlays ? '' : ' · boxes hidden');
  }

  // ---- view transform & window

  function fitView() {
    const cv = $('viewer-canvas'), p = state.pix;
    if (!p || !cv.clientWidth || !cv.clientHeight) return;
    const s = Math.min(cv.clientWidth / p.w, cv.clientHeight / p.h);
    state.view = { s, tx: (cv.clientWidth - p.w * s) / 2, ty: (cv.clientHeight - p.h * s) / 2, fitted: true };
  }

  // Space / Reset: fit, default window, no invert.
  function resetView() {
    state.wl = { c: DEFAULT_WL.c, w: DEFAULT_WL.w, invert: false };
    $('invert-btn').setAttribute('aria-pressed', 'false');
    fitView();
    requestDraw(true);
  }

  function zoomAt(p, factor) {
    const v = state.view, cv = $('viewer-canvas');
    if (!state.pix) return;
    const fit = Math.min(cv.clientWidth / state.pix.w, cv.clientHeight / state.pix.h) || 1;
    const s = clamp(v.s * factor, fit / 8, 64);
    const f = s / v.s;
    state.view = { s, tx: p.x - (p.x - v.tx) * f, ty: p.y - (p.y - v.ty) * f, fitted: false };
    requestDraw();
  }

  function zoomCenter(factor) {
    const cv = $('viewer-canvas');
    zoomAt({ x: cv.clientWidth / 2, y: cv.clientHeight / 2 }, factor);
  }

  function applyPreset(n) {
    if (!state.pix) return;
    let p = PRESETS[n];
    if (n === 5) p = { c: (state.pix.p1 + state.pix.p99) / 2, w: Math.max(state.pix.p99 - state.pix.p1, 1) };
    if (!p) return;
    state.wl.c = p.c;
    state.wl.w = p.w;
    requestDraw(true);
  }

  function toggleInvert() {
    if (!state.pix) return;
    state.wl.invert = !state.wl.invert;
    $('invert-btn').setAttribute('aria-pressed', String(state.wl.invert));
    requestDraw(true);
  }

  function setOverlays(on) {
    state.overlays = on;
    $('overlay-toggle').setAttribute('aria-pressed', String(on));
    requestDraw();
  }

  // ---------------------------------------------------------------- pointer interaction

  function canvasPoint(e) {
    const r = $('viewer-canvas').getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  function toImage(p) {
    const v = state.view;
    return { x: (p.x - v.tx) / v.s, y: (p.y - v.ty) / v.s };
  }

  // Rectangle from two image points, clamped to the image, 0.1 px precision.
  function normRect(a, b) {
    const W = state.pix.w, H = state.pix.h, r1 = (v) => Math.round(v * 10) / 10;
    return {
      x1: r1(clamp(Math.min(a.x, b.x), 0, W)), y1: r1(clamp(Math.min(a.y, b.y), 0, H)),
      x2: r1(clamp(Math.max(a.x, b.x), 0, W)), y2: r1(clamp(Math.max(a.y, b.y), 0, H)),
    };
  }

  function onPointerDown(e) {
    if (!state.pix || state.drag) return;
    const cv = $('viewer-canvas');
    cv.focus({ preventScroll: true });
    let mode;
    if (e.button === 2 || (e.button === 0 && (e.shiftKey || state.wlMode))) mode = 'wl';
    else if (e.button === 0 && state.drawMode) mode = 'draw';
    else if (e.button === 0 || e.button === 1) mode = 'pan';
    else return;
    e.preventDefault();
    try { cv.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    const p = canvasPoint(e);
    state.drag = {
      mode, id: e.pointerId, x0: p.x, y0: p.y, moved: false,
      wl0: { c: state.wl.c, w: state.wl.w }, t0: { tx: state.view.tx, ty: state.view.ty },
      i0: toImage(p), i: toImage(p),
    };
    cv.classList.add('dragging');
  }

  function onPointerMove(e) {
    const d = state.drag;
    if (!d || e.pointerId !== d.id) return;
    const p = canvasPoint(e), dx = p.x - d.x0, dy = p.y - d.y0;
    if (Math.abs(dx) + Math.abs(dy) > 3) d.moved = true;
    if (d.mode === 'pan') {
      state.view.tx = d.t0.tx + dx;
      state.view.ty = d.t0.ty + dy;
      state.view.fitted = false;
      requestDraw();
    } else if (d.mode === 'wl') {
      // horizontal = width, vertical = centre
      state.wl.w = clamp(d.wl0.w + dx * WL_PER_PX, 1, 65536);
      state.wl.c = clamp(d.wl0.c + dy * WL_PER_PX, 0, 65535);
      requestDraw(true);
    } else if (d.mode === 'draw') {
      d.i = toImage(p);
      requestDraw();
    }
  }

  function onPointerUp(e) {
    const d = state.drag;
    if (!d || e.pointerId !== d.id) return;
    state.drag = null;
    $('viewer-canvas').classList.remove('dragging');
    if (e.type === 'pointercancel') { requestDraw(); return; }
    if (d.mode === 'draw' && d.moved) {
      d.i = toImage(canvasPoint(e));
      const r = normRect(d.i0, d.i);
      if (r.x2 - r.x1 >= 1 && r.y2 - r.y1 >= 1) {
        state.pendingMissed = r;
        $('missed-hint').textContent = 'Add an optional note, then save.';
        updateControls();
        $('missed-note').focus({ preventScroll: true });
      }
    } else if (!d.moved && d.mode !== 'wl') {
      hitTest(toImage(canvasPoint(e)));
    }
    requestDraw();
  }

  // A click on a box selects that finding (smallest box wins).
  function hitTest(pt) {
    if (!state.image || !state.overlays) return;
    let best = null, bestArea = Infinity;
    for (const f of state.image.findings || []) {
      if (pt.x >= f.x1 && pt.x <= f.x2 && pt.y >= f.y1 && pt.y <= f.y2) {
        const a = (f.x2 - f.x1) * (f.y2 - f.y1);
        if (a < bestArea) { best = f; bestArea = a; }
      }
    }
    if (best) selectFinding(best.id, { scroll: true });
  }

  function onWheel(e) {
    if (!state.pix) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    zoomAt(canvasPoint(e), Math.exp(-e.deltaY * unit * 0.0015));
  }

  function setDrawMode(on) {
    on = !!on && canDecide() && !!state.pix;
    if (!on && $('missed-form').contains(document.activeElement)) $('viewer-canvas').focus({ preventScroll: true });
    state.drawMode = on;
    state.pendingMissed = null;
    $('draw-missed').setAttribute('aria-pressed', String(on));
    $('viewer-canvas').classList.toggle('draw-mode', on);
    show($('missed-form'), on);
    $('missed-note').value = '';
    $('missed-hint').textContent = 'Drag a rectangle around the missed fracture.';
    updateControls();
    requestDraw();
  }

  // ---------------------------------------------------------------- findings panel

  function findings() { return (state.image && state.image.findings) || []; }

  function selectDefaultFinding() {
    const fs = findings();
    if (fs.some((f) => f.id === state.selectedFid)) return;
    const u = fs.find((f) => !f.decision);
    state.selectedFid = u ? u.id : fs.length ? fs[0].id : null;
  }

  function findingNode(fid) {
    return $('findings').querySelector(`.finding[data-finding-id="${fid}"]`);
  }

  function selectFinding(fid, opts = {}) {
    if (fid == null) return;
    if (state.rejectingFid != null && state.rejectingFid !== fid) closeRejectForm();
    state.selectedFid = fid;
    for (const li of $('findings').querySelectorAll('.finding')) {
      const sel = Number(li.dataset.findingId) === fid;
      li.classList.toggle('selected', sel);
      li.setAttribute('aria-current', sel ? 'true' : 'false');
    }
    const node = findingNode(fid);
    if (node && opts.focus) node.focus();
    if (node && (opts.focus || opts.scroll)) node.scrollIntoView({ block: 'nearest' });
    requestDraw();
  }

  // n/p/Tab: move the selection through the findings (wrapping).
  function stepFinding(dir) {
    const fs = findings();
    if (!fs.length) return;
    const i = fs.findIndex((f) => f.id === state.selectedFid);
    const next = i < 0 ? 0 : (i + dir + fs.length) % fs.length;
    selectFinding(fs[next].id, { focus: true });
  }

  // After a decision: next undecided finding after the current one, if any.
  function selectNextUndecided() {
    const fs = findings();
    const i = fs.findIndex((f) => f.id === state.selectedFid);
    for (let k = 1; k <= fs.length; k++) {
      const f = fs[(i + k + fs.length) % fs.length];
      if (!f.decision) { selectFinding(f.id, { scroll: true }); return; }
    }
  }

  function decisionText(d) {
    if (!d) return 'Undecided';
    const who = `${d.reviewer || '?'}, ${fmtTime(d.at)}`;
    return d.kind === 'accept' ? `Accepted — ${who}` : `Rejected — ${who}` + (d.reason ? `: ${d.reason}` : '');
  }

  function renderPanel() {
    const im = state.image;
    // image header
    $('image-name').textContent = im ? im.name : '';
    const st = $('image-status');
    st.textContent = im ? im.status : '';
    st.className = 'badge' + (im ? ' st-' + im.status : '');
    if (im) st.dataset.status = im.status; else delete st.dataset.status;
    show(st, !!im);
    show($('unverified-label'), !!im && !im.reviewed);

    // model
    const m = im && im.model;
    $('model-info').textContent = !im ? '—' : m ? `${m.bundle_id} · ${m.version} · ${m.precision}` : 'no model';
    $('model-info').title = m ? `backend ${m.backend}, bundle ${m.bundle_sha256}` : '';
    const meta = [];
    if (im) {
      meta.push(`${im.width}×${im.height} ${im.format || ''}`.trim(), fmtTime(im.created_at));
      const op = im.operating_points;
      if (op) meta.push(`suspicious ≥ ${fmtScore(op.suspicious)}, definite ≥ ${fmtScore(op.definite)}`);
      if (m && m.backend) meta.push(m.backend);
      const t = im.timings || {};
      const ts = Object.keys(t).map((k) => `${k} ${Math.round(t[k])} ms`);
      if (ts.length) meta.push(ts.join(', '));
    }
    $('image-meta').textContent = meta.join(' · ');
    $('image-error').textContent = im && im.error ? 'Failed: ' + im.error : '';
    show($('image-error'), !!(im && im.error));

    renderFindings();
    renderMissed();
    renderNotes();

    const neg = im && im.negative;
    $('negative-info').textContent = neg ? `No fracture confirmed — ${neg.reviewer}, ${fmtTime(neg.at)}` : im ? '' : 'No image open.';
    updateControls();
  }

  function renderFindings() {
    const ul = $('findings');
    const form = $('reject-form');
    $('reject-form-home').appendChild(form); // park the form before clearing the list
    ul.textContent = '';
    const im = state.image;
    if (!im) return;
    const fs = findings();
    if (!fs.length) {
      const why = im.status === 'pending' ? 'Analysis pending…' : im.status === 'failed' ? 'Not analysed (failed).'
        : !im.model ? 'Not analysed (no model).' : 'No findings.';
      ul.appendChild(el('li', 'findings-empty muted', why));
    }
    fs.forEach((f, idx) => {
      const li = el('li', 'finding');
      li.tabIndex = 0;
      li.dataset.findingId = f.id;
      li.dataset.decision = f.decision ? f.decision.kind : 'none';
      li.dataset.operatingPoint = f.operating_point;
      const st = findingStyle(f);
      const head = el('div', 'finding-head');
      const swatch = el('span', 'swatch op-' + f.operating_point);
      swatch.style.borderColor = st.color;
      head.append(
        swatch,
        el('span', 'finding-title', `${idx + 1}. ${f.class_name || 'finding'}`),
        el('span', 'finding-score', fmtScore(f.score)),
        el('span', 'finding-op', f.operating_point),
      );
      const dec = el('div', 'finding-decision dec-' + li.dataset.decision, decisionText(f.decision));
      const acts = el('div', 'finding-actions row');
      const acc = el('button', 'btn accept-btn', 'Accept');
      acc.type = 'button';
      acc.setAttribute('aria-pressed', String(!!f.decision && f.decision.kind === 'accept'));
      const rej = el('button', 'btn reject-btn', 'Reject');
      rej.type = 'button';
      rej.setAttribute('aria-pressed', String(!!f.decision && f.decision.kind === 'reject'));
      acts.append(acc, rej);
      li.append(head, dec, acts);
      ul.appendChild(li);
    });
    if (state.rejectingFid != null) {
      const node = findingNode(state.rejectingFid);
      if (node) node.appendChild(form); else closeRejectForm();
    }
    selectFinding(state.selectedFid);
  }

  function renderMissed() {
    const ul = $('missed-list');
    ul.textContent = '';
    const ms = (state.image && state.image.missed) || [];
    if (!ms.length) ul.appendChild(el('li', 'muted', 'None.'));
    for (const m of ms) {
      const li = el('li', 'missed-item');
      li.dataset.missedId = m.id;
      li.append(el('span', 'missed-tag', 'missed'),
        el('span', '', ` ${m.reviewer}, ${fmtTime(m.at)}` + (m.note ? `: ${m.note}` : '')));
      ul.appendChild(li);
    }
  }

  function renderNotes() {
    const ul = $('notes-list');
    ul.textContent = '';
    for (const n of (state.image && state.image.notes) || []) {
      const li = el('li', 'note-item');
      li.dataset.noteId = n.id;
      li.append(el('div', 'note-meta muted small', `${n.reviewer}, ${fmtTime(n.at)}`), el('div', 'note-text', n.text));
      ul.appendChild(li);
    }
  }

  // Enables/hides every control from the current state.
  function updateControls() {
    const can = canDecide(), im = state.image, busy = state.busy;
    const readable = !!im && im.status !== 'pending' && im.status !== 'failed';
    for (const n of document.querySelectorAll('.decide-only')) show(n, can);
    for (const b of document.querySelectorAll('.accept-btn, .reject-btn')) {
      show(b, can);
      b.disabled = !can || busy;
    }
    $('draw-missed').disabled = !can || !readable || !state.pix;
    $('missed-save').disabled = !can || busy || !state.pendingMissed;
    $('reject-confirm').disabled = busy;
    $('note-text').disabled = !can || !im;
    $('note-save').disabled = !can || busy || !im;
    $('confirm-negative').disabled = !can || busy || !readable;
    for (const b of document.querySelectorAll('#viewer-toolbar .btn:not(#draw-missed)')) b.disabled = !state.pix;
    $('export-btn').disabled = busy;
  }

  // ---------------------------------------------------------------- actions

  function setActionError(msg) {
    $('action-error').textContent = msg;
    show($('action-error'), !!msg);
  }

  function setActionStatus(msg) { $('action-status').textContent = msg; }

  // Runs one server action: clears/sets #action-error, applies the returned image.
  async function runAction(okText, fn) {
    if (state.busy) return false;
    state.busy = true;
    setActionError('');
    setActionStatus('');
    updateControls();
    try {
      const res = await fn();
      if (res && typeof res === 'object' && res.id != null && Array.isArray(res.findings)) applyImage(res);
      setActionStatus(okText);
      refreshList(true);
      return true;
    } catch (e) {
      if (e.status !== 401) setActionError(e.message);
      return false;
    } finally {
      state.busy = false;
      updateControls();
    }
  }

  function applyImage(img) {
    if (img.id !== state.currentId) return; // user moved on meanwhile
    state.image = img;
    selectDefaultFinding();
    renderPanel();
    requestDraw();
  }

  function needDecider() {
    if (canDecide()) return true;
    setActionError('Your role cannot record decisions.');
    return false;
  }

  async function acceptFinding(fid) {
    if (fid == null || !needDecider()) return;
    closeRejectForm();
    state.selectedFid = fid;
    if (await runAction('Finding accepted.', () => post(`/api/findings/${fid}/decision`, { decision: 'accept' }))) {
      selectNextUndecided();
    }
  }

  function openRejectForm(fid) {
    if (fid == null || !needDecider()) return;
    selectFinding(fid, { scroll: true });
    const node = findingNode(fid);
    if (!node) return;
    state.rejectingFid = fid;
    $('reject-reason').value = '';
    node.appendChild($('reject-form'));
    $('reject-reason').focus();
  }

  function closeRejectForm() {
    state.rejectingFid = null;
    const form = $('reject-form');
    if (form) $('reject-form-home').appendChild(form);
  }

  async function confirmReject(ev) {
    if (ev) ev.preventDefault();
    const fid = state.rejectingFid;
    if (fid == null) return;
    const reason = $('reject-reason').value.trim();
    if (!reason) {
      setActionError('A reason is required to reject a finding.');
      $('reject-reason').focus();
      return;
    }
    const ok = await runAction('Finding rejected.', () => post(`/api/findings/${fid}/decision`, { decision: 'reject', reason }));
    if (ok) {
      closeRejectForm();
      selectNextUndecided();
      const node = findingNode(state.selectedFid);
      if (node) node.focus({ preventScroll: true });
    }
  }

  async function saveMissed(ev) {
    if (ev) ev.preventDefault();
    const r = state.pendingMissed, id = state.currentId;
    if (!r || id == null || !needDecider()) return;
    const body = { x1: r.x1, y1: r.y1, x2: r.x2, y2: r.y2 };
    const note = $('missed-note').value.trim();
    if (note) body.note = note;
    if (await runAction('Missed box saved.', () => post(`/api/images/${id}/missed`, body))) setDrawMode(false);
  }

  async function saveNote() {
    const id = state.currentId, text = $('note-text').value.trim();
    if (id == null || !needDecider()) return;
    if (!text) { setActionError('The note is empty.'); return; }
    if (await runAction('Note saved.', () => post(`/api/images/${id}/note`, { text }))) $('note-text').value = '';
  }

  async function confirmNegative() {
    const id = state.currentId;
    if (id == null || !needDecider()) return;
    await runAction('No fracture confirmed.', () => post(`/api/images/${id}/no-fracture`, {}));
  }

  // ---------------------------------------------------------------- keys

  function isTyping(t) {
    if (!t || !t.tagName) return false;
    const tag = t.tagName;
    return tag === 'TEXTAREA' || tag === 'SELECT' || t.isContentEditable ||
      (tag === 'INPUT' && !['button', 'checkbox', 'radio', 'submit'].includes(t.type));
  }

  function onKey(e) {
    if (!state.user) return;
    const t = e.target;
    if (isTyping(t)) {
      if (e.key === 'Escape') {
        if (t.id === 'reject-reason') { closeRejectForm(); focusSelectedFinding(); e.preventDefault(); }
        else if (t.id === 'missed-note') { setDrawMode(false); $('viewer-canvas').focus(); e.preventDefault(); }
      } else if (t.id === 'note-text' && e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        saveNote();
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const onControl = t && (t.tagName === 'BUTTON' || t.tagName === 'A');
    const onFinding = t && t.classList && t.classList.contains('finding');
    switch (e.key) {
      case 'ArrowDown': stepImage(1); break;
      case 'ArrowUp': stepImage(-1); break;
      case '1': case '2': case '3': case '4': case '5': applyPreset(Number(e.key)); break;
      case 'i': case 'I': toggleInvert(); break;
      case ' ':
        if (onControl) return; // let the focused button act
        resetView();
        break;
      case 'o': case 'O': setOverlays(!state.overlays); break;
      case 'a': case 'A': acceptFinding(state.selectedFid); break;
      case 'r': case 'R': openRejectForm(state.selectedFid); break;
      case 'n': case 'N': stepFinding(1); break;
      case 'p': case 'P': stepFinding(-1); break;
      case 'd': case 'D': setDrawMode(!state.drawMode); break;
      case '+': case '=': zoomCenter(1.25); break;
      case '-': case '_': zoomCenter(0.8); break;
      case 'Escape':
        if (state.rejectingFid != null) closeRejectForm();
        else if (state.drawMode) setDrawMode(false);
        else return;
        break;
      case 'Tab': {
        // Tab cycles findings from the viewer/body/a finding; elsewhere it moves focus normally.
        const fromViewer = t === document.body || t === document.documentElement || t === $('viewer-canvas');
        const fs = findings();
        if (!(fromViewer || onFinding) || !fs.length) return;
        const i = fs.findIndex((f) => f.id === state.selectedFid);
        const next = i + (e.shiftKey ? -1 : 1);
        // From a finding, let focus leave the list at either end (no keyboard trap).
        if (onFinding && (next < 0 || next >= fs.length)) return;
        if (fromViewer && i >= 0 && !findingNode(state.selectedFid).matches(':focus')) {
          selectFinding(state.selectedFid, { focus: true }); // first Tab focuses the selected one
        } else {
          stepFinding(e.shiftKey ? -1 : 1);
        }
        break;
      }
      default: return;
    }
    e.preventDefault();
  }

  function focusSelectedFinding() {
    const node = findingNode(state.selectedFid);
    if (node) node.focus({ preventScroll: true });
  }

  // ---------------------------------------------------------------- export

  function initExportDates() {
    const to = new Date(), from = new Date();
    from.setDate(from.getDate() - 30);
    if (!$('export-from').value) $('export-from').value = localDate(from);
    if (!$('export-to').value) $('export-to').value = localDate(to);
  }

  function filenameFrom(disposition) {
    if (!disposition) return null;
    const star = /filename\*\s*=\s*[^']*''([^;]+)/i.exec(disposition);
    if (star) { try { return decodeURIComponent(star[1].trim()); } catch (_) { /* fall through */ } }
    const m = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
    return m ? m[1].trim() : null;
  }

  async function doExport() {
    const from = $('export-from').value, to = $('export-to').value, format = $('export-format').value;
    if (!from || !to) { setActionError('Choose both export dates.'); return; }
    if (from > to) { setActionError('The export start date is after the end date.'); return; }
    $('export-status').textContent = 'Exporting…';
    let name = null;
    const ok = await runAction('Export downloaded.', async () => {
      const res = await post('/api/export', { from, to, format }, { raw: true });
      const blob = await res.blob();
      name = filenameFrom(res.headers.get('Content-Disposition')) || `fracture-export-${from}_${to}.${format}`;
      const url = URL.createObjectURL(blob);
      const a = el('a');
      a.href = url;
      a.download = name;
      a.hidden = true;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
      return null;
    });
    $('export-status').textContent = ok ? `Saved ${name}` : '';
  }

  // ---------------------------------------------------------------- boot

  function wire() {
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', () => logout());

    // worklist
    $('status-filter').addEventListener('change', (e) => {
      state.filter = e.target.value;
      state.listKey = '';
      refreshList(true);
    });
    const wl = $('worklist');
    wl.addEventListener('click', (e) => {
      const li = e.target.closest('.wl-item');
      if (li) openImage(li.dataset.imageId);
    });
    wl.addEventListener('keydown', (e) => {
      const li = e.target.closest('.wl-item');
      if (li && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault();
        e.stopPropagation();
        openImage(li.dataset.imageId);
      }
    });

    // viewer
    const cv = $('viewer-canvas');
    cv.addEventListener('pointerdown', onPointerDown);
    cv.addEventListener('pointermove', onPointerMove);
    cv.addEventListener('pointerup', onPointerUp);
    cv.addEventListener('pointercancel', onPointerUp);
    cv.addEventListener('wheel', onWheel, { passive: false });
    cv.addEventListener('contextmenu', (e) => e.preventDefault());
    new ResizeObserver(resizeCanvas).observe($('viewer-wrap'));
    window.addEventListener('resize', resizeCanvas); // also catches devicePixelRatio changes

    for (const b of document.querySelectorAll('.preset-btn')) {
      b.addEventListener('click', () => applyPreset(Number(b.dataset.preset)));
    }
    $('invert-btn').addEventListener('click', toggleInvert);
    $('reset-view').addEventListener('click', resetView);
    $('overlay-toggle').addEventListener('click', () => setOverlays(!state.overlays));
    $('zoom-in').addEventListener('click', () => zoomCenter(1.25));
    $('zoom-out').addEventListener('click', () => zoomCenter(0.8));
    $('wl-mode').addEventListener('click', () => {
      state.wlMode = !state.wlMode;
      $('wl-mode').setAttribute('aria-pressed', String(state.wlMode));
    });
    $('draw-missed').addEventListener('click', () => setDrawMode(!state.drawMode));
    $('missed-form').addEventListener('submit', saveMissed);
    $('missed-cancel').addEventListener('click', () => setDrawMode(false));

    // findings: clicks on the buttons, selection by click or focus
    const fl = $('findings');
    fl.addEventListener('click', (e) => {
      const li = e.target.closest('.finding');
      if (!li) return;
      const fid = Number(li.dataset.findingId);
      if (e.target.closest('.accept-btn')) acceptFinding(fid);
      else if (e.target.closest('.reject-btn')) openRejectForm(fid);
      else if (!e.target.closest('#reject-form')) selectFinding(fid);
    });
    fl.addEventListener('focusin', (e) => {
      const li = e.target.closest('.finding');
      if (li && Number(li.dataset.findingId) !== state.selectedFid && !e.target.closest('#reject-form')) {
        selectFinding(Number(li.dataset.findingId));
      }
    });
    $('reject-form').addEventListener('submit', confirmReject);
    $('reject-cancel').addEventListener('click', () => { closeRejectForm(); focusSelectedFinding(); });

    $('note-save').addEventListener('click', saveNote);
    $('confirm-negative').addEventListener('click', confirmNegative);
    $('export-btn').addEventListener('click', doExport);

    document.addEventListener('keydown', onKey);
    for (const ev of ['pointerdown', 'keydown', 'wheel']) {
      document.addEventListener(ev, () => { state.lastActivity = Date.now(); }, { capture: true, passive: true });
    }
  }

  async function boot() {
    wire();
    updateControls();
    try {
      const s = await api('GET', '/api/session');
      startSession(s);
    } catch (e) {
      showLogin(e.status === 401 ? '' : e.message);
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
