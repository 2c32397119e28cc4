/* attnviz viewer: head, model and matrix views of one result, in plain DOM + canvas.
 * Called as attnvizViewer(root, data) from an inline script; everything lives in this closure,
 * so several viewers share a page without sharing state. No network, no other files. */
(function (root, data) {
  "use strict";
  const VIRIDIS = [[68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142], [33, 145, 140],
    [34, 168, 132], [68, 191, 112], [122, 209, 81], [189, 223, 38], [253, 231, 37]];
  const LUT = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (VIRIDIS.length - 1), a = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - a;
    for (let c = 0; c < 3; c++) LUT[i * 3 + c] = Math.round(VIRIDIS[a][c] + (VIRIDIS[a + 1][c] - VIRIDIS[a][c]) * f);
  }
  const ROW_H = 18, LINES_W = 260, FONT = "13px system-ui, sans-serif";

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
    return node;
  }
  const headColour = (h, n, alpha) => `hsla(${Math.round((h * 360) / Math.max(n, 1))}, 70%, 45%, ${alpha})`;
  const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));

  // ------------------------------------------------------------------ data

  async function weights() {
    const text = atob(data.blob);
    let bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    if (data.gzip) {
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    }
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  function rawMap(all, s, l, h) {
    const [, H, Q, K] = s.shape, size = Q * K, start = s.offset + (l * H + h) * size, out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = all[start + i] / 65535;
    return out;
  }

  // ------------------------------------------------------------------ views (the same steps as attnviz.views)

  function combine(maps, how) {
    const out = new Float32Array(maps[0].length);
    for (const m of maps) for (let i = 0; i < out.length; i++) out[i] = how === "max" ? Math.max(out[i], m[i]) : out[i] + m[i] / maps.length;
    return out;
  }

  function rollout(layers, T) {
    // identity added for the residual stream, rows renormalised, layers multiplied (Abnar & Zuidema 2020)
    let r = null;
    for (const a of layers) {
      const m = new Float32Array(T * T);
      for (let i = 0; i < T; i++) {
        let sum = 0;
        for (let j = 0; j < T; j++) { m[i * T + j] = 0.5 * a[i * T + j] + (i === j ? 0.5 : 0); sum += m[i * T + j]; }
        for (let j = 0; j < T; j++) m[i * T + j] /= sum || 1;
      }
      if (r === null) { r = m; continue; }
      const next = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let k = 0; k < T; k++) {
        const v = m[i * T + k];
        if (v) for (let j = 0; j < T; j++) next[i * T + j] += v * r[k * T + j];
      }
      r = next;
    }
    return r;
  }

  function groups(tokens, merge) {
    // consecutive pieces of one word (never across the pair boundary) become one group
    const out = [];
    tokens.texts.forEach((_, i) => {
      const w = tokens.word_ids[i], seg = tokens.segments[i] || 0, last = out[out.length - 1];
      if (merge && w !== null && last && last.word === w && last.seg === seg) last.idx.push(i);
      else out.push({ idx: [i], word: w, seg: seg });
    });
    return out;
  }

  function joinPieces(tokens, idx) {
    return idx.map((i, n) => { const t = tokens.texts[i]; return n && t.startsWith("##") ? t.slice(2) : t; }).join("");
  }

  function shape(map, Q, K, q, k, st) {
    // word merge (keys summed, queries averaged), then hidden specials (rows renormalised when asked)
    const qg = groups(q, st.words), kg = groups(k, st.words);
    let keepQ = qg, keepK = kg;
    if (st.hide) { keepQ = qg.filter((g) => !g.idx.every((i) => q.special[i])); keepK = kg.filter((g) => !g.idx.every((i) => k.special[i])); }
    const out = new Float32Array(keepQ.length * keepK.length);
    keepQ.forEach((gq, a) => {
      let sum = 0;
      keepK.forEach((gk, b) => {
        let v = 0;
        for (const i of gq.idx) for (const j of gk.idx) v += map[i * K + j];
        v /= gq.idx.length;
        out[a * keepK.length + b] = v; sum += v;
      });
      if (st.hide && st.renorm && sum > 0) for (let b = 0; b < keepK.length; b++) out[a * keepK.length + b] /= sum;
    });
    const side = (tokens, gs) => ({
      texts: gs.map((g) => (st.words ? joinPieces(tokens, g.idx) : tokens.texts[g.idx[0]])),
      special: gs.map((g) => g.idx.every((i) => tokens.special[i])),
      segments: gs.map((g) => g.seg),
    });
    return { map: out, q: side(q, keepQ), k: side(k, keepK), Q: keepQ.length, K: keepK.length };
  }

  // ------------------------------------------------------------------ the viewer

  function start(all) {
    const stacks = data.stacks;
    const st = { stack: 0, view: "head", layer: stacks[0].shape[0] - 1, focus: 0, on: null, combine: "none",
      rollout: false, words: false, hide: false, renorm: false, scale: "shared", dark: false, filter: "all",
      lock: null, hover: null, sort: { key: null, down: true } };
    const S = () => stacks[st.stack];
    const resetHeads = () => { st.on = new Set([...Array(S().shape[1]).keys()]); st.focus = 0; };
    resetHeads();
    const hasPairs = (s) => s.query.segments.some((x) => x) || s.key.segments.some((x) => x);
    const canRollout = (s) => s.name !== "cross" && s.shape[2] === s.shape[3];

    function mapsFor(l, heads) {
      // the maps the current settings show for layer l: one per head, or one combined
      const s = S(), [, , Q, K] = s.shape;
      const pick = (lay, hs) => hs.map((h) => rawMap(all, s, lay, h));
      let base;
      if (st.rollout && canRollout(s)) {
        const hs = heads.length ? heads : [0];
        const per = [];
        for (let lay = 0; lay <= l; lay++) per.push(combine(pick(lay, hs), st.combine === "max" ? "max" : "mean"));
        base = [{ head: null, map: rollout(per, Q) }];
      } else if (st.combine !== "none") {
        base = heads.length ? [{ head: null, map: combine(pick(l, heads), st.combine) }] : [];
      } else {
        base = heads.map((h) => ({ head: h, map: rawMap(all, s, l, h) }));
      }
      return base.map((b) => Object.assign({ head: b.head }, shape(b.map, Q, K, s.query, s.key, st)));
    }
    const selected = () => [...st.on].sort((a, b) => a - b);
    const vmax = (m) => (st.scale === "shared" ? 1 : Math.max(1e-9, ...m.map));
    const headName = (s, h) => s.heads[h];
    function caption() {
      const s = S(), hs = selected();
      const what = st.rollout && canRollout(s) ? `rollout through ${s.layers[st.layer]}` : s.layers[st.layer];
      const heads = st.combine !== "none" || (st.rollout && canRollout(s))
        ? `${st.combine === "max" ? "max" : "mean"} of ${hs.length === s.shape[1] ? "all " + hs.length + " heads" : "heads " + hs.map((h) => s.headIds[h]).join(",")}`
        : st.view === "matrix" ? headName(s, st.focus) : `${hs.length} of ${s.shape[1]} heads`;
      return `${s.name} · ${what} · ${heads}`;
    }

    // ---------------- chrome
    root.textContent = "";
    root.classList.add("attnviz");
    const title = el("div", { class: "av-title", text: data.model });
    const sub = el("div", { class: "av-sub av-text", title: "click to show the whole text", onclick: () => sub.classList.toggle("open") });
    sub.textContent = data.text + (data.pair ? "  ‖  " + data.pair : "") + (data.target ? "  →  " + data.target : "");
    const bar = el("div", { class: "av-bar" });
    const chips = el("div", { class: "av-chips" });
    const stage = el("div", { class: "av-stage" });
    const readout = el("div", { class: "av-readout" });
    const metricsBox = el("div", { class: "av-metrics-wrap" });
    const notes = el("div", { class: "av-sub" });
    notes.textContent = (data.notes || []).join(" · ");
    root.append(title, sub, bar, chips, readout, stage, notes, metricsBox);

    function group(label, ...kids) { return el("span", { class: "av-group" }, label ? el("span", { class: "av-label", text: label }) : null, ...kids); }
    function toggleButtons(options, get, set) {
      return options.map(([value, text]) => el("button", { class: get() === value ? "on" : "", "data-value": value, text, onclick: () => { set(value); render(); } }));
    }
    function check(label, get, set, disabled) {
      const box = el("input", { type: "checkbox", disabled: disabled || null });
      box.checked = get();
      box.addEventListener("change", () => { set(box.checked); render(); });
      return el("label", {}, box, label);
    }

    function drawBar() {
      bar.textContent = "";
      const s = S();
      if (stacks.length > 1) bar.append(group("stack", ...toggleButtons(stacks.map((x, i) => [i, x.name]), () => st.stack, (v) => { st.stack = v; st.layer = Math.min(st.layer, stacks[v].shape[0] - 1); resetHeads(); st.lock = null; })));
      bar.append(group("view", ...toggleButtons([["head", "head"], ["model", "model"], ["matrix", "matrix"]], () => st.view, (v) => { st.view = v; })));
      const layer = el("select", { "aria-label": "layer", onchange: (e) => { st.layer = +e.target.value; render(); } });
      s.layers.forEach((name, i) => layer.append(el("option", { value: i, selected: i === st.layer || null, text: name })));
      if (st.view !== "model") bar.append(group("", layer));
      bar.append(group("heads", ...toggleButtons([["none", "each"], ["mean", "mean"], ["max", "max"]], () => st.combine, (v) => { st.combine = v; })));
      bar.append(check("rollout", () => st.rollout, (v) => { st.rollout = v; }, !canRollout(s) || st.view === "model"));
      bar.append(check("words", () => st.words, (v) => { st.words = v; st.lock = null; }));
      bar.append(check("hide specials", () => st.hide, (v) => { st.hide = v; st.lock = null; }));
      if (st.hide) bar.append(check("renormalise", () => st.renorm, (v) => { st.renorm = v; }));
      bar.append(group("scale", ...toggleButtons([["shared", "0–1"], ["map", "per map"]], () => st.scale, (v) => { st.scale = v; })));
      if (hasPairs(s) && st.view === "head") bar.append(group("pair", ...toggleButtons([["all", "all"], ["AA", "A→A"], ["AB", "A→B"], ["BA", "B→A"], ["BB", "B→B"]], () => st.filter, (v) => { st.filter = v; })));
      bar.append(el("button", { text: st.dark ? "light" : "dark", onclick: () => { st.dark = !st.dark; root.classList.toggle("dark", st.dark); render(); } }));
      bar.append(el("button", { text: "PNG", title: "download this view as PNG", onclick: () => download("png") }));
      bar.append(el("button", { text: "SVG", title: "download this view as SVG", onclick: () => download("svg") }));
    }

    function drawChips() {
      chips.textContent = "";
      const s = S(), H = s.shape[1];
      for (let h = 0; h < H; h++) {
        const chip = el("span", { class: "av-chip" + (st.on.has(h) ? "" : " off"), title: `${headName(s, h)}: click toggles, double-click shows it alone`, text: String(s.headIds[h]) });
        chip.style.background = headColour(h, H, 1);
        if (st.view === "matrix" && st.combine === "none" && h === st.focus) chip.style.borderColor = "var(--fg)";
        let timer = null;
        chip.addEventListener("click", () => {
          clearTimeout(timer);
          timer = setTimeout(() => { if (st.on.has(h)) st.on.delete(h); else st.on.add(h); st.focus = h; render(); }, 220);
        });
        chip.addEventListener("dblclick", () => { clearTimeout(timer); st.on = new Set([h]); st.focus = h; render(); });
        chips.append(chip);
      }
    }

    // ---------------- head view: tokens as text, lines on a canvas between them
    function headView() {
      const s = S(), maps = mapsFor(st.layer, selected());
      const box = el("div", { class: "av-head" });
      if (!maps.length) { stage.append(el("div", { class: "av-sub", text: "no head selected: click a chip" })); return; }
      const { q, k, Q, K } = maps[0];
      const left = el("div", { class: "av-col left" }), right = el("div", { class: "av-col right" });
      const canvas = el("canvas");
      const rows = Math.max(Q, K), dpr = window.devicePixelRatio || 1;
      canvas.width = LINES_W * dpr; canvas.height = rows * ROW_H * dpr;
      canvas.style.width = LINES_W + "px"; canvas.style.height = rows * ROW_H + "px";
      const tok = (side, i, tokens) => {
        const span = el("span", { class: "av-tok" + (tokens.special[i] ? " special" : ""), "data-side": side, "data-i": i, text: tokens.texts[i] });
        span.style.height = ROW_H + "px"; span.style.lineHeight = ROW_H + "px";
        span.addEventListener("mouseenter", () => { st.hover = { side, i }; paint(); });
        span.addEventListener("mouseleave", () => { st.hover = null; paint(); });
        span.addEventListener("click", () => { st.lock = st.lock && st.lock.side === side && st.lock.i === i ? null : { side, i }; paint(); });
        return span;
      };
      q.texts.forEach((_, i) => left.append(tok("q", i, q)));
      k.texts.forEach((_, i) => right.append(tok("k", i, k)));
      box.append(left, canvas, right);
      stage.append(box);
      const many = Q * K > 128 * 128;
      function keep(i, j) {
        const f = st.filter;
        if (f !== "all") { const a = q.segments[i] ? "B" : "A", b = k.segments[j] ? "B" : "A"; if (a + b !== f) return false; }
        const focus = st.hover || st.lock;
        if (!focus) return !many;
        return focus.side === "q" ? i === focus.i : j === focus.i;
      }
      function paint() {
        const ctx = canvas.getContext("2d");
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.clearRect(0, 0, LINES_W, rows * ROW_H);
        ctx.lineWidth = 2;
        const focus = st.hover || st.lock;
        for (const m of maps) {
          const top = vmax(m);
          for (let i = 0; i < Q; i++) for (let j = 0; j < K; j++) {
            const w = m.map[i * K + j] / top;
            if (w < 0.01 || !keep(i, j)) continue;
            ctx.strokeStyle = m.head === null ? (st.dark ? `rgba(160,190,255,${w})` : `rgba(30,80,200,${w})`) : headColour(m.head, s.shape[1], w);
            ctx.beginPath(); ctx.moveTo(2, i * ROW_H + ROW_H / 2); ctx.lineTo(LINES_W - 2, j * ROW_H + ROW_H / 2); ctx.stroke();
          }
        }
        left.querySelectorAll(".av-tok").forEach((x) => x.classList.toggle("lock", !!st.lock && st.lock.side === "q" && +x.dataset.i === st.lock.i));
        right.querySelectorAll(".av-tok").forEach((x) => x.classList.toggle("lock", !!st.lock && st.lock.side === "k" && +x.dataset.i === st.lock.i));
        readout.textContent = focus ? `${focus.side === "q" ? "query" : "key"} ${focus.i} “${(focus.side === "q" ? q : k).texts[focus.i]}”: lines show its weights` : many ? "hover a token to see its lines (click locks)" : "hover a token to see only its lines; click locks it";
      }
      paint();
    }

    // ---------------- matrix view: one map on a canvas, value under the pointer
    function heatCanvas(m, cell) {
      const { Q, K } = m, top = vmax(m), img = new ImageData(K, Q);
      for (let i = 0; i < Q * K; i++) {
        const v = Math.min(255, Math.max(0, Math.round((m.map[i] / top) * 255)));
        img.data[i * 4] = LUT[v * 3]; img.data[i * 4 + 1] = LUT[v * 3 + 1]; img.data[i * 4 + 2] = LUT[v * 3 + 2]; img.data[i * 4 + 3] = 255;
      }
      const small = el("canvas"); small.width = K; small.height = Q;
      small.getContext("2d").putImageData(img, 0, 0);
      const big = el("canvas"); big.width = K * cell; big.height = Q * cell;
      const ctx = big.getContext("2d"); ctx.imageSmoothingEnabled = cell < 1; ctx.drawImage(small, 0, 0, K * cell, Q * cell);
      return big;
    }
    function matrixMap() {
      const hs = st.combine === "none" && !(st.rollout && canRollout(S())) ? [st.focus] : selected();
      return mapsFor(st.layer, hs)[0];
    }
    function matrixView() {
      const m = matrixMap();
      if (!m) { stage.append(el("div", { class: "av-sub", text: "no head selected: click a chip" })); return; }
      const cell = Math.max(1, Math.min(44, Math.floor(720 / Math.max(m.Q, m.K))));
      const canvas = heatCanvas(m, cell);
      const labelEvery = Math.max(1, Math.ceil(11 / cell));
      const ylabels = el("div", { class: "av-ylabels" }), xlabels = el("div", { class: "av-xlabels" });
      let widest = 0;
      m.q.texts.forEach((t, i) => { if (i % labelEvery) return; const s = el("span", { text: t }); s.style.top = i * cell + cell / 2 - 7 + "px"; ylabels.append(s); widest = Math.max(widest, t.length); });
      ylabels.style.width = Math.min(200, 8 + widest * 7) + "px"; ylabels.style.height = m.Q * cell + "px";
      let tallest = 0;
      m.k.texts.forEach((t, j) => { if (j % labelEvery) return; const s = el("span", { text: t }); s.style.left = j * cell + cell / 2 + "px"; xlabels.append(s); tallest = Math.max(tallest, t.length); });
      xlabels.style.height = Math.min(160, 10 + tallest * 6.2) + "px"; xlabels.style.width = m.K * cell + "px";
      const grid = el("div", { class: "av-matrix" }, xlabels, ylabels, canvas);
      canvas.addEventListener("mousemove", (e) => {
        const r = canvas.getBoundingClientRect(), j = Math.floor((e.clientX - r.left) / cell), i = Math.floor((e.clientY - r.top) / cell);
        if (i < 0 || j < 0 || i >= m.Q || j >= m.K) return;
        readout.textContent = `query ${i} “${m.q.texts[i]}” → key ${j} “${m.k.texts[j]}”: ${m.map[i * m.K + j].toFixed(4)}`;
      });
      canvas.addEventListener("mouseleave", () => { readout.textContent = caption(); });
      const legend = el("div", { class: "av-legend" }, "0", heatCanvas({ Q: 1, K: 64, map: Float32Array.from({ length: 64 }, (_, i) => i / 63), q: {}, k: {} }, 2), st.scale === "shared" ? "1" : vmax(m).toFixed(3) + " (per map)");
      stage.append(grid, legend);
      readout.textContent = caption();
    }

    // ---------------- model view: every layer × head as a thumbnail
    function modelView() {
      const s = S(), [L, H] = s.shape;
      const size = Math.max(40, Math.min(96, Math.floor(900 / H) - 8));
      const grid = el("div", { class: "av-model" });
      grid.style.gridTemplateColumns = `max-content repeat(${H}, ${size}px)`;
      grid.append(el("span"));
      for (let h = 0; h < H; h++) grid.append(el("span", { class: "av-legend", text: s.heads[h] }));
      const saved = st.combine;
      st.combine = "none";
      for (let l = 0; l < L; l++) {
        grid.append(el("span", { class: "av-legend", text: s.layers[l] }));
        const maps = mapsFor(l, [...Array(H).keys()]);
        maps.forEach((m, h) => {
          const c = heatCanvas(m, 1);
          const thumb = el("canvas", { width: size, height: size, "data-layer": l, "data-head": h, title: `${s.layers[l]} · ${s.heads[h]}: click to open` });
          const ctx = thumb.getContext("2d"); ctx.imageSmoothingEnabled = true; ctx.drawImage(c, 0, 0, size, size);
          const cellBox = el("div", { class: "av-thumb", onclick: () => { st.layer = l; st.focus = h; st.on = new Set([h]); st.view = "matrix"; render(); } }, thumb);
          grid.append(cellBox);
        });
      }
      st.combine = saved;
      stage.append(grid);
      readout.textContent = `${s.name} · every layer × head · click one to open it`;
    }

    // ---------------- head metrics (from attnviz heads), sortable, linked to the heads
    function metricsTable() {
      metricsBox.textContent = "";
      const rowsAll = (data.metrics || []).filter((r) => r.stack === S().name);
      if (!rowsAll.length) return;
      const names = Object.keys(rowsAll[0].metrics);
      const cols = ["layer", "head", "role", ...names];
      const key = st.sort.key;
      const value = (r, c) => (c === "layer" || c === "head" || c === "role" ? r[c] : r.metrics[c]);
      const rows = key ? [...rowsAll].sort((a, b) => {
        const x = value(a, key), y = value(b, key);
        if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * (st.sort.down ? -1 : 1);
      }) : rowsAll;
      const table = el("table", { class: "av-metrics" });
      const head = el("tr");
      cols.forEach((c) => head.append(el("th", { text: c + (key === c ? (st.sort.down ? " ▾" : " ▴") : ""), onclick: () => { st.sort = { key: c, down: key === c ? !st.sort.down : true }; metricsTable(); } })));
      table.append(el("thead", {}, head));
      const body = el("tbody");
      const s = S();
      for (const r of rows) {
        const tr = el("tr", { class: "row", title: "open this head", onclick: () => { st.layer = s.layerIds.indexOf(r.layer); st.focus = s.headIds.indexOf(r.head); st.on = new Set([st.focus]); st.view = "matrix"; render(); } });
        cols.forEach((c) => { const v = value(r, c); tr.append(el("td", { text: typeof v === "number" && c !== "layer" && c !== "head" ? fmt(v) : String(v) })); });
        body.append(tr);
      }
      table.append(body);
      metricsBox.append(el("div", { class: "av-sub", text: "head metrics (attnviz heads): click a column to sort, a row to open the head" }), table);
    }

    // ---------------- export: the current view drawn by a painter (canvas → PNG, or SVG text)
    function figure(p) {
      const s = S(), pad = 16, titleH = 40;
      p.text(pad, 20, `${data.model} · ${caption()}`, 14, "bold");
      if (st.view === "matrix") {
        const m = matrixMap(); if (!m) return p.size(300, 80);
        const cell = Math.max(2, Math.min(28, Math.floor(900 / Math.max(m.Q, m.K))));
        const labels = cell >= 9;
        const lw = labels ? Math.max(...m.q.texts.map((t) => p.measure(t, 11))) + 8 : 0;
        const th = labels ? Math.max(...m.k.texts.map((t) => p.measure(t, 11))) * 0.87 + 12 : 0;
        const x0 = pad + lw, y0 = titleH + th;
        p.image(x0, y0, m.K * cell, m.Q * cell, heatCanvas(m, cell));
        if (labels) {
          m.q.texts.forEach((t, i) => p.text(x0 - 6, y0 + i * cell + cell / 2 + 4, t, 11, "", "end"));
          m.k.texts.forEach((t, j) => p.text(x0 + j * cell + cell / 2 + 3, y0 - 6, t, 11, "", "start", -60));
        }
        return p.size(x0 + m.K * cell + pad, y0 + m.Q * cell + pad);
      }
      if (st.view === "model") {
        const [L, H] = s.shape, size = 64, gap = 6, x0 = pad + 60, y0 = titleH + 16;
        const saved = st.combine; st.combine = "none";
        for (let l = 0; l < L; l++) {
          p.text(x0 - 8, y0 + l * (size + gap) + size / 2 + 4, s.layers[l], 11, "", "end");
          mapsFor(l, [...Array(H).keys()]).forEach((m, h) => p.image(x0 + h * (size + gap), y0 + l * (size + gap), size, size, heatCanvas(m, 1)));
        }
        st.combine = saved;
        for (let h = 0; h < H; h++) p.text(x0 + h * (size + gap) + size / 2, y0 - 4, s.heads[h], 10, "", "middle");
        return p.size(x0 + H * (size + gap) + pad, y0 + L * (size + gap) + pad);
      }
      const maps = mapsFor(st.layer, selected()); if (!maps.length) return p.size(300, 80);
      const { q, k, Q, K } = maps[0];
      const lw = Math.max(...q.texts.map((t) => p.measure(t, 13))) + 10, x1 = pad + lw, x2 = x1 + LINES_W, y0 = titleH;
      q.texts.forEach((t, i) => p.text(x1 - 6, y0 + i * ROW_H + ROW_H / 2 + 4, t, 13, "", "end"));
      k.texts.forEach((t, j) => p.text(x2 + 6, y0 + j * ROW_H + ROW_H / 2 + 4, t, 13, "", "start"));
      const focus = st.lock;
      for (const m of maps) {
        const top = vmax(m);
        for (let i = 0; i < Q; i++) for (let j = 0; j < K; j++) {
          const w = m.map[i * K + j] / top;
          if (w < 0.01 || (focus && (focus.side === "q" ? i !== focus.i : j !== focus.i))) continue;
          p.line(x1, y0 + i * ROW_H + ROW_H / 2, x2, y0 + j * ROW_H + ROW_H / 2, m.head === null ? `rgba(30,80,200,${w.toFixed(3)})` : headColour(m.head, s.shape[1], w.toFixed(3)));
        }
      }
      const wr = Math.max(...k.texts.map((t) => p.measure(t, 13))) + 10;
      return p.size(x2 + wr + pad, y0 + Math.max(Q, K) * ROW_H + pad);
    }
    const measurer = document.createElement("canvas").getContext("2d");
    const measure = (t, size) => { measurer.font = `${size}px system-ui, sans-serif`; return measurer.measureText(t).width; };
    const esc = (t) => String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
    function svgPainter() {
      const parts = []; let w = 0, h = 0;
      return {
        measure, size(a, b) { w = a; h = b; },
        text(x, y, t, size, weight, anchor, rotate) { parts.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}" ${weight ? 'font-weight="bold"' : ""} text-anchor="${anchor || "start"}"${rotate ? ` transform="rotate(${rotate} ${x.toFixed(1)} ${y.toFixed(1)})"` : ""}>${esc(t)}</text>`); },
        line(x1, y1, x2, y2, colour) { parts.push(`<line x1="${x1}" y1="${y1.toFixed(1)}" x2="${x2}" y2="${y2.toFixed(1)}" stroke="${colour}" stroke-width="2"/>`); },
        image(x, y, iw, ih, canvas) { parts.push(`<image x="${x}" y="${y}" width="${iw}" height="${ih}" preserveAspectRatio="none" style="image-rendering:pixelated" href="${canvas.toDataURL("image/png")}"/>`); },
        done() { return `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(w)}" height="${Math.ceil(h)}" viewBox="0 0 ${Math.ceil(w)} ${Math.ceil(h)}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#ffffff"/>${parts.join("")}</svg>`; },
      };
    }
    function canvasPainter() {
      const ops = []; let w = 0, h = 0;
      return {
        measure, size(a, b) { w = a; h = b; },
        text(...a) { ops.push(["text", a]); }, line(...a) { ops.push(["line", a]); }, image(...a) { ops.push(["image", a]); },
        done() {
          const c = document.createElement("canvas"); c.width = Math.ceil(w) * 2; c.height = Math.ceil(h) * 2;
          const ctx = c.getContext("2d"); ctx.scale(2, 2); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
          ctx.imageSmoothingEnabled = false; ctx.lineWidth = 2;
          for (const [op, a] of ops) {
            if (op === "text") {
              const [x, y, t, size, weight, anchor, rotate] = a;
              ctx.save(); ctx.translate(x, y); if (rotate) ctx.rotate((rotate * Math.PI) / 180);
              ctx.font = `${weight || ""} ${size}px system-ui, sans-serif`; ctx.fillStyle = "#1d1d1f"; ctx.textAlign = anchor === "end" ? "right" : anchor === "middle" ? "center" : "left";
              ctx.fillText(t, 0, 0); ctx.restore();
            } else if (op === "line") { const [x1, y1, x2, y2, colour] = a; ctx.strokeStyle = colour; ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); }
            else { const [x, y, iw, ih, canvas] = a; ctx.drawImage(canvas, x, y, iw, ih); }
          }
          return c;
        },
      };
    }
    function download(kind) {
      const p = kind === "svg" ? svgPainter() : canvasPainter();
      figure(p);
      const name = `attnviz-${S().name}-${st.view}-${S().layerIds[st.layer]}.${kind}`;
      const save = (blob) => { const a = el("a", { href: URL.createObjectURL(blob), download: name }); document.body.append(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(a.href), 1000); };
      if (kind === "svg") save(new Blob([p.done()], { type: "image/svg+xml" }));
      else p.done().toBlob(save, "image/png");
    }

    function render() {
      drawBar(); drawChips(); stage.textContent = ""; readout.textContent = "";
      ({ head: headView, model: modelView, matrix: matrixView })[st.view]();
      metricsTable();
      root.dataset.ready = "1";
    }
    render();
  }

  weights().then(start).catch((e) => { root.textContent = ""; root.append(el("div", { class: "av-error", text: "attnviz: cannot read the embedded weights: " + e })); });
})
