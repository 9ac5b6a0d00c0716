// The Aurelis dashboard: polls the admin API with the admin token and draws what it gets.
// No dependencies, no inline code (the page's CSP forbids it), and every value goes into the
// page through textContent, never as markup, so data cannot run script and read the token.
"use strict";

const TOKEN_KEY = "aurelis-admin-token";
const REFRESH_MS = 2000;
const REPORT_EVERY = 5; // the report covers an hour: every 5th refresh is plenty
const SVG = "http://www.w3.org/2000/svg";

let refreshes = 0;
let timer = null;

// The token lives in this tab's sessionStorage only. A `#token=...` fragment (never sent to a
// server, so never in a log) is taken once for scripted use and removed from the address bar.
function takeToken() {
  const match = /^#token=(.+)$/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function status(text, state) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.dataset.state = state;
}

function showLogin(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  status(message, "login");
  if (timer) { clearInterval(timer); timer = null; }
}

class Unauthorized extends Error {}

async function getJson(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { headers: { authorization: "Bearer " + token }, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) return { missing: response.status };
  return response.json();
}

const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")),
  rate: (v) => (v == null ? "–" : v.toFixed(2)),
  pct: (v) => (v == null ? "–" : (100 * v).toFixed(1) + " %"),
  ms: (v) => (v == null ? "–" : v.toFixed(0) + " ms"),
  time: (ms) => new Date(ms).toISOString().substring(11, 19),
};

function metricValue(metric, v) {
  if (metric === "p95_latency_ms") return fmt.ms(v);
  if (metric === "error_rate" || metric === "hit_rate") return fmt.pct(v);
  return fmt.rate(v) + " /s";
}

function setText(id, text) { document.getElementById(id).textContent = text; }

