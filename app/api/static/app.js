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

// A column name that may break after its underscores: long names like
// avg_delta_rmse_vs_baseline would otherwise set the width of their whole column.
function label(name) {
  const parts = String(name).split("_");
  return parts.flatMap((part, i) => (i < parts.length - 1 ? [`${part}_`, el("wbr")] : [part]));
}

// Headings that say more than a column's name: the text shown (the name stays in `data-column`)
// and a tooltip. The unadjusted interval is named so wherever it is shown (it does not decide a
// verdict); the simultaneous one is the interval that goes with the verdict.
const UNADJUSTED = "Unadjusted 95% t-interval of the paired delta: it ignores the other variants tested " +
  "and does not decide the verdict.";
const SIMULTANEOUS = "Simultaneous (Bonferroni) interval over this row's Holm family (holm_family tests): " +
  "the interval that goes with the verdict.";
const HEADINGS = {
  ci95_low: {text: "unadjusted 95% CI low", title: UNADJUSTED},
  ci95_high: {text: "unadjusted 95% CI high", title: UNADJUSTED},
  simultaneous_ci_low: {text: "simultaneous CI low", title: SIMULTANEOUS},
  simultaneous_ci_high: {text: "simultaneous CI high", title: SIMULTANEOUS},
  holm_pvalue: {text: "holm_pvalue", title: "Wilcoxon p-value, Holm-adjusted over the table's family: it decides the verdict."},
  holm_family: {text: "holm_family", title: "How many tests Holm adjusts together with this row's."},
};

function heading(col) {
  const known = HEADINGS[col];
  return [label(known ? known.text : col), known ? known.title : null];
}

function renderTable(table, rows, columns, decorate) {
  const thead = table.querySelector("thead");
  const tbody = table.querySelector("tbody");
  const names = columns.map(String).join("\n");
  if (thead.dataset.columns !== names) { // a study's trials gain parameter columns as trials come in
    const tr = el("tr");
    columns.forEach((col, i) => {
      const [text, title] = heading(col);
      const th = el("th", Object.assign({scope: "col", "data-column": col}, title ? {title} : {}));
      if (table.classList.contains("sortable")) {
        const button = el("button", {type: "button"}, text);
        button.addEventListener("click", () => sortBy(table, i, th));
        th.append(button);
      } else th.append(...text);
      tr.append(th);
    });
    thead.replaceChildren(tr);
    thead.dataset.columns = names;
  }
  tbody.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    columns.forEach((col) => {
      const value = row[col];
      tr.append(el("td", {class: typeof value === "number" ? "num" : "", "data-column": col, "data-value": fmt(value),
        text: fmt(value)}));
    });
    if (decorate) decorate(tr, row);
    return tr;
  }));
  if (!rows.length) tbody.append(el("tr", {}, [el("td", {colspan: String(columns.length), text: "nothing yet"})]));
  applySort(table);
}

// A table with `data-collapse="N"` and more than N rows shows its first N, says how many there
// are, and has a button to show them all (and back). The choice survives the page's refreshes.
function collapse(table) {
  const limit = Number(table.dataset.collapse || 0);
  const rows = [...table.tBodies[0].rows];
  let bar = document.getElementById(`${table.id}-more`);
  if (!limit || rows.length <= limit) {
    rows.forEach((tr) => { tr.hidden = false; });
    if (bar) bar.hidden = true;
    return;
  }
  if (!bar) {
    bar = el("p", {id: `${table.id}-more`, class: "table-more"},
      [el("span"), " ", el("button", {type: "button", "aria-controls": table.id})]);
    bar.querySelector("button").addEventListener("click", () => {
      table.dataset.expanded = table.dataset.expanded === "true" ? "false" : "true";
      collapse(table);
    });
    (table.closest(".table-scroll") || table).after(bar);
  }
  const all = table.dataset.expanded === "true";
  rows.forEach((tr, i) => { tr.hidden = !all && i >= limit; });
  bar.hidden = false;
  bar.querySelector("span").textContent = all ? `All ${rows.length} rows shown.` : `${limit} of ${rows.length} rows shown.`;
  const button = bar.querySelector("button");
  button.textContent = all ? `Show the first ${limit}` : `Show all ${rows.length}`;
  button.setAttribute("aria-expanded", String(all));
}

