// Ferry's read-only web view: polls the API (with the token the tab holds) and draws
// hosts, drains, migrations and one migration's timeline.  No build step, no library:
// every value is set as text (never parsed as HTML).
"use strict";

const MIB = 1024 * 1024;
const POLL_MS = 1000;
let token = sessionStorage.getItem("ferry-token") || "";
let selected = null; // migration id shown in detail; null: the newest
let tick = 0;

class AuthError extends Error {}

function takeTokenFromLink() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("ferry-token", token);
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (r.status === 401) throw new AuthError("the token was refused");
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

const secs = (ms) => (ms == null ? "–" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
const mib = (b) => (b == null ? "–" : `${(b / MIB).toFixed(0)} MiB`);
const finished = (s) => ["completed", "failed", "cancelled"].includes(s);

function bar(fraction) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  const b = el("div", { class: "bar", title: `${Math.round(f * 100)} %`,
                        "data-fraction": f.toFixed(3) });
  const fill = el("div");
  fill.style.width = `${(f * 100).toFixed(1)}%`; // CSSOM: allowed by the page's CSP
  b.append(fill);
  return b;
}

function renderHosts(hosts, vms) {
  const box = document.getElementById("hosts");
  box.replaceChildren();
  for (const h of hosts) {
    const state = h.maintenance && h.state === "up" ? "maintenance" : h.state;
    const list = el("ul");
    for (const v of vms.filter((v) => v.host === h.name)) {
      list.append(el("li", { "data-vm": v.name }, `${v.name} `,
                     el("span", { class: `state-${v.state}` }, v.state),
                     ` ${v.memory_mib} MiB`));
    }
    box.append(el("div", { class: "host", "data-host": h.name },
      el("h3", {}, `${h.name} `, el("span", { class: `state-${state}` }, state)),
      el("div", { class: "muted" }, `${h.cpus} CPUs, ${h.memory_free_mib} of ` +
         `${h.memory_total_mib} MiB free, ${h.cpu_model || "?"}`),
      list));
  }
}

function none(body, cols, text) {
  body.append(el("tr", { class: "none" }, el("td", { colspan: cols, class: "muted" }, text)));
}

function renderDrains(drains) {
  const body = document.querySelector("#drains tbody");
  body.replaceChildren();
  if (!drains.length) none(body, 7, "no drain yet");
  for (const d of drains.slice(0, 10)) {
    const done = d.moves.filter((m) => finished(m.state)).length;
    body.append(el("tr", { "data-drain-id": d.id },
      el("td", {}, d.id), el("td", {}, d.host),
      el("td", { class: `state state-${d.state}` }, d.state),
      el("td", {}, `${done} / ${d.moves.length}`),
      el("td", {}, bar(d.moves.length ? done / d.moves.length : 1)),
      el("td", { class: "eta" }, finished(d.state) ? "–" : secs(d.eta_ms)),
      el("td", {}, secs(d.elapsed_ms))));
  }
}

function progressOf(m, last) {
  if (m.state === "completed") return 1;
  if (!last || !last.memory_total_bytes) return 0;
  const sent = last.memory_processed_bytes;
  return sent / (sent + last.memory_remaining_bytes);
}

function renderMigrations(migrations, lastSamples) {
  const body = document.querySelector("#migrations tbody");
  body.replaceChildren();
  if (!migrations.length) none(body, 11, "no migration yet");
  for (const m of migrations.slice(0, 20)) {
    const last = lastSamples[m.id];
    const elapsed = last ? last.t_ms : null;
    const eta = !finished(m.state) && m.predicted_total_ms != null && elapsed != null
      ? Math.max(0, m.predicted_total_ms - elapsed) : null;
    const row = el("tr", { "data-migration-id": m.id },
      el("td", {}, m.id), el("td", {}, m.vm), el("td", {}, `${m.source} → ${m.destination}`),
      el("td", { class: `state state-${m.state}` }, m.state), el("td", {}, m.policy),
      el("td", {}, bar(progressOf(m, last))),
      el("td", {}, m.rounds ?? (last ? last.iteration : "–")),
      el("td", { class: "eta" }, eta == null ? "–" : secs(eta)),
      el("td", {}, secs(m.total_ms)), el("td", {}, secs(m.downtime_ms)),
      el("td", {}, m.encrypted == null ? "–" : m.encrypted ? "yes" : "no"));
    if (m.id === selected) row.classList.add("selected");
    row.addEventListener("click", () => { selected = m.id; refresh(); });
    body.append(row);
  }
}

function renderFigures(m) {
  const dl = document.getElementById("figures");
  dl.replaceChildren();
  const rows = [
    ["state", m.state], ["policy", m.policy],
    ["predicted total", secs(m.predicted_total_ms)], ["actual total", secs(m.total_ms)],
    ["predicted pause", secs(m.predicted_downtime_ms)], ["actual pause", secs(m.downtime_ms)],
    ["sent", mib(m.transferred_bytes)], ["rounds", m.rounds ?? "–"],
    ["encrypted", m.encrypted == null ? "–" : String(m.encrypted)],
    ["error", m.error || "–"],
  ];
  const keys = ["state", "policy", "predicted_total_ms", "total_ms", "predicted_downtime_ms",
                "downtime_ms", "transferred_bytes", "rounds", "encrypted", "error"];
  rows.forEach(([k, v], i) => {
    dl.append(el("dt", {}, k), el("dd", { "data-field": keys[i] }, v));
  });
}

