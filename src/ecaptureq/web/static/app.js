// ecaptureq ui: the live exchange table, the packets view and the detail pane.
// Data lives in plain arrays; the table renders only the rows in view (VirtualTable), so 100,000 rows
// cost one array, not 100,000 DOM nodes. Everything from the server is put in the page with textContent.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

// ---- formatting ---------------------------------------------------------------------------------

function fmtTime(ns) {
  if (ns === null || ns === undefined) return "";
  if (ns > 1e17) {  // Unix-epoch nanoseconds
    const d = new Date(ns / 1e6);
    return d.toISOString().slice(11, 23);
  }
  return `+${(ns / 1e9).toFixed(3)} s`;  // nanoseconds since boot
}

function fmtSize(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtLatency(s) {
  if (s === null || s === undefined) return "";
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`;
}

function fmtNumber(n) {
  return (n === null || n === undefined) ? "0" : Number(n).toLocaleString("en-US");
}

// ---- the virtualised table ----------------------------------------------------------------------

const OVERSCAN = 10;

class VirtualTable {
  // columns: [{title, width, get(row) -> text, cls(row) -> extra class, num: bool}]
  constructor(container, columns, onSelect) {
    this.container = container;
    this.rows = [];
    this.selected = -1;
    this.onSelect = onSelect;
    this.rowHeight = 24;
    this.head = el("div", "vhead");
    this.body = el("div", "vbody");
    this.empty = el("div", "empty", "No rows.");
    container.append(this.head, this.body, this.empty);
    this.pool = [];
    this.setColumns(columns);
    container.addEventListener("scroll", () => this.render());
    window.addEventListener("resize", () => this.render());
    this.body.addEventListener("click", (e) => {
      const row = e.target.closest(".vrow");
      if (row) this.select(Number(row.dataset.index));
    });
    container.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
      e.preventDefault();
      const next = Math.max(0, Math.min(this.rows.length - 1, this.selected + (e.key === "ArrowDown" ? 1 : -1)));
      this.select(next);
      this.scrollIntoView(next);
    });
  }

  setColumns(columns) {
    this.columns = columns;
    const template = columns.map((c) => c.width || "minmax(80px, 1fr)").join(" ");
    this.template = template;
    this.head.style.gridTemplateColumns = template;
    this.head.replaceChildren(...columns.map((c) => el("div", c.num ? "num" : "", c.title)));
    for (const node of this.pool) node.remove();
    this.pool = [];
    this.render();
  }

  setRows(rows) {
    this.rows = rows;
    this.selected = -1;
    this.container.scrollTop = 0;
    this.render();
  }

  select(index) {
    if (index < 0 || index >= this.rows.length) return;
    this.selected = index;
    this.render();
    this.onSelect(this.rows[index], index);
  }

  scrollIntoView(index) {
    const top = index * this.rowHeight;
    const view = this.container.clientHeight - this.rowHeight;
    if (top < this.container.scrollTop) this.container.scrollTop = top;
    else if (top > this.container.scrollTop + view - this.rowHeight) this.container.scrollTop = top - view + this.rowHeight;
  }

  render() {
    const total = this.rows.length;
    this.body.style.height = `${total * this.rowHeight}px`;
    this.empty.hidden = total > 0;
    const scroll = Math.max(0, this.container.scrollTop);
    const height = this.container.clientHeight || 600;
    const first = Math.max(0, Math.floor(scroll / this.rowHeight) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scroll + height) / this.rowHeight) + OVERSCAN);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const node = el("div", "vrow");
      node.style.gridTemplateColumns = this.template;
      for (const c of this.columns) node.append(el("div", c.num ? "num" : ""));
      this.body.append(node);
      this.pool.push(node);
    }
    for (let k = 0; k < this.pool.length; k++) {
      const node = this.pool[k];
      const i = first + k;
      if (k >= needed) { node.hidden = true; continue; }
      node.hidden = false;
      const row = this.rows[i];
      node.dataset.index = String(i);
      node.style.top = `${i * this.rowHeight}px`;
      let cls = "vrow";
      if (i === this.selected) cls += " selected";
      if (this.rowClass) cls += this.rowClass(row);
      node.className = cls;
      const cells = node.children;
      for (let c = 0; c < this.columns.length; c++) {
        const col = this.columns[c];
        const text = col.get(row);
        const cell = cells[c];
        if (cell.textContent !== text) cell.textContent = text;
        const extra = (col.num ? "num" : "") + (col.cls ? col.cls(row) : "");
        if (cell.className !== extra) cell.className = extra;
        cell.title = text;
      }
    }
  }
}

// ---- exchanges ----------------------------------------------------------------------------------

// Column positions in the rows the server sends (EXCHANGE_COLUMNS in ecaptureq/web/queries.py).
const X = { id: 0, time: 1, pname: 2, pid: 3, src: 4, dst: 5, method: 6, host: 7, path: 8, status: 9,
            size: 10, latency: 11, protocol: 12, complete: 13 };

const EXCHANGE_COLUMNS = [
  { title: "#", width: "64px", num: true, get: (r) => String(r[X.id]) },
  { title: "time", width: "96px", get: (r) => fmtTime(r[X.time]) },
  { title: "process", width: "minmax(60px, 0.8fr)", get: (r) => r[X.pname] || "" },
  { title: "pid", width: "52px", num: true, get: (r) => (r[X.pid] === null ? "" : String(r[X.pid])) },
  { title: "source", width: "minmax(80px, 1fr)", get: (r) => r[X.src] || "" },
  { title: "destination", width: "minmax(80px, 1fr)", get: (r) => r[X.dst] || "" },
  { title: "method", width: "64px", get: (r) => r[X.method] || "" },
  { title: "host", width: "minmax(90px, 1.2fr)", get: (r) => r[X.host] || "" },
  { title: "path", width: "minmax(120px, 2fr)", get: (r) => r[X.path] || "" },
  { title: "status", width: "52px", num: true, get: (r) => (r[X.status] === null ? "" : String(r[X.status])),
    cls: (r) => (r[X.status] ? ` s${String(r[X.status])[0]}` : "") },
  { title: "size", width: "68px", num: true, get: (r) => fmtSize(r[X.size]) },
  { title: "latency", width: "72px", num: true, get: (r) => fmtLatency(r[X.latency]) },
];

const state = {
  filter: "",
  lastId: 0,
  byId: new Map(),   // exchange id -> position in rows
  rows: [],
  paused: false,
  source: null,      // the EventSource
  retry: null,
  statusTimer: null,
  live: false,
};

const table = new VirtualTable($("exchanges"), EXCHANGE_COLUMNS, (row) => showExchange(row[X.id]));
table.rowClass = (r) => (r[X.complete] ? "" : " incomplete");
table.rows = state.rows;

function updateCount() {
  $("row-count").textContent = `${fmtNumber(state.rows.length)} rows`;
}

function addRows(rows) {
  for (const row of rows) {
    const id = row[X.id];
    if (id <= state.lastId || state.byId.has(id)) continue;
    state.byId.set(id, state.rows.length);
    state.rows.push(row);
    state.lastId = id;
  }
  updateCount();
  table.render();
}

function updateRows(rows) {
  for (const row of rows) {
    const at = state.byId.get(row[X.id]);
    if (at !== undefined) state.rows[at] = row;
  }
  table.render();
}

function showStatus(s) {
  const live = s.live;
  state.live = Boolean(live);
  const dot = $("conn-dot");
  const text = $("conn-text");
  if (live) {
    dot.className = "dot " + (state.paused ? "paused" : live.connected ? "up" : "down");
    text.textContent = (state.paused ? "paused · " : "") + live.status;
    $("c-events").textContent = fmtNumber(live.events);
    $("c-rate").textContent = fmtNumber(Math.round(live.events_per_s));
    $("c-exchanges").textContent = fmtNumber(live.exchanges);
    $("c-malformed").textContent = fmtNumber(live.malformed);
    $("c-reconnects").textContent = fmtNumber(live.reconnects);
  } else {
    dot.className = "dot " + (state.paused ? "paused" : "");
    text.textContent = (state.paused ? "paused · " : "") + `database ${s.db} (read-only)`;
    $("c-events").textContent = fmtNumber(s.totals.packets);
    $("c-rate").textContent = "–";
    $("c-exchanges").textContent = fmtNumber(s.totals.exchanges);
    $("c-malformed").textContent = "–";
    $("c-reconnects").textContent = "–";
  }
  text.title = text.textContent;
}

function stopStream() {
  if (state.source) { state.source.close(); state.source = null; }
  if (state.retry) { clearTimeout(state.retry); state.retry = null; }
}

function startStream() {
  stopStream();
  const url = `/api/stream?after_id=${state.lastId}&filter=${encodeURIComponent(state.filter)}`;
  const source = new EventSource(url);
  state.source = source;
  source.addEventListener("rows", (e) => addRows(JSON.parse(e.data).rows));
  source.addEventListener("update", (e) => updateRows(JSON.parse(e.data).rows));
  source.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  source.addEventListener("failure", (e) => { showError("filter-error", JSON.parse(e.data).error); stopStream(); });
  source.onerror = () => {
    // Reopen ourselves, from the last row we have (the browser's retry would repeat the first URL).
    stopStream();
    $("conn-dot").className = "dot down";
    $("conn-text").textContent = "the UI server is unreachable; retrying…";
    if (!state.paused) state.retry = setTimeout(startStream, 1000);
  };
}

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

async function applyFilter(text) {
  try {
    await getJSON(`/api/exchanges?limit=1&filter=${encodeURIComponent(text)}`);
  } catch (err) {
    showError("filter-error", err.message);
    return false;
  }
  showError("filter-error", "");
  state.filter = text;
  state.lastId = 0;
  state.byId = new Map();
  state.rows = [];
  table.setRows(state.rows);
  updateCount();
  $("har").href = `/api/har?filter=${encodeURIComponent(text)}`;
  if (!state.paused) startStream();
  else await loadOnce();
  return true;
}

async function loadOnce() {
  // While paused, a new filter still shows what is in the database now, without live updates.
  for (let page = 0; page < 1000; page++) {
    const body = await getJSON(`/api/exchanges?limit=20000&after_id=${state.lastId}&filter=${encodeURIComponent(state.filter)}`);
    addRows(body.rows);
    if (body.rows.length < 20000) break;
  }
}

function setPaused(paused) {
  state.paused = paused;
  const button = $("pause");
  button.textContent = paused ? "Resume" : "Pause";
  button.classList.toggle("paused", paused);
  button.setAttribute("aria-pressed", String(paused));
  if (paused) {
    stopStream();
    state.statusTimer = setInterval(pollStatus, 1000);
    pollStatus();
  } else {
    clearInterval(state.statusTimer);
    startStream();
  }
}

async function pollStatus() {
  try { showStatus(await getJSON("/api/status")); } catch (e) { /* shown on resume */ }
}

// ---- details ------------------------------------------------------------------------------------

function headerTable(pairs) {
  const t = el("table", "headers");
  for (const [name, value] of pairs) {
    const tr = el("tr");
    tr.append(el("td", "", name), el("td", "", value));
    t.append(tr);
  }
  return t;
}

function bodyBlock(body) {
  const wrap = el("div", "body");
  if (!body || body.kind === "empty") {
    wrap.append(el("p", "hint", body && body.size ? `${fmtSize(body.size)} body, not kept` : "no body"));
    return wrap;
  }
  const label = { json: "JSON", text: "text", hex: "binary (hex)" }[body.kind] || body.kind;
  wrap.append(el("p", "meta", `${label}, ${fmtSize(body.size)}`));
  const pre = el("pre", `body-${body.kind}` + (body.kind === "hex" ? " hex" : ""), body.text);
  wrap.append(pre);
  if (body.truncated) wrap.append(el("p", "note", "… shown in part; the HAR download has it whole"));
  return wrap;
}

function messageBlock(title, msg) {
  const section = el("section", `message ${title.toLowerCase()}`);
  section.append(el("h3", "", title));
  if (!msg) {
    section.append(el("p", "hint", `no ${title.toLowerCase()} captured`));
    return section;
  }
  const first = el("p", "first-line", msg.first_line);
  if (!msg.complete) first.append(el("span", "tag", "incomplete"));
  if (msg.content_encoding) first.append(el("span", "tag", `decoded from ${msg.content_encoding}`));
  section.append(first, headerTable(msg.headers));
  if (msg.trailers && msg.trailers.length) {
    section.append(el("p", "meta", "trailers"), headerTable(msg.trailers));
  }
  section.append(bodyBlock(msg.body));
  for (const e of msg.errors) section.append(el("p", "bad", e));
  for (const n of msg.notes) section.append(el("p", "note", n));
  return section;
}

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch (e) {
    const area = el("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = ok ? "Copied" : "Copy failed";
  setTimeout(() => { button.textContent = label; }, 1200);
}

let detailSeq = 0;

async function showExchange(id) {
  const pane = $("detail");
  const seq = ++detailSeq;
  let d;
  try {
    d = await getJSON(`/api/exchange/${id}`);
  } catch (err) {
    pane.replaceChildren(el("p", "bad", err.message));
    return;
  }
  if (seq !== detailSeq) return;  // a later click won
  const title = el("h2", "", `${d.request ? d.request.first_line : "(no request)"}`);
  const status = d.response ? ` → ${d.response.first_line}` : " → (no response)";
  const meta = el("p", "meta",
    `#${d.id} · ${d.protocol}${d.stream_id !== null ? " stream " + d.stream_id : ""} · ${d.pname} (${d.pid}) · ` +
    `${d.src} → ${d.dst} · ${fmtLatency(d.latency) || "no latency"}${status}`);
  const nodes = [title, meta];
  if (d.cgroup !== undefined) {  // named by ecaptureq tls: the process's cgroup and container
    nodes.push(el("p", "meta", d.container_id ? `container ${d.container_id.slice(0, 12)} · cgroup ${d.cgroup}`
      : `cgroup ${d.cgroup}`));
  }
  if (d.url) nodes.push(el("p", "meta url", d.url));
  if (d.curl) {
    const actions = el("div", "actions");
    const copy = el("button", "button", "Copy as curl");
    copy.id = "copy-curl";
    copy.type = "button";
    copy.addEventListener("click", () => copyText(d.curl, copy));
    const details = el("details", "curl");
    details.append(el("summary", "", "curl command"), el("pre", "curl-text", d.curl));
    actions.append(copy);
    nodes.push(actions, details);
  }
  nodes.push(messageBlock("Request", d.request), messageBlock("Response", d.response));
  pane.replaceChildren(...nodes);
  pane.scrollTop = 0;
}

