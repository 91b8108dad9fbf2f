// The all-rooms page: every worker's rooms (/screen/api/rooms), sortable and filterable.
"use strict";

(() => {
  const { put, el, fmt, get, missing, sparkline, poll } = LP;
  // key: the row's field (dotted path), kind: how put() formats it
  const COLUMNS = [
    { id: "room", label: "Room", key: "room_id", kind: "text" },
    { id: "alerts", label: "Alerts", key: "alerts", kind: "alerts" },
    { id: "gmv", label: "Session GMV", key: "session.gmv_cents", kind: "minor" },
    { id: "gmv_last", label: "Last window GMV", key: "last_closed.gmv_cents", kind: "minor" },
    { id: "online", label: "Online now", key: "session.online_now", kind: "int" },
    { id: "peak", label: "Peak online", key: "session.online_peak", kind: "int" },
    { id: "viewers", label: "Viewers", key: "session.viewers", kind: "int" },
    { id: "conv_users", label: "Conversion (people)", key: "session.conversion_rate_users", kind: "pct" },
    { id: "conv", label: "Conversion (events)", key: "session.conversion_rate", kind: "pct" },
    { id: "pay", label: "Payment success", key: "session.payment_success_rate", kind: "pct" },
    { id: "spark", label: "GMV, 30 windows", key: "gmv_sparkline", kind: "spark" },
  ];
  let rows = [];
  let sort = { id: "gmv", dir: -1 };
  const body = document.getElementById("body");
  const filter = document.getElementById("filter");

  function header() {
    const head = document.getElementById("head");
    head.replaceChildren(
      ...COLUMNS.map((c) => {
        const th = el("th", { scope: "col", dataset: { col: c.id } });
        if (c.kind === "spark" || c.kind === "alerts") {
          th.textContent = c.label;
          return th;
        }
        const active = sort.id === c.id;
        th.setAttribute("aria-sort", active ? (sort.dir > 0 ? "ascending" : "descending") : "none");
        const button = el("button", { type: "button", class: "sort" }, c.label + (active ? (sort.dir > 0 ? " ▲" : " ▼") : ""));
        button.addEventListener("click", () => {
          sort = { id: c.id, dir: sort.id === c.id ? -sort.dir : c.kind === "text" ? 1 : -1 };
          header();
          render();
          document.querySelector(`th[data-col="${c.id}"] button`).focus();
        });
        th.append(button);
        return th;
      })
    );
  }

  function compare(a, b) {
    const alerting = (r) => ((r.alerts || []).length ? 1 : 0);
    if (alerting(a) !== alerting(b)) return alerting(b) - alerting(a);
    const col = COLUMNS.find((c) => c.id === sort.id);
    const va = get(a, col.key), vb = get(b, col.key);
    if (missing(va) !== missing(vb)) return missing(va) ? 1 : -1;
    if (!missing(va) && va !== vb) return (va < vb ? -1 : 1) * sort.dir;
    return a.room_id < b.room_id ? -1 : 1;
  }

  function cell(row, c) {
    const td = el("td", { dataset: { col: c.id } });
    const value = get(row, c.key);
    if (c.kind === "text") {
      // "." and ".." are dot segments to every URL parser (escaped or not): no page path
      // can name them, so they get no link rather than one to another page
      const addressable = row.room_id !== "." && row.room_id !== "..";
      td.append(
        addressable
          ? el("a", { href: `screen/${encodeURIComponent(row.room_id)}` }, row.room_id)
          : el("span", { title: "this room id cannot be part of a URL path" }, row.room_id)
      );
    } else if (c.kind === "alerts") {
      const kinds = value || [];
      td.dataset.value = kinds.join(",");
      td.append(kinds.length ? el("span", { class: "badge" }, kinds.join(", ").replaceAll("_", " ")) : "");
    } else if (c.kind === "spark") {
      td.append(sparkline(value && value.gmv_cents, `GMV of the last 30 windows of ${row.room_id}`));
    } else {
      put(td, value, c.kind, row.currency);
      td.classList.add("num");
    }
    return td;
  }

  function render() {
    // a re-render must not take the keyboard focus away from the link it was on
    const focused = document.activeElement && document.activeElement.closest("tbody tr");
    const keep = focused ? focused.dataset.room : null;
    const text = filter.value.trim().toLowerCase();
    const shown = rows.filter((r) => !text || r.room_id.toLowerCase().includes(text)).sort(compare);
    body.replaceChildren(
      ...shown.map((r) => {
        const tr = el("tr", { dataset: { room: r.room_id } }, ...COLUMNS.map((c) => cell(r, c)));
        if ((r.alerts || []).length) tr.classList.add("alerting");
        return tr;
      })
    );
    if (keep !== null) {
      const again = [...body.querySelectorAll("tr")].find((tr) => tr.dataset.room === keep);
      if (again) again.querySelector("a")?.focus();
    }
    document.getElementById("count").textContent = `${shown.length} of ${rows.length} rooms`;
  }

  filter.addEventListener("input", render);
  header();
  poll(
    "screen/api/rooms",
    (data) => {
      rows = data.rooms;
      render();
      const bad = data.workers.filter((w) => w.error);
      document.getElementById("status").textContent =
        `updated ${fmt.clock(Date.now())} · ${data.workers.length} worker(s)` +
        (bad.length ? ` · ${bad.length} not answering: rooms may be missing` : "");
      document.getElementById("workers").textContent = data.workers
        .map((w) => `${w.url}: ${w.error ? "no answer (" + w.error + ")" : w.rooms + " rooms"}${w.truncated ? ` (first ${fmt.int(data.limit)})` : ""}`)
        .join(" · ");
    },
    (message) => {
      document.getElementById("status").textContent = `${message}; retrying`;
    }
  );
})();
