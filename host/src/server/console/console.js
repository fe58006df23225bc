// wasmhook console: one page, hash routes, data from the admin API.
//
// Every piece of data is put on the page as text (textContent, text nodes,
// setAttribute): event data is user input, and nothing here ever parses it
// as HTML. The server's Content-Security-Policy forbids inline scripts as a
// second line of defence.
"use strict";

(function () {
  const POLL_MS = 3000;
  const OVERVIEW_POLL_MS = 2000;
  const PAGE_SIZE = 50;

  const main = document.getElementById("main");
  const live = document.getElementById("live");

  // ---- DOM helpers -------------------------------------------------------

  // h("a", {href: "#/x", class: "y", onclick: f}, "text", child, ...)
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    put(el, children);
    return el;
  }

  // Appends children; strings and numbers become text nodes.
  function put(el, ...children) {
    for (const child of [children].flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function fill(el, ...children) {
    el.replaceChildren();
    return put(el, children);
  }

  // A hash link; every part is URI-encoded, so data cannot leave the hash.
  function link(parts, params, ...children) {
    return h("a", { href: hashOf(parts, params) }, ...children);
  }

  function hashOf(parts, params) {
    let hash = "#/" + parts.map(encodeURIComponent).join("/");
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") query.set(key, value);
    }
    const text = query.toString();
    return text ? hash + "?" + text : hash;
  }

  function code(text) {
    return h("code", null, text);
  }

  function badge(text, kind) {
    return h("span", { class: "badge " + (kind || "") }, text);
  }

  function statusBadge(status) {
    const kind = { delivered: "ok", pending: "warn", dead: "bad" }[status];
    return badge(status || "unknown", kind);
  }

  // An attempt's outcome: its HTTP status, or "error" when there was no response.
  function httpBadge(status, error) {
    if (typeof status === "number") {
      return badge(String(status), status >= 200 && status < 300 ? "ok" : "bad");
    }
    if (error) return badge("error", "bad");
    return h("span", { class: "muted" }, "—");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Local time, to the second; the full RFC 3339 text in the tooltip.
  function time(value) {
    if (value === undefined || value === null || value === "") return h("span", { class: "muted" }, "—");
    const date = typeof value === "number" ? new Date(value) : new Date(String(value));
    if (Number.isNaN(date.getTime())) return String(value);
    const text =
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
    return h("time", { datetime: date.toISOString(), title: String(value) }, text);
  }

  function number(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : "—";
  }

  function rate(n) {
    if (typeof n !== "number" || !Number.isFinite(n)) return "—";
    return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
  }

  // A body as sent: pretty JSON when it is JSON, the text otherwise.
  function pretty(body) {
    if (body && typeof body === "object") return JSON.stringify(body, null, 2);
    if (typeof body !== "string") return String(body);
    try {
      return JSON.stringify(JSON.parse(body), null, 2);
    } catch (_) {
      return body;
    }
  }

  function table(headers, rows, emptyText) {
    const head = h("tr", null, headers.map((x) =>
      typeof x === "string" ? h("th", null, x) : h("th", { class: x.class }, x.text)));
    const body = h("tbody");
    if (rows.length === 0) {
      body.append(h("tr", null, h("td", { class: "empty", colspan: headers.length }, emptyText)));
    } else {
      put(body, rows);
    }
    return h("div", { class: "table-wrap" }, h("table", null, h("thead", null, head), body));
  }

  function facts(pairs) {
    const dl = h("dl", { class: "facts" });
    for (const [label, value] of pairs) {
      dl.append(h("dt", null, label), h("dd", null, value));
    }
    return dl;
  }

  // ---- the admin API -----------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Every request carries X-Wasmhook-Console: the server refuses writes
  // authenticated by the cookie alone (cross-site request forgery).
  async function api(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Wasmhook-Console": "1", Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "wasmhook is not answering (" + e.message + ")");
    }
    if (response.status === 401) {
      location.assign("/ui/login");
      throw new ApiError(401, "signed out");
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      // Not JSON: keep the text for the message.
    }
    if (!response.ok) {
      const message = data && typeof data === "object" && data.error ? data.error : text || response.statusText;
      throw new ApiError(response.status, method + " " + path.split("?")[0] + ": " + response.status + " " + message);
    }
    return data;
  }

  // A page's message line: errors from the API, and what an action did.
  function messages() {
    const el = h("div", { class: "messages" });
    let fromPoll = false;
    return {
      el,
      // `polled`: the error of a poll, taken away by the next good one.
      error(e, polled) {
        fromPoll = Boolean(polled);
        fill(el, h("p", { class: "error", role: "alert" }, e instanceof Error ? e.message : String(e)));
      },
      notice(text) {
        fromPoll = false;
        fill(el, h("p", { class: "notice", role: "status" }, text));
      },
      pollOk() {
        if (fromPoll) el.replaceChildren();
        fromPoll = false;
      },
    };
  }

  // Runs an action from a button: disabled while it runs, its result or
  // error on the page's message line, then the page refreshed.
  async function act(button, say, work) {
    button.disabled = true;
    try {
      const text = await work();
      if (text) say.notice(text);
      await refreshNow();
    } catch (e) {
      say.error(e);
    } finally {
      button.disabled = false;
    }
  }

  // ---- routing and polling -------------------------------------------------

  const pages = {
    overview: overviewPage,
    deliveries: deliveriesPage,
    dlq: dlqPage,
    observers: observersPage,
    plugins: pluginsPage,
  };

  let current = null; // {refresh, say, interval, title}
  let generation = 0;
  let timer = null;
  let polling = false;

  function parseHash() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query] = hash.split("?", 2);
    const parts = path.split("/").filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch (_) {
        return p;
      }
    });
    return { parts, params: new URLSearchParams(query || "") };
  }

  function show() {
    const { parts, params } = parseHash();
    const name = pages[parts[0]] ? parts[0] : "overview";
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === name);
    }
    generation += 1;
    main.replaceChildren();
    current = pages[name](main, parts.slice(1), params);
    document.title = (current.title || name) + " · wasmhook";
    schedule(0);
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  // One poll of the page on show; the next is scheduled when it is over,
  // so polls never overlap.
  async function poll() {
    if (polling) return;
    polling = true;
    const mine = generation;
    const page = current;
    // A refresh would undo a selection the user is about to copy.
    const selecting = String(window.getSelection ? window.getSelection() : "") !== "";
    try {
      if (!document.hidden && !selecting) {
        await page.refresh();
        setLive(true);
        page.say.pollOk();
      }
    } catch (e) {
      setLive(false, e);
      if (mine === generation) page.say.error(e, true);
    } finally {
      polling = false;
    }
    schedule(mine === generation ? page.interval || POLL_MS : 0);
  }

  async function refreshNow() {
    if (current) await current.refresh();
  }

  function setLive(ok, error) {
    if (!live) return;
    live.classList.toggle("stale", !ok);
    live.textContent = ok ? "live" : "not answering";
    live.title = ok ? "The page polls the admin API every few seconds" : String(error && error.message);
  }

  // Calls render(data) only when the data changed, so a poll that brings
  // nothing new leaves the page (and what the user selected) alone.
  function onChange(render) {
    let last;
    return (data) => {
      const text = JSON.stringify(data);
      if (text === last) return;
      last = text;
      render(data);
    };
  }

  // ---- overview --------------------------------------------------------------

  // Samples of the counters, kept while the page is open, for the chart.
  const samples = [];
  const MAX_SAMPLES = 150;

  function overviewPage(root) {
    const say = messages();
    const stats = h("div", { class: "stats" });
    const canvas = h("canvas", { class: "chart", id: "rates", "aria-label": "events in and deliveries out per second" });
    const failures = h("div");
    const legend = h(
      "div",
      { class: "legend" },
      h("span", { class: "swatch-events" }, "events in /s"),
      h("span", { class: "swatch-delivered" }, "deliveries out /s"),
      h("span", { class: "swatch-failed" }, "failed attempts /s"),
    );
    put(root,
      h("h1", null, "Overview"),
      say.el,
      stats,
      h("div", { class: "card" }, h("h3", null, "Per second, while this page is open (up to 5 minutes)"), h("div", { class: "chart-wrap" }, canvas), legend),
      h("div", { class: "card" }, h("h3", null, "Failed attempts by reason (since start)"), failures),
    );
    const redraw = () => drawChart(canvas);
    window.addEventListener("resize", redraw);

    async function refresh() {
      const o = await api("GET", "/admin/overview");
      const failed = Object.values(o.failures || {}).reduce((a, b) => a + b, 0);
      const last = samples[samples.length - 1];
      if (last && (o.now_ms - last.t > 15000 || o.now_ms < last.t)) samples.length = 0;
      samples.push({ t: o.now_ms, events: o.events_accepted, delivered: o.delivered, failed });
      while (samples.length > MAX_SAMPLES) samples.shift();
      const rates = latestRates();
      fill(stats,
        stat("Events in /s", rate(rates.events), number(o.events_accepted) + " since start", "stat-events"),
        stat("Deliveries out /s", rate(rates.delivered), number(o.delivered) + " delivered since start", "stat-delivered"),
        stat("Outbox", number(o.outbox), "deliveries waiting", "stat-outbox"),
        stat("DLQ", number(o.dlq), h("a", { href: "#/dlq" }, "dead letters"), "stat-dlq"),
        stat("Source",
          o.source.connected ? badge("connected", "ok") : badge("disconnected", "bad"),
          "lag " + number(o.source.lag) + " events", "stat-source"),
        stat("Failed attempts", number(failed), number(o.retries) + " retried", "stat-failed"),
        stat("Switched off", number(o.switched_off), h("a", { href: "#/observers" }, "webhooks"), "stat-switched"),
      );
      const reasons = Object.entries(o.failures || {}).sort((a, b) => b[1] - a[1]);
      fill(failures, table(
        ["Reason", { text: "Attempts", class: "num" }, { text: "Share", class: "num" }],
        reasons.map(([reason, n]) => h("tr", null,
          h("td", null, code(reason)),
          h("td", { class: "num" }, number(n)),
          h("td", { class: "num" }, failed ? ((100 * n) / failed).toFixed(1) + " %" : "—"))),
        "No failed attempts.",
      ));
      redraw();
    }
    return { refresh, say, interval: OVERVIEW_POLL_MS, title: "Overview" };
  }

  function stat(label, value, sub, id) {
    return h("div", { class: "stat", id },
      h("div", { class: "label" }, label),
      h("div", { class: "value" }, value),
      h("div", { class: "sub" }, sub));
  }

  // Per-second rates between consecutive samples.
  function ratesOf() {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1];
      const b = samples[i];
      const dt = (b.t - a.t) / 1000;
      if (dt <= 0) continue;
      out.push({
        t: b.t,
        events: Math.max(0, b.events - a.events) / dt,
        delivered: Math.max(0, b.delivered - a.delivered) / dt,
        failed: Math.max(0, b.failed - a.failed) / dt,
      });
    }
    return out;
  }

  function latestRates() {
    const rates = ratesOf();
    return rates.length ? rates[rates.length - 1] : { events: NaN, delivered: NaN, failed: NaN };
  }

  const SERIES = [
    ["events", "#2457c5"],
    ["delivered", "#1a7f46"],
    ["failed", "#b42318"],
  ];

  // A line chart on a canvas, drawn by hand: no chart library.
  function drawChart(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 48;
    const right = 12;
    const top = 10;
    const bottom = 24;
    const w = width - left - right;
    const hgt = height - top - bottom;
    const rates = ratesOf();
    const now = samples.length ? samples[samples.length - 1].t : Date.now();
    const span = chartSpan();
    let max = 0;
    for (const r of rates) max = Math.max(max, r.events, r.delivered, r.failed);
    const yMax = niceCeiling(max);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#677086";
    g.strokeStyle = "#e1e4ea";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = top + hgt - (hgt * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(left + w, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(rate((yMax * i) / 4), left - 6, y);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    const minutes = span / 60000;
    const step = minutes <= 1 ? 0.25 : minutes <= 2 ? 0.5 : 1;
    for (let m = 0; m <= minutes + 1e-9; m += step) {
      const x = left + w - (w * m) / minutes;
      const label = m === 0 ? "now" : m < 1 ? "−" + Math.round(m * 60) + " s" : "−" + m + " min";
      g.fillText(label, x, top + hgt + 6);
    }
    if (rates.length === 0) {
      g.fillText("collecting samples…", left + w / 2, top + hgt / 2);
      return;
    }
    const xOf = (t) => left + w - (w * (now - t)) / span;
    const yOf = (v) => top + hgt - (hgt * v) / yMax;
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const [key, color] of SERIES) {
      g.strokeStyle = color;
      g.beginPath();
      rates.forEach((r, i) => {
        const x = Math.max(left, xOf(r.t));
        const y = yOf(r[key]);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      if (rates.length === 1) g.lineTo(xOf(rates[0].t) - 2, yOf(rates[0][key]));
      g.stroke();
    }
  }

  // The chart's time span: what the samples cover, in whole minutes, from
  // one minute up to five.
  function chartSpan() {
    if (samples.length < 2) return 60000;
    const covered = samples[samples.length - 1].t - samples[0].t;
    return Math.min(5, Math.max(1, Math.ceil(covered / 60000))) * 60000;
  }

  // 1, 2 or 5 times a power of ten, at least `value` (and at least 1).
  function niceCeiling(value) {
    if (!(value > 1)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  // ---- deliveries (the delivery log) ------------------------------------------

  const DELIVERY_FILTERS = ["event", "observer", "status", "since", "until"];

  function deliveriesPage(root, parts, params) {
    if (parts.length > 0) return deliveryPage(root, parts[0]);
    const say = messages();
    const form = h("form", { class: "filters", id: "delivery-filters" });
    const inputs = {
      event: h("input", { name: "event", class: "wide", placeholder: "event id", value: params.get("event") || "" }),
      observer: observerSelect(params.get("observer") || ""),
      status: h("select", { name: "status" },
        ["", "delivered", "pending", "dead"].map((s) =>
          h("option", { value: s, selected: params.get("status") === s || (s === "" && !params.get("status")) }, s || "any status"))),
      since: h("input", { name: "since", class: "narrow", placeholder: "2h", value: params.get("since") || "" }),
      until: h("input", { name: "until", class: "narrow", placeholder: "now", value: params.get("until") || "" }),
    };
    put(form,
      h("label", null, "Event id", inputs.event),
      h("label", null, "Observer", inputs.observer),
      h("label", null, "Status", inputs.status),
      h("label", { title: "30m, 2h, 7d, or an RFC 3339 time" }, "Since", inputs.since),
      h("label", { title: "30m, 2h, 7d, or an RFC 3339 time" }, "Until", inputs.until),
      h("button", { type: "submit", class: "primary" }, "Search"),
      h("a", { href: "#/deliveries" }, "Clear"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = {};
      for (const key of DELIVERY_FILTERS) next[key] = inputs[key].value.trim();
      location.hash = hashOf(["deliveries"], next);
    });
    const results = h("div", { id: "deliveries" });
    const pager = h("div", { class: "toolbar" });
    put(root, h("h1", null, "Deliveries"), form, say.el, results, pager);

    const query = new URLSearchParams();
    for (const key of DELIVERY_FILTERS) {
      if (params.get(key)) query.set(key, params.get(key));
    }
    query.set("limit", String(PAGE_SIZE));
    if (params.get("before")) query.set("before", params.get("before"));

    const render = onChange((data) => {
      const rows = (data.deliveries || []).map((d) => h("tr", { class: "delivery", "data-id": d.id },
        h("td", { class: "id" }, link(["deliveries", d.id], null, code(d.id))),
        h("td", { class: "id" }, link(["deliveries"], { event: d.event_id }, code(d.event_id))),
        h("td", null, d.observer, h("div", { class: "muted" }, d.webhook + " #" + d.webhook_index)),
        h("td", null, statusBadge(d.status)),
        h("td", { class: "num" }, number(d.attempts)),
        h("td", null, httpBadge(d.last_status, d.last_error)),
        h("td", null, time(d.created_at),
          h("div", { class: "muted" }, d.finished_at ? ["done ", time(d.finished_at)] : "not done")),
      ));
      fill(results, table(
        ["Delivery", "Event", "Observer / webhook", "Status", { text: "Attempts", class: "num" }, "Last", "Created / done"],
        rows,
        "No delivery matches.",
      ));
      const filters = {};
      for (const key of DELIVERY_FILTERS) filters[key] = params.get(key);
      fill(pager,
        params.get("before") ? h("a", { href: hashOf(["deliveries"], filters) }, "← Newest") : null,
        h("span", { class: "spacer" }),
        h("span", { class: "muted" }, (data.deliveries || []).length + " shown, newest first"),
        data.next
          ? h("a", { id: "older", href: hashOf(["deliveries"], Object.assign({ before: data.next }, filters)) }, "Older →")
          : null,
      );
    });

    async function refresh() {
      render(await api("GET", "/admin/deliveries?" + query.toString()));
    }
    return { refresh, say, title: "Deliveries" };
  }

  function deliveryPage(root, id) {
    const say = messages();
    const head = h("h1", null, "Delivery ", code(id));
    const resend = h("button", { id: "resend", class: "primary" }, "Resend");
    resend.addEventListener("click", () =>
      act(resend, say, async () => {
        const r = await api("POST", "/admin/deliveries/" + encodeURIComponent(id) + "/resend");
        return "Resent (" + number(r.resent) + "): a new attempt budget, the same delivery id " + id + ".";
      }));
    const body = h("div");
    put(root, head, h("div", { class: "toolbar" }, link(["deliveries"], null, "← Deliveries"), h("span", { class: "spacer" }), resend), say.el, body);

    const render = onChange((d) => {
      const request = d.request || {};
      const timeline = d.timeline || [];
      fill(body,
        h("div", { class: "columns" },
          h("div", { class: "card" },
            h("h3", null, "Delivery"),
            facts([
              ["Status", statusBadge(d.status)],
              ["Delivery id", code(d.id)],
              ["Event id", link(["deliveries"], { event: d.event_id }, code(d.event_id))],
              ["Observer", d.observer],
              ["Webhook", d.webhook + " #" + d.webhook_index],
              ["URL", code(d.url)],
              ["Attempts", number(d.attempts)],
              ["Last status", httpBadge(d.last_status, d.last_error)],
              ["Last error", d.last_error || "—"],
              ["Why it died", d.reason || "—"],
              ["Created", time(d.created_at)],
              ["Finished", time(d.finished_at)],
            ])),
          h("div", { class: "card" },
            h("h3", null, "Attempts"),
            timeline.length === 0
              ? h("p", { class: "muted" }, "No attempt yet.")
              : h("ol", { class: "timeline", id: "timeline" }, timeline.map(attemptItem)))),
        d.request
          ? h("div", { class: "card" },
            h("h3", null, "Request"),
            h("p", null, code(request.method + " " + request.url)),
            table(["Header", "Value"], (request.headers || []).map(([name, value]) =>
              h("tr", null, h("td", null, code(name)), h("td", null, code(value)))), "No headers."),
            h("pre", { id: "request-body" }, pretty(request.body)))
          : h("div", { class: "card" },
            h("h3", null, "Request"),
            h("p", { class: "muted" }, "Not built yet: a plugin builds it at the first attempt.")),
        h("div", { class: "card" },
          h("h3", null, "Event"),
          h("pre", { id: "event" }, pretty(d.event))),
      );
    });

    async function refresh() {
      render(await api("GET", "/admin/deliveries/" + encodeURIComponent(id)));
    }
    return { refresh, say, title: "Delivery" };
  }

  function attemptItem(a) {
    const ok = typeof a.status === "number" && a.status >= 200 && a.status < 300;
    return h("li", { class: ok ? "ok" : "bad" },
      h("div", null, httpBadge(a.status, a.error), " ",
        h("span", { class: "when" }, time(a.at !== undefined ? a.at : a.at_ms), " · ", number(a.duration_ms) + " ms")),
      a.error ? h("div", { class: "error-text" }, a.error) : null,
      a.response ? h("pre", { class: "response" }, a.response) : null);
  }

  // Observer names for a filter, loaded once per page.
  function observerSelect(selected) {
    const select = h("select", { name: "observer" }, h("option", { value: "" }, "any observer"));
    if (selected) select.append(h("option", { value: selected, selected: true }, selected));
    api("GET", "/admin/observers").then((observers) => {
      for (const o of observers) {
        if (o.name !== selected) select.append(h("option", { value: o.name }, o.name));
      }
    }, () => {});
    return select;
  }

  // ---- DLQ -------------------------------------------------------------------------

  // "30m", "2h", "7d" back from now, or a time Date can read; unix ms.
  function sinceMs(text) {
    const match = /^(\d+)\s*(s|m|h|d)$/.exec(text);
    if (match) {
      const unit = { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[match[2]];
      return Date.now() - Number(match[1]) * unit;
    }
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new Error("since: " + JSON.stringify(text) + " is neither a duration (30m, 2h, 7d) nor a time");
    return t;
  }

  function dlqPage(root, parts, params) {
    if (parts.length > 0) return dlqEntryPage(root, parts[0]);
    const say = messages();
    const observer = observerSelect(params.get("observer") || "");
    const since = h("input", { name: "since", class: "narrow", placeholder: "2h", value: params.get("since") || "" });
    const form = h("form", { class: "filters", id: "dlq-filters" },
      h("label", null, "Observer", observer),
      h("label", { title: "30m, 2h, 7d, or a time" }, "Died since", since),
      h("button", { type: "submit", class: "primary" }, "Filter"),
      h("a", { href: "#/dlq" }, "Clear"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = hashOf(["dlq"], { observer: observer.value, since: since.value.trim() });
    });
    const retryAll = h("button", { id: "retry-all" }, "Retry all");
    const purge = h("button", { id: "purge", class: "danger" }, "Purge…");
    const confirmBox = h("span", { class: "confirm" });
    const count = h("span", { class: "muted" });
    const results = h("div", { id: "dlq" });
    const pager = h("div", { class: "toolbar" });
    put(root, h("h1", null, "Dead-letter queue"), form,
      h("div", { class: "toolbar" }, retryAll, purge, confirmBox, h("span", { class: "spacer" }), count),
      say.el, results, pager);

    function filter() {
      const f = {};
      if (params.get("observer")) f.observer = params.get("observer");
      if (params.get("since")) f.since_ms = Math.floor(sinceMs(params.get("since")));
      return f;
    }
    retryAll.addEventListener("click", () =>
      act(retryAll, say, async () => {
        const r = await api("POST", "/admin/dlq/retry-all", filter());
        return "Retried " + number(r.requeued) + " entries: they are back in the outbox.";
      }));
    purge.addEventListener("click", () => {
      const yes = h("button", { id: "purge-confirm", class: "danger" },
        "Yes, purge " + (count.dataset.exact ? count.textContent : "every matching entry"));
      const no = h("button", null, "Cancel");
      no.addEventListener("click", () => confirmBox.replaceChildren());
      yes.addEventListener("click", () =>
        act(yes, say, async () => {
          const r = await api("POST", "/admin/dlq/purge", filter());
          confirmBox.replaceChildren();
          return "Purged " + number(r.purged) + " entries for good.";
        }));
      fill(confirmBox, h("span", null, "Delete the matching entries for good?"), yes, no);
    });

    // A page is PAGE_SIZE entries, oldest first; one more is asked for to
    // know whether a next page exists.
    const render = onChange((entries) => {
      const after = params.get("after");
      const more = entries.length > PAGE_SIZE;
      const shown = entries.slice(0, PAGE_SIZE);
      const exact = !after && !more;
      count.dataset.exact = exact ? "1" : "";
      fill(count, exact
        ? (entries.length === 1 ? "1 entry" : number(entries.length) + " entries")
        : number(shown.length) + " shown, oldest first");
      const rows = shown.map((e) => {
        const retry = h("button", { class: "small retry" }, "Retry");
        retry.addEventListener("click", () =>
          act(retry, say, async () => {
            await api("POST", "/admin/dlq/" + encodeURIComponent(e.id) + "/retry");
            return "Retried " + e.id + ": it is back in the outbox.";
          }));
        return h("tr", { class: "letter", "data-id": e.id, "data-event": e.event_id },
          h("td", { class: "id" }, link(["dlq", e.id], null, code(e.id)),
            h("div", { class: "muted" }, e.event_id ? ["event ", code(e.event_id)] : "input that was not an event")),
          h("td", null, e.observer),
          h("td", { class: "url" }, e.url),
          h("td", { class: "num" }, number(e.attempts)),
          h("td", null, httpBadge(e.last_status, e.last_error)),
          h("td", null, e.reason),
          h("td", null, time(e.failed_at)),
          h("td", { class: "actions" }, e.observer ? retry : null));
      });
      fill(results,
        table(["Entry / event", "Observer", "URL", { text: "Attempts", class: "num" }, "Last", "Reason", "Died", ""], rows,
          after ? "No more entries." : "The DLQ is empty."));
      const filters = { observer: params.get("observer"), since: params.get("since") };
      fill(pager,
        after ? h("a", { href: hashOf(["dlq"], filters) }, "← Oldest") : null,
        h("span", { class: "spacer" }),
        more
          ? h("a", { id: "newer", href: hashOf(["dlq"], Object.assign({ after: shown[shown.length - 1].id }, filters)) }, "Newer →")
          : null);
    });

    async function refresh() {
      const f = filter();
      const query = new URLSearchParams();
      if (f.observer) query.set("observer", f.observer);
      if (f.since_ms) query.set("since_ms", String(f.since_ms));
      if (params.get("after")) query.set("after", params.get("after"));
      query.set("limit", String(PAGE_SIZE + 1));
      render(await api("GET", "/admin/dlq?" + query.toString()));
    }
    return { refresh, say, title: "DLQ" };
  }

  function dlqEntryPage(root, id) {
    const say = messages();
    const retry = h("button", { id: "retry", class: "primary" }, "Retry");
    retry.addEventListener("click", () =>
      act(retry, say, async () => {
        await api("POST", "/admin/dlq/" + encodeURIComponent(id) + "/retry");
        location.hash = "#/dlq";
        return "";
      }));
    const body = h("div");
    put(root, h("h1", null, "Dead letter ", code(id)),
      h("div", { class: "toolbar" }, link(["dlq"], null, "← DLQ"), h("span", { class: "spacer" }), retry),
      say.el, body);

    const render = onChange((letter) => {
      const failure = letter.failure || {};
      if (failure.kind !== "delivery") {
        retry.disabled = true;
        fill(body, h("div", { class: "card" },
          facts([["Entry id", code(letter.id)], ["Died", time(letter.failed_at_ms)], ["Reason", letter.reason], ["Source", failure.source || "—"]]),
          h("h3", null, "Input as received"),
          h("pre", { id: "event" }, failure.raw || "")));
        return;
      }
      const payload = failure.payload || {};
      const attempts = (failure.earlier_attempts || []).concat(failure.attempts || []);
      const event = failure.event || {};
      fill(body,
        h("div", { class: "columns" },
          h("div", { class: "card" },
            h("h3", null, "Entry"),
            facts([
              ["Entry id", code(letter.id)],
              ["Event id", code(event.id || "—")],
              ["Observer", failure.observer],
              ["Webhook", "#" + failure.webhook],
              ["URL", code(payload.url || "—")],
              ["Reason", letter.reason],
              ["Died", time(letter.failed_at_ms)],
            ])),
          h("div", { class: "card" },
            h("h3", null, "Attempts"),
            attempts.length === 0
              ? h("p", { class: "muted" }, "No attempt was made.")
              : h("ol", { class: "timeline" }, attempts.map(attemptItem)))),
        h("div", { class: "card" },
          h("h3", null, "Request"),
          payload.method ? h("p", null, code(payload.method + " " + payload.url)) : h("p", { class: "muted" }, "Not built (a plugin builds it at its next attempt)."),
          table(["Header", "Value"], (payload.headers || []).map(([name, value]) =>
            h("tr", null, h("td", null, code(name)), h("td", null, code(value)))), "No headers."),
          payload.body !== undefined ? h("pre", { id: "request-body" }, pretty(payload.body)) : null),
        h("div", { class: "card" }, h("h3", null, "Event"), h("pre", { id: "event" }, pretty(event))),
      );
    });

    async function refresh() {
      render(await api("GET", "/admin/dlq/" + encodeURIComponent(id)));
    }
    return { refresh, say, title: "Dead letter" };
  }

  // ---- observers and webhooks ------------------------------------------------------

  function observersPage(root) {
    const say = messages();
    const list = h("div", { id: "observers" });
    put(root, h("h1", null, "Observers and webhooks"), say.el, list);

    const render = onChange((observers) => {
      if (observers.length === 0) {
        fill(list, h("p", { class: "muted" }, "No observer is configured."));
        return;
      }
      fill(list, observers.map((o) => h("div", { class: "card observer", "data-observer": o.name },
        h("h3", null, o.name,
          h("span", { class: "meta" }, o.scheduled ? "schedule" : "entity " + o.entity),
          h("span", { class: "meta" }, o.operations.length ? o.operations.join(", ") : "every operation")),
        o.condition ? h("p", null, h("span", { class: "muted" }, "when "), code(o.condition)) : null,
        table(
          ["#", "Webhook", "Target", "Condition", "State", { text: "Success since start", class: "num" }, { text: "Avg latency", class: "num" }, ""],
          o.webhooks.map((w) => webhookRow(o, w)),
          "No webhook."))));
    });

    function webhookRow(o, w) {
      const c = w.counts || {};
      const action = w.enabled ? "disable" : "enable";
      const button = h("button", { class: "small switch " + (w.enabled ? "danger" : "primary") }, w.enabled ? "Switch off" : "Switch on");
      button.addEventListener("click", () =>
        act(button, say, async () => {
          const r = await api("POST", "/admin/webhooks/" + encodeURIComponent(o.name) + "/" + w.index + "/" + action);
          return w.enabled
            ? o.name + " #" + w.index + " switched off: its deliveries wait in the outbox."
            : o.name + " #" + w.index + " switched on: " + number(r.resumed) + " waiting deliveries resumed.";
        }));
      const success = c.attempts
        ? ((100 * c.delivered) / c.attempts).toFixed(1) + " % (" + number(c.delivered) + "/" + number(c.attempts) + ")"
        : "—";
      return h("tr", { class: "webhook", "data-webhook": o.name + "/" + w.index },
        h("td", null, String(w.index)),
        h("td", null, w.name),
        h("td", { class: "url" }, code(w.method + " " + w.url)),
        h("td", null, w.condition ? code(w.condition) : h("span", { class: "muted" }, "—")),
        h("td", null, w.enabled ? badge("on", "ok") : badge("off", "bad")),
        h("td", { class: "num" }, success),
        h("td", { class: "num" }, typeof c.latency_ms_avg === "number" ? c.latency_ms_avg.toFixed(1) + " ms" : "—"),
        h("td", { class: "actions" }, button));
    }

    async function refresh() {
      render(await api("GET", "/admin/observers"));
    }
    return { refresh, say, title: "Observers" };
  }

  // ---- plugins -------------------------------------------------------------------------

  function pluginsPage(root) {
    const say = messages();
    const list = h("div", { id: "plugins" });
    put(root, h("h1", null, "Plugins"), say.el, list,
      h("p", { class: "muted" }, "Calls are counted since wasmhook started; a suspended call is one refused while the plugin was suspended after failing in a row."));

    const render = onChange((plugins) => {
      fill(list, table(
        ["Plugin", "Role", "Isolation", { text: "Calls", class: "num" }, { text: "Failures", class: "num" }, { text: "Traps", class: "num" },
          { text: "Suspended", class: "num" }, { text: "Avg latency", class: "num" }, "Limits"],
        plugins.map((p) => {
          const c = p.calls || {};
          const l = p.limits || {};
          return h("tr", { class: "plugin", "data-plugin": p.name },
            h("td", null, h("strong", null, p.name), h("div", { class: "muted" }, code(p.file))),
            h("td", null, badge(p.role)),
            h("td", null, p.isolation),
            h("td", { class: "num" }, number((c.ok || 0) + (c.error || 0) + (c.trap || 0))),
            h("td", { class: "num" }, number(c.error || 0)),
            h("td", { class: "num" }, number(c.trap || 0)),
            h("td", { class: "num" }, number(c.suspended || 0)),
            h("td", { class: "num" }, typeof c.latency_ms_avg === "number" ? c.latency_ms_avg.toFixed(3) + " ms" : "—"),
            h("td", { class: "muted" },
              "fuel " + number(l.fuel) + ", memory " + number(Math.round((l.memory_bytes || 0) / 1048576)) + " MiB, timeout " + number(l.timeout_ms) + " ms"));
        }),
        "No plugin is loaded."));
    });

    async function refresh() {
      render(await api("GET", "/admin/plugins/stats"));
    }
    return { refresh, say, title: "Plugins" };
  }

  window.addEventListener("hashchange", show);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) schedule(0);
  });
  show();
})();
