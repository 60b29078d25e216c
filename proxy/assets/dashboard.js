// statelab proxy dashboard: polls /admin/dashboard.json once a second and draws each replica's
// last minutes as small inline SVG charts. No framework, nothing fetched but this origin's JSON.
// Every replica row carries data-replica="NAME" and data-state="joining|up|down|ejected|draining".
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "statelab-admin-token";
const CLASS_CSS = ["c2xx", "c401", "c4xx", "c5xx", "cp502", "cp503", "cp504", "cother"];
const CLASS_LABEL = ["2xx", "401", "4xx", "5xx", "proxy 502", "proxy 503", "proxy 504", "other"];
const MAX_EVENTS_SHOWN = 256;

const view = {
  since: 0,          // newest sample time seen (ms)
  after: 0,          // newest event number seen
  window: 300,
  intervalMs: 1000,
  replicas: new Map(), // name -> {pool, cols}
  pools: new Map(),    // name -> cols
  waitingForToken: false,
};

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

function askToken() {
  view.waitingForToken = true;
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("token-input").focus();
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token-input");
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  document.getElementById("token-form").hidden = true;
  view.waitingForToken = false;
  poll();
});

function showError(text) {
  const p = document.getElementById("error");
  p.textContent = text;
  p.hidden = !text;
}

// A state-changing request: always JSON (so a browser would preflight it cross-site), with the
// token when there is one. Answers are checked and shown when refused.
async function send(method, url, body) {
  const init = { method, headers: authHeaders({ "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  try {
    const r = await fetch(url, init);
    if (r.status === 401) { askToken(); return false; }
    if (!r.ok) {
      let msg = r.status + "";
      try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
      showError(method + " " + url + ": " + msg);
      return false;
    }
    showError("");
    return true;
  } catch (e) {
    showError(method + " " + url + ": " + e);
    return false;
  }
}

// ---- merging the polled columns ----

function appendCols(into, cols, keep) {
  for (const [k, v] of Object.entries(cols)) {
    if (!Array.isArray(v)) continue;
    into[k] = (into[k] || []).concat(v);
  }
  const t = into.t || [];
  let drop = 0;
  while (drop < t.length && t[drop] <= keep) drop++;
  if (drop > 0) for (const k of Object.keys(into)) into[k] = into[k].slice(drop);
}

function last(arr) { return arr && arr.length ? arr[arr.length - 1] : undefined; }

function fmt(n, digits) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number(n).toFixed(digits === undefined ? 0 : digits);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return n + " B";
}

// ---- drawing ----

function chart(kind) {
  return svgEl("svg", { class: "chart " + kind, viewBox: "0 0 300 40", preserveAspectRatio: "none" });
}

function xOf(t, now) { return 300 - (now - t) / view.intervalMs; }

// A path through (t, value) points; nulls break it.
function pathD(ts, values, now, max) {
  let d = "", pen = false;
  for (let i = 0; i < ts.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) { pen = false; continue; }
    const x = xOf(ts[i], now).toFixed(1);
    const y = (39 - 38 * Math.min(v / max, 1)).toFixed(1);
    d += (pen ? "L" : "M") + x + " " + y;
    pen = true;
  }
  return d;
}

