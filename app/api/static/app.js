// tftsweep dashboard: pages fetch the public REST API (same paths, same key) and render it.
"use strict";

const KEY = "tftsweep.apiKey";

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h["X-API-Key"] = key;
  return h;
}

function notice(text) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.hidden = !text;
}

const NEEDS_KEY = "The server needs an API key: enter it above.";
const READ_ONLY = "This key cannot do that (it has the read scope).";

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) notice(NEEDS_KEY);
  else if (response.status === 403) notice(READ_ONLY);
  return response;
}

async function json(path) {
  const response = await api(path);
  if (response.status === 401) throw new Error(NEEDS_KEY);
  if (response.status === 403) throw new Error(READ_ONLY);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children || []) node.append(child);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function renderTable(table, rows, columns, decorate) {
  const thead = table.querySelector("thead");
  const tbody = table.querySelector("tbody");
  if (!thead.children.length) {
    const tr = el("tr");
    columns.forEach((col, i) => {
      const th = el("th", {scope: "col"});
      if (table.classList.contains("sortable")) {
        const button = el("button", {type: "button", text: col});
        button.addEventListener("click", () => sortBy(table, i, th));
        th.append(button);
      } else th.textContent = col;
      tr.append(th);
    });
    thead.append(tr);
  }
  tbody.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    columns.forEach((col) => {
      const value = row[col];
      tr.append(el("td", {class: typeof value === "number" ? "num" : "", "data-value": fmt(value), text: fmt(value)}));
    });
    if (decorate) decorate(tr, row);
    return tr;
  }));
  if (!rows.length) tbody.append(el("tr", {}, [el("td", {colspan: String(columns.length), text: "nothing yet"})]));
}

