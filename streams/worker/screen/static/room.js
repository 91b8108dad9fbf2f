// One room's screen: /rooms/{room_id} (any worker forwards it to the room's owner), once a second.
"use strict";

(() => {
  const { put, el, fmt, get, missing, lineChart, poll } = LP;
  const segment = location.pathname.split("/").filter(Boolean).pop();
  // a malformed escape (a hand-typed "%") is shown as typed instead of stopping the page
  const roomId = (() => { try { return decodeURIComponent(segment); } catch { return segment; } })();
  document.getElementById("room-id").textContent = roomId;
  document.title = `LivePulse · ${roomId}`;
  const $ = (id) => document.getElementById(id);

  // [label, people key, people rate key, events key, events rate key]; a rate is the stage's
  // against the stage before (its definition in docs/contract.md)
  const FUNNEL = [
    ["Impressions", "impression_users", null, "impressions", null],
    ["Entered the room", "viewers", "enter_rate_users", "enters", "enter_rate"],
    ["Saw a product", "product_impression_users", null, "product_impressions", null],
    ["Clicked a product", "clicker_users", "ctr_users", "product_clicks", "ctr"],
    ["Paid", "buyers", "click_to_buy_users", "orders_paid", "click_to_order_rate"],
    ["Conversion (paid / entered)", null, "conversion_rate_users", null, "conversion_rate"],
  ];
  // [label, key, kind] of the rolling comparison
  const COMPARE = [
    ["GMV", "gmv_cents", "minor"],
    ["Viewers", "viewers", "int"],
    ["Buyers", "buyers", "int"],
    ["Peak online", "online_peak", "int"],
    ["Conversion (people)", "conversion_rate_users", "pct"],
    ["Conversion (events)", "conversion_rate", "pct"],
    ["UV value", "uv_value", "major"],
    ["GPM", "gpm", "major"],
  ];
  const PRODUCT = [
    ["product_impressions", "int"], ["product_clicks", "int"], ["ctr", "pct"], ["orders_paid", "int"],
    ["click_to_order_rate", "pct"], ["gmv_cents", "minor"], ["refunds", "int"],
  ];

  function cell(tag, value, kind, currency, key) {
    const node = el(tag, { class: "num" });
    if (key) node.dataset.key = key;
    put(node, value, kind, currency);
    return node;
  }

  function headline(room) {
    const s = room.session || {}, c = room.currency;
    put($("h-gmv"), s.gmv_cents, "minor", c);
    put($("h-online"), s.online_now, "int");
    put($("h-peak"), s.online_peak, "int");
    put($("h-peak-at"), s.online_peak_at, "time");
    put($("h-viewers"), s.viewers, "int");
    put($("h-buyers"), s.buyers, "int");
    put($("h-uv"), s.uv_value, "major", c);
    put($("h-gpm"), s.gpm, "major", c);
    put($("h-late"), room.late_events, "int");
  }

  // Alert episodes to shade: the active ones (the API names only those), and the ones this
  // page saw end while it was open (they end where the room's newest window then ended).
  const episodes = new Map();
  function alerts(room, oldestStart, newestEnd) {
    const list = room.alerts || [];
    $("alerts").replaceChildren(
      ...list.map((a) =>
        el("li", { class: `badge ${a.severity || ""}` },
          `${a.kind.replaceAll("_", " ")}${a.product_id ? " (" + a.product_id + ")" : ""} since ${fmt.time(a.since)}`)
      )
    );
    const active = new Set();
    for (const a of list) {
      const key = `${a.kind}/${a.product_id || ""}/${a.since}`;
      active.add(key);
      episodes.set(key, { from: a.since, to: Infinity, label: `${a.kind} since ${fmt.time(a.since)}` });
    }
    for (const [key, episode] of episodes) {
      if (!active.has(key) && episode.to === Infinity) {
        episode.to = newestEnd;
        episode.label = `${episode.label}, ended by ${fmt.time(newestEnd)}`;
      }
      if (episode.to <= oldestStart) episodes.delete(key); // before the retained windows
    }
    document.body.dataset.episodes = String(episodes.size);
    return [...episodes.values()];
  }

  function curves(room, windows, bands) {
    const c = room.currency;
    const xs = windows.map((w) => w.window_start);
    const openIndex = windows.findIndex((w) => !w.closed);
    const size = windows.length ? windows[0].window_end - windows[0].window_start : 60000;
    const ends = bands.map((b) => ({ ...b, to: Math.min(b.to, (xs[xs.length - 1] || 0) + size) }));
    const chart = (id, title, series, format) =>
      lineChart($(id), { title, xs, series, openIndex, bands: ends, format, stepMs: size });
    const values = (key) => windows.map((w) => w[key]);
    chart("c-online", "Online viewers at each window's end", [{ values: values("online_end"), cls: "s1" }], fmt.int);
    chart("c-enters", "Enters per window", [{ values: values("enters"), cls: "s1" }], fmt.int);
    chart("c-gmv", "GMV per window", [{ values: values("gmv_cents"), cls: "s1" }], (v) => fmt.minor(v, c));
    chart("c-conv", "Conversion per window, people and events",
      [{ values: values("conversion_rate_users"), cls: "s1" }, { values: values("conversion_rate"), cls: "s2" }], fmt.pct);
  }

  function funnel(room, last, open) {
    const c = room.currency;
    $("f-window").textContent = last ? `${fmt.time(last.window_start)}–${fmt.time(last.window_end)}` : "none closed yet";
    const rows = [];
    for (const [label, pk, prk, ek, erk] of FUNNEL) {
      const tr = el("tr", {}, el("th", { scope: "row" }, label));
      for (const [w, prefix, cls] of [[last, "last", ""], [open, "open", "prov"]]) {
        for (const [k, rk] of [[pk, prk], [ek, erk]]) {
          const td = el("td", { class: `num ${cls}` });
          if (k) {
            const span = el("span", { dataset: { key: `${prefix}.${k}` } });
            put(span, w ? w[k] : undefined, "int", c);
            td.append(span);
          }
          if (rk) {
            const rate = el("span", { class: "rate", dataset: { key: `${prefix}.${rk}` } });
            put(rate, w ? w[rk] : undefined, "pct");
            if (k && rate.classList.contains("missing")) rate.textContent = ""; // one dash a cell
            td.append(" ", rate);
          }
          tr.append(td);
        }
      }
      rows.push(tr);
    }
    $("funnel-body").replaceChildren(...rows);
  }

  function compare(room) {
    const r = get(room, "rolling.10");
    $("compare-body").replaceChildren(
      ...COMPARE.map(([label, key, kind]) =>
        el("tr", {},
          el("th", { scope: "row" }, label),
          cell("td", get(r, `current.${key}`), kind, room.currency, `rolling.current.${key}`),
          cell("td", get(r, `previous.${key}`), kind, room.currency, `rolling.previous.${key}`),
          cell("td", get(r, `change.${key}`), "change", room.currency, `rolling.change.${key}`))
      )
    );
  }

  function products(room, last) {
    const list = (last && last.products) || [];
    if (!list.length) {
      $("products-body").replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, last ? "no products in this window" : LP.DASH)));
      return;
    }
    $("products-body").replaceChildren(
      ...list.map((p) =>
        el("tr", {},
          el("th", { scope: "row" }, p.product_id === "__other__" ? "all others" : p.product_id),
          ...PRODUCT.map(([k, kind]) => cell("td", p[k], kind, room.currency, `product.${p.product_id}.${k}`)))
      )
    );
  }

  function show(room, response) {
    const windows = room.windows || [];
    const closed = windows.filter((w) => w.closed);
    const last = closed[closed.length - 1];
    const open = windows.filter((w) => !w.closed).pop();
    document.body.dataset.lastWindow = last ? String(last.window_start) : "";
    document.body.dataset.windows = String(windows.length);
    $("currency").textContent = room.currency || "";
    headline(room);
    const newestEnd = windows.length ? windows[windows.length - 1].window_end : Date.now();
    const oldestStart = windows.length ? windows[0].window_start : -Infinity;
    curves(room, windows, alerts(room, oldestStart, newestEnd));
    funnel(room, last, open);
    compare(room);
    products(room, last);
    const by = response.headers.get("X-LivePulse-Served-By");
    $("status").textContent = `updated ${fmt.clock(Date.now())}` + (by ? ` · served by its owner ${by}` : "") +
      (open ? ` · open window from ${fmt.time(open.window_start)} is provisional` : "");
    $("status").classList.remove("error");
  }

  poll(`../rooms/${encodeURIComponent(roomId)}`, show, (message, status) => {
    $("status").textContent = status === 404 ? `no room ${roomId} (yet); retrying` : `${message}; retrying`;
    $("status").classList.add("error");
  });
})();
