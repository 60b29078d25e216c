// statelab proxy dashboard: polls /admin/dashboard.json once a second and draws each pool's
// throughput and p99 as a large inline SVG chart and each replica's last minutes as small ones.
// No framework, nothing fetched but this origin's JSON. Every replica's card is a table row,
// <tr data-replica="NAME" data-state="joining|up|down|ejected|draining">, laid out by the style
// sheet.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "statelab-admin-token";
const CLASS_CSS = ["c2xx", "c401", "c4xx", "c5xx", "cp502", "cp503", "cp504", "cother"];
const CLASS_LABEL = ["2xx", "401", "4xx", "5xx", "proxy 502", "proxy 503", "proxy 504", "other"];
const MAX_EVENTS_SHOWN = 256;
// The pool chart's height in pixels, and its margins (room for the axes' labels).
const BIG_HEIGHT = 280;
const BIG_MARGIN = { left: 50, right: 68, top: 14, bottom: 30 };
// The share of its budget from which a replica's CPU shows in the warning colour.
const CPU_HIGH = 0.9;

const view = {
  since: 0,          // newest sample time seen (ms)
  after: 0,          // newest event number seen
  window: 300,
  intervalMs: 1000,
  replicas: new Map(), // name -> {pool, cols}
  pools: new Map(),    // name -> cols
  balanceRange: [100, 1000], // the balance factors the admin API accepts, in percent
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

function sum(arr) { return (arr || []).reduce((a, b) => a + (b || 0), 0); }

// A readable step for an axis of `ticks` steps reaching at least `max`: 1, 2, 2.5 or 5 times
// a power of ten.
function niceStep(max, ticks) {
  const raw = max > 0 ? max / ticks : 1 / ticks;
  const e = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * e >= raw) return f * e;
  return 10 * e;
}

// An axis value with as many decimals as its step needs.
function axisLabel(v, step) {
  if (v >= 1e4) return fmt(v, 1);
  let digits = 0;
  while (digits < 4 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6) digits++;
  return v.toFixed(digits);
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

// A pool's large chart: requests/s on the left axis and p99 in ms on the right, over the
// window, in the pixels the chart has on screen (so that text and lines keep their size).
function drawPoolChart(svg, ts, rps, p99, now) {
  const width = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 400);
  const height = BIG_HEIGHT;
  const m = BIG_MARGIN;
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const span = view.window * view.intervalMs;
  const x = (t) => m.left + pw * (1 - (now - t) / span);
  const ticks = 4;
  const rStep = niceStep(Math.max(0, ...rps.filter((v) => v !== null && v !== undefined)), ticks);
  const lStep = niceStep(Math.max(0, ...p99.filter((v) => v !== null && v !== undefined)), ticks);
  const rMax = rStep * ticks, lMax = lStep * ticks;
  for (let i = 0; i <= ticks; i++) {
    const y = m.top + ph * (1 - i / ticks);
    svg.appendChild(svgEl("line", { class: i ? "grid" : "base", x1: m.left, x2: m.left + pw, y1: y, y2: y }));
    const left = svgEl("text", { class: "axis-rps", x: m.left - 6, y: y + 5, "text-anchor": "end" });
    left.textContent = axisLabel(rStep * i, rStep);
    svg.appendChild(left);
    const right = svgEl("text", { class: "axis-p99", x: m.left + pw + 6, y: y + 5, "text-anchor": "start" });
    right.textContent = axisLabel(lStep * i, lStep) + (i === ticks ? " ms" : "");
    svg.appendChild(right);
  }
  // Time labels every minute, or every few minutes where a minute is too narrow for one.
  const minute = 60000;
  const wide = 72; // pixels a label needs
  let every = span >= minute ? minute : span / 2;
  while (every < span && pw * (every / span) < wide) every += span >= minute ? minute : every;
  for (let back = 0; back <= span + 1; back += every) {
    const label = svgEl("text", { x: x(now - back), y: height - 8,
      "text-anchor": back === 0 ? "end" : back >= span ? "start" : "middle" });
    label.textContent = back === 0 ? "now" : "−" + Math.round(back / 60000) + " min";
    svg.appendChild(label);
  }
  const path = (values, max) => {
    let d = "", pen = false;
    for (let i = 0; i < ts.length; i++) {
      const v = values[i];
      const px = x(ts[i]);
      if (v === null || v === undefined || px < m.left - 1) { pen = false; continue; }
      const py = m.top + ph * (1 - Math.min(v / max, 1));
      d += (pen ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1);
      pen = true;
    }
    return d;
  };
  svg.appendChild(svgEl("path", { class: "big p99", d: path(p99, lMax) }));
  svg.appendChild(svgEl("path", { class: "big rps", d: path(rps, rMax) }));
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
  head.appendChild(balanceControl(p));
  head.appendChild(el("span", { class: "figure moves", "data-moves": "off",
    title: "requests the balance factor sent past their strategy's first choice since the proxy started" }));
  head.appendChild(el("span", { class: "figure available" }));
  head.appendChild(el("span", { class: "figure burst", "data-burst": "off" }));
  head.appendChild(el("span", { class: "figure retries" }));
  head.appendChild(el("span", { class: "figure unrouted" }));
  head.appendChild(el("span", { class: "figure load", "data-load": "off" }));
  sec.appendChild(head);
  const big = el("div", { class: "pool-big" });
  const nowLine = el("div", { class: "pool-now" });
  nowLine.appendChild(el("span", { class: "key rps pool-rps" }));
  nowLine.appendChild(el("span", { class: "key p99-big pool-p99" }));
  big.appendChild(nowLine);
  const svg = svgEl("svg", { class: "pool-chart", "data-pool": p.name, role: "img",
    "aria-label": `pool ${p.name}: requests per second and p99 latency of its slowest replica` });
  big.appendChild(svg);
  sec.appendChild(big);
  const table = el("table", { class: "replicas" });
  table.appendChild(el("tbody"));
  sec.appendChild(table);
  document.getElementById("pools").appendChild(sec);
  return sec;
}