function fillTable(id, rows, cells, rowClass) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    if (rowClass) tr.className = rowClass(row);
    for (const [field, text] of cells(row)) {
      const td = document.createElement("td");
      td.dataset.field = field;
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

// A line chart of `lines` ([{label, values}]) over the windows' start times.
function lineChart(id, times, lines, format) {
  const svg = document.getElementById(id);
  svg.replaceChildren();
  const [w, h, left, right, top, bottom] = [600, 160, 48, 8, 14, 18];
  const all = lines.flatMap((l) => l.values).filter((v) => v != null);
  const max = Math.max(1e-9, ...all) * 1.1;
  const x = (i) => left + (times.length < 2 ? 0 : (i * (w - left - right)) / (times.length - 1));
  const y = (v) => h - bottom - (v / max) * (h - top - bottom);
  svg.appendChild(svgEl("line", { class: "axis", x1: left, y1: h - bottom, x2: w - right, y2: h - bottom }));
  svg.appendChild(svgEl("line", { class: "axis", x1: left, y1: top, x2: left, y2: h - bottom }));
  svg.appendChild(svgEl("text", { class: "tick", x: 2, y: top + 4 }, format(max)));
  svg.appendChild(svgEl("text", { class: "tick", x: 2, y: h - bottom }, format(0)));
  if (times.length > 0) {
    svg.appendChild(svgEl("text", { class: "tick", x: left, y: h - 4 }, fmt.time(times[0])));
    svg.appendChild(svgEl("text", { class: "tick", x: w - right - 44, y: h - 4 }, fmt.time(times[times.length - 1])));
  } else {
    svg.appendChild(svgEl("text", { class: "tick", x: w / 2 - 60, y: h / 2 }, "no closed window yet"));
  }
  lines.forEach((line, n) => {
    let d = "";
    line.values.forEach((v, i) => {
      if (v == null) return;
      d += (d === "" ? "M" : "L") + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
    });
    if (d !== "") svg.appendChild(svgEl("path", { class: "series-" + n, d }));
    // Dots too: a single window is a point, which a path alone would not show.
    line.values.forEach((v, i) => {
      if (v != null) svg.appendChild(svgEl("circle", { class: "dot-" + n, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }));
    });
    if (lines.length > 1) svg.appendChild(svgEl("text", { class: "tick legend-" + n, x: w - right - 140 + 45 * n, y: top - 2 }, line.label));
  });
}

function renderDashboard(data) {
  const points = data.points || [];
  const last = points[points.length - 1] || {};
  setText("tile-rps", fmt.rate(last.requests_per_second));
  setText("tile-hit", fmt.pct(last.hit_rate));
  setText("tile-err", fmt.pct(last.error_rate));
  setText("tile-p95", fmt.ms(last.p95_ms));
  setText("tile-requests", fmt.int(points.reduce((sum, p) => sum + p.requests, 0)));
  const anomalies = document.getElementById("tile-anomalies");
  anomalies.textContent = String(data.active.length);
  anomalies.dataset.count = String(data.active.length);

  const times = points.map((p) => p.start_ms);
  lineChart("chart-rps", times, [{ label: "req/s", values: points.map((p) => p.requests_per_second) }], fmt.rate);
  lineChart("chart-hit", times, [{ label: "hit rate", values: points.map((p) => p.hit_rate) }], fmt.pct);
  lineChart("chart-latency", times, [
    { label: "p50", values: points.map((p) => p.p50_ms) },
    { label: "p95", values: points.map((p) => p.p95_ms) },
    { label: "p99", values: points.map((p) => p.p99_ms) },
  ], fmt.ms);

  fillTable("models", data.series, (r) => [
    ["model", r.model], ["provider", r.provider], ["requests", fmt.int(r.requests)],
    ["requests_per_second", fmt.rate(r.requests_per_second)], ["hit_rate", fmt.pct(r.hit_rate)],
    ["error_rate", fmt.pct(r.error_rate)], ["p95_ms", fmt.ms(r.last_p95_ms)], ["tokens_saved", fmt.int(r.tokens_saved)],
  ]);
  fillTable("active", data.active, (a) => [
    ["model", a.series.model], ["provider", a.series.provider], ["metric", a.metric],
    ["value", metricValue(a.metric, a.value)], ["baseline", metricValue(a.metric, a.baseline)], ["since", fmt.time(a.since_ms)],
  ], () => "raised");
  fillTable("events", data.events.slice().reverse(), (e) => [
    ["time", fmt.time(e.at_ms)], ["kind", e.kind + (e.reason ? " (" + e.reason + ")" : "")],
    ["model", e.series.model], ["provider", e.series.provider], ["metric", e.metric],
    ["value", metricValue(e.metric, e.value)], ["baseline", metricValue(e.metric, e.baseline)],
  ], (e) => e.kind);
}

function renderReport(report) {
  if (report.missing) {
    setText("levels-note", "The report is not available (HTTP " + report.missing + ").");
    setText("recommendations-note", "The report is not available (HTTP " + report.missing + ").");
    return;
  }
  setText("levels-note", report.requests + " requests in the last hour; overall hit rate " + fmt.pct(report.hit_rate) + ".");
  fillTable("levels", report.hits_by_level || [], (l) => [["level", l.level], ["hits", fmt.int(l.hits)], ["hit_rate", fmt.pct(l.hit_rate)]]);
  const list = document.getElementById("recommendations");
  list.replaceChildren();
  for (const r of report.recommendations || []) {
    const li = document.createElement("li");
    li.dataset.rule = r.rule;
    li.appendChild(document.createTextNode(r.message + " — change "));
    const code = document.createElement("code");
    code.textContent = r.setting;
    li.appendChild(code);
    const evidence = Object.entries(r.evidence || {}).map(([k, v]) => k + "=" + (Number.isInteger(v) ? v : v.toFixed(3)));
    if (evidence.length) li.appendChild(document.createTextNode(" (" + evidence.join(", ") + ")"));
    list.appendChild(li);
  }
  setText("recommendations-note", (report.recommendations || []).length ? "" : "Nothing to recommend.");
}

async function refresh() {
  try {
    const data = await getJson("/v1/dashboard");
    if (data.missing) throw new Error("HTTP " + data.missing);
    renderDashboard(data);
    if (refreshes % REPORT_EVERY === 0) renderReport(await getJson("/v1/report?period=1h"));
    refreshes += 1;
    status("live — updated " + fmt.time(Date.now()) + " UTC", "live");
  } catch (e) {
    if (e instanceof Unauthorized) showLogin("the token was refused; enter it again");
    else status("cannot reach the control plane (" + e.message + "); retrying", "error");
  }
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  status("connecting…", "starting");
  refreshes = 0;
  refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    if (input.value.trim() === "") return;
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    start();
  });
  document.getElementById("logout").addEventListener("click", () => showLogin("token forgotten"));
  if (takeToken()) start();
  else showLogin("enter the admin token");
});
