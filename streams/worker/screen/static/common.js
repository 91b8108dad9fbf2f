// LivePulse screen: formatting, polling and hand-written SVG charts shared by both pages.
// No dependencies; every number shown comes from the worker's JSON as it is, formatted here.
"use strict";

const LP = (() => {
  const DASH = "–";
  const SVG = "http://www.w3.org/2000/svg";
  const missing = (v) => v === undefined || v === null || (typeof v === "number" && !isFinite(v));

  // Dotted path into an object: get(room, "session.gmv_cents"); undefined when absent.
  function get(obj, path) {
    let v = obj;
    for (const key of path.split(".")) {
      if (v === undefined || v === null) return undefined;
      v = v[key];
    }
    return v;
  }

  const moneyFormats = new Map();
  function moneyFormat(currency) {
    const code = currency || "";
    if (!moneyFormats.has(code)) {
      // before a room's first order it has no currency: a plain number with two decimals
      let fmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      try {
        if (code) fmt = new Intl.NumberFormat(undefined, { style: "currency", currency: code });
      } catch (e) {
        // an unknown code: the plain number
      }
      moneyFormats.set(code, fmt);
    }
    return moneyFormats.get(code);
  }
  // Minor units (gmv_cents) -> major units with the currency's own exponent (JPY 0, CNY 2).
  function minorExponent(currency) {
    return currency ? moneyFormat(currency).resolvedOptions().maximumFractionDigits : 2;
  }
  const fmt = {
    int: (v) => (missing(v) ? DASH : new Intl.NumberFormat().format(v)),
    pct: (v) =>
      missing(v) ? DASH : new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(v),
    change: (v) =>
      missing(v)
        ? DASH
        : new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" }).format(v),
    minor: (v, currency) => (missing(v) ? DASH : moneyFormat(currency).format(v / 10 ** minorExponent(currency))),
    major: (v, currency) => (missing(v) ? DASH : moneyFormat(currency).format(v)),
    seconds: (v) => (missing(v) ? DASH : `${new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 }).format(v)} s`),
    time: (ms) =>
      missing(ms) ? DASH : new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }).format(new Date(ms)),
    clock: (ms) =>
      missing(ms)
        ? DASH
        : new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(ms)),
  };

  // Writes a value into an element: the formatted text, and the raw JSON value in data-value
  // (what a test compares with the API). kind: int | pct | change | minor | major | seconds | time
  function put(el, value, kind, currency) {
    if (!el) return;
    el.textContent = fmt[kind](value, currency);
    el.dataset.value = missing(value) ? "" : String(value);
    el.classList.toggle("missing", missing(value));
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // Fetch JSON once a second without overlapping requests; onData(json, response) or
  // onError(message). A slow answer (a worker with thousands of rooms) stretches the pause
  // to four times its duration, so a screen never keeps a worker busy. Returns a function
  // that polls at once.
  function poll(url, onData, onError, everyMs = 1000) {
    let timer = null;
    async function once() {
      clearTimeout(timer);
      const started = performance.now();
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
        const body = await response.json().catch(() => ({}));
        if (response.ok) onData(body, response);
        else onError(body.error || `HTTP ${response.status}`, response.status);
      } catch (e) {
        onError(`the worker did not answer (${e.message})`, 0);
      }
      timer = setTimeout(once, Math.max(everyMs, 4 * (performance.now() - started)));
    }
    once();
    return once;
  }

  // A small sparkline: values oldest first, as a polyline in a 100 x 24 box.
  function sparkline(values, label) {
    const box = svg("svg", { viewBox: "0 0 100 24", class: "spark", role: "img", "aria-label": label });
    if (!values || !values.length) return box;
    const max = Math.max(...values, 1);
    const step = values.length > 1 ? 100 / (values.length - 1) : 0;
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(22 - (v / max) * 20).toFixed(1)}`);
    box.append(svg("polyline", { points: points.join(" "), fill: "none", class: "spark-line" }));
    return box;
  }

  // A line chart of windows: xs (window starts, ms), series [{name, values, cls}], the index
  // of the open (provisional) window or -1, bands [{from, to, label}] (alert episodes, ms),
  // format for the y axis labels. Closed windows are solid, the open one dashed.
  function lineChart(host, { title, xs, series, openIndex, bands, format, stepMs }) {
    const W = 600, H = 180, L = 84, R = 8, T = 10, B = 24;
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
    box.append(Object.assign(svg("title"), { textContent: title }));
    const all = series.flatMap((s) => s.values.filter((v) => !missing(v)));
    if (!xs.length || !all.length) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" });
      t.textContent = "no data yet";
      box.append(t);
      host.replaceChildren(box);
      return;
    }
    const x0 = xs[0], x1 = xs[xs.length - 1] + stepMs;
    const yMax = Math.max(...all) || 1;
    const px = (x) => L + ((x - x0) / Math.max(x1 - x0, 1)) * (W - L - R);
    const py = (y) => T + (1 - y / yMax) * (H - T - B);
    for (const band of bands || []) {
      const a = Math.max(px(band.from), L), b = Math.min(px(band.to), W - R);
      if (b > a) {
        const rect = svg("rect", { x: a, y: T, width: b - a, height: H - T - B, class: "band" });
        rect.append(Object.assign(svg("title"), { textContent: band.label }));
        box.append(rect);
      }
    }
    for (const [y, label] of [[0, format(0)], [yMax, format(yMax)]]) {
      box.append(svg("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" }));
      const t = svg("text", { x: L - 4, y: py(y) + 4, "text-anchor": "end", class: "axis" });
      t.textContent = label;
      box.append(t);
    }
    for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
      const t = svg("text", { x: px(x), y: H - 6, "text-anchor": anchor, class: "axis" });
      t.textContent = fmt.time(x);
      box.append(t);
    }
    for (const s of series) {
      const mid = (i) => px(xs[i] + stepMs / 2);
      const closed = [], open = [];
      s.values.forEach((v, i) => {
        if (missing(v)) return;
        (i === openIndex ? open : closed).push([mid(i), py(v)]);
      });
      if (closed.length) {
        box.append(svg("polyline", { points: closed.map((p) => p.join(",")).join(" "), class: `line ${s.cls}` }));
      }
      if (open.length) {
        const from = closed.length ? [closed[closed.length - 1]] : [];
        const pts = [...from, ...open].map((p) => p.join(",")).join(" ");
        box.append(svg("polyline", { points: pts, class: `line provisional ${s.cls}` }));
        box.append(svg("circle", { cx: open[0][0], cy: open[0][1], r: 3, class: `dot ${s.cls}` }));
      }
    }
    host.replaceChildren(box);
  }

  return { DASH, missing, get, fmt, put, el, svg, poll, sparkline, lineChart };
})();