function drawLines(svg, ts, series, now) {
  let max = 0;
  for (const s of series) for (const v of s.values) if (v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  svg.replaceChildren();
  for (const s of series) {
    if (!s.values.some((v) => v > 0)) continue;
    svg.appendChild(svgEl("path", { class: "l " + s.css, d: pathD(ts, s.values, now, max) }));
  }
  return max;
}

function drawStrip(svg, ts, states, now) {
  svg.replaceChildren();
  for (let i = 0; i < ts.length; i++) {
    const x = xOf(ts[i], now);
    if (x < -1) continue;
    svg.appendChild(svgEl("rect", { class: "s-" + states[i], x: (x - 1).toFixed(1), y: 0, width: 1.05, height: 8 }));
  }
}

function setNow(cell, parts) {
  cell.replaceChildren();
  parts.forEach(([label, value], i) => {
    if (i) cell.appendChild(document.createTextNode(" · "));
    cell.appendChild(document.createTextNode(label + " "));
    cell.appendChild(el("b", {}, value));
  });
}

// ---- the pools ----

function poolSection(p) {
  let sec = document.querySelector(`section.pool[data-pool="${CSS.escape(p.name)}"]`);
  if (sec) return sec;
  sec = el("section", { class: "pool", "data-pool": p.name });
  const head = el("div", { class: "pool-head" });
  head.appendChild(el("h2", {}, p.name));
  head.appendChild(el("span", { class: "figure prefix" }, p.prefix + "/…"));
  const label = el("label", { class: "figure" }, "strategy ");
  const select = el("select", { class: "strategy", "data-pool": p.name });
  for (const s of p.strategies) select.appendChild(el("option", { value: s }, s));
  select.addEventListener("change", async () => {
    select.disabled = true;
    await send("PUT", `/admin/pools/${encodeURIComponent(p.name)}/strategy`, { strategy: select.value });
    select.disabled = false;
    poll();
  });
  label.appendChild(select);
  head.appendChild(label);
  head.appendChild(el("span", { class: "figure available" }));
  head.appendChild(el("span", { class: "figure burst", "data-burst": "off" }));
  head.appendChild(el("span", { class: "figure retries" }));
  head.appendChild(el("span", { class: "figure unrouted" }));
  head.appendChild(el("span", { class: "figure load", "data-load": "off" }));
  sec.appendChild(head);
  const table = el("table");
  const hr = el("tr");
  for (const h of ["replica", "requests/s by outcome (proxy side)", "latency p50 / p99 (proxy side)",
    "in flight", "what the replica reports", "controls"]) hr.appendChild(el("th", {}, h));
  table.appendChild(el("thead")).appendChild(hr);
  table.appendChild(el("tbody"));
  sec.appendChild(table);
  document.getElementById("pools").appendChild(sec);
  return sec;
}

function replicaRow(sec, pool, r) {
  let tr = sec.querySelector(`tr[data-replica="${CSS.escape(r.name)}"]`);
  if (tr) return tr;
  tr = el("tr", { class: "replica", "data-replica": r.name, "data-pool": pool, "data-state": r.state });
  const name = el("td", { class: "name" });
  name.appendChild(el("strong", {}, r.name + " "));
  name.appendChild(el("span", { class: "badge" }, r.state));
  name.appendChild(el("span", { class: "addr" }, r.address));
  name.appendChild(svgEl("svg", { class: "strip", viewBox: "0 0 300 8", preserveAspectRatio: "none" }));
  name.appendChild(el("span", { class: "sub failure" }));
  tr.appendChild(name);
  for (const kind of ["rates", "latency", "inflight", "figures"]) {
    const td = el("td", { class: kind });
    td.appendChild(chart(kind));
    td.appendChild(el("div", { class: "now" }));
    if (kind === "figures") td.appendChild(el("div", { class: "now rss" }));
    tr.appendChild(td);
  }
  const controls = el("td", { class: "controls" });
  const drain = el("button", { type: "button", "data-action": "drain" }, "drain");
  drain.addEventListener("click", async () => {
    const action = tr.dataset.draining === "true" ? "enable" : "drain";
    drain.disabled = true;
    await send("POST", `/admin/replicas/${encodeURIComponent(r.name)}/${action}`);
    drain.disabled = false;
    poll();
  });
  const remove = el("button", { type: "button", "data-action": "remove" }, "remove");
  remove.addEventListener("click", async () => {
    if (!window.confirm(`Remove ${r.name} from pool ${pool}? Its clients move to the others.`)) return;
    await send("DELETE", `/admin/replicas/${encodeURIComponent(r.name)}`);
    poll();
  });
  controls.appendChild(drain);
  controls.appendChild(remove);
  const kill = el("code", { class: "kill", title: "killing is a terminal action: run this in the lab's shell" },
    `scripts/lab kill ${r.name}`);
  const copy = el("button", { type: "button", "data-action": "copy" }, "copy");
  copy.addEventListener("click", () => {
    if (navigator.clipboard) navigator.clipboard.writeText(kill.textContent).catch(() => {});
    const range = document.createRange();
    range.selectNodeContents(kill);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  });
  controls.appendChild(el("br"));
  controls.appendChild(kill);
  controls.appendChild(copy);
  tr.appendChild(controls);
  sec.querySelector("tbody").appendChild(tr);
  return tr;
}

function renderReplica(tr, r, cols, now) {
  tr.dataset.state = r.state;
  tr.dataset.draining = String(r.draining);
  tr.querySelector(".badge").textContent = r.state;
  tr.querySelector('[data-action="drain"]').textContent = r.draining ? "enable" : "drain";
  tr.querySelector(".failure").textContent = r.last_failure
    ? "last failure: " + r.last_failure.reason : "";
  const ts = cols.t || [];
  drawStrip(tr.querySelector("svg.strip"), ts, cols.state || [], now);

  const rates = cols.rates || [];
  const series = CLASS_CSS.map((css, i) => ({ css, values: rates.map((row) => row[i]) }));
  drawLines(tr.querySelector("svg.rates"), ts, series, now);
  const cur = last(rates) || [0, 0, 0, 0, 0, 0, 0, 0];
  const total = cur.reduce((a, b) => a + b, 0);
  tr.dataset.rps = total.toFixed(2);
  tr.dataset.r401 = String(cur[1]);
  const parts = [["total", fmt(total, total < 10 ? 1 : 0)]];
  cur.forEach((v, i) => { if (v > 0) parts.push([CLASS_LABEL[i], fmt(v, v < 10 ? 1 : 0)]); });
  setNow(tr.querySelector("td.rates .now"), parts);

  const p50 = cols.p50_ms || [], p99 = cols.p99_ms || [];
  const lmax = drawLines(tr.querySelector("svg.latency"), ts,
    [{ css: "p99", values: p99 }, { css: "p50", values: p50 }], now);
  setNow(tr.querySelector("td.latency .now"), [["p50", fmt(last(p50), 2) + " ms"],
    ["p99", fmt(last(p99), 2) + " ms"], ["top", fmt(lmax / 1.1, 1) + " ms"]]);

  const inflight = cols.in_flight || [];
  drawLines(tr.querySelector("svg.inflight"), ts, [{ css: "one", values: inflight }], now);
  setNow(tr.querySelector("td.inflight .now"), [["now", String(r.in_flight)]]);

  // The design's own figure: whichever the replica reports.
  const figures = [
    ["sessions held", cols.sessions_held, (v) => fmt(v)],
    ["sessions in the store", cols.store_sessions, (v) => fmt(v)],
    ["mean token size", cols.token_bytes, (v) => bytes(v)],
  ].filter(([, values]) => (values || []).some((v) => v !== null && v !== undefined));
  const svg = tr.querySelector("svg.figures");
  const text = tr.querySelector("td.figures .now");
  if (figures.length) {
    const [label, values, show] = figures[0];
    drawLines(svg, ts, [{ css: "one", values }], now);
    setNow(text, [[label, show(last(values))]]);
    tr.dataset.figure = label;
  } else {
    svg.replaceChildren();
    setNow(text, [["figures", "none reported"]]);
  }
  setNow(tr.querySelector(".rss"), [["resident memory", bytes(last(cols.rss_bytes || []))]]);
}

function renderPool(sec, p, cols) {
  const select = sec.querySelector("select.strategy");
  if (document.activeElement !== select && !select.disabled) select.value = p.strategy;
  select.dataset.strategy = p.strategy;
  sec.dataset.strategy = p.strategy;
  sec.querySelector(".available").textContent = p.available ? "available" : "NO replica available";
  const r401 = last(cols.r401) || 0;
  const burst = sec.querySelector(".burst");
  burst.dataset.burst = r401 >= view.burst ? "on" : "off";
  setNow(burst, [["401/s", fmt(r401, 1)]]);
  burst.title = "a burst of 401s is a lost-sessions signal";
  setNow(sec.querySelector(".retries"), [["retries/s", fmt(last(cols.retries) || 0, 1)]]);
  const unrouted = last(cols.unrouted) || [];
  setNow(sec.querySelector(".unrouted"), [["answered with no replica /s",
    fmt(unrouted.reduce((a, b) => a + b, 0), 1)]]);
  const load = last(cols.load) || 0;
  const loadEl = sec.querySelector(".load");
  loadEl.dataset.load = load > 0 ? "on" : "off";
  setNow(loadEl, [["statelab-load running", fmt(load, 0) + " req/s"]]);
}

function addEvents(events) {
  const ol = document.getElementById("timeline");
  for (const e of events) {
    const li = el("li", { "data-kind": e.kind, "data-pool": e.pool, "data-seq": String(e.seq) });
    if (e.replica) li.dataset.replica = e.replica;
    li.appendChild(el("time", { datetime: new Date(e.t_ms).toISOString() },
      new Date(e.t_ms).toLocaleTimeString()));
    li.appendChild(document.createTextNode(e.text));
    ol.insertBefore(li, ol.firstChild);
  }
  while (ol.children.length > MAX_EVENTS_SHOWN) ol.removeChild(ol.lastChild);
}

function apply(data) {
  view.window = data.window;
  view.intervalMs = data.interval_ms;
  view.burst = data.burst_401_per_sec;
  const keep = data.now_ms - data.window * data.interval_ms;
  const present = new Set();
  for (const p of data.pools) {
    const pcols = view.pools.get(p.name) || {};
    appendCols(pcols, p.series, keep);
    view.pools.set(p.name, pcols);
    const sec = poolSection(p);
    renderPool(sec, p, pcols);
    for (const r of p.replicas) {
      present.add(r.name);
      const entry = view.replicas.get(r.name) || { pool: p.name, cols: {} };
      appendCols(entry.cols, r.series, keep);
      view.replicas.set(r.name, entry);
      renderReplica(replicaRow(sec, p.name, r), r, entry.cols, data.now_ms);
      const t = last(r.series.t);
      if (t !== undefined && t > view.since) view.since = t;
    }
  }
  for (const name of [...view.replicas.keys()]) {
    if (present.has(name)) continue;
    view.replicas.delete(name);
    const tr = document.querySelector(`tr[data-replica="${CSS.escape(name)}"]`);
    if (tr) tr.remove();
  }
  addEvents(data.events);
  view.after = Math.max(view.after, data.last_seq);
  document.getElementById("clock").textContent = new Date(data.now_ms).toLocaleTimeString();
}

let timer = null;
let inFlight = false;

async function poll() {
  if (view.waitingForToken || inFlight) return;
  inFlight = true;
  clearTimeout(timer);
  const conn = document.getElementById("conn");
  try {
    const r = await fetch(`/admin/dashboard.json?since=${view.since}&after=${view.after}`,
      { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) {
      conn.dataset.conn = "error";
      conn.textContent = "admin token needed";
      inFlight = false;
      askToken();
      return;
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    apply(await r.json());
    conn.dataset.conn = "ok";
    conn.textContent = "live";
  } catch (e) {
    conn.dataset.conn = "error";
    conn.textContent = "no answer from the proxy (" + e.message + "), retrying";
  }
  inFlight = false;
  timer = setTimeout(poll, 1000);
}

poll();
