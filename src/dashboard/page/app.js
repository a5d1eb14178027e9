// The Mozart dashboard page: the job list, one job's progress, batches, charts and controls,
// kept live by the server's event streams (EventSource, which reconnects by itself and sends
// Last-Event-ID). Plain DOM built with createElement, so nothing from a job ever reaches the
// page as HTML, and nothing here needs an inline script or style attribute (the CSP forbids both).

const SVG = "http://www.w3.org/2000/svg";
/** Beyond this many batches the grid and charts show the first ones (the counts stay exact). */
const GRID_MAX = 5000;
const PAGE = 1000;
/** A job whose log is longer is replayed from this many events back; earlier cost is a baseline. */
const REPLAY_MAX = 20000;
const OUTPUT_KEEP = 256 * 1024;
const JOB_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"];
const BATCH_LABEL = { pending: "pending", in_progress: "running", held: "held (rate limit)", completed: "completed", failed: "failed", conflict: "not merged (conflict)", cancelled: "cancelled" };
const JOB_EVENTS = [
  "job_start", "batch_start", "attempt_start", "output", "output_truncated", "attempt_end", "batch_complete", "batch_failed",
  "batch_released", "leftovers_stopped", "batch_merged", "batch_conflict", "rate_limit_hold", "hold_end", "control", "runner_lost", "runner_left",
  "job_paused", "job_cancelled", "job_complete", "job_failed", "remote_batch",
];

// ---------- DOM ----------

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  props(el, attrs);
  el.append(...nodes(children));
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  props(el, attrs);
  el.append(...nodes(children));
  return el;
}

function props(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function nodes(children) {
  const out = [];
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    out.push(c instanceof Node ? c : String(c));
  }
  return out;
}

const enc = encodeURIComponent;
const jobHash = (id) => `#/jobs/${enc(id)}`;
const batchHash = (id, n) => `${jobHash(id)}/batches/${n}`;

// ---------- formatting ----------

function fmtCost(usd) {
  if (typeof usd !== "number" || !Number.isFinite(usd)) return "—";
  if (usd === 0) return "$0.00";
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

function fmtDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec < 10 ? sec.toFixed(1) : Math.round(sec)}s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${String(Math.floor(sec % 60)).padStart(2, "0")}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** A rough span for an estimate: "about 3m". */
function fmtAbout(ms) {
  if (ms < 5000) return "a few seconds";
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `about ${sec}s`;
  const m = Math.round(sec / 60);
  if (m < 60) return `about ${m}m`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `about ${hr}h${m % 60 ? ` ${m % 60}m` : ""}`;
  return `about ${Math.round(hr / 24)}d`;
}

function fmtAgo(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "—";
  const d = Date.now() - t;
  if (d < 0) return d > -5000 ? "just now" : `in ${fmtDuration(-d)}`;
  if (d < 5000) return "just now";
  if (d < 60_000) return `${Math.floor(d / 1000)}s ago`;
  if (d < 3_600_000) return `${Math.floor(d / 60_000)}m ago`;
  if (d < 172_800_000) return `${Math.floor(d / 3_600_000)}h ago`;
  return `${Math.floor(d / 86_400_000)}d ago`;
}

function fmtTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : "—";
}

function fmtClock(t) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A live relative time: the one-second tick keeps its text current. */
function ago(iso) {
  return h("time", { datetime: iso, title: fmtTime(iso), "data-ago": iso }, fmtAgo(iso));
}

function countdown(iso) {
  return h("time", { datetime: iso, title: fmtTime(iso), "data-until": iso }, fmtLeft(iso));
}

function fmtLeft(iso) {
  const left = Date.parse(iso) - Date.now();
  return left > 0 ? fmtDuration(Math.ceil(left / 1000) * 1000) : "ending now";
}

function tick() {
  for (const el of document.querySelectorAll("[data-ago]")) el.textContent = fmtAgo(el.getAttribute("data-ago"));
  for (const el of document.querySelectorAll("[data-until]")) el.textContent = fmtLeft(el.getAttribute("data-until"));
}

function describeRequester(by) {
  if (!by) return "";
  const how = by.via === "signal" ? by.signal || "a signal" : by.via;
  return `${how}${by.user ? ` (${by.user})` : ""}, pid ${by.pid}@${by.host}`;
}

function shellWord(w) {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${String(w).replaceAll("'", `'\\''`)}'`;
}