function sortBy(table, index, th) {
  const descending = th.getAttribute("aria-sort") === "ascending";
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  applySort(table);
}

// Rows in the order the sorted column's header says (`aria-sort`), so a refresh keeps the user's sort.
function applySort(table) {
  const th = table.querySelector("thead th[aria-sort]");
  if (th) {
    const index = th.cellIndex;
    const descending = th.getAttribute("aria-sort") === "descending";
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
  collapse(table);
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
    el("td", {text: ["queued", "running", "succeeded", "failed", "cancelled", "skipped"].map((k) => s.runs[k] ?? 0)
      .join(" / ") + (s.cached_runs ? ` (${s.cached_runs} cached)` : "")}),
    el("td", {text: new Date(s.created_at).toLocaleString()}),
    el("td", {text: s.best_config || "–"}),
  ])));
  if (!data.data.length) body.replaceChildren(el("tr", {}, [el("td", {colspan: "7", text: "No sweeps yet."})]));
}

// The verdict, then what decides it and the interval that goes with it; the unadjusted interval further on.
const RANKING = ["rank", "config_id", "in_mcs", "mcs_pvalue", "verdict", "delta_vs_baseline", "simultaneous_ci_low", "simultaneous_ci_high",
  "holm_pvalue", "holm_family", "n_runs", "n_failed", "mean_val_rmse", "std_val_rmse", "robust_score",
  "ci95_low", "ci95_high", "mean_test_skill", "dm_better_share", "robust_rel_score", "mean_fold_rank"];
const IMPACT = ["param_name", "param_value", "verdict", "avg_delta_rmse_vs_baseline", "simultaneous_ci_low",
  "simultaneous_ci_high", "holm_pvalue", "holm_family", "n_pairs", "win_rate", "ci95_low", "ci95_high",
  "avg_delta_test_rmse_vs_baseline"];

// Which statistic decides a table's verdicts and which interval is shown beside them, with the
// size of the Holm family: the `holm_family` of the rows that were tested (a table is one family).
// A row without a p-value is judged as one test more (its `holm_family` is one larger).
function familyNote(rows, noun) {
  const plural = (n) => `${n} ${noun}${n === 1 ? "" : "s"}`;
  const tested = rows.filter((r) => r.holm_pvalue !== null && r.holm_pvalue !== undefined);
  const untested = rows.filter((r) => !tested.includes(r) && r.verdict !== "baseline").length;
  const family = tested.length ? Math.max(...tested.map((r) => r.holm_family ?? tested.length)) : 0;
  const over = family ? plural(family) : `the ${noun}s with paired runs (none yet)`;
  const rest = untested ? ` ${plural(untested)} without a p-value (no pairs, or every difference 0) ` +
    `${untested === 1 ? "is" : "are"} judged as one test more.` : "";
  return `verdict: Holm-adjusted Wilcoxon over ${over}; interval shown: simultaneous (Bonferroni) for that family.` +
    `${rest} The unadjusted 95% CI columns ignore the other ${noun}s and do not decide it.`;
}

// A verdict cell as a badge (its colour says better, worse, indistinguishable, insufficient). Its
// first word is the kind: "worse (raced out after 8 pairs)" is a worse verdict that racing reached
// before the variant's remaining runs were trained (they are skipped), so it says so in its tooltip.
const RACED_OUT = "Racing stopped this variant: shown worse than the baseline on the pairs it had " +
  "(one-sided Wilcoxon, at a level spent over the looks and Holm over the variants); its remaining runs were skipped.";

function badge(tr, row) {
  const cell = tr.querySelector('td[data-column="verdict"]'); // not the baseline's config_id, also "baseline"
  if (cell && row.verdict) {
    const verdict = String(row.verdict);
    const raced = /raced out/.test(verdict);
    cell.replaceChildren(el("span", Object.assign({class: `badge verdict-${verdict.split(" ")[0]}${raced ? " raced-out" : ""}`,
      text: verdict}, raced ? {title: RACED_OUT} : {})));
  }
}

