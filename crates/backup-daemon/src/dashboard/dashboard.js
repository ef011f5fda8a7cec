// backup-daemon dashboard: plain script, no build step, compiled into the binary.
// The token is asked once and kept in sessionStorage (this tab only); without it, nothing
// of the data is fetched or shown. A `#token=...` fragment is taken (and removed from the
// address bar) for scripted opening, e.g. a headless browser in the tests.
"use strict";

const KEY = "backup-daemon-token";
const REFRESH_MS = 30000;
const $ = (id) => document.getElementById(id);
let refreshTimer = null;
let feedController = null;

function token() { return sessionStorage.getItem(KEY); }

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin("The token was refused.");
    throw new Error("unauthorized");
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(json.error || response.status + " " + response.statusText);
  return json;
}

// ---- formatting

function bytes(n) {
  if (n == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function pct(ratio) { return (100 * ratio).toFixed(1) + "%"; }

function duration(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return Math.round(s) + "s";
  if (s < 5400) return Math.round(s / 60) + "m";
  if (s < 172800) return (s / 3600).toFixed(1) + "h";
  return (s / 86400).toFixed(1) + "d";
}

function parseTime(value) {
  if (!value) return null;
  // Backup ids: 20261125T230102.123Z.
  const id = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\.\d+)?Z$/.exec(value);
  if (id) return Date.parse(`${id[1]}-${id[2]}-${id[3]}T${id[4]}:${id[5]}:${id[6]}${id[7] || ""}Z`);
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

function ago(value) {
  const t = parseTime(value);
  return t == null ? "never" : duration((Date.now() - t) / 1000) + " ago";
}

function until(value) {
  const t = parseTime(value);
  return t == null ? "not planned" : "in " + duration((t - Date.now()) / 1000);
}

// ---- plots

function sparkline(points, max, threshold) {
  if (!points.length) return '<svg viewBox="0 0 100 40"></svg>';
  const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
  const span = Math.max(t1 - t0, 1);
  const top = Math.max(max, threshold || 0) || 1;
  const xy = (t, v) => `${(100 * (t - t0) / span).toFixed(1)},${(38 - 36 * v / top).toFixed(1)}`;
  const line = points.length === 1
    ? `${xy(t0, points[0][1])} 100,${xy(t0, points[0][1]).split(",")[1]}`
    : points.map(([t, v]) => xy(t, v)).join(" ");
  const limit = threshold == null ? "" :
    `<line class="threshold" x1="0" x2="100" y1="${38 - 36 * threshold / top}" y2="${38 - 36 * threshold / top}"/>`;
  return `<svg viewBox="0 0 100 40" preserveAspectRatio="none">${limit}<polyline points="${line}"/></svg>`;
}

// ---- rendering

// The operations running on table `t` (from `operations` in /health), each a bar of its bytes.
function operationLines(t, health) {
  return (health.operations || []).filter((op) => op.table === t.table).map((op) => {
    const share = op.bytes_total ? Math.min(100, 100 * op.bytes_done / op.bytes_total) : 0;
    const total = op.bytes_total ? (op.total_estimated ? "~" : "") + bytes(op.bytes_total) : "?";
    return `<dt>${esc(op.kind)} running</dt><dd class="operation">${esc(op.phase)}, ${bytes(op.bytes_done)} of ${total}
      <div class="bar"><span style="width:${share}%"></span></div></dd>`;
  }).join("");
}

function card(t, health, samples, remote) {
  const threshold = samples.threshold;
  const interval = samples.backup_interval_seconds;
  const serving = ["ok", "compacting"].includes(t.status);
  const backupAt = t.last_backup && t.last_backup.manifest ? t.last_backup.manifest.created_at : null;
  const backupAge = backupAt ? (Date.now() - parseTime(backupAt)) / 1000 : null;
  const stale = backupAge == null || backupAge > 2 * interval;
  const series = samples.tables[t.table] || [];
  const maxBytes = Math.max(1, ...series.map((p) => p[1]));
  const fragOver = t.fragmentation_ratio > threshold;
  const last = t.last_result;
  const lastCompaction = t.last_compacted_at
    ? `${ago(t.last_compacted_at)}` : "never";
  const lastOutcome = last ? ` (${esc(last.status)}${last.status === "failed" ? ": " + esc(last.reason || "") : ""})` : "";
  let remoteLine = "no off-site backups ([remote] not set)";
  if (remote) {
    const r = (remote.tables || []).find((x) => x.table === t.table);
    remoteLine = r && r.newest ? `${esc(r.newest)}, ${ago(r.newest)}` : "none yet";
  }
  const classes = ["card", serving ? "" : "bad", stale ? "stale" : ""].join(" ");
  return `<article class="${classes}" data-table="${esc(t.table)}">
  <h3>${esc(t.table)} <span class="state">${esc(t.status)}</span></h3>
  ${t.status_detail ? `<div class="error">${esc(t.status_detail)}</div>` : ""}
  <dl>
    ${operationLines(t, health)}
    <dt>file size</dt><dd class="file-size">${bytes(t.file_bytes)}</dd>
    <dt>records</dt><dd class="records">${t.records.toLocaleString("en")}</dd>
    <dt>fragmentation</dt><dd class="fragmentation ${fragOver ? "warn" : ""}">${pct(t.fragmentation_ratio)} of threshold ${pct(threshold)}
      <div class="bar"><span class="${fragOver ? "over" : ""}" style="width:${Math.min(100, 100 * t.fragmentation_ratio)}%"></span><i style="left:${100 * threshold}%"></i></div></dd>
    <dt>last compaction</dt><dd class="last-compaction ${last && last.status === "failed" ? "error" : ""}">${lastCompaction}${lastOutcome}</dd>
    <dt>next compaction</dt><dd class="next-compaction">${until(health.next_compaction)}</dd>
    <dt>local backup</dt><dd class="local-backup ${stale ? "warn" : ""}">${backupAt ? `${esc(t.last_backup.id)}, ${ago(backupAt)}` : "none"}${stale && backupAt ? " (stale)" : ""}</dd>
    <dt>off-site backup</dt><dd class="remote-backup">${remoteLine}</dd>
  </dl>
  <div class="plots">
    <figure>${sparkline(series.map((p) => [p[0], p[1]]), maxBytes, null)}<figcaption>file size, last ${duration(series.length ? series[series.length - 1][0] - series[0][0] : 0)}</figcaption></figure>
    <figure>${sparkline(series.map((p) => [p[0], p[2]]), Math.max(...series.map((p) => p[2]), 0.01), threshold)}<figcaption>fragmentation vs threshold</figcaption></figure>
  </div>
  <div class="actions">
    <button data-action="compact">compact</button>
    <button data-action="backup">backup</button>
    <button data-action="verify">verify</button>
    <button data-action="restore">restore</button>
  </div>
  <div class="result${lastAction[t.table] && lastAction[t.table].error ? " error" : ""}">${esc(lastAction[t.table] ? lastAction[t.table].text : "")}</div>
</article>`;
}

function renderSummary(health, samples) {
  const bad = health.tables.filter((t) => !["ok", "compacting"].includes(t.status));
  const stale = health.tables.filter((t) => {
    const at = t.last_backup && t.last_backup.manifest ? parseTime(t.last_backup.manifest.created_at) : null;
    return at == null || (Date.now() - at) / 1000 > 2 * samples.backup_interval_seconds;
  });
  $("summary").innerHTML = `${health.tables.length} tables · ` +
    (bad.length ? `<span class="bad">${bad.length} failing: ${bad.map((t) => `${esc(t.table)} (${esc(t.status)})`).join(", ")}</span>` : "all serving") +
    ` · ` + (stale.length ? `<span class="bad">${stale.length} without a recent backup</span>` : "backups fresh") +
    ` · next compaction ${until(health.next_compaction)}`;
}

function renderHistory(runs) {
  $("history").tBodies[0].innerHTML = runs.slice(-20).reverse().map((run) => {
    const count = (s) => run.results.filter((r) => r.status === s).length;
    const failed = count("failed");
    return `<tr class="${failed ? "failed" : ""}"><td>${esc(run.started_at)} (${ago(run.started_at)})</td><td>${esc(run.trigger)}</td>` +
      `<td>${count("compacted")}</td><td>${count("skipped")}</td><td>${failed}</td><td>${duration(run.duration_seconds)}</td></tr>`;
  }).join("");
}

function renderBackups(backups) {
  $("backups").tBodies[0].innerHTML = backups.map((b) => {
    const m = b.manifest || {};
    return `<tr><td>${esc(b.table)}</td><td>${esc(b.id)}</td><td>${ago(m.created_at || b.id)}</td>` +
      `<td>${bytes(m.bytes)}</td><td>${m.records ?? "?"}</td><td>${esc(b.state)}</td></tr>`;
  }).join("");
}

// While an operation runs, the cards are refreshed every second for its progress bar.
let operationsTimer = null;

async function refresh() {
  try {
    const [health, samples, backups] = await Promise.all([
      api("GET", "/health"), api("GET", "/dashboard/samples"), api("GET", "/backups"),
    ]);
    renderSummary(health, samples);
    $("cards").innerHTML = health.tables.map((t) => card(t, health, samples, health.remote)).join("");
    renderHistory(health.history || []);
    renderBackups(backups);
    clearTimeout(operationsTimer);
    if ((health.operations || []).length) operationsTimer = setTimeout(refresh, 1000);
  } catch (e) {
    if (e.message !== "unauthorized") $("summary").innerHTML = `<span class="bad">${esc(e.message)}</span>`;
  }
}

// ---- actions

const ACTIONS = {
  compact: (t) => ["POST", `/compact/${t}?force=true`, "Compact %s now (forced)?"],
  backup: (t) => ["POST", `/backup?table=${t}`, "Back up %s now?"],
  verify: () => ["GET", "/backups?verify=true", "Fully verify the backups (every table; reads every backup file)?"],
  restore: (t) => ["POST", `/restore/${t}`, "Restore %s from its newest verified backup? Writes since that backup are replaced (the current file goes to quarantine)."],
};

function describe(action, table, reply) {
  if (action === "compact") {
    const r = (reply.results || []).find((x) => x.table === table) || {};
    return `${r.status || "done"}${r.reason ? ": " + r.reason : ""}` +
      (r.bytes_before != null ? ` (${bytes(r.bytes_before)} → ${bytes(r.bytes_after)})` : "");
  }
  if (action === "backup") {
    const f = (reply.failures || []).find((x) => x.table === table);
    return f ? "failed: " + f.error : "backed up: " + ((reply.backups || [])[0] || {}).id;
  }
  if (action === "verify") {
    const mine = reply.filter((b) => b.table === table);
    return mine.length ? mine.map((b) => `${b.id}: ${b.state}`).join("\n") : "no backups";
  }
  return `${reply.outcome}${reply.backup_id ? " from " + reply.backup_id : ""}${reply.error ? ": " + reply.error : ""}`;
}

// The last action's outcome per table, kept apart from the cards: every refresh (the timer's,
// an event's) re-renders them, and the outcome must survive whichever comes last.
const lastAction = {};

function showAction(table, text, error) {
  lastAction[table] = { text, error };
  const result = document.querySelector(`.card[data-table="${table}"] .result`);
  if (result) {
    result.className = "result" + (error ? " error" : "");
    result.textContent = text;
  }
}

async function act(button) {
  const cardEl = button.closest(".card");
  const table = cardEl.dataset.table, action = button.dataset.action;
  const [method, path, question] = ACTIONS[action](table);
  if (!window.confirm(question.replace("%s", table))) return;
  showAction(table, action + "…", false);
  // The operation's bar, once it is listed (the request below waits for its end).
  setTimeout(refresh, 500);
  try {
    const text = describe(action, table, await api(method, path));
    showAction(table, `${action}: ${text}`, false);
    await refresh();
  } catch (e) {
    showAction(table, `${action} failed: ${e.message}`, true);
  }
}

// ---- live feed over GET /events (fetch, so that the token goes in a header)

function eventSummary(name, data) {
  const tables = (list) => (list || []).map((x) => x.table).join(", ");
  switch (name) {
    case "compaction_complete": return `compacted ${tables((data.run.results || []).filter((r) => r.status === "compacted"))}`;
    case "compaction_failed": return `failed: ${tables(data.failures)}`;
    case "backup_complete": return `backed up ${tables(data.run.backups)}`;
    case "backup_failed": return `failed: ${(data.failures || []).map((f) => f.table + ": " + f.error).join("; ")}`;
    case "recovery_complete": case "recovery_failed": return `${data.report.table}: ${data.report.outcome}`;
    case "upload_complete": return `${data.upload.table} ${data.upload.id || ""}`;
    case "upload_failed": return `${data.failure.table}: ${data.failure.error}`;
    default: return "";
  }
}

function feed(name, data) {
  const li = document.createElement("li");
  if (name.endsWith("_failed")) li.className = "failed";
  li.textContent = `${new Date().toLocaleTimeString()} ${name} ${eventSummary(name, data)}`;
  $("feed").prepend(li);
  while ($("feed").children.length > 50) $("feed").lastChild.remove();
}

async function follow() {
  feedController = new AbortController();
  try {
    const response = await fetch("/events", { headers: { Authorization: "Bearer " + token() }, signal: feedController.signal });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    $("feed-state").textContent = "live";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const name = (/^event: (.*)$/m.exec(block) || [])[1];
        const data = (/^data: (.*)$/m.exec(block) || [])[1];
        if (name && data) {
          feed(name, JSON.parse(data));
          refresh();
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  $("feed-state").textContent = "disconnected, retrying";
  if (token()) setTimeout(follow, 5000);
}

// ---- start

function showLogin(message) {
  clearInterval(refreshTimer);
  if (feedController) feedController.abort();
  $("data").hidden = true;
  $("cards").innerHTML = "";
  $("logout").hidden = true;
  $("summary").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function open() {
  $("login").hidden = true;
  $("data").hidden = false;
  $("logout").hidden = false;
  refresh();
  refreshTimer = setInterval(refresh, REFRESH_MS);
  follow();
}

const fromFragment = /(?:^#|&)token=([^&]+)/.exec(location.hash);
if (fromFragment) {
  sessionStorage.setItem(KEY, decodeURIComponent(fromFragment[1]));
  history.replaceState(null, "", location.pathname + location.search);
}
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(KEY, value);
  $("token").value = "";
  open();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(); });
$("cards").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (button) act(button);
});
if (token()) open(); else showLogin();