const statusBadge = (status, label = status) => h("span", { class: `badge st-${status}` }, label);

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, init) {
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the dashboard server (${e instanceof Error ? e.message : e})`);
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: reported below when the status says it failed
  }
  if (res.status === 401) signedOut();
  if (!res.ok) {
    const err = body && typeof body === "object" ? body.error : null;
    throw new ApiError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? (text.slice(0, 300) || res.statusText));
  }
  return body;
}

const post = (path) => api(path, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });

// ---------- messages and the connection indicator ----------

function showMessage(text, kind = "error") {
  const box = $("#messages");
  const item = h("div", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "msg-text" }, text),
    h("button", { type: "button", class: "msg-close", "aria-label": "Dismiss message", onclick: () => item.remove() }, "×"));
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
  return item;
}

const errorText = (e) => (e instanceof ApiError ? `${e.message} (${e.code}${e.status ? `, HTTP ${e.status}` : ""})` : String(e?.message ?? e));

const lostStreams = new Set();
let isSignedOut = false;
function connState(stream, lost) {
  if (lost) lostStreams.add(stream);
  else lostStreams.delete(stream);
  if (isSignedOut) return;
  const el = $("#conn");
  el.hidden = lostStreams.size === 0;
  el.textContent = lostStreams.size ? "reconnecting…" : "";
}

/** The server no longer knows this browser's session (it was restarted, or the token changed): say so, instead of reconnecting for ever. */
function signedOut() {
  if (isSignedOut) return;
  isSignedOut = true;
  const el = $("#conn");
  el.hidden = false;
  el.classList.add("signed-out");
  el.textContent = "signed out: open the login URL that `mozart dashboard` printed";
}

/**
 * An EventSource that also comes back when the browser gave up on it (a non-stream answer):
 * a fresh one starts from `url()` again, which carries the last seq seen.
 */
function openStream(url, handlers, onReopen) {
  const token = {};
  let es = null;
  let closed = false;
  let lost = false;
  let timer = 0;
  const connect = () => {
    es = new EventSource(url());
    es.onopen = () => {
      if (lost) onReopen?.();
      lost = false;
      connState(token, false);
    };
    es.onerror = () => {
      if (closed) return;
      lost = true;
      connState(token, true);
      if (es.readyState === EventSource.CLOSED) {
        clearTimeout(timer);
        // A stream the server refused: a session it no longer knows is not a connection to wait for.
        fetch("/api/jobs?limit=1").then(
          (r) => (r.status === 401 ? signedOut() : undefined),
          () => {},
        );
        timer = setTimeout(() => (isSignedOut ? undefined : connect()), 2000);
      }
    };
    for (const [type, fn] of Object.entries(handlers)) {
      es.addEventListener(type, (m) => {
        let data;
        try {
          data = JSON.parse(m.data);
        } catch {
          return;
        }
        fn(data);
      });
    }
  };
  connect();
  return {
    get open() {
      return es?.readyState === EventSource.OPEN;
    },
    restart() {
      es?.close();
      connect();
    },
    close() {
      closed = true;
      clearTimeout(timer);
      es?.close();
      connState(token, false);
    },
  };
}

// ---------- routing ----------

function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  let m = /^\/jobs\/([^/]+)\/batches\/(\d+)\/?$/.exec(path);
  if (m) return { view: "job", id: safeDecode(m[1]), batch: Number(m[2]) };
  m = /^\/jobs\/([^/]+)\/?$/.exec(path);
  if (m) return { view: "job", id: safeDecode(m[1]), batch: null };
  const status = new URLSearchParams(query).get("status") ?? "";
  return { view: "list", status: JOB_STATUSES.includes(status) ? status : "" };
}

function safeDecode(x) {
  try {
    return decodeURIComponent(x);
  } catch {
    return x;
  }
}

let current = null;

function route() {
  const r = parseRoute();
  if (current && r.view === "job" && current.kind === "job" && current.id === r.id) {
    current.showBatch(r.batch);
    return;
  }
  current?.unmount();
  // Messages belong to the view that raised them.
  if (current) $("#messages").replaceChildren();
  const main = $("#main");
  main.replaceChildren();
  current = r.view === "job" ? mountJob(main, r) : mountList(main, r);
}

function focusHeading(root) {
  const h1 = root.querySelector("h1");
  if (h1 && document.activeElement !== h1 && navigated) h1.focus({ preventScroll: false });
}
let navigated = false;

// ---------- the job list ----------

function mountList(main, r) {
  const rows = new Map();
  const trs = new Map();
  let total = 0;
  let next = null;
  let stopped = false;

  const select = h("select", { id: "status-filter", onchange: () => { location.hash = select.value ? `#/?status=${select.value}` : "#/"; } },
    h("option", { value: "" }, "all"),
    JOB_STATUSES.map((st) => h("option", { value: st, selected: st === r.status }, st)));
  const count = h("p", { class: "muted count", "aria-live": "polite" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const more = h("button", { type: "button", class: "btn", hidden: true, onclick: () => load(next) }, "Load more jobs");
  const table = h("table", { class: "jobs" },
    h("caption", { class: "sr-only" }, "Jobs, most recently updated first"),
    h("thead", null, h("tr", null, ["Job", "Status", "Progress", "Cost", "Last moved"].map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  main.append(
    h("div", { class: "list-head" },
      h("h1", { tabindex: "-1" }, "Jobs"),
      h("div", { class: "filter" }, h("label", { for: "status-filter" }, "Status"), select)),
    count, table, empty, more);
  focusHeading(main);

  function rowCells(row) {
    const done = row.total ? Math.round((row.completed / row.total) * 100) : 0;
    const note = row.error ? h("span", { class: "row-note err" }, row.error)
      : row.stopped_by ? h("span", { class: "row-note" }, `${row.status} by ${describeRequester(row.stopped_by)}`) : null;
    return [
      td("Job", h("a", { href: jobHash(row.job_id), class: "job-link" }, row.job_id),
        row.config_path ? h("span", { class: "row-path" }, row.config_path) : null, note),
      td("Status", statusBadge(row.status)),
      td("Progress", bar([{ n: row.completed, cls: "st-completed" }], row.total, `${row.completed} of ${row.total} batches completed`),
        h("span", { class: "bar-text" }, `${row.completed} / ${row.total}`, h("span", { class: "muted" }, ` (${done}%)`))),
      td("Cost", h("span", { class: "num" }, fmtCost(row.cost_usd))),
      td("Last moved", row.updated_at ? ago(row.updated_at) : "—"),
    ];
  }

  // One block per cell, so a phone's stacked layout can put the column's name beside it.
  const td = (label, ...content) => h("td", { "data-label": label }, h("div", { class: "td" }, ...content));

  function render() {
    const sorted = [...rows.values()].sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || "") || a.job_id.localeCompare(b.job_id));
    let prev = null;
    for (const row of sorted) {
      let tr = trs.get(row.job_id);
      const key = JSON.stringify(row);
      if (!tr) {
        tr = h("tr", { "data-job": row.job_id });
        trs.set(row.job_id, tr);
      }
      if (tr.dataset.key !== key) {
        tr.dataset.key = key;
        tr.replaceChildren(...rowCells(row));
      }
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const [id, tr] of trs) {
      if (!rows.has(id)) {
        tr.remove();
        trs.delete(id);
      }
    }
    total = Math.max(total, rows.size);
    count.textContent = `${total} ${total === 1 ? "job" : "jobs"}${r.status ? ` ${r.status}` : ""}`;
    table.hidden = rows.size === 0;
    empty.hidden = rows.size > 0;
    empty.textContent = r.status ? `No ${r.status} jobs.` : "No jobs yet: they appear here once `mozart run` has started them.";
    more.hidden = !next;
  }

  async function load(cursor) {
    const q = new URLSearchParams({ limit: "50" });
    if (r.status) q.set("status", r.status);
    if (cursor) q.set("cursor", cursor);
    try {
      const res = await api(`api/jobs?${q}`);
      if (stopped) return;
      for (const row of res.jobs) rows.set(row.job_id, row);
      total = res.total;
      next = res.next_cursor;
      render();
    } catch (e) {
      if (!stopped) showMessage(`Could not load the jobs: ${errorText(e)}`);
    }
  }

  const stream = openStream(() => "api/events", {
    job(row) {
      const had = rows.has(row.job_id);
      if (r.status && row.status !== r.status) {
        if (had) {
          rows.delete(row.job_id);
          total = Math.max(0, total - 1);
        }
      } else {
        if (!had) total += 1;
        rows.set(row.job_id, row);
      }
      render();
    },
    job_removed({ job_id: id }) {
      if (rows.delete(id)) total = Math.max(0, total - 1);
      render();
    },
  }, () => load(null));
  load(null);

  return {
    kind: "list",
    unmount() {
      stopped = true;
      stream.close();
    },
  };
}

/** A stacked bar: parts of `total`, each with its class; accessible as one progressbar. */
function bar(parts, total, label) {
  const el = h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": parts[0]?.n ?? 0, "aria-valuetext": label, "aria-label": label });
  for (const p of parts) {
    if (!p.n || !total) continue;
    const seg = h("div", { class: `bar-seg ${p.cls}` });
    seg.style.width = `${Math.min(100, (p.n / total) * 100)}%`;
    el.append(seg);
  }
  return el;
}

// ---------- one job ----------

function mountJob(main, r) {
  const J = {
    id: r.id,
    report: null,
    rows: new Map(),
    total: 0,
    snapshotSeq: 0,
    maxSeq: 0,
    loadCost: 0,
    costPoints: [],
    cancelReleased: new Set(),
    outputs: new Map(),
    concurrencySeen: null,
    cells: new Map(),
    lastAt: null,
    request: null,
    dirty: new Set(),
    panelBatch: r.batch,
    panel: null,
    stream: null,
    stopped: false,
    busy: false,
    timers: new Map(),
  };

  const el = {
    back: h("p", { class: "back" }, h("a", { href: "#/" }, "← All jobs")),
    title: h("h1", { tabindex: "-1" }, J.id),
    badge: h("span"),
    desc: h("p", { class: "muted desc" }),
    note: h("p", { class: "note" }),
    controls: h("div", { class: "controls", role: "group", "aria-label": "Job controls" }),
    progress: h("section", { class: "card progress", "aria-labelledby": "progress-h" }),
    hold: h("section", { class: "card hold", "aria-live": "polite", hidden: true }),
    remote: h("section", { class: "card remote", "aria-labelledby": "remote-h", hidden: true }),
    runners: h("section", { class: "card runners", "aria-labelledby": "runners-h" }),
    grid: h("div", { class: "grid", role: "list", "aria-label": "Batches" }),
    gridNote: h("p", { class: "muted" }),
    panel: h("section", { class: "card panel", id: "batch-panel", hidden: true, "aria-labelledby": "panel-h" }),
    durations: h("figure", { class: "chart" }),
    costChart: h("figure", { class: "chart" }),
    facts: h("section", { class: "card facts", "aria-labelledby": "facts-h" }),
    learning: h("section", { class: "card learning", "aria-labelledby": "learning-h", hidden: true }),
  };
  const buttons = {
    pause: h("button", { type: "button", class: "btn", onclick: () => control("pause") }, "Pause"),
    resume: h("button", { type: "button", class: "btn primary", onclick: () => control("resume") }, "Resume"),
    cancel: h("button", { type: "button", class: "btn danger", onclick: () => control("cancel") }, "Cancel…"),
  };
  el.controls.append(buttons.pause, buttons.resume, buttons.cancel);

  main.append(
    el.back,
    h("div", { class: "job-head" }, h("div", { class: "job-title" }, el.title, el.badge), el.controls),
    el.desc, el.note,
    h("div", { class: "top-cards" }, el.progress, el.hold, el.remote, el.runners),
    h("section", { class: "card batches", "aria-labelledby": "batches-h" },
      h("div", { class: "batches-head" }, h("h2", { id: "batches-h" }, "Batches"), jumpForm()),
      legend(), el.grid, el.gridNote),
    el.panel,
    h("section", { class: "card charts", "aria-labelledby": "charts-h" },
      h("h2", { id: "charts-h" }, "Charts"), h("div", { class: "chart-row" }, el.durations, el.costChart)),
    el.learning,
    el.facts);
  focusHeading(main);

  // Large jobs have thousands of cells: a batch is also one number away.
  function jumpForm() {
    const input = h("input", { type: "number", min: 1, id: "jump-batch", inputmode: "numeric", class: "jump-input", required: true });
    return h("form", { class: "jump", onsubmit: (ev) => {
      ev.preventDefault();
      const n = Number(input.value);
      if (Number.isInteger(n) && n >= 1 && (!J.total || n <= J.total)) location.hash = batchHash(J.id, n);
      else showMessage(`There is no batch ${input.value}: the job has ${J.total} batches.`);
    } }, h("label", { for: "jump-batch" }, "Batch"), input, h("button", { type: "submit", class: "btn small" }, "Open"));
  }

  const later = (key, ms, fn) => {
    if (J.timers.has(key)) return;
    J.timers.set(key, setTimeout(() => {
      J.timers.delete(key);
      if (!J.stopped) fn();
    }, ms));
  };

  // ----- loading -----

  async function loadSnapshot() {
    const report = await api(`api/jobs/${enc(J.id)}/status`);
    const rows = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) q.set("cursor", cursor);
      const page = await api(`api/jobs/${enc(J.id)}/batches?${q}`);
      rows.push(...page.batches);
      cursor = page.next_cursor;
    } while (cursor && rows.length < GRID_MAX && !J.stopped);
    if (J.stopped) return;
    loadStats();
    J.report = report;
    J.total = report.progress.total;
    J.snapshotSeq = Math.max(J.snapshotSeq, report.last_seq);
    J.loadCost = report.cost_usd;
    J.rows = new Map(rows.slice(0, GRID_MAX).map((b) => [b.batch_num, b]));
    renderAll();
  }

  /** The job's outcome statistics and the estimate of its batches left (GET api/jobs/{id}/stats). */
  async function loadStats() {
    let data;
    try {
      data = await api(`api/jobs/${enc(J.id)}/stats`);
    } catch {
      return;
    }
    if (J.stopped) return;
    const s = data.stats;
    el.learning.hidden = s.outcomes === 0 && !data.estimate;
    const pctOf = (x) => (x === null ? "—" : `${(x * 100).toFixed(1)}%`);
    const stat = (k, v, cls) => h("div", { class: `stat ${cls ?? ""}` }, h("dt", null, k), h("dd", null, v));
    const e = data.estimate;
    el.learning.replaceChildren(
      h("h2", { id: "learning-h" }, "Outcomes and estimate"),
      h("dl", { class: "stats" },
        stat("First try", pctOf(s.first_try_rate), "first-try"),
        stat("Finished", String(s.finished)),
        stat("Cost p50 / p90", `${fmtCost(s.cost_usd.p50)} / ${fmtCost(s.cost_usd.p90)}`),
        stat("Per successful item", s.cost_per_successful_item === null ? "—" : fmtCost(s.cost_per_successful_item)),
        stat("Time held", pctOf(s.held.share)),
        e ? stat("Estimate, batches left", `${fmtCost(e.cost_usd.expected)} (${fmtCost(e.cost_usd.low)}–${fmtCost(e.cost_usd.high)})`, "estimate") : null),
      s.failing_validations.length
        ? h("p", { class: "muted" }, "Fails most: ", s.failing_validations.slice(0, 3).map((v) => `${v.description} (${v.failures})`).join("; "))
        : null,
      e ? h("p", { class: "muted" }, `Estimate from ${e.batches_seen} past batches of this prompt template.`) : null);
  }

  async function start() {
    try {
      await loadSnapshot();
    } catch (e) {
      if (J.stopped) return;
      main.replaceChildren(el.back, h("h1", { tabindex: "-1" }, J.id),
        h("p", { class: "empty" }, e instanceof ApiError && e.status === 404 ? "There is no such job on this machine." : `The job could not be loaded: ${errorText(e)}`));
      showMessage(`Could not load job ${J.id}: ${errorText(e)}`);
      return;
    }
    if (J.stopped) return;
    const since = J.report.last_seq <= REPLAY_MAX ? 0 : J.report.last_seq - 5000;
    J.replayFrom = since;
    const handlers = { report: onReport };
    for (const t of JOB_EVENTS) handlers[t] = onEvent;
    J.stream = openStream(() => `api/jobs/${enc(J.id)}/events?since=${J.maxSeq || since}`, handlers, () => later("reload", 50, reload));
    if (J.panelBatch) loadPanel(J.panelBatch, true);
  }

  async function reload() {
    try {
      await loadSnapshot();
      if (J.panelBatch) loadPanel(J.panelBatch);
    } catch (e) {
      showMessage(`Could not refresh job ${J.id}: ${errorText(e)}`);
    }
  }

  async function refreshReport() {
    try {
      const report = await api(`api/jobs/${enc(J.id)}/status`);
      if (!J.stopped) onReport(report);
    } catch (e) {
      showMessage(`Could not refresh job ${J.id}: ${errorText(e)}`);
    }
  }

  // ----- live updates -----

  function onReport(report) {
    if (!report || report.job_id !== J.id) return;
    const prev = J.report;
    J.report = report;
    J.total = report.progress.total;
    renderHeader();
    renderProgress();
    renderHold();
    renderRemote();
    renderRunners();
    renderFacts();
    // Held and cancelled cells depend on the job's hold and status, not only on their batch.
    refreshCells(prev?.status === report.status && prev?.hold?.batch_num === report.hold?.batch_num);
  }

  function onEvent(e) {
    if (typeof e.seq !== "number" || e.seq <= J.maxSeq) return;
    J.maxSeq = e.seq;
    if (e.at) J.lastAt = e.at;
    const live = e.seq > J.snapshotSeq;
    const n = e.batch_num;
    const row = typeof n === "number" ? J.rows.get(n) : undefined;
    switch (e.type) {
      case "job_start":
        J.concurrencySeen = e.concurrency;
        break;
      case "batch_start":
        J.cancelReleased.delete(n);
        if (live && row) Object.assign(row, { status: "in_progress", runner: e.runner, error: null });
        break;
      case "attempt_start":
        J.outputs.set(n, { attempt: e.attempt, text: [], size: 0, whole: true });
        if (live && row) row.attempts = Math.max(row.attempts, e.attempt);
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        break;
      case "output":
        addOutput(e);
        break;
      case "attempt_end":
        if (typeof e.cost_usd === "number" && e.cost_usd > 0) J.costPoints.push({ seq: e.seq, t: Date.parse(e.at), cost: e.cost_usd });
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        // Replayed history draws the cost chart too.
        later("charts", 300, renderCharts);
        break;
      case "batch_complete":
        J.outputs.delete(n);
        if (live && row) Object.assign(row, { status: "completed", duration_ms: e.duration_ms, cost_usd: e.cost_usd, attempts: e.attempts, validation_passed: true, runner: null, error: null });
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        break;
      case "batch_failed":
        if (live && row) Object.assign(row, { status: "failed", attempts: e.attempts, error: e.error?.message ?? null, runner: null });
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        break;
      case "batch_conflict":
        if (live && row) Object.assign(row, { status: "conflict", error: e.message, runner: null });
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        break;
      case "batch_released":
        if (/cancel/i.test(e.reason)) J.cancelReleased.add(n);
        if (live && row) Object.assign(row, { status: "pending", runner: null });
        if (live && J.panelBatch === n) later("panel", 150, () => loadPanel(n));
        break;
      case "rate_limit_hold":
        if (live && J.report) J.report.hold = { until: new Date(e.until).toISOString(), reason: e.reason, batch_num: n };
        break;
      case "hold_end":
        if (live && J.report) J.report.hold = null;
        break;
      case "remote_batch":
        // A Message Batch moved on: its counts replace the report's until the next report comes.
        if (live && J.report) {
          const list = J.report.remote_batches ?? [];
          const known = list.find((b) => b.key === e.key);
          const view = { key: e.key, id: e.id ?? null, status: e.status, requests: e.requests, counts: e.counts ?? null, submitted_at: known?.submitted_at ?? e.at, updated_at: e.at, expires_at: known?.expires_at ?? null, ended_at: known?.ended_at ?? null, error: e.error ?? null };
          J.report.remote_batches = known ? list.map((b) => (b.key === e.key ? { ...b, ...view } : b)) : [...list, view];
          renderRemote();
        }
        break;
      case "control":
        // The runner has seen the request: say so until the job stops.
        if (live) J.request = { request: e.request, by: e.by };
        break;
      case "runner_lost":
      case "runner_left":
        // Batches of a runner that is gone show as pending again; the records say which.
        if (live) later("reload", 400, reload);
        break;
      default:
        break;
    }
    if (!live) return;
    const last = el.progress.querySelector(".last-event time");
    if (last && e.at) {
      last.setAttribute("data-ago", e.at);
      last.setAttribute("datetime", e.at);
      last.title = fmtTime(e.at);
      last.textContent = fmtAgo(e.at);
    }
    if (row) {
      J.dirty.add(n);
      later("cells", 50, () => refreshCells(true));
    }
    if (e.type === "control") renderHeader();
    if (e.type === "rate_limit_hold" || e.type === "hold_end") {
      renderHold();
      refreshCells();
    }
    if (e.type === "batch_complete" || e.type === "batch_failed") later("charts", 300, renderCharts);
    // The stream's report follows each burst; this only covers a server that sent none.
    if (["job_start", "control", "job_paused", "job_cancelled", "job_complete", "job_failed", "batch_complete", "batch_failed"].includes(e.type)) later("report", 1500, () => {
      if (!J.report || J.report.last_seq < J.maxSeq) refreshReport();
    });
  }

  function addOutput(e) {
    let buf = J.outputs.get(e.batch_num);
    if (!buf || buf.attempt !== e.attempt) {
      buf = { attempt: e.attempt, text: [], size: 0, whole: J.replayFrom === 0 };
      J.outputs.set(e.batch_num, buf);
    }
    buf.text.push({ stream: e.stream, text: e.text });
    buf.size += e.text.length;
    while (buf.size > OUTPUT_KEEP && buf.text.length > 1) {
      buf.size -= buf.text.shift().text.length;
      buf.whole = false;
    }
    const p = J.panel;
    if (p && p.n === e.batch_num && p.live && p.liveAttempt === e.attempt) appendLive(p.live, e.stream, e.text);
  }

  // ----- rendering -----

  function renderAll() {
    renderHeader();
    renderProgress();
    renderHold();
    renderRemote();
    renderRunners();
    renderGrid();
    renderCharts();
    renderFacts();
  }

  function renderHeader() {
    const rep = J.report;
    if (!rep) return;
    el.title.textContent = rep.job_name || rep.job_id;
    el.badge.replaceChildren(statusBadge(rep.status));
    el.desc.textContent = rep.description ?? "";
    el.desc.hidden = !rep.description;
    const notes = [];
    if (rep.stopped_by && ["paused", "cancelled"].includes(rep.status)) notes.push(`${rep.status === "paused" ? "Paused" : "Cancelled"} by ${describeRequester(rep.stopped_by)}.`);
    if (rep.status !== "running") J.request = null;
    if (J.request) notes.push(`${J.request.request === "pause" ? "Pausing: running attempts finish, nothing new starts" : "Cancelling: running attempts stop now"} (asked by ${describeRequester(J.request.by)}).`);
    if (rep.error) notes.push(`Error: ${rep.error}`);
    el.note.textContent = notes.join(" ");
    el.note.hidden = notes.length === 0;
    el.note.className = rep.error ? "note err" : "note";
    document.title = `${rep.progress.completed}/${rep.progress.total} ${rep.status} · ${rep.job_name || rep.job_id} — Mozart`;
    renderControls();
  }

  function renderControls() {
    const st = J.report?.status;
    buttons.pause.disabled = J.busy || st !== "running";
    buttons.resume.disabled = J.busy || !st || st === "running" || st === "completed";
    buttons.cancel.disabled = J.busy || !st || st === "completed" || st === "cancelled";
    buttons.pause.title = st === "running" ? "Finish the running attempts, start nothing new" : "Only a running job can be paused";
    buttons.resume.title = st === "running" || st === "completed" ? `A ${st} job has nothing to resume` : "Continue the job (starts mozart resume)";
    buttons.cancel.title = st === "completed" || st === "cancelled" ? `The job is already ${st}` : "Stop the running attempts now";
  }

  function meanDuration() {
    let sum = 0;
    let n = 0;
    for (const b of J.rows.values()) {
      if (b.status === "completed" && typeof b.duration_ms === "number") {
        sum += b.duration_ms;
        n += 1;
      }
    }
    return n ? sum / n : null;
  }

  function etaText() {
    const rep = J.report;
    if (!rep || rep.status !== "running") return null;
    const remaining = rep.progress.total - rep.progress.completed - rep.progress.failed;
    if (remaining <= 0) return "finishing";
    const mean = meanDuration();
    if (mean === null) return "estimating…";
    const conc = Math.max(1, Math.min(rep.concurrency ?? J.concurrencySeen ?? 1, remaining));
    const held = rep.hold ? Math.max(0, Date.parse(rep.hold.until) - Date.now()) : 0;
    return fmtAbout((remaining * mean) / conc + held);
  }

  function renderProgress() {
    const rep = J.report;
    if (!rep) return;
    const p = rep.progress;
    const label = `${p.completed} of ${p.total} batches completed${p.failed ? `, ${p.failed} failed` : ""}${p.conflict ? `, ${p.conflict} not merged` : ""}${p.in_progress ? `, ${p.in_progress} running` : ""}`;
    const eta = etaText();
    const stat = (k, v, cls) => h("div", { class: `stat ${cls ?? ""}` }, h("dt", null, k), h("dd", null, v));
    el.progress.replaceChildren(
      h("h2", { id: "progress-h" }, "Progress"),
      h("p", { class: "big" }, h("span", { class: "done-count" }, String(p.completed)), ` / ${p.total} batches `, h("span", { class: "muted" }, `(${p.percent}%)`)),
      bar([{ n: p.completed, cls: "st-completed" }, { n: p.failed, cls: "st-failed" }, { n: p.conflict ?? 0, cls: "st-conflict" }, { n: p.in_progress, cls: "st-in_progress" }], p.total, label),
      h("dl", { class: "stats" },
        stat("ETA", eta ?? (rep.status === "completed" ? "done" : `— (${rep.status})`), "eta"),
        stat("Cost so far", fmtCost(rep.cost_usd) + (rep.budget ? ` of ${fmtCost(rep.budget.max_cost_usd)}` : ""), "cost"),
        rep.cache_hit_ratio ? stat("Cache hits", `${Math.round(rep.cache_hit_ratio * 100)}%`) : null,
        rep.paused_for?.reason === "budget" ? stat("Paused", "budget reached", "err") : null,
        rep.paused_for?.reason === "low_success" ? stat("Paused", `low first-try success (${Math.round(rep.paused_for.rate * 100)}%)`, "err") : null,
        stat("Running", String(p.in_progress)),
        stat("Failed", String(p.failed), p.failed ? "err" : ""),
        stat("Pending", String(p.pending)),
        stat("Attempts", String(rep.attempts)),
        stat("Last event", ago(J.lastAt ?? rep.timing.updated_at), "last-event"),
        p.damaged ? stat("Damaged", String(p.damaged), "err") : null,
        p.conflict ? stat("Not merged (conflict)", String(p.conflict), "err") : null,
        rep.rate_limit_waits ? stat("Rate-limit waits", String(rep.rate_limit_waits)) : null));
  }

  function renderHold() {
    const hold = J.report?.hold;
    const account = J.report?.account_hold;
    el.hold.hidden = !hold && !account;
    if (!hold && account) {
      // A subscription limit met by this or another job on the same account: nothing of this job starts before its end.
      el.hold.replaceChildren(
        h("h2", null, "Account hold"),
        h("p", { class: "big" }, "Resumes in ", countdown(account.until)),
        h("p", null, h("span", { class: "muted" }, "Reason: "), account.reason),
        h("p", { class: "muted" }, `${account.limit ? `${account.limit} limit` : "Limit"} met by job ${account.met_by === J.id ? "this job" : account.met_by}; until ${fmtTime(account.until)}. No job on this account starts a batch before then.`));
      return;
    }
    if (!hold) {
      el.hold.replaceChildren();
      return;
    }
    el.hold.replaceChildren(
      h("h2", null, "Rate-limit hold"),
      h("p", { class: "big" }, "Resumes in ", countdown(hold.until)),
      h("p", null, h("span", { class: "muted" }, "Reason: "), hold.reason),
      h("p", { class: "muted" }, "Set by ", h("a", { href: batchHash(J.id, hold.batch_num) }, `batch ${hold.batch_num}`), `; until ${fmtTime(hold.until)}. Every runner waits; nothing new starts.`));
  }

  /** Message Batches (anthropic_batch) in flight and the latest that ended, with their counts. */
  function renderRemote() {
    const list = J.report?.remote_batches ?? [];
    el.remote.hidden = !list.length;
    if (!list.length) {
      el.remote.replaceChildren();
      return;
    }
    el.remote.replaceChildren(
      h("h2", { id: "remote-h" }, "Message Batches"),
      h("ul", { class: "runner-list" }, list.map((b) => {
        const c = b.counts;
        const done = c ? c.succeeded + c.errored + c.canceled + c.expired : 0;
        const detail = c ? `${done} of ${b.requests} done${c.errored ? `, ${c.errored} errored` : ""}${c.expired ? `, ${c.expired} expired` : ""}${c.canceled ? `, ${c.canceled} canceled` : ""}` : `${b.requests} requests`;
        return h("li", null,
          h("span", { class: "runner-id" }, b.id ?? b.key),
          h("span", { class: `badge ${b.status === "ended" ? "st-completed" : b.status === "failed" ? "st-failed" : "st-in_progress"}` }, b.status),
          h("span", { class: "muted" }, ` ${detail}`),
          b.status === "in_progress" && c ? bar([{ n: done, cls: "st-completed" }], b.requests, detail) : null,
          b.error ? h("span", { class: "muted" }, ` (${b.error})`) : null);
      })));
  }

  function renderRunners() {
    const runners = J.report?.runners ?? [];
    el.runners.replaceChildren(h("h2", { id: "runners-h" }, "Runners"));
    if (!runners.length) {
      el.runners.append(h("p", { class: "muted" }, "No runner holds this job now."));
      return;
    }
    el.runners.append(h("ul", { class: "runner-list" }, runners.map((rn) =>
      h("li", null,
        h("span", { class: "runner-id" }, `${rn.pid}@${rn.host}`),
        rn.alive ? null : h("span", { class: "badge st-failed" }, "not answering"),
        h("span", { class: "muted" }, " started ", ago(rn.started_at), ", last heartbeat ", ago(rn.renewed_at))))));
  }

  function renderFacts() {
    const rep = J.report;
    if (!rep) return;
    const t = rep.timing;
    const row = (k, v) => [h("dt", null, k), h("dd", null, v)];
    el.facts.replaceChildren(h("h2", { id: "facts-h" }, "Details"), h("dl", { class: "facts-list" },
      row("Job id", rep.job_id),
      row("Job file", rep.config_path),
      row("Workspace", rep.workspace),
      row("State", `${rep.state.backend} at ${rep.state.location}`),
      row("Created", fmtTime(t.created_at)),
      t.started_at ? row("Started", [fmtTime(t.started_at), " (", ago(t.started_at), ")"]) : null,
      row("Last moved", [fmtTime(t.updated_at), " (", ago(t.updated_at), ")"]),
      t.completed_at ? row("Completed", fmtTime(t.completed_at)) : null,
      row("Concurrency", String(rep.concurrency ?? J.concurrencySeen ?? "—")),
      row("Events", String(rep.last_seq))));
  }

  function displayStatus(b) {
    const hold = J.report?.hold;
    if (hold && hold.batch_num === b.batch_num && b.status !== "completed") return "held";
    if (b.status === "pending" && J.report?.status === "cancelled" && J.cancelReleased.has(b.batch_num)) return "cancelled";
    return b.status;
  }

  function cellLabel(b, st) {
    const items = b.start_item === b.end_item ? `item ${b.start_item}` : `items ${b.start_item}–${b.end_item}`;
    const extra = [];
    if (b.attempts) extra.push(`${b.attempts} attempt${b.attempts === 1 ? "" : "s"}`);
    if (typeof b.duration_ms === "number" && st === "completed") extra.push(fmtDuration(b.duration_ms));
    if (b.error && st === "failed") extra.push(b.error);
    return `Batch ${b.batch_num} (${items}): ${BATCH_LABEL[st] ?? st}${extra.length ? `, ${extra.join(", ")}` : ""}`;
  }

  function paintCell(cell, b) {
    const st = displayStatus(b);
    const label = cellLabel(b, st);
    if (cell.dataset.label === label && cell.dataset.st === st) return;
    cell.dataset.label = label;
    cell.dataset.st = st;
    cell.className = `cell st-${st}`;
    cell.title = label;
    cell.setAttribute("aria-label", label);
  }

  function renderGrid() {
    el.grid.replaceChildren();
    el.grid.classList.toggle("dense", J.rows.size > 400);
    J.cells.clear();
    const sorted = [...J.rows.values()].sort((a, b) => a.batch_num - b.batch_num);
    for (const b of sorted) {
      const cell = h("a", { href: batchHash(J.id, b.batch_num), role: "listitem", "data-batch": b.batch_num });
      if (J.panelBatch === b.batch_num) cell.setAttribute("aria-current", "true");
      paintCell(cell, b);
      J.cells.set(b.batch_num, cell);
      el.grid.append(cell);
    }
    el.gridNote.textContent = J.total > J.rows.size ? `Showing the first ${J.rows.size} of ${J.total} batches.` : "";
    el.gridNote.hidden = !el.gridNote.textContent;
  }

  /** Repaints the cells events touched (`J.dirty`), or every cell when the hold, status or selection changed. */
  function refreshCells(onlyDirty = false) {
    const which = onlyDirty ? [...J.dirty] : [...J.cells.keys()];
    J.dirty.clear();
    for (const n of which) {
      const cell = J.cells.get(n);
      const b = J.rows.get(n);
      if (!cell || !b) continue;
      paintCell(cell, b);
      if (J.panelBatch === n) cell.setAttribute("aria-current", "true");
      else cell.removeAttribute("aria-current");
    }
    renderProgressEta();
  }

  function renderProgressEta() {
    const dd = el.progress.querySelector(".eta dd");
    if (!dd || !J.report) return;
    const eta = etaText();
    dd.textContent = eta ?? (J.report.status === "completed" ? "done" : `— (${J.report.status})`);
  }

  function renderCharts() {
    durationChart(el.durations, [...J.rows.values()].sort((a, b) => a.batch_num - b.batch_num), J.total);
    const before = J.costPoints.filter((p) => p.seq <= J.snapshotSeq).reduce((sum, p) => sum + p.cost, 0);
    const base = Math.max(0, J.loadCost - before);
    const rep = J.report;
    const startT = Date.parse(rep?.timing.started_at ?? rep?.timing.created_at ?? "") || undefined;
    const endT = rep?.status === "running" ? Date.now() : Date.parse(rep?.timing.completed_at ?? rep?.timing.updated_at ?? "") || undefined;
    costChart(el.costChart, J.costPoints, base < 1e-9 ? 0 : base, startT, endT);
  }

  // ----- the batch panel -----

  async function loadPanel(n, scroll = false) {
    const seqAtAsk = J.maxSeq;
    let data;
    try {
      data = await api(`api/jobs/${enc(J.id)}/batches/${n}`);
    } catch (e) {
      if (J.stopped || J.panelBatch !== n) return;
      el.panel.hidden = false;
      el.panel.replaceChildren(panelHead(n, null), h("p", { class: "err" }, `Could not load batch ${n}: ${errorText(e)}`));
      if (!(e instanceof ApiError && e.status === 404)) showMessage(`Could not load batch ${n}: ${errorText(e)}`);
      return;
    }
    if (J.stopped || J.panelBatch !== n) return;
    const known = J.rows.get(n);
    if (known && data.batch) {
      // The batch record is newer than anything the stream has replayed so far.
      if (J.maxSeq <= seqAtAsk || known.status === data.batch.status) Object.assign(known, data.batch);
      const cell = J.cells.get(n);
      if (cell) paintCell(cell, known);
    }
    renderPanel(n, data, scroll);
  }

  function panelHead(n, batch) {
    return h("div", { class: "panel-head" },
      h("h2", { id: "panel-h", tabindex: "-1" }, `Batch ${n}`, batch ? " " : null, batch ? statusBadge(displayStatus(batch) === "in_progress" ? "in_progress" : displayStatus(batch), BATCH_LABEL[displayStatus(batch)]) : null),
      h("a", { href: jobHash(J.id), class: "btn small", "aria-label": `Close batch ${n}` }, "Close"));
  }

  function renderPanel(n, data, scroll) {
    const prev = J.panel && J.panel.n === n ? J.panel : null;
    const open = prev?.open ?? new Set(["output-live"]);
    const b = data.batch;
    const attempts = [...(data.attempts ?? [])].sort((x, y) => x.attempt - y.attempt);
    const row = (k, v) => (v === null || v === undefined || v === "" ? null : [h("dt", null, k), h("dd", null, v)]);
    const details = (key, summary, ...body) => {
      const d = h("details", { open: open.has(key) }, h("summary", null, summary), ...body);
      d.addEventListener("toggle", () => (d.open ? open.add(key) : open.delete(key)));
      return d;
    };
    const panel = { n, open, live: null, liveAttempt: null };

    const parts = [panelHead(n, b)];
    parts.push(h("dl", { class: "facts-list" },
      row("Items", b.start_item === b.end_item ? String(b.start_item) : `${b.start_item}–${b.end_item}`),
      row("Attempts", `${b.attempts}${b.completion_attempts ? ` (${b.completion_attempts} in completion mode)` : ""}`),
      row("Cost", fmtCost(b.cost_usd)),
      row("Duration", b.duration_ms === null ? null : fmtDuration(b.duration_ms)),
      row("Validations", b.validation_passed === null ? null : b.validation_passed ? "all passed" : "not all passed"),
      row("Runner", b.runner),
      row("Rate-limit waits", b.rate_limit_waits ? String(b.rate_limit_waits) : null),
      row("Error", b.error ? `${b.error}${b.error_category ? ` (${b.error_category})` : ""}` : null),
      row("Damaged record", b.damaged),
      row("Permission denials", b.permission_denials?.length ? b.permission_denials.join(", ") : null)));
    if (b.validations?.length) parts.push(h("h3", null, "Validations"), validationList(b.validations));

    const last = attempts[attempts.length - 1];
    const running = b.status === "in_progress" || last?.decision === "running";
    if (running && last) {
      const buf = J.outputs.get(n);
      const pre = h("pre", { class: "output live", tabindex: "0", "aria-label": `Live output of batch ${n}` });
      if (buf && buf.attempt === last.attempt && buf.whole) {
        for (const c of buf.text) appendLive(pre, c.stream, c.text);
      } else {
        if (last.output?.stdout) appendLive(pre, "stdout", last.output.stdout);
        if (last.output?.stderr) appendLive(pre, "stderr", last.output.stderr);
        // From here on the stream's chunks follow what the server had.
        J.outputs.set(n, { attempt: last.attempt, text: [], size: 0, whole: false });
      }
      panel.live = pre;
      panel.liveAttempt = last.attempt;
      parts.push(h("h3", null, `Live output (attempt ${last.attempt})`), pre);
    }

    parts.push(h("h3", null, "Attempts"));
    if (!attempts.length) parts.push(h("p", { class: "muted" }, "No attempts yet."));
    const list = h("ol", { class: "attempts" });
    for (const a of attempts) {
      const outcome = [
        a.exit_code !== null && a.exit_code !== undefined ? `exit ${a.exit_code}` : null,
        a.signal ? `signal ${a.signal}` : null,
        a.timed_out ? "timed out" : null,
        a.interrupted ? "interrupted" : null,
      ].filter(Boolean).join(", ");
      const val = a.validation_passed === true ? "passed" : a.validation_passed === false ? "failed" : null;
      const out = a.output ?? { stdout: a.stdout ?? "", stderr: a.stderr ?? "", truncated: false };
      list.append(h("li", { class: "attempt" },
        h("div", { class: "attempt-head" },
          h("strong", null, `Attempt ${a.attempt}`), " ", h("span", { class: "chip" }, a.mode),
          " ", h("span", { class: `badge dec-${a.decision}` }, a.decision.replaceAll("_", " ")),
          a.reason ? h("span", { class: "muted reason" }, ` ${a.reason}`) : null),
        h("dl", { class: "facts-list" },
          row("Exit", outcome || (a.decision === "running" ? "running" : "—")),
          row("Duration", a.decision === "running" ? null : fmtDuration(a.duration_ms)),
          row("Cost", typeof a.cost_usd === "number" ? fmtCost(a.cost_usd) : null),
          row("Validations", val),
          row("Started", a.started_at ? [fmtTime(a.started_at), " (", ago(a.started_at), ")"] : null),
          row("Runner", a.runner),
          row("Working directory", a.cwd)),
        a.argv?.length ? h("div", { class: "argv" }, h("span", { class: "muted" }, "Command "), h("code", null, a.argv.map(shellWord).join(" "))) : null,
        a.prompt !== null && a.prompt !== undefined ? details(`prompt-${a.attempt}`, "Prompt", h("pre", { class: "output", tabindex: "0" }, a.prompt)) : null,
        out.stdout || out.stderr ? details(`output-${a.attempt}`, `Output${out.truncated ? " (tail)" : ""}`,
          out.stdout ? h("pre", { class: "output", tabindex: "0", "aria-label": "stdout" }, out.stdout) : null,
          out.stderr ? [h("p", { class: "muted" }, "stderr"), h("pre", { class: "output stderr", tabindex: "0", "aria-label": "stderr" }, out.stderr)] : null) : null));
    }
    if (attempts.length) parts.push(list);

    const live = prev?.live;
    const stick = live ? live.scrollTop + live.clientHeight >= live.scrollHeight - 8 : true;
    el.panel.replaceChildren(...parts);
    el.panel.hidden = false;
    J.panel = panel;
    if (panel.live && stick) panel.live.scrollTop = panel.live.scrollHeight;
    if (scroll) {
      el.panel.scrollIntoView({ block: "nearest" });
      if (navigated) $("#panel-h", el.panel)?.focus({ preventScroll: true });
    }
  }

  function showBatch(n) {
    const was = J.panelBatch;
    J.panelBatch = n;
    refreshCells();
    if (!n) {
      // Closing the panel from inside it puts the keyboard back on the batch it showed.
      const inside = el.panel.contains(document.activeElement);
      J.panel = null;
      el.panel.hidden = true;
      el.panel.replaceChildren();
      if (inside || document.activeElement === document.body) J.cells.get(was)?.focus();
      return;
    }
    if (!J.panel || J.panel.n !== n) {
      el.panel.hidden = false;
      el.panel.replaceChildren(panelHead(n, null), h("p", { class: "muted" }, "Loading…"));
      J.panel = null;
    }
    if (J.report) loadPanel(n, true);
  }

  // ----- controls -----

  async function control(action) {
    if (action === "cancel" && !(await confirmCancel(J.report?.job_name ?? J.id))) return;
    J.busy = true;
    renderControls();
    try {
      const res = await post(`api/jobs/${enc(J.id)}/${action}`);
      if (action === "resume") {
        showMessage(`Resuming: started mozart resume${res?.pid ? ` (pid ${res.pid})` : ""}.`, "info");
        if (J.stream && !J.stream.open) J.stream.restart();
      } else {
        const to = res?.delivered_to;
        showMessage(`${action === "pause" ? "Pause" : "Cancel"} requested${typeof to === "number" ? `; delivered to ${to} runner${to === 1 ? "" : "s"}` : ""}.`, "info");
      }
    } catch (e) {
      showMessage(`Could not ${action} the job: ${errorText(e)}`);
    } finally {
      J.busy = false;
      renderControls();
    }
  }

  el.panel.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && J.panelBatch) location.hash = jobHash(J.id);
  });

  const onResize = () => later("resize", 150, renderCharts);
  window.addEventListener("resize", onResize);
  start();

  return {
    kind: "job",
    id: J.id,
    showBatch,
    unmount() {
      J.stopped = true;
      J.stream?.close();
      for (const t of J.timers.values()) clearTimeout(t);
      window.removeEventListener("resize", onResize);
      document.title = "Mozart dashboard";
    },
  };
}