// The ranking by the metric chosen in its selector (the sweep's rank_by until one is chosen), with
// that metric's columns and its rank_score; choosing another refetches it.
async function rankingTable(id) {
  const select = document.getElementById("ranking-metric");
  if (!select.dataset.bound) {
    select.addEventListener("change", () => rankingTable(id).catch(report));
    select.dataset.bound = "true";
  }
  const wanted = select.value;
  const url = (metric) => `/sweeps/${id}/ranking${metric ? `?metric=${encodeURIComponent(metric)}` : ""}`;
  let answer;
  try {
    answer = await json(url(wanted));
  } catch (err) {
    // A metric no longer offered (a merge dropped its reference): back to the sweep's rank_by.
    if (!wanted || !String(err.message).endsWith(": 422")) throw err;
    answer = await json(url(""));
  }
  if (select.value !== wanted) return; // another metric was chosen meanwhile: its answer draws the table
  if (select.dataset.choices !== answer.metrics.join("\n")) {
    select.replaceChildren(...answer.metrics.map((m) => el("option", {value: m, text: m})));
    select.dataset.choices = answer.metrics.join("\n");
  }
  select.value = answer.metric;
  const selection = answer.selection || {available: false, reason: "not in this answer"};
  renderTable(document.getElementById("ranking"), answer.data, rankingColumns(answer.metric),
    (tr, row) => { badge(tr, row); mcsMarker(tr, row, selection); });
  document.getElementById("ranking-note").textContent = familyNote(answer.data, "variant");
  document.getElementById("selection").textContent = selectionText(selection, answer.data.length);
}

// The in_mcs cell as a marker: "in MCS" for a member of the model confidence set, "out" otherwise,
// "–" (with the reason as its tooltip) where the set is not known for this ranking.
function mcsMarker(tr, row, selection) {
  const cell = tr.querySelector('td[data-column="in_mcs"]');
  if (!cell) return;
  if (row.in_mcs === true) cell.replaceChildren(el("span", {class: "badge mcs-in", text: "in MCS"}));
  else if (row.in_mcs === false) cell.replaceChildren(el("span", {class: "badge mcs-out", text: "out"}));
  else cell.replaceChildren(el("span", {class: "mcs-unknown", title: selection.reason || "not computed", text: "–"}));
}

// The ranking answer's selection block in one sentence: the size of the model confidence set and
// the SPA test of the best config against the baseline, or why they are not shown.
function selectionText(selection, configs) {
  if (!selection.available) return `Model confidence set: not shown for this ranking (${selection.reason}).`;
  const level = `${Math.round((selection.level ?? 0.9) * 100)}%`;
  const mcs = selection.mcs || {members: [], size: 0};
  const days = selection.days_used ? ` on ${selection.days_used} validation days` : "";
  let text = `${mcs.size} of ${configs} configs are in the ${level} model confidence set of ${selection.computed_for}` +
    `${days} (marked "in MCS": they cannot be told apart from the best).`;
  const spa = selection.spa;
  if (spa && spa.consistent !== undefined && spa.consistent !== null) {
    text += ` After accounting for the ${selection.configs_tried} configs tried, SPA p = ${fmt(spa.consistent)} ` +
      "for the best config against the baseline.";
  }
  return text;
}

// The seed's ranking columns with, after robust_score, the chosen val_ metric's mean and std over
// runs, its test mean and rank_score (the columns config_ranking.csv adds for it).
function rankingColumns(metric) {
  const name = metric.replace(/^val_/, "");
  const chosen = [`mean_val_${name}`, `std_val_${name}`, `mean_test_${name}`, "rank_score"];
  const seed = RANKING.filter((col) => !chosen.includes(col));
  const at = seed.indexOf("robust_score") + 1;
  return [...seed.slice(0, at), ...chosen, ...seed.slice(at)];
}
const DRIFT = ["fold", "feature", "compared", "ks_stat", "ks_pvalue", "psi", "psi_band"];