// ---- packets ------------------------------------------------------------------------------------

let packetIndexColumn = -1;
const packetTable = new VirtualTable($("packets"), [], (row) => showPacket(row));

async function runPackets(text) {
  let body;
  try {
    body = await getJSON(`/api/packets?sql=${encodeURIComponent(text || "1")}`);
  } catch (err) {
    showError("sql-error", err.message);
    return;
  }
  showError("sql-error", "");
  packetIndexColumn = body.columns.indexOf("index");
  packetTable.setColumns(body.columns.map((name, i) => ({
    title: name,
    width: name === "payload_utf8" || name === "payload_binary" ? "minmax(200px, 4fr)" : "minmax(60px, 1fr)",
    num: false,
    get: (r) => (r[i] === null ? "NULL" : String(r[i])),
  })));
  packetTable.setRows(body.rows);
  $("packet-count").textContent = `${fmtNumber(body.rows.length)} rows${body.truncated ? " (first ones only)" : ""}`;
}

async function showPacket(row) {
  const pane = $("packet-detail");
  if (packetIndexColumn < 0) {
    pane.replaceChildren(el("p", "hint", "select an index column to see a packet's payload"));
    return;
  }
  let p;
  try {
    p = await getJSON(`/api/packet/${row[packetIndexColumn]}`);
  } catch (err) {
    pane.replaceChildren(el("p", "bad", err.message));
    return;
  }
  const info = [["index", p.index], ["timestamp", `${p.timestamp} (${fmtTime(p.timestamp)})`], ["uuid", p.uuid],
    ["source", `${p.src_ip}:${p.src_port}`], ["destination", `${p.dst_ip}:${p.dst_port}`],
    ["process", `${p.pname} (${p.pid})`], ["type", p.type], ["length", p.length]];
  const pre = el("pre", p.payload.kind === "hex" ? "hex" : "", p.payload.text);
  const nodes = [el("h2", "", `packet ${p.index}`), headerTable(info), el("h3", "", "payload"), pre];
  if (p.payload.truncated) nodes.push(el("p", "note", "… shown in part"));
  pane.replaceChildren(...nodes);
}

// ---- wiring -------------------------------------------------------------------------------------

function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("view-exchanges").hidden = name !== "exchanges";
  $("view-packets").hidden = name !== "packets";
  if (name === "packets" && packetTable.columns.length === 0) runPackets($("sql").value);
  (name === "packets" ? packetTable : table).render();
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
$("filter-form").addEventListener("submit", (e) => { e.preventDefault(); applyFilter($("filter").value.trim()); });
$("filter-clear").addEventListener("click", () => { $("filter").value = ""; applyFilter(""); });
$("sql-form").addEventListener("submit", (e) => { e.preventDefault(); runPackets($("sql").value.trim()); });
$("pause").addEventListener("click", () => setPaused(!state.paused));

pollStatus();
startStream();