function appendLive(pre, stream, text) {
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  const last = pre.lastChild;
  if (last && last.nodeType === 1 && last.dataset.stream === stream) last.append(text);
  else {
    const span = h("span", { class: stream === "stderr" ? "stderr" : null, "data-stream": stream }, text);
    pre.append(span);
  }
  // Keep the live view bounded: drop the oldest text past the cap.
  let size = pre.textContent.length;
  while (size > OUTPUT_KEEP && pre.firstChild && pre.firstChild !== pre.lastChild) {
    size -= pre.firstChild.textContent.length;
    pre.firstChild.remove();
  }
  if (stick) pre.scrollTop = pre.scrollHeight;
}

function validationList(vals) {
  return h("ul", { class: "validations" }, vals.map((v) =>
    h("li", { class: v.passed ? "ok" : "bad" },
      h("span", { class: `badge ${v.passed ? "st-completed" : "st-failed"}` }, v.passed ? "passed" : "failed"), " ",
      v.description || v.type, " ",
      h("span", { class: "muted" }, `${v.type}${v.target ? `: ${v.target}` : ""}`),
      v.detail ? h("div", { class: "muted detail" }, v.detail) : null)));
}

function legend() {
  return h("ul", { class: "legend", "aria-label": "Batch colours" }, Object.entries(BATCH_LABEL).map(([st, label]) =>
    h("li", null, h("span", { class: `cell st-${st}`, "aria-hidden": "true" }), label)));
}