async function sweepPage() {
  const id = document.body.dataset.sweepId;
  const sweep = await json(`/sweeps/${id}`);
  document.getElementById("sweep-title").textContent = `Sweep ${id}: ${sweep.asset} / ${sweep.output_subdir}`;
  const r = sweep.runs;
  const skipped = r.skipped || 0;
  const done = r.succeeded + r.failed + r.cancelled + skipped; // a skipped run is settled: it will not train
  document.getElementById("progress-text").textContent =
    `${sweep.status}: ${done} of ${sweep.total_runs} runs finished (${r.running} running, ${r.failed} failed, ${r.cancelled} cancelled)`;
  countBadge("cached-count", sweep.cached_runs || 0, "cached (not trained)");
  countBadge("skipped-count", skipped, "skipped (raced out)");
  const bar = document.getElementById("progress-bar");
  bar.max = Math.max(1, sweep.total_runs);
  bar.value = done;
  const partial = partialText(sweep);
  for (const tag of document.querySelectorAll("#ranking-partial, #significance-partial")) {
    tag.textContent = partial;
    tag.hidden = !partial;
  }
  await rankingTable(id);
  const impact = (await json(`/sweeps/${id}/param-impact`)).summary;
  renderTable(document.getElementById("impact"), impact, IMPACT, badge);
  document.getElementById("impact-note").textContent = familyNote(impact, "value");
  await runsTable(id);
  const summary = await json(`/sweeps/${id}/summary`);
  document.getElementById("significance").textContent = summary.significance.sentence;
  await driftTable(id);
  const plots = document.getElementById("plots");
  if (!plots.children.length) {
    for (const plot of (await json(`/sweeps/${id}/plots`)).data) await showImage(plots, plot.url, plot.name);
  }
  if (r.queued || r.running || !sweep.reports_at) setTimeout(() => sweepPage().catch(report), 3000);
}

// "4 cached (not trained)" beside the progress; hidden while there are none.
function countBadge(id, n, text) {
  const tag = document.getElementById(id);
  tag.textContent = `${n} ${text}`;
  tag.hidden = !n;
}

// "partial: k of n runs" while the ranking rests on fewer runs than the sweep has (k = succeeded),
// with why: runs still to come, runs that failed or were cancelled, runs racing skipped. Empty
// for a complete sweep.
function partialText(sweep) {
  const r = sweep.runs;
  if (r.succeeded >= sweep.total_runs) return "";
  const pending = r.queued + r.running;
  const skipped = r.skipped || 0;
  const why = [];
  if (pending) why.push(`${pending} still to run; the ranking and the verdicts can change`);
  const lost = r.failed + r.cancelled;
  if (!pending && lost) why.push(`${lost} failed or cancelled, not counted`);
  if (skipped) why.push(`${skipped} raced out, not trained`);
  return `partial: ${r.succeeded} of ${sweep.total_runs} runs (${why.join("; ")})`;
}

// The runs of one page (plan order; the state chosen in its selector): a run recorded from the
// cache carries a "cached" badge whose tooltip names its source, a skipped one its reason.
const RUNS = ["run_id", "config_id", "fold", "seed", "status", "cached_from", "skip_reason", "val_rmse", "test_rmse",
  "train_seconds", "attempts", "model_version", "error"];
const RUNS_SHOWN = 200;

async function runsTable(id) {
  const select = document.getElementById("runs-state");
  if (!select.dataset.bound) {
    select.addEventListener("change", () => runsTable(id).catch(report));
    select.dataset.bound = "true";
  }
  const state = select.value;
  const answer = await json(`/sweeps/${id}/runs?limit=${RUNS_SHOWN}${state ? `&state=${encodeURIComponent(state)}` : ""}`);
  if (select.value !== state) return; // another state was chosen meanwhile: its answer draws the table
  renderTable(document.getElementById("runs"), answer.data, RUNS, runMarks);
  const which = state ? `${state} runs` : "runs";
  document.getElementById("runs-note").textContent = answer.count > answer.data.length
    ? `The first ${answer.data.length} of ${answer.count} ${which} (plan order); sweep_runs.csv has them all.`
    : `${answer.count} ${which}.`;
}

function runMarks(tr, row) {
  const cell = tr.querySelector('td[data-column="status"]');
  if (row.cached_from) {
    tr.classList.add("run-cached-row");
    cell.append(" ", el("span", {class: "badge run-cached", title: `recorded from run ${row.cached_from}, not trained`,
      text: "cached"}));
  }
  if (row.status === "skipped") {
    tr.classList.add("run-skipped-row");
    cell.replaceChildren(el("span", {class: "badge run-skipped", title: row.skip_reason || "skipped", text: "skipped"}));
  }
}

