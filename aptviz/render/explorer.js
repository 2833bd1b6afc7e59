/* aptviz explorer: redo APT's patch selection in the page, exactly (docs/explorer.md).
 *
 * window.aptviz.select(name, {method, alpha, thresholds}) -> the selection of
 * aptviz.select_patches on the same maps; every element [data-aptviz-explorer]
 * gets controls, canvases and [data-field] numbers; [data-aptviz-dataset] shows
 * retention statistics over every explorer of the page. Loading this file twice
 * (several explorers in one notebook) keeps the first copy and scans again.
 */
(function () {
  "use strict";
  var A = (window.aptviz = window.aptviz || {});
  if (A._explorer) { A.scan(document); return; }
  A._explorer = 1;
  var PAD = 1e6;
  // maps keyed by image names have no prototype: an image named "constructor" or "__proto__" is just a name
  var raw = Object.create(null);     // name -> payload (JSON), decoded on first use
  var models = Object.create(null);  // name -> decoded model
  var waiters = Object.create(null); // name -> [resolve]
  var failers = Object.create(null); // name -> [reject], called when its data file fails to load

  function bytes(b64) {
    var s = atob(b64), n = s.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) u[i] = s.charCodeAt(i);
    return u;
  }

  function decode(d) {
    var m = {name: d.name, W: d.size[0], H: d.size[1], P: d.patch, merge: d.merge, scales: d.scales.slice(), d: d,
      rows: [], cols: [], maps: [], pad: [], means: [], base: [], err: [], col: []};
    for (var i = 0; i < m.scales.length; i++) {
      var ps = m.scales[i], g = d.grid[ps], n = g[0] * g[1];
      m.rows.push(g[0]); m.cols.push(g[1]);
      var v = new Float32Array(bytes(d.maps[ps]).buffer), p = new Uint8Array(n);
      for (var j = 0; j < n; j++) p[j] = v[j] === PAD ? 1 : 0;
      m.maps.push(v); m.pad.push(p);
      m.means.push(i > 0 ? d.means[ps] : null);
      m.base.push(bytes(d.budget.base[ps]));
      m.err.push(i > 0 ? new Float64Array(bytes(d.err[ps]).buffer) : null);
      m.col.push(i > 0 ? bytes(d.colours[ps]) : null);
    }
    m.N = m.rows[0] * m.cols[0];
    m.baseTokens = d.budget.base_tokens;
    // budget's split order: indices into the coarsest-first concatenation of the grids above the finest
    var order = new Int32Array(bytes(d.budget.order).buffer), starts = [], off = 0;
    for (var s = m.scales.length - 1; s >= 1; s--) { starts.push([off, s]); off += m.rows[s] * m.cols[s]; }
    m.oScale = new Uint8Array(order.length); m.oIdx = new Int32Array(order.length);
    for (var q = 0; q < order.length; q++) {
      var o = order[q], t = starts.length - 1;
      while (starts[t][0] > o) t--;
      m.oScale[q] = starts[t][1]; m.oIdx[q] = o - starts[t][0];
    }
    m.uniform = d.uniform;
    m.uniformLlm = d.uniform_llm || [];
    return m;
  }

  function model(name) {
    if (!models[name]) {
      if (!raw[name]) scanData(document);
      if (!raw[name]) throw new Error("aptviz: no explorer data for '" + name + "' (not loaded yet: await aptviz.load(name))");
      models[name] = decode(raw[name]);
    }
    return models[name];
  }

  // ---- the selection (aptviz/selection.py, float64 like Python) ----
  function roundHalfEven(x) {
    var f = Math.floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function upInto(m, i, grid, into) { // grid of scale i brought onto scale i-1 (repeat 2x2, crop), OR-ed into `into`
    var cr = m.rows[i - 1], cc = m.cols[i - 1], C = m.cols[i];
    for (var r = 0; r < cr; r++) {
      var src = (r >> 1) * C, dst = r * cc;
      for (var c = 0; c < cc; c++) into[dst + c] |= grid[src + (c >> 1)];
    }
    return into;
  }

  function thresholdMasks(m, thr) {
    var S = m.scales.length, masks = new Array(S), covered = null;
    for (var i = S - 1; i >= 0; i--) {
      var n = m.rows[i] * m.cols[i], keep = new Uint8Array(n);
      if (i === 0) keep.fill(1);
      else if (thr[i] !== null && thr[i] !== undefined) {
        var v = m.maps[i], p = m.pad[i], t = thr[i];
        for (var j = 0; j < n; j++) keep[j] = (v[j] < t && !p[j]) ? 1 : 0;
      }
      var mask = new Uint8Array(n);
      if (covered === null) mask.set(keep);
      else for (var k = 0; k < n; k++) mask[k] = keep[k] & (covered[k] ^ 1);
      masks[i] = mask;
      if (i > 0) {
        var up = new Uint8Array(m.rows[i - 1] * m.cols[i - 1]);
        upInto(m, i, keep, up);
        if (covered !== null) upInto(m, i, covered, up);
        covered = up;
      }
    }
    return masks;
  }

  function budgetMasks(m, alpha) {
    var S = m.scales.length, budget = roundHalfEven(alpha * m.N);
    var k = Math.min(Math.max(0, Math.floor((budget - m.baseTokens) / 3)), m.oIdx.length);
    var split = [];
    for (var i = 0; i < S; i++) split.push(new Uint8Array(m.rows[i] * m.cols[i]));
    for (var q = 0; q < k; q++) split[m.oScale[q]][m.oIdx[q]] = 1;
    var masks = new Array(S), inTree = m.base[S - 1];
    for (i = S - 1; i >= 0; i--) {
      var n = inTree.length, mask = new Uint8Array(n), sp = split[i];
      for (var j = 0; j < n; j++) mask[j] = inTree[j] & (sp[j] ^ 1);
      masks[i] = mask;
      if (i > 0) inTree = upInto(m, i, sp, new Uint8Array(m.base[i - 1]));
    }
    return {masks: masks, info: {alpha: alpha, base_small_tokens: m.N, base_tokens: m.baseTokens, budget: budget, k: k}};
  }

  function count(mask) { var t = 0; for (var j = 0; j < mask.length; j++) t += mask[j]; return t; }

  function compute(m, opts) {
    var method = opts.method || "v2", S = m.scales.length, thr = null, masks, info = null;
    var alpha = opts.alpha === undefined || opts.alpha === null ? null : Number(opts.alpha);
    if (method === "v1") {
      var given = opts.thresholds || [3, 2];
      thr = [null];
      for (var i = 1; i < S; i++) thr.push(given[i - 1] === null || given[i - 1] === undefined ? null : Number(given[i - 1]));
      masks = thresholdMasks(m, thr); alpha = null;
    } else if (method === "v2") {
      if (alpha === null) alpha = 1.0; // select_patches' default
      thr = [null];
      for (i = 1; i < S; i++) thr.push(m.means[i] === null ? null : alpha * m.means[i]);
      masks = thresholdMasks(m, thr);
    } else if (method === "budget") {
      if (alpha === null) alpha = 1.0;
      var b = budgetMasks(m, alpha); masks = b.masks; info = b.info;
    } else throw new Error("aptviz: unknown method '" + method + "' (v1, v2 or budget)");
    var by = {}, vit = 0, small = 0, large = 0, unit = m.P * m.merge, sq = 0, nest = true;
    for (i = 0; i < S; i++) {
      var ps = m.scales[i], n = count(masks[i]);
      by[ps] = n; vit += n;
      if (ps < unit) small += n * ps * ps; else large += n;
      if ((ps < unit ? unit % ps : ps % unit) !== 0) nest = false; // straddles merge units, whatever the counts
      if (i > 0 && n) { var e = m.err[i], mk = masks[i]; for (var j = 0; j < mk.length; j++) if (mk[j]) sq += e[j]; }
    }
    // LLM tokens as aptviz.compute.tokens.token_counts: all three null unless every scale nests in the merge
    // units, the small patches fill whole units and the finest grid is a whole number of units
    var m2 = m.merge * m.merge, llm = null, llmUni = null;
    if (nest && small % (unit * unit) === 0 && m.N % m2 === 0) {
      llm = small / (unit * unit) + large; llmUni = m.N / m2;
    }
    var mse = sq / (m.W * m.H * 3);
    var uni = m.uniform[0] || [0, null, null];
    for (var u = 0; u < m.uniform.length && m.uniform[u][0] <= vit; u++) uni = m.uniform[u];
    var ul = llm === null ? [0, null, null] : (m.uniformLlm[0] || [0, null, null]); // the baseline at equal LLM tokens
    for (u = 0; llm !== null && u < m.uniformLlm.length && m.uniformLlm[u][0] <= llm; u++) ul = m.uniformLlm[u];
    if (info) info.tokens = vit;
    return {method: method, alpha: alpha, thresholds: thr ? thr.slice(1) : null, masks: masks, tokens_by_scale: by,
      vit_tokens: vit, tokens: vit, base_small_tokens: m.N, retention: vit / m.N, llm_tokens: llm,
      llm_tokens_uniform: llmUni, llm_retention: llm === null ? null : llm / llmUni,
      psnr_apt: mse === 0 ? null : 10 * Math.log10(255 * 255 / mse),
      uniform_vit_tokens: uni[1], psnr_uniform: uni.length > 2 ? uni[2] : null, psnr_uniform_computed: uni.length > 2,
      llm_uniform_tokens: ul[1], psnr_uniform_llm: ul.length > 2 ? ul[2] : null,
      psnr_uniform_llm_computed: ul.length > 2 || llm === null,
      budget_info: info};
  }

  // ---- what aptviz.select_patches refuses (RunSpec, check_scales, default_thresholds), refused here too ----
  function valueError(text) { var e = new Error(text); e.name = "ValueError"; return e; }
  function shown(v) { return typeof v === "string" ? JSON.stringify(v) : String(v); }
  function checked(m, opts) {
    var method = opts.method === undefined || opts.method === null ? "v2" : opts.method, S = m.scales.length;
    if (typeof method === "string") method = method.trim().toLowerCase();
    if (method !== "v1" && method !== "v2" && method !== "budget") {
      throw valueError("unknown method " + shown(opts.method) + "; choose v1, v2 or budget");
    }
    if (method === "v1") {
      var thr = opts.thresholds;
      if (thr === undefined || thr === null) {
        if (m.d.measure !== "entropy") {
          throw valueError("v1 has no default thresholds for " + m.d.measure + ": give thresholds");
        }
        thr = m.scales.slice(1).map(function (ps, i) { return i === 0 ? 3 : 2; }); // 3, 2, 2, ... bits
      }
      if (ArrayBuffer.isView(thr)) thr = Array.prototype.slice.call(thr); // a Float64Array is a list of numbers
      if (!Array.isArray(thr)) throw valueError("thresholds must be a list of numbers, got " + shown(thr));
      if (thr.length !== S - 1) {
        throw valueError("thresholds needs " + (S - 1) + " value(s) for " + S + " scales, got " + thr.length);
      }
      thr.forEach(function (t) {
        if (typeof t !== "number" || !isFinite(t)) {
          throw valueError("thresholds must be finite numbers, got " + thr.map(shown).join(","));
        }
      });
      return {method: method, thresholds: thr};
    }
    var a = opts.alpha === undefined || opts.alpha === null ? 1.0 : opts.alpha;
    if (typeof a !== "number") throw valueError("alpha must be a number, got " + shown(a));
    if (!isFinite(a)) throw valueError("alpha must be a finite number, got " + shown(a));
    if (method === "budget" && !(a >= 0 && a <= 1)) throw valueError("budget alpha must be in [0, 1], got " + shown(a));
    if (method === "v2" && a < 0) throw valueError("v2 alpha must be >= 0, got " + shown(a));
    return {method: method, alpha: a};
  }

  A.select = function (name, opts) {
    var m = model(name), r = compute(m, checked(m, opts || {})), out = {};
    for (var k in r) if (k !== "masks") out[k] = r[k];
    out.masks = {};
    for (var i = 0; i < m.scales.length; i++) out.masks[m.scales[i]] = Array.prototype.slice.call(r.masks[i]);
    return out;
  };

  // ---- data: inline <script type="application/json" data-aptviz-data>, or lazily loaded .js files ----
  A.register = function (payload) {
    raw[payload.name] = payload;
    delete models[payload.name]; // new data under a known name (a notebook cell run again) is decoded afresh
    var w = waiters[payload.name];
    delete waiters[payload.name];
    delete failers[payload.name];
    if (w) w.forEach(function (f) { f(payload.name); });
    initNamed(payload.name);
  };
  A.drain = function (as) { // `as`: the name of the explorer whose data file just ran
    var q = window.aptvizPending || [];
    window.aptvizPending = [];
    q.forEach(function (p) { if (as) p.name = as; A.register(p); });
  };
  function scanData(root) {
    var tags = root.querySelectorAll("script[data-aptviz-data]");
    for (var i = 0; i < tags.length; i++) {
      if (tags[i]._aptviz) continue;
      tags[i]._aptviz = 1;
      A.register(JSON.parse(tags[i].textContent));
    }
  }
  function requestData(el) {
    var src = el.getAttribute("data-src"), name = el.getAttribute("data-image");
    if (raw[name] || !src || el._aptvizRequested) return;
    el._aptvizRequested = 1;
    var s = document.createElement("script");
    s.src = src;
    s.onload = function () { A.drain(name); }; // a script's load event follows its execution at once
    s.onerror = function () {
      status(el, "no explorer data (" + src + ")");
      var f = failers[name];
      delete failers[name];
      delete waiters[name];
      el._aptvizRequested = 0; // a later load() tries again
      if (f) f.forEach(function (g) { g(new Error("aptviz: could not load " + src + " for '" + name + "'")); });
    };
    document.head.appendChild(s);
  }
  A.load = function (name) {
    if (raw[name]) return Promise.resolve(name);
    return new Promise(function (resolve, reject) {
      (waiters[name] = waiters[name] || []).push(resolve);
      (failers[name] = failers[name] || []).push(reject);
      var els = explorersNamed(name);
      if (!els.length) reject(new Error("aptviz: no explorer named '" + name + "'"));
      els.forEach(requestData);
    });
  };

  function explorersNamed(name) {
    var all = document.querySelectorAll("[data-aptviz-explorer]"), out = [];
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute("data-image") === name) out.push(all[i]);
    return out;
  }
  function initNamed(name) { explorersNamed(name).forEach(function (el) { if (el._aptvizWanted) build(el); }); }
  function status(el, text) { var s = el.querySelector(".apx-status"); if (s) s.textContent = text; }

  // ---- the explorer UI ----
  function fmt(field, v) {
    if (v === null || v === undefined) return "\u2013";
    if (field.indexOf("psnr") === 0) return v.toFixed(2) + " dB";
    if (field.indexOf("retention") >= 0) return v.toFixed(4);
    return String(v);
  }
  function setField(root, field, v) {
    var els = root.querySelectorAll('[data-field="' + field + '"]');
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = fmt(field, v);
      els[i].setAttribute("data-value", v === null || v === undefined ? "" : String(v));
    }
  }
  function h(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var RANGES = {v2: [0, 3, 1.0], budget: [0, 1, 0.5]};

  function controls(el, m, x) {
    var bar = h("div", {"class": "apx-controls"}), lab = h("label", {}, "method ");
    var sel = h("select", {name: "method"});
    ["v2", "budget", "v1"].forEach(function (k) { sel.appendChild(h("option", {value: k}, k)); });
    sel.value = x.method;
    lab.appendChild(sel); bar.appendChild(lab);
    var al = h("label", {"class": "apx-alpha"}, " alpha ");
    var range = h("input", {type: "range", name: "alpha", step: "any", min: "0", max: "3"});
    var box = h("input", {type: "number", name: "alpha", step: "0.01", min: "0", style: "width:5.5em"});
    al.appendChild(range); al.appendChild(box); bar.appendChild(al);
    var thr = [];
    for (var i = 1; i < m.scales.length; i++) {
      var ps = m.scales[i], hi = Math.max(m.d.max_value[ps] || 0, x.thresholds[i - 1] || 0) * 1.05 || 1;
      var tl = h("label", {"class": "apx-thr"}, " " + ps + " px < ");
      var t = h("input", {type: "range", name: "threshold-" + i, step: "any", min: "0", max: String(hi)});
      t.value = String(x.thresholds[i - 1]);
      var o = h("output", {"data-thr": String(i)});
      tl.appendChild(t); tl.appendChild(o); bar.appendChild(tl); thr.push(t);
    }
    el.appendChild(bar);
    return {method: sel, range: range, box: box, thr: thr};
  }

  function numbers(el, m) {
    var t = h("table", {"class": "apx-num"}), rows = [["vit_tokens", "ViT tokens"], ["llm_tokens", "LLM tokens"],
      ["retention", "retention"], ["llm_retention", "LLM retention"], ["psnr_apt", "PSNR APT"],
      ["uniform_vit_tokens", "uniform ViT tokens"], ["psnr_uniform", "PSNR uniform (equal ViT)"],
      ["llm_uniform_tokens", "uniform LLM tokens"], ["psnr_uniform_llm", "PSNR uniform (equal LLM)"]];
    m.scales.forEach(function (ps) { rows.push(["tokens_" + ps, ps + " px patches"]); });
    rows.forEach(function (r) {
      var tr = h("tr"); tr.appendChild(h("td", {}, r[1])); tr.appendChild(h("td", {"data-field": r[0]})); t.appendChild(tr);
    });
    return t;
  }

  function gridCanvas(m, i) { // one pixel per cell: the cell's average colour
    var c = document.createElement("canvas"), R = m.rows[i], C = m.cols[i];
    c.width = C; c.height = R;
    var ctx = c.getContext("2d"), img = ctx.createImageData(C, R), src = m.col[i], dst = img.data;
    for (var j = 0, n = R * C; j < n; j++) { dst[4 * j] = src[3 * j]; dst[4 * j + 1] = src[3 * j + 1]; dst[4 * j + 2] = src[3 * j + 2]; dst[4 * j + 3] = 255; }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  function histCanvas(m, cw, ch) {
    var c = document.createElement("canvas"), S = m.scales.length - 1;
    c.width = cw; c.height = ch;
    var ctx = c.getContext("2d"), w = cw / Math.max(S, 1);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cw, ch);
    for (var i = 1; i < m.scales.length; i++) {
      var hist = m.d.hist[m.scales[i]], counts = hist.counts, top = Math.max.apply(null, counts) || 1, x0 = (i - 1) * w;
      ctx.fillStyle = "#6a51a3";
      var bw = (w - 8) / counts.length;
      for (var b = 0; b < counts.length; b++) {
        var bh = (ch - 16) * counts[b] / top;
        ctx.fillRect(x0 + 4 + b * bw, ch - 12 - bh, Math.max(bw - 0.5, 0.5), bh);
      }
      ctx.fillStyle = "#333"; ctx.font = "10px sans-serif";
      ctx.fillText(m.scales[i] + " px (" + m.d.unit + ", 0\u2013" + hist.hi.toPrecision(3) + ")", x0 + 4, ch - 1);
    }
    return c;
  }

  function build(el) {
    var name = el.getAttribute("data-image");
    if (el._aptviz || !raw[name]) return;
    var m = model(name), d = m.d;
    el._aptviz = 1;
    var m0 = el.getAttribute("data-method"); // from a file in a report: only a method name is taken
    var x = {method: m0 === "v1" || m0 === "budget" ? m0 : "v2", alpha: {v2: 1.0, budget: 0.5},
      thresholds: m.scales.slice(1).map(function (ps, i) { return i === 0 ? 3 : i === 1 ? 2 : 1; })};
    if (d.measure !== "entropy") x.thresholds = m.scales.slice(1).map(function (ps) { return (d.means[ps] || 0); });
    var t0 = JSON.parse(el.getAttribute("data-thresholds") || "null");
    if (t0) x.thresholds = t0;
    var a0 = parseFloat(el.getAttribute("data-alpha"));
    if (!isNaN(a0) && x.method !== "v1") x.alpha[x.method] = a0;
    var body = el.querySelector(".apx-body") || el;
    body.textContent = "";
    var ui = controls(body, m, x);
    var views = h("div", {"class": "apx-views"});
    var scale = Math.min(1, 800 / Math.max(m.W, m.H));
    var cw = Math.max(1, Math.round(m.W * scale)), ch = Math.max(1, Math.round(m.H * scale));
    function fig(cls, cap, w, hh) {
      var f = h("figure"), c = h("canvas", {"class": cls, width: String(w), height: String(hh)});
      f.appendChild(c); f.appendChild(h("figcaption", {}, cap)); views.appendChild(f);
      return c;
    }
    var over = fig("apx-overlay", "patches", cw, ch), mv = fig("apx-model", "what the ViT sees (kept patches as flat averages)", cw, ch);
    var hc = fig("apx-hist", "importance histogram, thresholds in red", 320, 130);
    views.appendChild(numbers(el, m));
    body.appendChild(views);
    var img = new Image(), grids = [null], histBg = histCanvas(m, 320, 130);
    for (var i = 1; i < m.scales.length; i++) grids.push(gridCanvas(m, i));
    var st = {el: el, m: m, x: x, ui: ui, over: over, mv: mv, hc: hc, img: img, grids: grids, histBg: histBg, sx: cw / m.W, sy: ch / m.H};
    el.__aptviz = st;
    st.apply = function (opts) { return apply(st, opts); };
    img.onload = function () { redraw(st); };
    img.src = el.getAttribute("data-picture") || d.image;
    wire(st);
    apply(st, {});
  }

  function wire(st) {
    var ui = st.ui, x = st.x;
    function onMethod() { apply(st, {method: ui.method.value}); }
    ui.method.addEventListener("input", onMethod);
    ui.method.addEventListener("change", onMethod);
    function onAlpha(ev) {
      var v = parseFloat(ev.target.value), ok = !isNaN(v) && v >= 0 && (x.method !== "budget" || v <= 1);
      ev.target.setCustomValidity(ok ? "" : (x.method === "budget" ? "budget: 0 to 1" : "v2: 0 or more"));
      if (ok) apply(st, {alpha: v});
    }
    ui.range.addEventListener("input", onAlpha);
    ui.box.addEventListener("input", onAlpha);
    ui.box.addEventListener("change", onAlpha);
    ui.thr.forEach(function (t, i) {
      t.addEventListener("input", function () {
        var v = parseFloat(t.value); if (isNaN(v)) return;
        var th = x.thresholds.slice(); th[i] = v;
        apply(st, {method: "v1", thresholds: th});
      });
    });
  }

  function apply(st, opts) {
    var x = st.x, ui = st.ui;
    if (opts.method) x.method = opts.method;
    if (opts.alpha !== undefined && x.method !== "v1") x.alpha[x.method] = opts.alpha;
    if (opts.thresholds) x.thresholds = opts.thresholds.slice();
    var r = compute(st.m, {method: x.method, alpha: x.alpha[x.method], thresholds: x.thresholds});
    st.r = r;
    if (ui.method.value !== x.method) ui.method.value = x.method;
    var rg = RANGES[x.method];
    ui.range.parentNode.style.opacity = rg ? "1" : "0.4";
    // v1 has no alpha: the box and the slider both show none (not a stale v2 or budget value)
    ui.range.disabled = ui.box.disabled = !rg;
    ui.range.style.visibility = rg ? "" : "hidden";
    ui.box.placeholder = rg ? "" : "none";
    if (!rg && document.activeElement !== ui.box) ui.box.value = "";
    if (rg) {
      ui.range.max = String(rg[1]);
      if (x.method === "budget") ui.box.max = "1"; else ui.box.removeAttribute("max");
      var a = String(x.alpha[x.method]);
      if (ui.range.value !== a && document.activeElement !== ui.range) ui.range.value = a;
      if (document.activeElement !== ui.box) ui.box.value = a;
    }
    var shown = x.method === "v1" ? x.thresholds : r.thresholds;
    ui.thr.forEach(function (t, i) {
      var v = shown ? shown[i] : null;
      if (v !== null && v !== undefined && document.activeElement !== t && parseFloat(t.value) !== v) t.value = String(v);
      var o = t.parentNode.querySelector("output");
      o.textContent = v === null || v === undefined ? "\u2013" : v.toFixed(3);
    });
    var el = st.el;
    ["vit_tokens", "llm_tokens", "retention", "llm_retention", "psnr_apt", "uniform_vit_tokens", "psnr_uniform",
      "llm_uniform_tokens", "psnr_uniform_llm"].forEach(function (f) { setField(el, f, r[f]); });
    st.m.scales.forEach(function (ps) { setField(el, "tokens_" + ps, r.tokens_by_scale[ps]); });
    [["psnr_uniform", r.psnr_uniform_computed], ["psnr_uniform_llm", r.psnr_uniform_llm_computed]].forEach(function (f) {
      if (f[1]) return;
      el.querySelectorAll('[data-field="' + f[0] + '"]').forEach(function (e) {
        e.textContent = "not computed"; e.title = "the batch computes a few sizes; aptviz explore computes every size";
      });
    });
    redraw(st);
    return r;
  }

  function redraw(st) {
    var r = st.r, m = st.m, sx = st.sx, sy = st.sy;
    if (!r) return;
    var ready = st.img.complete && st.img.naturalWidth > 0;
    // overlay: the picture, then the top and left edge of every kept patch and the image border (each edge once)
    var ctx = st.over.getContext("2d"), cw = st.over.width, ch = st.over.height;
    if (ready) ctx.drawImage(st.img, 0, 0, cw, ch); else { ctx.fillStyle = "#ddd"; ctx.fillRect(0, 0, cw, ch); }
    ctx.beginPath();
    for (var i = 0; i < m.scales.length; i++) {
      var ps = m.scales[i], mk = r.masks[i], C = m.cols[i], dx = ps * sx, dy = ps * sy;
      for (var j = 0; j < mk.length; j++) {
        if (!mk[j]) continue;
        var x0 = (j % C) * dx, y0 = ((j / C) | 0) * dy;
        ctx.moveTo(x0 + dx, y0); ctx.lineTo(x0, y0); ctx.lineTo(x0, y0 + dy);
      }
    }
    ctx.rect(0, 0, cw, ch);
    ctx.strokeStyle = "#00ff00"; ctx.lineWidth = Math.max(1, 2 * sx);
    ctx.stroke();
    // model view: the picture where finest patches are kept, flat cell averages elsewhere
    var v = st.mv.getContext("2d");
    if (ready) v.drawImage(st.img, 0, 0, cw, ch); else { v.fillStyle = "#ddd"; v.fillRect(0, 0, cw, ch); }
    v.imageSmoothingEnabled = false;
    for (i = 1; i < m.scales.length; i++) {
      if (!r.tokens_by_scale[m.scales[i]]) continue;
      ps = m.scales[i]; mk = r.masks[i]; C = m.cols[i]; dx = ps * sx; dy = ps * sy;
      v.save(); v.beginPath();
      for (j = 0; j < mk.length; j++) if (mk[j]) v.rect((j % C) * dx, ((j / C) | 0) * dy, dx, dy);
      v.clip();
      v.drawImage(st.grids[i], 0, 0, C * dx, m.rows[i] * dy);
      v.restore();
    }
    // histogram with the thresholds in use
    var hx = st.hc.getContext("2d"), w = st.hc.width / Math.max(m.scales.length - 1, 1);
    hx.drawImage(st.histBg, 0, 0);
    if (r.thresholds) {
      hx.strokeStyle = "#d62728"; hx.lineWidth = 2; hx.beginPath();
      for (i = 1; i < m.scales.length; i++) {
        var t = r.thresholds[i - 1], hi = m.d.hist[m.scales[i]].hi;
        if (t === null) continue;
        var xx = (i - 1) * w + 4 + (w - 8) * Math.min(t / hi, 1);
        hx.moveTo(xx, 2); hx.lineTo(xx, st.hc.height - 12);
      }
      hx.stroke();
    }
  }

  // ---- the dataset view ----
  function median(a) {
    var s = a.slice().sort(function (p, q) { return p - q; }), n = s.length;
    if (!n) return null;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }
  function mean(a) { if (!a.length) return null; var t = 0; for (var i = 0; i < a.length; i++) t += a[i]; return t / a.length; }

  function buildDataset(el) {
    if (el._aptviz) return;
    el._aptviz = 1;
    var names = JSON.parse(el.getAttribute("data-images") || "null");
    if (!names) names = Array.prototype.map.call(document.querySelectorAll("[data-aptviz-explorer]"),
      function (e) { return e.getAttribute("data-image"); });
    var body = el.querySelector(".apx-body") || el;
    body.textContent = "";
    var bar = h("div", {"class": "apx-controls"}), lab = h("label", {}, "method "), sel = h("select", {name: "method"});
    ["v2", "budget"].forEach(function (k) { sel.appendChild(h("option", {value: k}, k)); });
    lab.appendChild(sel); bar.appendChild(lab);
    var al = h("label", {}, " alpha "), range = h("input", {type: "range", name: "alpha", step: "any", min: "0", max: "3"});
    var box = h("input", {type: "number", name: "alpha", step: "0.01", min: "0", style: "width:5.5em"});
    al.appendChild(range); al.appendChild(box); bar.appendChild(al);
    body.appendChild(bar);
    var t = h("table", {"class": "apx-num"});
    [["images", "images"], ["mean_retention", "mean retention"], ["median_retention", "median retention"],
      ["mean_llm_retention", "mean LLM retention"], ["median_llm_retention", "median LLM retention"]].forEach(function (r) {
      var tr = h("tr"); tr.appendChild(h("td", {}, r[1])); tr.appendChild(h("td", {"data-field": r[0]})); t.appendChild(tr);
    });
    body.appendChild(t);
    var strip = h("canvas", {"class": "apx-strip", width: "600", height: "80"});
    body.appendChild(strip);
    body.appendChild(h("div", {"class": "apx-status"}, "ViT retention of each image (one bar per image, axis 0 to 1)"));
    var st = {method: "v2", alpha: {v2: 1.0, budget: 0.5}};
    var start = JSON.parse(el.getAttribute("data-start") || "null"); // computed by aptviz from the images' stats
    if (start) { st.method = start.method; st.alpha[start.method] = start.alpha; sel.value = start.method; }
    function drawStrip(ret) { // bars of the images' retention over a 0-1 axis with ticks
      var ctx = strip.getContext("2d"), L = 30, top = 6, H = strip.height - top - 6;
      var w = (strip.width - L - 4) / Math.max(names.length, 1);
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, strip.width, strip.height);
      ctx.font = "10px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
      [0, 0.5, 1].forEach(function (v) {
        var y = Math.round(top + H * (1 - v)) + 0.5;
        ctx.strokeStyle = "#e4e4e4"; ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(strip.width - 2, y); ctx.stroke();
        ctx.strokeStyle = "#555"; ctx.beginPath(); ctx.moveTo(L - 4, y); ctx.lineTo(L, y); ctx.stroke();
        ctx.fillStyle = "#333"; ctx.fillText(v.toFixed(1), L - 6, y);
      });
      ctx.strokeStyle = "#555"; ctx.beginPath(); ctx.moveTo(L + 0.5, top); ctx.lineTo(L + 0.5, top + H); ctx.stroke();
      ctx.fillStyle = "#2a9d8f";
      ret.forEach(function (v, i) {
        if (v === null) return;
        var hv = H * Math.min(Math.max(v, 0), 1);
        ctx.fillRect(L + 2 + i * w, top + H - hv, Math.max(w - 1, 1), hv);
      });
    }
    function update() {
      var loaded = names.filter(function (n) { return raw[n]; });
      var ret = [], llm = [], bars = [];
      loaded.forEach(function (n) { var r = compute(model(n), {method: st.method, alpha: st.alpha[st.method]}); ret.push(r.retention); if (r.llm_retention !== null) llm.push(r.llm_retention); });
      names.forEach(function (n, i) { bars.push(raw[n] ? ret[loaded.indexOf(n)] : null); });
      if (start && loaded.length < names.length && st.method === start.method && st.alpha[st.method] === start.alpha) {
        // the images' own numbers at the starting point, until their data is loaded
        setField(el, "images", names.length);
        setField(el, "mean_retention", start.mean_retention); setField(el, "median_retention", start.median_retention);
        setField(el, "mean_llm_retention", start.mean_llm_retention);
        setField(el, "median_llm_retention", start.median_llm_retention);
        ret = start.retention; bars = start.retention;
      } else {
        setField(el, "images", loaded.length + (loaded.length < names.length ? " of " + names.length + " loaded" : ""));
        setField(el, "mean_retention", mean(ret)); setField(el, "median_retention", median(ret));
        setField(el, "mean_llm_retention", mean(llm)); setField(el, "median_llm_retention", median(llm));
      }
      drawStrip(bars);
      var a = String(st.alpha[st.method]);
      range.max = st.method === "v2" ? "3" : "1";
      if (document.activeElement !== range) range.value = a;
      if (document.activeElement !== box) box.value = a;
      return {retentions: ret, llm_retentions: llm};
    }
    var timer = null;
    function later() { if (timer === null) timer = setTimeout(function () { timer = null; update(); }, 40); }
    function loadAll() { // the images' data files, on the first use of the controls (the page opens without them)
      if (st.loading) return;
      st.loading = 1;
      names.filter(function (n) { return !raw[n]; }).forEach(function (n) { A.load(n).then(later, function () {}); });
    }
    sel.addEventListener("change", function () { st.method = sel.value; loadAll(); update(); });
    sel.addEventListener("input", function () { st.method = sel.value; loadAll(); update(); });
    function onAlpha(ev) {
      var v = parseFloat(ev.target.value), ok = !isNaN(v) && v >= 0 && (st.method !== "budget" || v <= 1);
      if (ok) { st.alpha[st.method] = v; loadAll(); update(); }
    }
    range.addEventListener("input", onAlpha); box.addEventListener("input", onAlpha);
    el.addEventListener("pointerdown", loadAll); el.addEventListener("focusin", loadAll);
    el.__aptviz = {update: update, state: st, loadAll: loadAll};
    update();
    if (!start) loadAll(); // no numbers to show before the data: load it now
  }

  // ---- start: every explorer builds when it comes into view (its data loaded then, if it is a separate file) ----
  var hasIO = "IntersectionObserver" in window, io = null;
  function observe(el) { // the observer is made at first use, after the page's load
    if (!io) io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (!e.isIntersecting) return;
        io.unobserve(e.target);
        want(e.target);
      });
    }, {rootMargin: "400px"});
    io.observe(el);
  }
  function want(el) {
    if (el.hasAttribute("data-aptviz-dataset")) { // after the page's load: building it must not hold up a long report
      if (document.readyState === "complete") buildDataset(el);
      else window.addEventListener("load", function () { buildDataset(el); });
      return;
    }
    el._aptvizWanted = 1;
    if (raw[el.getAttribute("data-image")]) build(el); else requestData(el);
  }
  A.scan = function (root) {
    root = root || document;
    A.drain();
    scanData(root);
    var els = root.querySelectorAll("[data-aptviz-explorer],[data-aptviz-dataset]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (el._aptvizSeen) continue;
      el._aptvizSeen = 1;
      if (hasIO && el.hasAttribute("data-src")) lazy(el); else want(el);
    }
  };
  function lazy(el) { // data files wait for the page's own load: a long report opens first, explorers fill in
    if (document.readyState === "complete") observe(el);
    else window.addEventListener("load", function () { observe(el); });
  }
  A.explorer = function (el) { want(el); return el.__aptviz; };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { A.scan(document); });
  else A.scan(document);
})();