// ---------- the cancel confirmation ----------

function confirmCancel(name) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = `Cancel ${name}?`;
  return new Promise((resolve) => {
    dlg.returnValue = "";
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"), { once: true });
    dlg.showModal();
  });
}

// ---------- charts (hand-drawn SVG) ----------

function chartBox(fig) {
  return Math.max(260, Math.min(900, Math.floor(fig.clientWidth || fig.parentElement?.clientWidth || 560)));
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function durationChart(fig, rows, total) {
  const W = chartBox(fig);
  const H = 170;
  const L = 52;
  const B = 22;
  const T = 10;
  const R = 8;
  const timed = rows.filter((b) => typeof b.duration_ms === "number" && (b.status === "completed" || b.status === "failed"));
  const caption = h("figcaption", null, "Batch durations");
  if (!timed.length) {
    fig.replaceChildren(caption, h("p", { class: "muted chart-empty" }, "No batch has finished yet."));
    return;
  }
  const n = rows.length;
  const slots = Math.min(n, Math.max(1, Math.floor((W - L - R) / 3)), 400);
  const per = Math.ceil(n / slots);
  const buckets = [];
  for (let i = 0; i < n; i += per) {
    const part = rows.slice(i, i + per);
    const withTime = part.filter((b) => typeof b.duration_ms === "number" && (b.status === "completed" || b.status === "failed"));
    buckets.push({
      first: part[0].batch_num,
      last: part[part.length - 1].batch_num,
      ms: withTime.length ? Math.max(...withTime.map((b) => b.duration_ms)) : null,
      failed: withTime.some((b) => b.status === "failed"),
    });
  }
  const max = niceMax(Math.max(...timed.map((b) => b.duration_ms)));
  const mean = timed.reduce((sum, b) => sum + b.duration_ms, 0) / timed.length;
  const pw = W - L - R;
  const ph = H - T - B;
  const bw = pw / buckets.length;
  const y = (v) => T + ph - (v / max) * ph;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `Batch durations: ${timed.length} of ${total} batches finished; longest ${fmtDuration(Math.max(...timed.map((b) => b.duration_ms)))}, mean ${fmtDuration(mean)}` });
  svg.append(
    s("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }),
    s("line", { x1: L, x2: W - R, y1: y(max / 2), y2: y(max / 2), class: "gridline" }),
    s("line", { x1: L, x2: W - R, y1: y(max), y2: y(max), class: "gridline" }),
    s("text", { x: L - 6, y: y(0) + 4, class: "tick end" }, "0"),
    s("text", { x: L - 6, y: y(max / 2) + 4, class: "tick end" }, fmtDuration(max / 2)),
    s("text", { x: L - 6, y: y(max) + 4, class: "tick end" }, fmtDuration(max)),
    s("text", { x: L, y: H - 6, class: "tick" }, `batch ${rows[0].batch_num}`),
    s("text", { x: W - R, y: H - 6, class: "tick end" }, `${rows[n - 1].batch_num}`));
  buckets.forEach((bk, i) => {
    if (bk.ms === null) return;
    const top = y(bk.ms);
    const label = bk.first === bk.last ? `Batch ${bk.first}: ${fmtDuration(bk.ms)}${bk.failed ? " (failed)" : ""}` : `Batches ${bk.first}–${bk.last}: up to ${fmtDuration(bk.ms)}${bk.failed ? " (some failed)" : ""}`;
    svg.append(s("rect", { x: L + i * bw + (bw > 4 ? 1 : 0), y: Math.min(top, y(0) - 1), width: Math.max(1, bw - (bw > 4 ? 2 : 0)), height: Math.max(1, y(0) - top), class: bk.failed ? "bar-failed" : "bar-ok" }, s("title", null, label)));
  });
  svg.append(s("line", { x1: L, x2: W - R, y1: y(mean), y2: y(mean), class: "meanline" }, s("title", null, `mean ${fmtDuration(mean)}`)));
  fig.replaceChildren(caption, svg, h("p", { class: "muted chart-note" }, `${timed.length} finished · mean ${fmtDuration(mean)} (dashed line)${per > 1 ? ` · each bar is the longest of ${per} batches` : ""}`));
}