// Largest PSI first, so the collapsed table shows the features that moved most.
async function driftTable(id) {
  const table = document.getElementById("drift");
  const note = document.getElementById("drift-note");
  let drift;
  try { drift = await json(`/sweeps/${id}/drift`); } catch (e) { note.textContent = `No drift: ${e.message}`; return; }
  if (drift.available === false) { note.textContent = `No drift: ${drift.reason}`; return; }
  const rows = [...drift.data].sort((a, b) => (b.psi ?? -Infinity) - (a.psi ?? -Infinity));
  if (!table.querySelector("thead th")) {
    renderTable(table, [], DRIFT);
    table.querySelectorAll("thead th")[DRIFT.indexOf("psi")].setAttribute("aria-sort", "descending");
  }
  renderTable(table, rows, DRIFT, (tr, row) => tr.classList.add(`band-${row.psi_band}`));
  note.textContent = `${rows.length} rows (feature × fold × window), largest PSI first; click a column to sort.`;
}

// Two sweeps compared (GET /compare): the answer's sentence first; across assets the transfer
// table (each variant against its own sweep's baseline), on one asset the paired significance.
const TRANSFER = ["config_id", "same_sign", "rel_delta_a", "rel_delta_b", "delta_a", "delta_b", "vs_naive_a",
  "vs_naive_b", "rank_a", "rank_b", "in_mcs_a", "in_mcs_b", "n_pairs_a", "n_pairs_b"];
const COMPARE_SIGNIFICANCE = ["config_id", "verdict", "mean_delta", "simultaneous_ci_low", "simultaneous_ci_high",
  "holm_pvalue", "n_pairs"];
const COMPARE_MCS = ["sweep", "config_id", "in_mcs", "mcs_pvalue"];
const COMPARE_TABLE = ["sweep", "rank", "config_id", "n_runs", "mean_val_rmse", "std_val_rmse", "robust_score"];

function mcsCells(tr, row) {
  for (const cell of tr.querySelectorAll('td[data-column^="in_mcs"]')) {
    const value = row[cell.dataset.column];
    if (value === true) cell.replaceChildren(el("span", {class: "badge mcs-in", text: "in MCS"}));
    else if (value === false) cell.replaceChildren(el("span", {class: "badge mcs-out", text: "out"}));
  }
  const same = tr.querySelector('td[data-column="same_sign"]');
  if (same && row.same_sign !== null && row.same_sign !== undefined) {
    same.replaceChildren(el("span", {class: `badge ${row.same_sign ? "verdict-better" : "verdict-worse"}`,
      text: row.same_sign ? "same sign" : "opposite"}));
  }
}

