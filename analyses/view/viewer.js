// mdm-lens trace viewer: reads the JSON in #mdm-data (analyses/view/pack.py) and draws it. No network, no libraries.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("mdm-data").textContent);
  var root = document.getElementById("mdm-root");
  var V = D.vocab;

  function arr(o) {
    var bin = atob(o.b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    if (o.dtype === "u8") return bytes;
    if (o.dtype === "u16") return new Uint16Array(bytes.buffer);
    if (o.dtype === "u32") return new Uint32Array(bytes.buffer);
    if (o.dtype === "f32") return new Float32Array(bytes.buffer);
    throw new Error("unknown dtype " + o.dtype);
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function show(s) { return s === "" ? "\u2205" : s.replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5"); }
  function confColour(p) {             // red (unsure) -> green (sure)
    if (p < 0) return "hsl(0,0%,80%)";
    return "hsl(" + Math.round(130 * p) + ",70%," + Math.round(84 - 12 * p) + "%)";
  }
  function fmt(x, d) { return x === null || x === undefined ? "\u2014" : Number(x).toFixed(d); }

  // ------------------------------------------------------------------ one run, decoded once
  function prepare(r) {
    var S = r.n_steps, G = r.gen, K = r.k;
    r.tid = arr(r.topk_ids); r.tp = arr(r.topk_p);
    r.at = function (s, p, j) { return (s * G + p) * K + j; };
    r.commitConf = new Float32Array(G);
    for (var p = 0; p < G; p++) {
      var s = r.decode_step[p], c = -1;
      if (s >= 0) for (var j = 0; j < K; j++) if (r.tid[r.at(s, p, j)] === r.tokens[p]) { c = r.tp[r.at(s, p, j)] / 255; break; }
      r.commitConf[p] = c;
    }
    if (r.lens) { r.lens.I = arr(r.lens.ids); r.lens.P = arr(r.lens.p); }
    if (r.attention) { r.attention.Kx = arr(r.attention.keys); r.attention.W = arr(r.attention.w); }
    if (r.features) { r.features.I = arr(r.features.ids); r.features.A = arr(r.features.acts); }
    return r;
  }
  function committedAt(r, p, s) { var d = r.decode_step[p]; return d >= 0 && d <= s; }
  function shownToken(r, p, s) {         // [text, committed?]
    if (committedAt(r, p, s)) return [p < r.cut ? r.pieces[p] : V[r.tokens[p]], true];
    return [V[r.tid[r.at(Math.min(s, r.n_steps - 1), p, 0)]], false];
  }
  function nearest(steps, s) { var best = steps[0]; steps.forEach(function (x) { if (x <= s) best = x; }); return best; }

  // ------------------------------------------------------------------ state
  var st = { g: 0, s: 0, run: 0, pos: 0, layer: 0, head: 0, playing: null };
  D.groups.forEach(function (g) { g.runs.forEach(prepare); });
  function group() { return D.groups[st.g]; }
  function maxSteps() { return Math.max.apply(null, group().runs.map(function (r) { return r.n_steps; })); }

  // ------------------------------------------------------------------ layout
  root.appendChild(el("h1", null, D.title));
  root.appendChild(el("div", "meta", D.model + " \u00b7 " + D.family + " \u00b7 " + D.n_layers + " layers"));
  var controls = el("div", "controls");
  var gsel = el("select"); gsel.id = "group";
  D.groups.forEach(function (g, i) {
    var o = el("option", null, (i + 1) + ": " + g.prompt.slice(0, 60)); o.value = i; gsel.appendChild(o);
  });
  if (D.groups.length > 1) controls.appendChild(gsel);
  var prev = el("button", null, "\u25c0"), play = el("button", null, "play"), next = el("button", null, "\u25b6");
  var slider = el("input"); slider.type = "range"; slider.id = "step"; slider.min = 0; slider.step = 1;
  var slabel = el("span"); slabel.id = "step-label";
  [prev, slider, next, play, slabel].forEach(function (c) { controls.appendChild(c); });
  root.appendChild(controls);
  var body = el("div"); root.appendChild(body);

  var panels = [];            // per run of the current group: {run, spans, grid, overlay, cw, ch}
  var detail;

  function build() {
    body.textContent = ""; panels = [];
    var g = group();
    slider.max = maxSteps() - 1;
    if (st.s > maxSteps() - 1) st.s = maxSteps() - 1;
    body.appendChild(el("div", "prompt", g.prompt));
    var runs = el("div", "runs"); body.appendChild(runs);
    var diff = {}; g.diff.forEach(function (p) { diff[p] = true; });
    g.runs.forEach(function (r, ri) {
      var pan = el("div", "gen-panel");
      pan.dataset.label = r.label; pan.dataset.steps = r.n_steps; pan.dataset.positions = r.gen;
      pan.dataset.cut = r.cut;
      var h = el("h2", null, r.label); var dm = el("span", "damage");
      if (r.damage) {
        dm.appendChild(document.createTextNode("NLL " + fmt(r.damage.nll, 2) + " nats/token \u00b7 "));
        var dg = el("span", r.damage.degenerate ? "bad" : null,
          r.damage.degenerate ? "degenerate: " + r.damage.reasons.join(", ") : "not degenerate");
        dm.appendChild(dg);
      }
      if (g.runs.length === 2) dm.appendChild(document.createTextNode(" \u00b7 " + g.diff.length + " positions differ"));
      h.appendChild(dm); pan.appendChild(h);
      var strip = el("div", "strip"), spans = [];
      for (var p = 0; p < r.gen; p++) {
        var sp = el("span", "tok" + (diff[p] ? " diff" : "") + (p >= r.cut ? " fill" : ""));
        sp.dataset.pos = p; sp.dataset.run = ri;
        sp.addEventListener("click", select);
        strip.appendChild(sp); spans.push(sp);
      }
      pan.appendChild(strip);
      var wrap = el("div", "grid-wrap"); wrap.style.position = "relative";
      var cw = Math.max(2, Math.min(28, Math.floor(880 / g.runs.length / r.gen)));
      var ch = Math.max(2, Math.min(16, Math.floor(320 / r.n_steps)));
      var grid = el("canvas", "grid"), ov = el("canvas", "grid");
      grid.width = ov.width = cw * r.gen; grid.height = ov.height = ch * r.n_steps;
      ov.style.position = "absolute"; ov.style.left = ov.style.top = "0";
      wrap.appendChild(grid); wrap.appendChild(ov); pan.appendChild(wrap);
      pan.appendChild(el("div", "legend", "grid: response position \u2192, step \u2193; colour = probability of the " +
        "token when it was committed (red low, green high), grey = still masked (darker = surer top-1); " +
        "dark cell = the step that committed it; click a cell or token for details"));
      var P = { run: r, ri: ri, spans: spans, grid: grid, ov: ov, cw: cw, ch: ch };
      ov.addEventListener("click", function (ev) {
        var b = ov.getBoundingClientRect();
        st.run = P.ri; st.pos = Math.min(r.gen - 1, Math.floor((ev.clientX - b.left) / cw));
        setStep(Math.min(r.n_steps - 1, Math.floor((ev.clientY - b.top) / ch)), true);
      });
      paintGrid(P);
      runs.appendChild(pan); panels.push(P);
    });
    detail = el("div", "detail"); body.appendChild(detail);
    if (st.run >= g.runs.length) st.run = 0;
    if (st.pos >= g.runs[st.run].gen) st.pos = 0;
    setStep(st.s, true);
  }

  function paintGrid(P) {
    var r = P.run, c = P.grid.getContext("2d"), cw = P.cw, ch = P.ch;
    var text = cw >= 24 && ch >= 14;
    c.font = "10px monospace"; c.textBaseline = "middle";
    for (var s = 0; s < r.n_steps; s++) {
      for (var p = 0; p < r.gen; p++) {
        var d = r.decode_step[p];
        if (d >= 0 && d <= s) c.fillStyle = d === s ? "hsl(220,25%,25%)" : confColour(r.commitConf[p]);
        else { var q = r.tp[r.at(s, p, 0)] / 255; c.fillStyle = "hsl(220,8%," + Math.round(96 - 30 * q) + "%)"; }
        c.fillRect(p * cw, s * ch, cw, ch);
        if (text) {
          var t = shownToken(r, p, s)[0];
          c.fillStyle = d === s ? "#fff" : (d >= 0 && d <= s ? "#1d2330" : "#6b7385");
          c.fillText(show(t).slice(0, 3), p * cw + 1, s * ch + ch / 2, cw - 2);
        }
      }
    }
  }

  function paintOverlay(P) {
    var c = P.ov.getContext("2d"), r = P.run;
    c.clearRect(0, 0, P.ov.width, P.ov.height);
    c.strokeStyle = "#2f6fed"; c.lineWidth = 2;
    var s = Math.min(st.s, r.n_steps - 1);
    c.strokeRect(1, s * P.ch, P.ov.width - 2, P.ch);
    if (P.ri === st.run) { c.strokeStyle = "#d4380d"; c.strokeRect(st.pos * P.cw, 1, P.cw, P.ov.height - 2); }
  }

  function updateStrips() {
    panels.forEach(function (P) {
      var r = P.run, s = Math.min(st.s, r.n_steps - 1);
      for (var p = 0; p < r.gen; p++) {
        var sp = P.spans[p], t = shownToken(r, p, s);
        sp.textContent = show(t[0]);
        sp.dataset.committed = t[1] ? "1" : "0";
        sp.dataset.piece = t[1] && p < r.cut ? r.pieces[p] : "";
        sp.dataset.token = t[1] ? String(D.vocab_ids[r.tokens[p]]) : "";
        sp.classList.toggle("masked", !t[1]);
        sp.classList.toggle("new", r.decode_step[p] === s);
        sp.classList.toggle("sel", P.ri === st.run && p === st.pos);
        sp.style.background = t[1] ? confColour(r.commitConf[p]) : "";
      }
      paintOverlay(P);
    });
  }

  function select(ev) {
    st.run = +ev.currentTarget.dataset.run; st.pos = +ev.currentTarget.dataset.pos;
    setStep(st.s, true);
  }

  function setStep(s, rebuildDetail) {
    st.s = Math.max(0, Math.min(maxSteps() - 1, s | 0));
    slider.value = st.s;
    slabel.textContent = "step " + st.s + " / " + (maxSteps() - 1);
    slabel.dataset.step = st.s;
    updateStrips();
    renderDetail(rebuildDetail);
  }

  // ------------------------------------------------------------------ detail cards
  function card(title) { var c = el("div", "card"); c.appendChild(el("h3", null, title)); detail.appendChild(c); return c; }
  function tokCell(id, p) { return show(V[id]) + " " + fmt(p, 2); }

  // full: the selection changed (rebuild everything); else only the step moved: move the highlighted row, and
  // rebuild the lens / attention cards only when the step they read changes (the slider stays fast at 256 steps)
  var shown = { rows: null, cur: null, key: null, c1: null };
  function renderDetail(full) {
    var r = group().runs[st.run], p = st.pos, s = Math.min(st.s, r.n_steps - 1);
    var key = [r.lens ? nearest(r.lens.steps, s) : -1, r.attention ? nearest(r.attention.steps, s) : -1,
      r.features ? s : -1].join();
    if (!full && shown.rows) {
      if (shown.cur) shown.cur.classList.remove("cur");
      shown.cur = shown.rows[s]; shown.cur.classList.add("cur");
      shown.box.scrollTop = Math.max(0, shown.cur.offsetTop - 120);
      if (key === shown.key) return;
      while (detail.lastChild !== shown.c1) detail.removeChild(detail.lastChild);
      shown.key = key; extraCards(r, p, s);
      return;
    }
    detail.textContent = "";
    var d = r.decode_step[p];
    var c1 = card(r.label + " \u00b7 position " + p + " \u00b7 committed at step " + (d >= 0 ? d : "never") +
      (d >= 0 ? " as \u201c" + show(V[r.tokens[p]]) + "\u201d" : "") + " \u00b7 top-" + r.k + " at every step");
    var box = el("div", "scroll"), tb = el("table"), cur = null;
    var rows = [];
    for (var t = 0; t < r.n_steps; t++) {
      var tr = el("tr", (t === s ? "cur" : "") + (t === d ? " commit" : ""));
      tr.appendChild(el("td", null, "s" + t));
      for (var j = 0; j < r.k; j++) tr.appendChild(el("td", null, tokCell(r.tid[r.at(t, p, j)], r.tp[r.at(t, p, j)] / 255)));
      tb.appendChild(tr); rows.push(tr); if (t === s) cur = tr;
    }
    box.appendChild(tb); c1.appendChild(box);
    if (cur) box.scrollTop = Math.max(0, cur.offsetTop - 120);
    shown = { rows: rows, cur: cur, key: key, c1: c1, box: box };
    extraCards(r, p, s);
  }

  function extraCards(r, p, s) {
    if (r.lens) lensCard(r, p, s);
    if (r.attention) attentionCard(r, p, s);
    if (r.features) featureCard(r, p, s);
  }

  function lensCard(r, p, s) {
    var L = r.lens, ls = nearest(L.steps, s), si = L.steps.indexOf(ls), nl = L.layers.length, G = r.gen, K = r.k;
    var c = card("logit lens at step " + ls + " (lens steps: " + L.steps.join(", ") + ") \u00b7 resid_post \u2192 " +
      "final norm \u2192 W_U");
    var tb = el("table");
    for (var li = 0; li < nl; li++) {
      var tr = el("tr"); tr.appendChild(el("td", null, "L" + L.layers[li]));
      for (var j = 0; j < K; j++) {
        var o = ((si * nl + li) * G + p) * K + j, td = el("td", null, tokCell(L.I[o], L.P[o] / 255));
        if (L.I[o] === r.tokens[p]) td.style.fontWeight = "700";
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
    c.appendChild(tb);
    c.appendChild(el("div", "legend", "bold = the token this position finally receives"));
  }

  function attentionCard(r, p, s) {
    var A = r.attention, as = nearest(A.steps, s), si = A.steps.indexOf(as), nl = A.layers.length, H = A.n_heads;
    var c = card("attention from position " + p + " at step " + as + " (hook_pattern)");
    var ls = el("select"), hs = el("select");
    A.layers.forEach(function (l, i) { var o = el("option", null, "layer " + l); o.value = i; ls.appendChild(o); });
    for (var h = 0; h < H; h++) { var o = el("option", null, "head " + h); o.value = h; hs.appendChild(o); }
    st.layer = Math.min(st.layer, nl - 1); st.head = Math.min(st.head, H - 1);
    ls.value = st.layer; hs.value = st.head; ls.id = "attn-layer"; hs.id = "attn-head";
    ls.onchange = function () { st.layer = +ls.value; renderDetail(true); };
    hs.onchange = function () { st.head = +hs.value; renderDetail(true); };
    c.appendChild(ls); c.appendChild(hs);
    var ka = A.keys.shape[4], base = (((si * nl + st.layer) * H + st.head) * r.gen + p) * ka;
    var w = {}, g = group(), np = g.prompt_tokens.length;
    for (var j = 0; j < ka; j++) w[A.Kx[base + j]] = A.W[base + j] / 255;
    var keys = el("div", "keys");
    for (var k = 0; k < np + r.gen; k++) {
      var txt = k < np ? V[g.prompt_tokens[k]] : (committedAt(r, k - np, as - 1) ? V[r.tokens[k - np]] : "\u2591");
      var sp = el("span", k === np + p ? "q" : null, show(txt));
      if (w[k] !== undefined) { sp.style.background = "rgba(47,111,237," + Math.min(1, w[k]).toFixed(3) + ")"; sp.title = fmt(w[k], 3); }
      keys.appendChild(sp);
    }
    c.appendChild(keys);
    c.appendChild(el("div", "legend", "blue = attention weight (top " + ka + " keys of this query); \u2591 = masked in the canvas step " + as + " read"));
  }

  function featureCard(r, p, s) {
    var F = r.features, k = F.ids.shape[2], o = (s * r.gen + p) * k;
    var c = card(F.name + " at " + F.site + " \u00b7 position " + p + " \u00b7 step " + s);
    var tb = el("table"), top = Math.max(1e-9, F.A[o]);
    for (var j = 0; j < k; j++) {
      var id = F.I[o + j], a = F.A[o + j], tr = el("tr");
      tr.appendChild(el("td", null, "#" + id + (F.labels[id] ? " " + F.labels[id] : "")));
      var td = el("td"); var b = el("span", "bar"); b.style.width = Math.max(0, 80 * a / top) + "px";
      td.appendChild(b); td.appendChild(document.createTextNode(" " + fmt(a, 3)));
      tr.appendChild(td); tb.appendChild(tr);
    }
    c.appendChild(tb);
  }

  // ------------------------------------------------------------------ wiring
  slider.addEventListener("input", function () { setStep(+slider.value, false); });
  prev.onclick = function () { setStep(st.s - 1, false); };
  next.onclick = function () { setStep(st.s + 1, false); };
  play.onclick = function () {
    if (st.playing) { clearInterval(st.playing); st.playing = null; play.textContent = "play"; return; }
    if (st.s >= maxSteps() - 1) setStep(0, true);
    play.textContent = "pause";
    st.playing = setInterval(function () {
      if (st.s >= maxSteps() - 1) { play.onclick(); return; }
      setStep(st.s + 1, false);
    }, 120);
  };
  gsel.onchange = function () { st.g = +gsel.value; st.run = 0; st.pos = 0; build(); };
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowLeft") setStep(st.s - 1, false);
    if (ev.key === "ArrowRight") setStep(st.s + 1, false);
  });
  st.s = maxSteps() - 1;
  build();
  root.dataset.ready = "1";
  root.dataset.renderMs = performance.now().toFixed(1);
})();