function costChart(fig, points, base, startT, endT) {
  const W = chartBox(fig);
  const H = 170;
  const L = 60;
  const B = 22;
  const T = 10;
  const R = 10;
  const caption = h("figcaption", null, "Cumulative cost");
  const sorted = [...points].sort((a, b) => a.t - b.t);
  if (!sorted.length) {
    fig.replaceChildren(caption, h("p", { class: "muted chart-empty" }, base > 0 ? `${fmtCost(base)} so far; no cost recorded in the events shown.` : "No cost recorded yet."));
    return;
  }
  const t0 = Math.min(startT ?? sorted[0].t, sorted[0].t);
  const t1 = Math.max(endT ?? sorted[sorted.length - 1].t, sorted[sorted.length - 1].t, t0 + 1000);
  let cum = base;
  const series = sorted.map((p) => ({ t: p.t, v: (cum += p.cost) }));
  const max = niceMax(cum);
  const pw = W - L - R;
  const ph = H - T - B;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => T + ph - (v / max) * ph;
  let d = `M${x(t0).toFixed(1)},${y(base).toFixed(1)}`;
  for (const p of series) d += ` H${x(p.t).toFixed(1)} V${y(p.v).toFixed(1)}`;
  d += ` H${x(t1).toFixed(1)}`;
  const area = `${d} V${y(0).toFixed(1)} H${x(t0).toFixed(1)} Z`;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `Cumulative cost: ${fmtCost(cum)} over ${fmtDuration(t1 - t0)}` });
  svg.append(
    s("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }),
    s("line", { x1: L, x2: W - R, y1: y(max), y2: y(max), class: "gridline" }),
    s("line", { x1: L, x2: W - R, y1: y(max / 2), y2: y(max / 2), class: "gridline" }),
    s("text", { x: L - 6, y: y(0) + 4, class: "tick end" }, "$0"),
    s("text", { x: L - 6, y: y(max / 2) + 4, class: "tick end" }, fmtCost(max / 2)),
    s("text", { x: L - 6, y: y(max) + 4, class: "tick end" }, fmtCost(max)),
    s("text", { x: L, y: H - 6, class: "tick" }, fmtClock(t0)),
    s("text", { x: W - R, y: H - 6, class: "tick end" }, fmtClock(t1)),
    s("path", { d: area, class: "area" }),
    s("path", { d, class: "line" }));
  for (const p of series) svg.append(s("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, class: "dot" }, s("title", null, `${fmtClock(p.t)}: ${fmtCost(p.v)}`)));
  fig.replaceChildren(caption, svg, h("p", { class: "muted chart-note" }, `${fmtCost(cum)} in total${base > 0 ? ` (${fmtCost(base)} before the events shown)` : ""}`));
}

// ---------- start ----------

window.addEventListener("hashchange", () => {
  navigated = true;
  route();
});
setInterval(tick, 1000);
route();