async function comparePage() {
  const form = document.getElementById("compare-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const a = document.getElementById("compare-a").value, b = document.getElementById("compare-b").value;
    history.replaceState(null, "", `/ui/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    showComparison(a, b).catch(report);
  });
  const a = document.getElementById("compare-a").value, b = document.getElementById("compare-b").value;
  if (a && b) await showComparison(a, b);
}

async function showComparison(a, b) {
  const errors = document.getElementById("compare-errors");
  const sentence = document.getElementById("compare-sentence");
  const response = await api(`/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    sentence.textContent = `Not compared (${response.status}).`;
    showErrors(errors, response, body);
    return;
  }
  errors.replaceChildren();
  document.getElementById("compare-title").textContent = `Compare ${body.a.label} with ${body.b.label}`;
  sentence.textContent = body.sentence;
  document.getElementById("compare-note").textContent = body.note;
  const cross = body.kind === "transfer";
  document.getElementById("transfer-section").hidden = !cross;
  document.getElementById("significance-section").hidden = cross;
  if (cross) {
    const found = body.transfer[0];
    const corr = found.correlation;
    const rho = corr.spearman === null ? `no rank correlation (${corr.reason})`
      : `Spearman ${fmt(corr.spearman)} (p ${fmt(corr.spearman_pvalue)}), Kendall ${fmt(corr.kendall)} ` +
        `(p ${fmt(corr.kendall_pvalue)}) over ${corr.n_configs} configs`;
    document.getElementById("transfer-stats").textContent =
      `${found.n_same_sign} of ${found.n_variants} variants move the same way against their own baseline ` +
      `(${found.metric}; a = ${found.reference}, b = ${found.sweep}); ${rho}.`;
    renderTable(document.getElementById("transfer"), found.rows, TRANSFER, mcsCells);
  } else {
    renderTable(document.getElementById("compare-significance"), body.significance, COMPARE_SIGNIFICANCE, badge);
  }
  const known = Object.entries(body.mcs.sweeps).map(([label, s]) => s.available ? `${label}: known`
    : `${label}: not known (${s.reason})`);
  document.getElementById("compare-mcs-note").textContent = `${known.join("; ")}. ${body.mcs.note}.`;
  renderTable(document.getElementById("compare-mcs"), body.mcs.rows, COMPARE_MCS, mcsCells);
  renderTable(document.getElementById("compare-table"), body.table, COMPARE_TABLE);
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

// The keys of a study's config that a sweep takes too: its folds, seeds, features and baseline.
const SWEEP_KEYS = ["output_subdir", "features", "replica_seeds", "walk_forward", "split_config", "training_config"];
const BEST_METRICS = ["mean_val_rmse", "std_val_rmse", "mean_test_rmse", "mean_val_naive_rmse"];

function keyValueRows(table, entries) {
  table.tBodies[0].replaceChildren(...entries.map(([key, value]) => el("tr", {}, [
    el("th", {scope: "row", text: key}),
    el("td", {class: typeof value === "number" ? "num" : "", text: fmt(value)}),
  ])));
}

function paramsText(params) {
  return Object.entries(params || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
}

function bestTrial(best) {
  const caption = document.getElementById("best-caption");
  const details = document.getElementById("best-training");
  if (!best) {
    caption.textContent = "No complete trial yet.";
    keyValueRows(document.getElementById("best"), []);
    details.hidden = true;
    return;
  }
  caption.textContent = `Trial ${best.number}: ${best.objective || "objective"} ${fmt(best.value)}.`;
  const objective = best.objective || "objective";
  const params = Object.entries(best.params || {});
  const metrics = BEST_METRICS.filter((k) => k !== objective && best[k] !== undefined && best[k] !== null)
    .map((k) => [k, best[k]]);
  keyValueRows(document.getElementById("best"), [...params, [objective, best.value], ...metrics]);
  details.hidden = !best.training_config;
  if (best.training_config) keyValueRows(document.getElementById("best-config"), Object.entries(best.training_config));
}

// Trials with complete and pruned values in columns of their own: a pruned trial's value is the
// last intermediate value it reported (one epoch of one run), not the objective over all runs,
// beside the median of the other trials' values at that step that it was compared with.
function trialRows(trials) {
  const params = [...new Set(trials.flatMap((t) => Object.keys(t).filter((k) => k.startsWith("params_"))))];
  const columns = ["number", "state", "objective", "last intermediate value", "median at pruning", "last_step",
    "mean_val_rmse", "std_val_rmse", "mean_test_rmse", "mean_val_naive_rmse", "n_runs", ...params.map((k) => k.slice(7)),
    "duration_s"];
  const rows = trials.map((t) => {
    const pruned = t.state === "pruned";
    const row = {number: t.number, state: t.state, last_step: t.last_step, n_runs: t.n_runs, duration_s: t.duration_s,
      baseline: t.baseline === true, objective: t.state === "complete" ? t.value : null,
      "last intermediate value": pruned ? (t.last_intermediate_value ?? t.value) : null,
      "median at pruning": pruned ? t.pruned_median : null};
    for (const k of ["mean_val_rmse", "std_val_rmse", "mean_test_rmse", "mean_val_naive_rmse"]) row[k] = t[k];
    for (const k of params) row[k.slice(7)] = t[k];
    return row;
  });
  return [rows, columns];
}

// The top-k sweep's config, from the study's own (its folds, seeds, features and baseline
// training_config), under a new output_subdir; null when the study's answer carries no config.
function topkSweepConfig(study) {
  if (!study.config) return null;
  const sweep = Object.fromEntries(SWEEP_KEYS.filter((k) => study.config[k] != null).map((k) => [k, study.config[k]]));
  sweep.output_subdir = `${study.output_subdir}_top_k`.slice(0, 64);
  return sweep;
}

function prefillTopk(study) {
  const area = document.getElementById("topk-config");
  const source = document.getElementById("topk-source");
  if (area.dataset.filled) return; // never overwrite what the user typed
  area.dataset.filled = "true";
  const sweep = topkSweepConfig(study);
  if (sweep) {
    area.value = JSON.stringify(sweep, null, 2);
    source.textContent = `Filled from study ${study.id}: its folds, seeds, features and baseline training_config, ` +
      `written to ${sweep.output_subdir}. Edit anything before you start it.`;
  } else {
    source.textContent = "This study's answer carries no config: paste a sweep config (its walk_forward folds, " +
      "replica_seeds and baseline training_config).";
  }
}

// Helper notes a study may carry (a sentence on the best trial against the baseline and the naive
// forecast; whether parameter importances could be computed), at the top level or in its summary.
function studyNote(study, name) {
  return study[name] || (study.summary && study.summary[name]) || null;
}

function importancesText(importances) {
  if (!importances || !importances.status || /^(ok|computed|available)$/.test(importances.status)) return "";
  const counted = importances.complete !== undefined && importances.needed !== undefined
    ? `${importances.complete} of ${importances.needed} complete trials` : "";
  const detail = counted || importances.reason || importances.message || importances.sentence || "";
  return `Parameter importances: ${String(importances.status).replaceAll("_", " ")}${detail ? ` (${detail})` : ""}.`;
}

// A trial's state as a row class; the baseline trial (trial 0: the study's own training_config)
// carries a "baseline" badge beside its number.
function trialDecoration(tr, row) {
  tr.classList.add(`trial-${row.state}`);
  if (!row.baseline) return;
  tr.classList.add("trial-baseline");
  tr.cells[0].append(" ", el("span", {class: "badge verdict-baseline", text: "baseline"}));
}

async function studyPage() {
  const id = document.body.dataset.studyId;
  const study = await json(`/hpo/${id}`);
  document.getElementById("study-title").textContent = `Study ${id}: ${study.asset} / ${study.output_subdir}`;
  const n = (study.summary && study.summary.n_trials) || {};
  document.getElementById("study-status").textContent =
    `${study.status}: ${n.complete || 0} complete, ${n.pruned || 0} pruned, ${n.fail || 0} failed`;
  const comparison = studyNote(study, "comparison");
  const sentence = document.getElementById("comparison");
  sentence.textContent = (comparison && comparison.sentence) || "";
  sentence.hidden = !sentence.textContent;
  const importances = document.getElementById("importances-note");
  importances.textContent = importancesText(studyNote(study, "importances"));
  importances.hidden = !importances.textContent;
  prefillTopk(study);
  const best = await api(`/hpo/${id}/best`);
  bestTrial(best.ok ? await best.json() : null);
  const top = (await json(`/hpo/${id}/top-k`)).data;
  renderTable(document.getElementById("topk"),
    top.map((t) => ({rank: t.source.rank, name: t.name, value: t.source.value, params: paramsText(t.params)})),
    ["rank", "name", "value", "params"]);
  const [rows, columns] = trialRows((await json(`/hpo/${id}/trials?limit=1000`)).data);
  if (rows.length) renderTable(document.getElementById("trials"), rows, columns, trialDecoration);
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
    const [response, body] = await postJson(`/hpo/${document.body.dataset.studyId}/sweep`,
      {config, merge_tests: document.getElementById("topk-merge").checked});
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
    workers: workersPage, submit: async () => submitPage(), compare: comparePage};
  workersStatus();
  const page = pages[document.body.dataset.page];
  if (page) page().catch(report);
  topkForm();
  // The forms' buttons wait for this script (templates/base.html): every submit now stays on the page.
  document.querySelectorAll("form button[type=submit]").forEach((button) => { button.disabled = false; });
});