function drawChart(m, samples) {
  const c = document.getElementById("chart");
  c.replaceChildren();
  const W = 900, H = 320, L = 60, R = 60, T = 15, B = 35;
  const tEnd = Math.max(1, ...samples.map((s) => s.t_ms), m.total_ms || 0,
                        m.predicted_total_ms || 0);
  const memMax = Math.max(1, ...samples.map((s) => s.memory_remaining_bytes)) / MIB;
  const rateMax = Math.max(1, ...samples.map((s) => Math.max(s.bandwidth_bytes_s,
                                                              s.dirty_rate_bytes_s))) / MIB;
  const x = (t) => L + (t / tEnd) * (W - L - R);
  const yMem = (v) => H - B - (v / memMax) * (H - T - B);
  const yRate = (v) => H - B - (v / rateMax) * (H - T - B);
  c.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
           svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
           svg("line", { class: "axis", x1: W - R, y1: T, x2: W - R, y2: H - B }));
  const label = (x0, y0, text, anchor = "middle") => {
    const t = svg("text", { x: x0, y: y0, "text-anchor": anchor });
    t.textContent = text;
    c.append(t);
  };
  for (let i = 0; i <= 4; i++) {
    label(x((tEnd * i) / 4), H - B + 15, `${((tEnd * i) / 4000).toFixed(1)} s`);
    label(L - 5, yMem((memMax * i) / 4) + 4, `${((memMax * i) / 4).toFixed(0)}`, "end");
    label(W - R + 5, yRate((rateMax * i) / 4) + 4, `${((rateMax * i) / 4).toFixed(0)}`, "start");
  }
  label(L, H - 5, "time since the job started", "start");
  let prevRound = null;
  for (const s of samples) { // a tick where each pre-copy round starts
    if (s.iteration !== prevRound && prevRound !== null) {
      c.append(svg("line", { class: "round", x1: x(s.t_ms), y1: T, x2: x(s.t_ms), y2: H - B,
                             "data-round": s.iteration }));
    }
    prevRound = s.iteration;
  }
  const path = (cls, f) => {
    if (!samples.length) return;
    const d = samples.map((s, i) => `${i ? "L" : "M"}${x(s.t_ms).toFixed(1)},${f(s).toFixed(1)}`);
    c.append(svg("path", { class: cls, d: d.join(" "), "data-points": samples.length }));
  };
  path("remaining", (s) => yMem(s.memory_remaining_bytes / MIB));
  path("transfer", (s) => yRate(s.bandwidth_bytes_s / MIB));
  path("dirty", (s) => yRate(s.dirty_rate_bytes_s / MIB));
  if (m.predicted_total_ms != null) {
    c.append(svg("line", { class: "predicted", x1: x(m.predicted_total_ms), y1: T,
                           x2: x(m.predicted_total_ms), y2: H - B }));
  }
  if (m.total_ms != null) {
    c.append(svg("line", { class: "actual", x1: x(m.total_ms), y1: T, x2: x(m.total_ms),
                           y2: H - B }));
    if (m.downtime_ms != null) label(x(m.total_ms) - 4, T + 12, `pause ${secs(m.downtime_ms)}`,
                                     "end");
  }
}

function renderDetail(m, samples) {
  const box = document.getElementById("detail");
  box.hidden = false;
  box.dataset.migrationId = m.id;
  box.dataset.state = m.state;
  document.getElementById("d-id").textContent = m.id;
  document.getElementById("d-title").textContent =
    `${m.vm}, ${m.source} → ${m.destination}`;
  renderFigures(m);
  drawChart(m, samples);
  const ol = document.getElementById("events");
  ol.replaceChildren(...m.events.map((e) =>
    el("li", { "data-kind": e.kind }, `${e.at.slice(11, 23)} ${e.kind}: ${e.message}`)));
}

let inFlight = false;

async function refresh() {
  if (inFlight) return; // a slow controller: never pile up requests
  inFlight = true;
  const status = document.getElementById("status");
  try {
    const [migrations, drains] = await Promise.all([api("/migrations?limit=20"),
                                                     api("/drains?limit=10")]);
    if (tick++ % 3 === 0) {
      const [hosts, vms] = await Promise.all([api("/hosts"), api("/vms")]);
      renderHosts(hosts, vms);
    }
    const running = migrations.filter((m) => !finished(m.state));
    const lastSamples = {};
    await Promise.all(running.map(async (m) => {
      const s = await api(`/migrations/${m.id}/samples`);
      lastSamples[m.id] = s[s.length - 1];
    }));
    renderDrains(drains);
    const shown = selected ?? (running[0] || migrations[0] || {}).id;
    if (shown != null) {
      const [m, samples] = await Promise.all([api(`/migrations/${shown}`),
                                              api(`/migrations/${shown}/samples`)]);
      if (samples.length) lastSamples[m.id] = samples[samples.length - 1];
      renderDetail(m, samples);
    }
    renderMigrations(migrations, lastSamples);
    document.querySelectorAll("#migrations tbody tr").forEach((r) =>
      r.classList.toggle("selected", Number(r.dataset.migrationId) === shown));
    status.className = "muted";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem("ferry-token");
      showLogin(e.message);
      return;
    }
    status.className = "error";
    status.textContent = `cannot reach the controller: ${e.message}`;
  } finally {
    inFlight = false;
  }
}

let timer = null;

function showLogin(why) {
  clearInterval(timer);
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  const status = document.getElementById("status");
  status.className = why ? "error" : "muted";
  status.textContent = why || "an API token is needed";
}

function start() {
  clearInterval(timer);
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  takeTokenFromLink();
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem("ferry-token", token);
    start();
  });
  if (token) start(); else showLogin("");
});

window.addEventListener("hashchange", () => { // a link with a token opened in this tab
  if (location.hash.includes("token=")) {
    takeTokenFromLink();
    start();
  }
});