function sortBy(table, index, th) {
  const descending = th.getAttribute("aria-sort") === "ascending";
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const rows = [...table.querySelector("tbody").rows];
  const key = (tr) => {
    const raw = tr.cells[index]?.dataset.value ?? "";
    const num = Number(raw);
    return raw !== "" && !Number.isNaN(num) ? num : raw;
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  table.querySelector("tbody").append(...rows);
}

async function showImage(container, url, caption) {
  const response = await api(url);
  if (!response.ok) return;
  const src = URL.createObjectURL(await response.blob());
  container.append(el("figure", {}, [el("img", {src, alt: caption, loading: "lazy"}), el("figcaption", {text: caption})]));
}

function link(href, text) { return el("a", {href, text}); }

// A file link (`data-download`) fetched with the key, then saved from a blob: a plain link sends
// no key, and a key in the URL would land in the history and the server's logs.
async function download(anchor) {
  const response = await api(anchor.getAttribute("href"));
  if (!response.ok) {
    let detail = `${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    if (response.status !== 401 && response.status !== 403) notice(`${anchor.dataset.download}: ${detail}`);
    return;
  }
  const named = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
  const url = URL.createObjectURL(await response.blob());
  const save = el("a", {href: url, download: named ? named[1] : anchor.dataset.download, hidden: ""});
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000); // the browser may still be reading it
}

function downloadLinks() {
  document.addEventListener("click", (event) => {
    const anchor = event.target.closest && event.target.closest("a[data-download]");
    if (!anchor || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    download(anchor).catch(report);
  });
}

async function sweepsPage() {
  const body = document.querySelector("#sweeps tbody");
  const data = await json("/sweeps?limit=200");
  body.replaceChildren(...data.data.map((s) => el("tr", {}, [
    el("td", {}, [link(`/ui/sweeps/${s.id}`, String(s.id))]),
    el("td", {text: s.asset}),
    el("td", {}, [link(`/ui/sweeps/${s.id}`, s.output_subdir)]),
    el("td", {class: `status-${s.status}`, text: s.status}),
    el("td", {text: ["queued", "running", "succeeded", "failed", "cancelled"].map((k) => s.runs[k]).join(" / ")}),
    el("td", {text: new Date(s.created_at).toLocaleString()}),
    el("td", {text: s.best_config || "–"}),
  ])));
  if (!data.data.length) body.replaceChildren(el("tr", {}, [el("td", {colspan: "7", text: "No sweeps yet."})]));
}

const RANKING = ["rank", "config_id", "verdict", "n_runs", "n_failed", "mean_val_rmse", "std_val_rmse", "robust_score",
  "delta_vs_baseline", "ci95_low", "ci95_high", "holm_pvalue", "mean_test_skill", "dm_better_share",
  "robust_rel_score", "mean_fold_rank"];
const IMPACT = ["param_name", "param_value", "verdict", "n_pairs", "avg_delta_rmse_vs_baseline", "ci95_low", "ci95_high",
  "holm_pvalue", "win_rate", "avg_delta_test_rmse_vs_baseline"];

// A verdict cell as a badge (its colour says better, worse, indistinguishable, insufficient).
function badge(tr, row) {
  const cell = [...tr.cells].find((td) => td.dataset.value === row.verdict);
  if (cell && row.verdict) {
    cell.replaceChildren(el("span", {class: `badge verdict-${row.verdict}`, text: row.verdict}));
  }
}
const DRIFT = ["fold", "feature", "compared", "ks_stat", "ks_pvalue", "psi", "psi_band"];

async function sweepPage() {
  const id = document.body.dataset.sweepId;
  const sweep = await json(`/sweeps/${id}`);
  document.getElementById("sweep-title").textContent = `Sweep ${id}: ${sweep.asset} / ${sweep.output_subdir}`;
  const r = sweep.runs;
  const done = r.succeeded + r.failed + r.cancelled;
  document.getElementById("progress-text").textContent =
    `${sweep.status}: ${done} of ${sweep.total_runs} runs finished (${r.running} running, ${r.failed} failed, ${r.cancelled} cancelled)`;
  const bar = document.getElementById("progress-bar");
  bar.max = Math.max(1, sweep.total_runs);
  bar.value = done;
  renderTable(document.getElementById("ranking"), (await json(`/sweeps/${id}/ranking`)).data, RANKING, badge);
  renderTable(document.getElementById("impact"), (await json(`/sweeps/${id}/param-impact`)).summary, IMPACT, badge);
  const summary = await json(`/sweeps/${id}/summary`);
  document.getElementById("significance").textContent = summary.significance.sentence;
  try {
    renderTable(document.getElementById("drift"), (await json(`/sweeps/${id}/drift`)).data, DRIFT,
      (tr, row) => tr.classList.add(`band-${row.psi_band}`));
  } catch (e) { /* no dataset: no drift */ }
  const plots = document.getElementById("plots");
  if (!plots.children.length) {
    for (const plot of (await json(`/sweeps/${id}/plots`)).data) await showImage(plots, plot.url, plot.name);
  }
  if (r.queued || r.running || !sweep.reports_at) setTimeout(() => sweepPage().catch(report), 3000);
}

async function studiesPage() {
  const body = document.querySelector("#studies tbody");
  const data = await json("/hpo?limit=200");
  body.replaceChildren(...data.data.map((s) => {
    const n = (s.summary && s.summary.n_trials) || {};
    const best = s.summary && s.summary.best ? fmt(s.summary.best.value) : "–";
    return el("tr", {}, [el("td", {}, [link(`/ui/hpo/${s.id}`, String(s.id))]), el("td", {text: s.asset}),
      el("td", {}, [link(`/ui/hpo/${s.id}`, s.output_subdir)]), el("td", {class: `status-${s.status}`, text: s.status}),
      el("td", {text: `${n.complete || 0} / ${n.pruned || 0} / ${n.fail || 0}`}), el("td", {text: best})]);
  }));
  if (!data.data.length) body.replaceChildren(el("tr", {}, [el("td", {colspan: "6", text: "No studies yet."})]));
}

async function studyPage() {
  const id = document.body.dataset.studyId;
  const study = await json(`/hpo/${id}`);
  document.getElementById("study-title").textContent = `Study ${id}: ${study.asset} / ${study.output_subdir}`;
  const n = (study.summary && study.summary.n_trials) || {};
  document.getElementById("study-status").textContent =
    `${study.status}: ${n.complete || 0} complete, ${n.pruned || 0} pruned, ${n.fail || 0} failed`;
  const best = await api(`/hpo/${id}/best`);
  document.getElementById("best").textContent = best.ok ? JSON.stringify(await best.json(), null, 2) : "no complete trial yet";
  const top = (await json(`/hpo/${id}/top-k`)).data;
  renderTable(document.getElementById("topk"), top.map((t) => ({name: t.name, value: t.source.value, params: t.params})),
    ["name", "value", "params"]);
  const trials = (await json(`/hpo/${id}/trials`)).data;
  if (trials.length) renderTable(document.getElementById("trials"), trials, Object.keys(trials[0]));
  const plots = document.getElementById("plots");
  if (!plots.children.length) for (const p of (await json(`/hpo/${id}/plots`)).data) await showImage(plots, p.url, p.name);
  if (study.status === "queued" || study.status === "running") setTimeout(() => studyPage().catch(report), 5000);
}

function showErrors(list, response, body) {
  list.replaceChildren();
  const detail = body && body.detail;
  const items = Array.isArray(detail) ? detail.map((d) => `${d.field}: ${d.message}`)
    : (body && body.violations ? body.violations.map((v) => `${v.field}: ${v.rule}`) : [`${response.status}: ${detail}`]);
  if (detail && !Array.isArray(detail) && body.violations) items.unshift(detail);
  list.append(...items.map((text) => el("li", {text})));
}

async function postJson(path, payload) {
  const response = await api(path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(payload)});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return [response, body];
}

function submitPage() {
  const form = document.getElementById("submit-form");
  document.getElementById("config-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) document.getElementById("config").value = await file.text();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = document.getElementById("errors");
    const result = document.getElementById("result");
    let config;
    try { config = JSON.parse(document.getElementById("config").value); }
    catch (e) { errors.replaceChildren(el("li", {text: `(json): ${e.message}`})); result.textContent = "Not submitted."; return; }
    const [response, body] = await postJson("/sweeps", {asset: document.getElementById("asset").value, config,
      merge_tests: document.getElementById("merge").checked, continue_on_error: document.getElementById("coe").checked});
    if (response.ok) {
      errors.replaceChildren();
      result.replaceChildren("Submitted: ", link(`/ui/sweeps/${body.id}`, `sweep ${body.id}`),
        ` (${body.new_runs} new runs of ${body.total_runs}).`);
    } else {
      result.textContent = `Refused (${response.status}).`;
      showErrors(errors, response, body);
    }
  });
}

function topkForm() {
  const form = document.getElementById("topk-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = document.getElementById("topk-errors");
    let config;
    try { config = JSON.parse(document.getElementById("topk-config").value); }
    catch (e) { errors.replaceChildren(el("li", {text: `(json): ${e.message}`})); return; }
    const [response, body] = await postJson(`/hpo/${document.body.dataset.studyId}/sweep`, {config});
    if (response.ok) window.location = `/ui/sweeps/${body.id}`; else showErrors(errors, response, body);
  });
}

const WORKERS = ["id", "name", "queues", "gpu", "concurrency", "runs_in_hand", "last_seen", "live"];

async function workersPage() {
  const data = await json("/workers");
  document.getElementById("workers-summary").textContent =
    `${data.live} of ${data.count} workers live (heartbeat every ${data.heartbeat_seconds} s; stale after two).`;
  renderTable(document.getElementById("workers"),
    data.data.map((w) => Object.assign({}, w, {queues: w.queues.join(","), live: w.live ? "yes" : "no",
      last_seen: new Date(w.last_seen).toLocaleString()})),
    WORKERS, (tr, row) => tr.classList.add(row.live === "yes" ? "worker-live" : "worker-stale"));
  setTimeout(() => workersPage().catch(report), 5000);
}

// Every page: how many workers are live, and a warning when none is (runs would wait forever).
async function workersStatus() {
  const status = document.getElementById("workers-status");
  try {
    const health = await (await fetch("/healthz")).json();
    const live = health.live_workers;
    status.textContent = live ? `${live} live worker${live === 1 ? "" : "s"}`
      : `No live worker: ${health.queued_runs} queued run${health.queued_runs === 1 ? "" : "s"} will not start`;
    status.className = live ? "workers-status ok" : "workers-status warn";
  } catch (e) {
    status.textContent = "server unreachable";
    status.className = "workers-status warn";
  }
  setTimeout(workersStatus, 5000);
}

function report(error) { notice(String(error.message || error)); }

document.addEventListener("DOMContentLoaded", () => {
  downloadLinks();
  const input = document.getElementById("api-key");
  input.value = sessionStorage.getItem(KEY) || "";
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value) sessionStorage.setItem(KEY, input.value); else sessionStorage.removeItem(KEY);
    window.location.reload();
  });
  const pages = {sweeps: sweepsPage, sweep: sweepPage, studies: studiesPage, study: studyPage,
    workers: workersPage, submit: async () => submitPage()};
  workersStatus();
  const page = pages[document.body.dataset.page];
  if (page) page().catch(report);
  topkForm();
  // The forms' buttons wait for this script (templates/base.html): every submit now stays on the page.
  document.querySelectorAll("form button[type=submit]").forEach((button) => { button.disabled = false; });
});