// The balance factor's input: a whole percentage, empty for off, sent on change through the
// same PUT as the strategy. It keeps the proxy's value in data-factor, to go back to when a
// value is refused.
function balanceControl(p) {
  const [lo, hi] = view.balanceRange;
  const label = el("label", { class: "figure balance", "data-pool": p.name, "data-factor": "off",
    "data-applies": "false" }, "balance factor ");
  const input = el("input", { class: "balance-factor", "data-pool": p.name, type: "number",
    min: String(lo), max: String(hi), step: "1", placeholder: "off", inputmode: "numeric",
    "data-factor": "", "aria-label": `pool ${p.name}: balance factor, percent of the average load; empty for off` });
  input.addEventListener("change", async () => {
    const [min, max] = view.balanceRange;
    const raw = input.value.trim();
    let factor = null;
    if (raw !== "" || input.validity.badInput) {
      factor = Number(raw);
      if (!Number.isInteger(factor) || factor < min || factor > max) {
        showError(`balance factor of pool ${p.name}: a whole percentage from ${min} to ${max}, or empty for off`);
        input.value = input.dataset.factor;
        return;
      }
    }
    input.dataset.busy = "true";
    input.disabled = true;
    const ok = await send("PUT", `/admin/pools/${encodeURIComponent(p.name)}/strategy`,
      { balance_factor: factor });
    if (!ok) input.value = input.dataset.factor;
    delete input.dataset.busy;
    input.disabled = label.dataset.applies !== "true";
    poll();
  });
  label.appendChild(input);
  label.appendChild(document.createTextNode(" %"));
  label.appendChild(el("span", { class: "balance-note" }));
  return label;
}

function renderBalance(sec, p) {
  const takes = p.balance_strategies || [];
  const applies = takes.includes(p.strategy);
  const has = p.balance_factor !== null && p.balance_factor !== undefined;
  const value = has ? String(p.balance_factor) : "";
  const label = sec.querySelector("label.balance");
  const input = label.querySelector("input.balance-factor");
  label.dataset.factor = has ? value : "off";
  label.dataset.applies = String(applies);
  input.dataset.factor = value;
  const busy = input.dataset.busy === "true";
  if (document.activeElement !== input && !busy) input.value = value;
  input.disabled = busy || !applies;
  const [lo, hi] = view.balanceRange;
  const where = "applies to " + takes.join(" and ");
  label.title = applies
    ? `bounded loads: no replica takes a new client past this percentage of the pool's average `
      + `requests in flight (${lo} to ${hi}); empty for off`
    : `${where}: not to ${p.strategy}`;
  input.title = label.title;
  label.querySelector(".balance-note").textContent = applies ? "" : where;
  const moves = sec.querySelector(".moves");
  moves.dataset.moves = has ? "on" : "off";
  moves.dataset.count = String(p.bounded_moves || 0);
  setNow(moves, [["bounded moves", fmt(p.bounded_moves || 0)]]);
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
  for (const [kind, caption] of [["rates", "requests/s by outcome (proxy side)"],
    ["latency", "latency p50 / p99 (proxy side)"], ["inflight", "in flight / open sockets"],
    ["figures", "what the replica reports"]]) {
    const td = el("td", { class: kind });
    td.appendChild(el("div", { class: "cap" }, caption));
    td.appendChild(chart(kind));
    td.appendChild(el("div", { class: "now" }));
    if (kind === "figures") td.appendChild(el("div", { class: "now rss" }));
    tr.appendChild(td);
  }
  const cpu = el("td", { class: "cpu", "data-level": "unreported",
    title: "CPU the replica's process used between its last two reports, against its control group's budget" });
  cpu.appendChild(el("span", { class: "cpu-text" }, "CPU –"));
  const bar = svgEl("svg", { class: "cpu-bar", viewBox: "0 0 100 10", preserveAspectRatio: "none" });
  bar.appendChild(svgEl("rect", { class: "track", x: 0, y: 0, width: 100, height: 10 }));
  bar.appendChild(svgEl("rect", { class: "fill", x: 0, y: 0, width: 0, height: 10 }));
  bar.appendChild(svgEl("line", { class: "limit", x1: CPU_HIGH * 100, x2: CPU_HIGH * 100, y1: 0, y2: 10 }));
  cpu.appendChild(bar);
  tr.appendChild(cpu);
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

  // An open socket counts in flight too: its line shows how much of that is sockets.
  const inflight = cols.in_flight || [], sockets = cols.sockets || [];
  drawLines(tr.querySelector("svg.inflight"), ts,
    [{ css: "one", values: inflight }, { css: "sockets", values: sockets }], now);
  tr.dataset.sockets = String(r.sockets);
  setNow(tr.querySelector("td.inflight .now"), [["now", String(r.in_flight)],
    ["sockets", String(r.sockets)]]);

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
  renderCpu(tr.querySelector("td.cpu"), last(cols.cpu_cores || []), last(cols.cpu_budget || []));
}

function cores(n) { return Number(n).toFixed(2); }

// "CPU 0.19 / 0.20 core" and a bar of use over budget; "CPU 0.35 core" without a budget.
function renderCpu(td, used, budget) {
  const has = (v) => v !== null && v !== undefined;
  const top = has(budget) ? budget : used;
  const unit = has(top) && top > 1 ? "cores" : "core";
  let text = "CPU " + (has(used) ? cores(used) : "–");
  if (has(budget)) text += " / " + cores(budget);
  if (has(used) || has(budget)) text += " " + unit;
  const share = has(used) && has(budget) && budget > 0 ? used / budget : null;
  td.querySelector(".cpu-text").textContent = text;
  td.dataset.level = !has(used) ? "unreported" : !has(budget) ? "unbounded"
    : share >= CPU_HIGH ? "high" : "ok";
  td.dataset.share = share === null ? "" : share.toFixed(3);
  const fill = share === null ? 0 : Math.min(share, 1) * 100;
  td.querySelector("rect.fill").setAttribute("width", fill.toFixed(1));
}

function renderPool(sec, p, cols, now) {
  const select = sec.querySelector("select.strategy");
  if (document.activeElement !== select && !select.disabled) select.value = p.strategy;
  select.dataset.strategy = p.strategy;
  sec.dataset.strategy = p.strategy;
  renderBalance(sec, p);
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

  const rps = cols.rps || [], p99 = cols.p99 || [];
  const rNow = last(rps) || 0;
  const pNow = last(p99);
  const rEl = sec.querySelector(".pool-rps"), pEl = sec.querySelector(".pool-p99");
  rEl.replaceChildren(el("b", {}, fmt(rNow, rNow < 10 ? 1 : 0)), document.createTextNode(" "),
    el("small", {}, "requests/s"));
  pEl.replaceChildren(el("small", {}, "p99 "), el("b", {}, fmt(pNow, 2)), document.createTextNode(" "),
    el("small", {}, "ms, slowest replica"));
  sec.dataset.rps = rNow.toFixed(2);
  drawPoolChart(sec.querySelector("svg.pool-chart"), cols.t || [], rps, p99, now);
}

// A pool's own series for its large chart, one value per pool sample: requests per second over
// its replicas and those answered with no replica, and the highest p99 of its replicas (the
// samples of one tick share their time).
function poolTotals(p) {
  const ts = p.series.t || [];
  const at = new Map();
  ts.forEach((t, i) => at.set(t, { rps: sum((p.series.unrouted || [])[i]), p99: null }));
  for (const r of p.replicas) {
    const s = r.series;
    (s.t || []).forEach((t, i) => {
      const e = at.get(t);
      if (!e) return;
      e.rps += sum((s.rates || [])[i]);
      const q = (s.p99_ms || [])[i];
      if (q !== null && q !== undefined && (e.p99 === null || q > e.p99)) e.p99 = q;
    });
  }
  return {
    rps: ts.map((t) => Math.round(at.get(t).rps * 100) / 100),
    p99: ts.map((t) => at.get(t).p99),
  };
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
  if (Array.isArray(data.balance_factor_range)) view.balanceRange = data.balance_factor_range;
  const keep = data.now_ms - data.window * data.interval_ms;
  const present = new Set();
  for (const p of data.pools) {
    const pcols = view.pools.get(p.name) || {};
    appendCols(pcols, Object.assign({}, p.series, poolTotals(p)), keep);
    view.pools.set(p.name, pcols);
    const sec = poolSection(p);
    renderPool(sec, p, pcols, data.now_ms);
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
