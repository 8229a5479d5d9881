// ecaptureq ui: the live exchange table, the packets view and the detail pane.
// The table renders only the rows in view (VirtualTable). The exchanges are not all in the page: a RowSource
// fetches them a page at a time around the view and forgets pages far from it, so a database of 1,000,000
// exchanges costs what a few screens of them do. Everything from the server is put in the page with
// textContent.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// The token: given once in the page URL (?token=), kept in this tab's sessionStorage (another origin,
// another port included, cannot read it) and sent as an Authorization header; never in a cookie.
const session = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given !== null) {
    sessionStorage.setItem("ecaptureq-token", given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  return sessionStorage.getItem("ecaptureq-token");
})();

function authHeaders() {
  return session ? { Authorization: `Bearer ${session}` } : {};
}

async function withTicket(url) {
  // EventSource and downloads cannot send headers: a single-use ticket that expires in seconds.
  if (!session) return url;
  const answer = await fetch("/api/ticket", { method: "POST", headers: authHeaders(), credentials: "omit" });
  if (!answer.ok) return url;
  const { ticket } = await answer.json();
  return `${url}${url.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: authHeaders(), credentials: "omit" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status} ${response.statusText}`;
    throw Object.assign(new Error(message), { status: response.status });
  }
  return body;
}

// ---- formatting ---------------------------------------------------------------------------------

// Times come from the server already worded (ecaptureq detects each timestamp's unit, see
// protocol/timestamps.py): "2025-10-09T08:53:20.001000Z", or "+83.000000s since boot". The table shows the
// time of day of the first; the cell's tooltip has it whole.
function shortTime(text) {
  if (text === null || text === undefined) return "";
  return /^\d{4}-\d\d-\d\dT/.test(text) ? text.slice(11, 23) : text.replace(/ since boot$/, "");
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
const MIN_COLUMN = 36;
const LOADING_ROW = [];  // what a row on its way from the server is drawn as (empty cells)

function arraySource(rows) {
  // A table's rows when the page has them all (the packets view: at most one answer of the server).
  return { get total() { return rows.length; }, rowAt: (i) => rows[i] || null, ensure() {} };
}

class VirtualTable {
  // columns: [{title, min (px), grow (fr, optional), get(row) -> text, cls(row) -> extra class, num: bool,
  //            full(row) -> tooltip, drop: n}]; a column dragged by its header's edge keeps the width it was
  // given. When the table is narrower than its columns (a detail is open), those with a `drop` rank are
  // left out, lowest first, before any other is cut or scrolled out of view.
  constructor(container, columns, onSelect) {
    this.container = container;
    this.source = arraySource([]);  // {total, rowAt(i) -> row or null, ensure(first, last)}
    this.selected = -1;
    this.pendingSelect = -1;   // a row asked for (selected) before its page arrived
    this.onSelect = onSelect;
    this.rowHeight = 24;
    this.follow = false;       // stick to the newest row while the view is at the bottom
    this.head = el("div", "vhead");
    this.body = el("div", "vbody");
    this.empty = el("div", "empty", "No rows.");
    container.append(this.head, this.body, this.empty);
    this.pool = [];
    this.widths = new Map();   // column title -> px, set by dragging
    this.setColumns(columns);
    container.addEventListener("scroll", () => { this.render(); if (this.onScroll) this.onScroll(); });
    window.addEventListener("resize", () => this.layout());
    this.body.addEventListener("click", (e) => {
      const row = e.target.closest(".vrow");
      if (row) this.select(Number(row.dataset.index));
    });
  }

  setColumns(columns) {
    this.columns = columns;
    this.head.replaceChildren(...columns.map((c, i) => {
      const cell = el("div", c.num ? "num" : "", c.title);
      const grip = el("span", "grip");
      grip.title = "drag to resize; double-click for the default width";
      grip.addEventListener("pointerdown", (e) => this.dragColumn(e, i, cell, grip));
      grip.addEventListener("dblclick", () => { this.widths.delete(c.title); this.layout(); });
      cell.append(grip);
      return cell;
    }));
    for (const node of this.pool) node.remove();
    this.pool = [];
    this.layout();
  }

  layout() {
    // Fixed columns keep their width; growing ones share what is left, never below their minimum.
    const least = (c) => this.widths.get(c.title) || Math.max(c.min || 80, c.fit ? c.fit() : 0);
    const room = this.container.clientWidth || window.innerWidth;
    this.shown = this.columns.map(() => true);
    let total = this.columns.reduce((sum, c) => sum + least(c), 0);
    const droppable = this.columns.map((c, i) => [c.drop, i]).filter(([d]) => d).sort((a, b) => a[0] - b[0]);
    for (const [, i] of droppable) {
      if (total <= room) break;
      this.shown[i] = false;
      total -= least(this.columns[i]);
    }
    const parts = [];
    this.columns.forEach((c, i) => {
      this.head.children[i].hidden = !this.shown[i];
      if (!this.shown[i]) return;
      const dragged = this.widths.get(c.title);
      if (dragged) parts.push(`${dragged}px`);
      else parts.push(c.grow ? `minmax(${least(c)}px, ${c.grow}fr)` : `${least(c)}px`);
    });
    this.template = parts.join(" ");
    for (const node of [this.head, this.body]) node.style.minWidth = `${total}px`;
    this.head.style.gridTemplateColumns = this.template;
    for (const node of this.pool) node.style.gridTemplateColumns = this.template;
    this.render();
  }

  dragColumn(e, index, cell, grip) {
    e.preventDefault();
    e.stopPropagation();
    const title = this.columns[index].title;
    const startX = e.clientX;
    const startWidth = cell.getBoundingClientRect().width;
    grip.setPointerCapture(e.pointerId);
    grip.classList.add("dragging");
    const move = (ev) => {
      this.widths.set(title, Math.max(MIN_COLUMN, Math.round(startWidth + ev.clientX - startX)));
      this.layout();
    };
    const end = () => {
      grip.classList.remove("dragging");
      grip.removeEventListener("pointermove", move);
      grip.removeEventListener("pointerup", end);
      grip.removeEventListener("pointercancel", end);
    };
    grip.addEventListener("pointermove", move);
    grip.addEventListener("pointerup", end);
    grip.addEventListener("pointercancel", end);
  }

  setRows(rows) {
    this.setSource(arraySource(rows));
  }

  setSource(source) {
    this.source = source;
    this.selected = -1;
    this.pendingSelect = -1;
    this.container.scrollTop = 0;
    this.render();
  }

  select(index) {
    if (!this.highlight(index)) return;
    const row = this.source.rowAt(index);
    this.pendingSelect = row ? -1 : index;  // opened when its page arrives (see arrived)
    if (row) this.onSelect(row, index);
  }

  arrived() {
    // Rows came in (a page, new rows): show them, and open the one selected while it was on its way.
    const waiting = this.pendingSelect;
    if (waiting >= 0 && waiting === this.selected && this.source.rowAt(waiting)) {
      this.pendingSelect = -1;
      this.onSelect(this.source.rowAt(waiting), waiting);
    }
    this.render();
  }

  highlight(index) {
    // Mark a row as the selected one and bring it into view; false when there is no such row.
    if (index < 0 || index >= this.source.total) return false;
    this.selected = index;
    this.scrollIntoView(index);
    this.render();
    return true;
  }

  move(delta) {
    // The keyboard: one row, a page (delta = ±Infinity: first or last); from nothing, the first row.
    const total = this.source.total;
    if (!total) return false;
    const page = Math.max(1, Math.floor(this.container.clientHeight / this.rowHeight) - 2);
    const step = delta === "page+" ? page : delta === "page-" ? -page : delta;
    const from = this.selected < 0 ? (step > 0 ? -1 : total) : this.selected;
    return this.highlight(Math.max(0, Math.min(total - 1, from + step)));
  }

  scrollIntoView(index) {
    const top = index * this.rowHeight;  // within the body, which starts below the sticky header
    const view = this.container.clientHeight - this.rowHeight;
    if (top < this.container.scrollTop) this.container.scrollTop = top;
    else if (top + this.rowHeight > this.container.scrollTop + view) this.container.scrollTop = top + this.rowHeight - view;
  }

  atBottom() {
    const c = this.container;
    return c.scrollTop + c.clientHeight >= c.scrollHeight - this.rowHeight;
  }

  toBottom() {
    this.container.scrollTop = this.container.scrollHeight;
    this.render();
  }

  render() {
    const total = this.source.total;
    this.body.style.height = `${total * this.rowHeight}px`;
    this.empty.hidden = total > 0 || this.hideEmpty === true;
    const scroll = Math.max(0, this.container.scrollTop);
    const height = this.container.clientHeight || 600;
    const first = Math.max(0, Math.floor(scroll / this.rowHeight) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scroll + height) / this.rowHeight) + OVERSCAN);
    const needed = Math.max(0, last - first);
    if (needed) this.source.ensure(first, last);
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
      const row = this.source.rowAt(i) || LOADING_ROW;
      node.dataset.index = String(i);
      node.style.top = `${i * this.rowHeight}px`;
      let cls = "vrow";
      if (i === this.selected) cls += " selected";
      if (row === LOADING_ROW) cls += " loading";
      else if (this.rowClass) cls += this.rowClass(row);
      node.className = cls;
      if (i === this.selected) node.setAttribute("aria-selected", "true");
      else node.removeAttribute("aria-selected");
      const cells = node.children;
      for (let c = 0; c < this.columns.length; c++) {
        const col = this.columns[c];
        const text = row === LOADING_ROW ? "" : col.get(row, i);
        const cell = cells[c];
        if (cell.textContent !== text) cell.textContent = text;
        const extra = (col.num ? "num" : "") + (col.cls ? col.cls(row) : "");
        if (cell.className !== extra) cell.className = extra;
        if (cell.hidden === this.shown[c]) cell.hidden = !this.shown[c];
        cell.title = col.full && row !== LOADING_ROW ? col.full(row, i) : text;
      }
    }
  }
}

// ---- the detail beside a table ------------------------------------------------------------------

const DETAIL_MIN = 280;
const TABLE_MIN = 320;

class DetailPane {
  // The table has the whole width until a row is opened; then the pane takes the width the user last
  // gave it (dragging its edge, or the arrow keys on the edge), kept in this tab's sessionStorage.
  constructor(split, pane, resizer, closeButton, key) {
    this.split = split;
    this.pane = pane;
    this.resizer = resizer;
    this.key = `ecaptureq-${key}-width`;
    this.onClose = null;
    closeButton.addEventListener("click", () => this.close());
    resizer.addEventListener("pointerdown", (e) => this.drag(e));
    resizer.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
      e.preventDefault();
      e.stopPropagation();
      this.setWidth(this.pane.getBoundingClientRect().width + (e.key === "ArrowLeft" ? 40 : -40));
    });
    const saved = Number(sessionStorage.getItem(this.key));
    if (saved > 0) this.pane.style.width = `${saved}px`;
    window.addEventListener("resize", () => this.fit());
  }

  fit() {
    // A width given in a wider window never leaves the table less than TABLE_MIN.
    if (!this.isOpen) return;
    const room = this.split.getBoundingClientRect().width;
    const width = this.pane.getBoundingClientRect().width;
    if (width > Math.max(DETAIL_MIN, room - TABLE_MIN) + 1) this.setWidth(width);
  }

  get isOpen() { return !this.pane.hidden; }

  open() {
    this.pane.hidden = false;
    this.resizer.hidden = false;
    this.fit();
  }

  close() {
    if (!this.isOpen) return;
    this.pane.hidden = true;
    this.resizer.hidden = true;
    if (this.onClose) this.onClose();
  }

  setWidth(px) {
    const room = this.split.getBoundingClientRect().width;
    const width = Math.round(Math.max(DETAIL_MIN, Math.min(room - TABLE_MIN, px)));
    this.pane.style.width = `${width}px`;
    sessionStorage.setItem(this.key, String(width));
    window.dispatchEvent(new Event("resize"));  // the tables re-render their rows for the new width
  }

  drag(e) {
    e.preventDefault();
    const right = this.split.getBoundingClientRect().right;
    this.resizer.setPointerCapture(e.pointerId);
    this.resizer.classList.add("dragging");
    const move = (ev) => this.setWidth(right - ev.clientX);
    const end = () => {
      this.resizer.classList.remove("dragging");
      this.resizer.removeEventListener("pointermove", move);
      this.resizer.removeEventListener("pointerup", end);
      this.resizer.removeEventListener("pointercancel", end);
    };
    this.resizer.addEventListener("pointermove", move);
    this.resizer.addEventListener("pointerup", end);
    this.resizer.addEventListener("pointercancel", end);
  }
}

// ---- exchanges ----------------------------------------------------------------------------------

// Column positions in the rows the server sends (EXCHANGE_COLUMNS in ecaptureq/web/queries.py).
const X = { id: 0, time: 1, pname: 2, pid: 3, src: 4, dst: 5, method: 6, host: 7, path: 8, status: 9,
            size: 10, latency: 11, protocol: 12, complete: 13, node: 14 };

// Fixed columns are as wide as their longest usual value (the id as wide as the last one needs, `fit`:
// a database of millions has 7 digits); the growing ones share the rest in proportion
// to their grow (CSS grid fr: of the whole rest, not of what is left above the minimums), never below
// their minimum, so at 1024 px every column fits and at 1440 px the names and paths have room.
let digitPx = 0;
function idColumnWidth() {
  // The last id in the table's font, plus the cell's padding (6 px a side) and a pixel of rounding.
  if (!digitPx) {
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = getComputedStyle(document.body).font;
    digitPx = ctx.measureText("0123456789").width / 10;
  }
  return Math.ceil(13 + digitPx * String(rows.lastId).length);
}

const EXCHANGE_COLUMNS = [
  { title: "#", min: 56, fit: idColumnWidth, num: true, get: (r) => String(r[X.id]) },
  { title: "time", min: 104, get: (r) => shortTime(r[X.time]), full: (r) => r[X.time] || "" },
  { title: "process", min: 110, grow: 1.4, get: (r) => r[X.pname] || "" },
  { title: "pid", min: 60, num: true, drop: 3, get: (r) => (r[X.pid] === null ? "" : String(r[X.pid])) },
  { title: "source", min: 64, grow: 1.4, drop: 1, get: (r) => r[X.src] || "" },
  { title: "destination", min: 64, grow: 1.6, drop: 2, get: (r) => r[X.dst] || "" },
  { title: "method", min: 70, get: (r) => r[X.method] || "", cls: () => " m" },
  { title: "host", min: 130, grow: 1.9, get: (r) => r[X.host] || "" },
  { title: "path", min: 140, grow: 2.4, get: (r) => r[X.path] || "" },
  { title: "status", min: 58, num: true, get: (r) => (r[X.status] === null ? "" : String(r[X.status])),
    cls: (r) => (r[X.status] ? ` s${String(r[X.status])[0]}` : "") },
  { title: "size", min: 80, num: true, get: (r) => fmtSize(r[X.size]) },
  { title: "latency", min: 82, num: true, get: (r) => fmtLatency(r[X.latency]) },
];

// A fleet's database (ecaptureq collect, ui --nats) has nodes: their column comes after the time.
const NODE_COLUMN = { title: "node", min: 120, grow: 1.2, get: (r) => r[X.node] || "" };

// ---- the exchanges, a page at a time ------------------------------------------------------------

const PAGE = 200;         // rows per request
const PAGES_KEPT = 60;    // pages held; those farthest from the view go first
const WAITING_SENT = 500; // incomplete rows held whose completion the stream is asked to send

class RowSource {
  // The exchanges matching the filter by position (id order). `total` is their number: the count the server
  // gave, plus the rows the live stream added since. A page is asked for when the view reaches it: next to
  // a page held, by id (after the one before, or before the one after: as quick deep in the table as at
  // its top); elsewhere by position. Rows newer than `lastId` come from the stream alone, once.
  constructor(onChange) {
    this.onChange = onChange;
    this.reset("");
  }

  reset(filter) {
    this.filter = filter;
    this.total = 0;
    this.lastId = 0;
    this.pages = new Map();    // page number -> array of rows (holes: not here yet)
    this.asked = new Set();    // page numbers on their way
    this.generation = (this.generation || 0) + 1;
    this.view = [0, 0];
  }

  rowAt(i) {
    const page = this.pages.get(Math.floor(i / PAGE));
    return (page && page[i % PAGE]) || null;
  }

  complete(k) {
    // Whether page k holds every row it should.
    const page = this.pages.get(k);
    if (!page) return false;
    const end = Math.min(PAGE, this.total - k * PAGE);
    for (let j = 0; j < end; j++) if (!page[j]) return false;
    return true;
  }

  ensure(first, last) {
    this.view = [first, last];
    for (let k = Math.floor(first / PAGE); k * PAGE < Math.min(last, this.total); k++) {
      if (!this.asked.has(k) && !this.complete(k)) this.load(k);
    }
  }

  async load(k) {
    const generation = this.generation;
    this.asked.add(k);
    const before = this.pages.get(k - 1);
    const after = this.pages.get(k + 1);
    const where = `filter=${encodeURIComponent(this.filter)}&limit=${PAGE}`;
    let url;
    if (this.complete(k - 1) && before.length === PAGE) url = `/api/exchanges?${where}&after_id=${before[PAGE - 1][X.id]}`;
    else if (after && after[0]) url = `/api/exchanges?${where}&before_id=${after[0][X.id]}`;
    else url = `/api/exchanges?${where}&offset=${k * PAGE}`;
    let body;
    try {
      body = await getJSON(url);
    } catch (err) {
      // Busy, or the server is restarting: asked again in a second if the view is still there.
      setTimeout(() => { if (generation === this.generation) this.onChange(); }, 1000);
      return;
    } finally {
      if (generation === this.generation) this.asked.delete(k);
    }
    if (generation !== this.generation) return;  // a new filter since
    const page = this.pages.get(k) || [];
    body.rows.forEach((row, j) => {
      if (row[X.id] <= this.lastId) page[j] = row;  // newer ones are the stream's to add
    });
    this.pages.set(k, page);
    this.forget();
    this.onChange();
  }

  forget() {
    // Keep the pages nearest the view.
    if (this.pages.size <= PAGES_KEPT) return;
    const middle = Math.floor((this.view[0] + this.view[1]) / 2 / PAGE);
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - middle) - Math.abs(a - middle));
    for (const k of far.slice(0, this.pages.size - PAGES_KEPT)) this.pages.delete(k);
  }

  append(rows) {
    // New rows from the stream, after every row counted: the number added.
    let added = 0;
    for (const row of rows) {
      const id = row[X.id];
      if (id <= this.lastId) continue;
      const at = this.total;
      const k = Math.floor(at / PAGE);
      if (!this.pages.has(k)) this.pages.set(k, []);
      this.pages.get(k)[at % PAGE] = row;
      this.total += 1;
      this.lastId = id;
      added += 1;
    }
    if (added) this.forget();
    return added;
  }

  update(changed) {
    // Rows that changed (an exchange completed): replaced where the page holds them.
    const at = new Map();  // id -> [page, position in it], of every row held
    for (const page of this.pages.values()) page.forEach((r, j) => { if (r) at.set(r[X.id], [page, j]); });
    for (const row of changed) {
      const found = at.get(row[X.id]);
      if (found) found[0][found[1]] = row;
    }
  }

  waitingIds() {
    // The newest incomplete rows held (their response may come): the stream sends them as they complete.
    const ids = [];
    for (const k of [...this.pages.keys()].sort((a, b) => b - a)) {
      for (const row of this.pages.get(k)) if (row && !row[X.complete]) ids.push(row[X.id]);
      if (ids.length >= WAITING_SENT) break;
    }
    return ids.slice(0, WAITING_SENT);
  }

  loadedIds() {
    // The ids of the rows held, in order (for tests and debugging).
    return [...this.pages.keys()].sort((a, b) => a - b).flatMap((k) => this.pages.get(k).filter(Boolean).map((r) => r[X.id]));
  }
}

const rows = new RowSource(() => { table.arrived(); updateCount(); });

const state = {
  nodes: false,
  filter: "",
  idDigits: 1,       // digits of the last id the table's id column is laid out for
  paused: false,
  source: null,      // the EventSource
  retry: null,
  statusTimer: null,
  live: false,
  status: null,      // the last /api/status answer
  unseen: 0,         // rows that arrived below the view while the user looked elsewhere
  counted: false,    // rows has the count and the first page for this filter; the stream goes on from it
};

const table = new VirtualTable($("exchanges"), EXCHANGE_COLUMNS, (row) => openExchange(row[X.id]));
table.rowClass = (r) => (r[X.complete] ? "" : " incomplete");
table.hideEmpty = true;  // the empty state below says why there is nothing
table.source = rows;
table.render();
table.onScroll = () => { if (table.atBottom()) setUnseen(0); };

const detail = new DetailPane($("split-exchanges"), $("detail"), $("detail-resizer"), $("detail-close"), "detail");
detail.onClose = () => { table.container.focus({ preventScroll: true }); window.dispatchEvent(new Event("resize")); };

function setUnseen(n) {
  state.unseen = n;
  const button = $("jump-new");
  button.hidden = n === 0;
  button.textContent = `${fmtNumber(n)} new ↓`;
}

function updateCount() {
  $("row-count").textContent = `${fmtNumber(rows.total)} rows`;
  updateEmpty();
  const digits = String(rows.lastId).length;
  if (digits !== state.idDigits) {
    state.idDigits = digits;  // the id column widens with the ids (no "99…" at a million rows)
    table.layout();
  }
}

function addRows(newRows) {
  // Follow the newest rows while the view is at the bottom; otherwise count them on the "N new" button.
  const stick = table.follow && table.atBottom();
  const added = rows.append(newRows);
  updateCount();
  table.arrived();
  if (!added) return;
  if (stick) table.toBottom();
  else if (table.follow) setUnseen(state.unseen + added);
}

function updateRows(changed) {
  rows.update(changed);
  table.render();
}

async function loadCount() {
  // The number of rows matching the filter and the first page, from the database as it is now: the
  // stream brings what is committed after it.
  const generation = rows.generation;
  const body = await getJSON(`/api/exchanges?count=1&offset=0&limit=${PAGE}&filter=${encodeURIComponent(state.filter)}`);
  if (generation !== rows.generation) return false;
  rows.total = body.total;
  rows.lastId = body.last_id;
  rows.pages.set(0, body.rows.filter((r) => r[X.id] <= rows.lastId));
  updateCount();
  table.arrived();
  return true;
}

function updateEmpty() {
  // Nothing to show: say what the page is waiting for, and what would help.
  const box = $("empty-state");
  box.hidden = rows.total > 0;
  if (box.hidden) return;
  const s = state.status;
  let title = "Loading…";
  let text = "";
  let mood = "";
  if (state.filter) {
    title = "No exchange matches this filter";
    text = state.live ? "Matching exchanges appear here as they are captured. Clear the filter to see them all."
      : "Clear the filter to see every exchange of the database.";
  } else if (s && s.live && !s.live.connected) {
    title = "Waiting for the source";
    text = `${s.live.status}. Exchanges appear here as soon as it answers. ` +
      "Is eCapture (or ecaptureq serve) running, with its WebSocket on that address?";
    mood = "waiting";
  } else if (s && s.live) {
    title = "Connected, waiting for the first exchange";
    text = `${s.source}: ${fmtNumber(s.live.events)} events so far, no complete HTTP request yet. ` +
      "Exchanges appear here as they are captured.";
    mood = "connected";
  } else if (s) {
    title = "This database has no exchanges";
    text = `${fmtNumber(s.totals.packets)} packets in ${s.db}: the Packets tab shows them.`;
  }
  box.className = `empty-state ${mood}`;
  if ($("empty-title").textContent !== title) $("empty-title").textContent = title;
  if ($("empty-text").textContent !== text) $("empty-text").textContent = text;
}

function showNodes(nodes) {
  if (!nodes || !nodes.length) return;
  if (!state.nodes) {
    state.nodes = true;
    table.setColumns([...EXCHANGE_COLUMNS.slice(0, 2), NODE_COLUMN, ...EXCHANGE_COLUMNS.slice(2)]);
    table.render();
  }
  const shown = nodes.length > 8 ? nodes.slice(0, 8).join(", ") + ` … (${nodes.length})` : nodes.join(", ");
  $("conn-text").textContent += ` · nodes: ${shown}`;
}

function showStatus(s) {
  const live = s.live;
  state.status = s;
  state.live = Boolean(live);
  table.follow = state.live;
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
  showNodes(s.totals && s.totals.nodes);
  text.title = text.textContent;
  updateEmpty();
}

function stopStream() {
  if (state.source) { state.source.close(); state.source = null; }
  if (state.retry) { clearTimeout(state.retry); state.retry = null; }
}

async function startStream() {
  stopStream();
  if (!state.counted) {
    try {
      if (!(await loadCount())) return;  // a new filter since: its own start follows
      state.counted = true;
    } catch (err) {
      showError("filter-error", err.message);
      // A filter SQLite refused, or stopped as too slow, stays refused; anything else is tried again.
      if (err.status !== 400) state.retry = setTimeout(startStream, 1000);
      return;
    }
  }
  const waiting = rows.waitingIds().join(",");
  const url = await withTicket(`/api/stream?after_id=${rows.lastId}&waiting=${waiting}&filter=${encodeURIComponent(state.filter)}`);
  if (state.source) return;  // another start won meanwhile
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
  state.counted = false;
  rows.reset(text);
  table.setSource(rows);
  setUnseen(0);
  detail.close();
  updateCount();
  $("har").href = `/api/har?filter=${encodeURIComponent(text)}`;
  if (!state.paused) startStream();
  else state.counted = await loadCount();  // while paused: the database as it is now, no live updates
  return true;
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
    startStream();  // from the last row held: the rows committed meanwhile come first
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

function openExchange(id) {
  const opening = !detail.isOpen;
  detail.open();
  if (opening) {
    window.dispatchEvent(new Event("resize"));
    table.scrollIntoView(table.selected);
  }
  return showExchange(id);
}

async function showExchange(id) {
  const pane = $("detail-body");
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
    `${d.src} → ${d.dst} · ${d.time || "no time"} · ${fmtLatency(d.latency) || "no latency"}${status}`);
  const nodes = [title, meta];
  if (d.cgroup !== undefined) {  // named by ecaptureq tls: the process's cgroup and container
    nodes.push(el("p", "meta", d.container_id ? `container ${d.container_id.slice(0, 12)} · cgroup ${d.cgroup}`
      : `cgroup ${d.cgroup}`));
  }
  if (d.url) nodes.push(el("p", "meta url", d.url));
  if (d.curl) {
    const actions = el("div", "actions");
    // One command per shell family: no quoting is inert in both POSIX shells and fish.
    const copy = el("button", "button", "Copy as curl (bash, zsh, sh)");
    copy.id = "copy-curl";
    copy.type = "button";
    copy.addEventListener("click", () => copyText(d.curl, copy));
    const copyFish = el("button", "button", "Copy as curl (fish)");
    copyFish.id = "copy-curl-fish";
    copyFish.type = "button";
    copyFish.addEventListener("click", () => copyText(d.curl_fish, copyFish));
    const details = el("details", "curl");
    details.append(el("summary", "", "curl command (bash, zsh, sh)"), el("pre", "curl-text", d.curl));
    actions.append(copy, copyFish);
    nodes.push(actions, details);
  }
  nodes.push(messageBlock("Request", d.request), messageBlock("Response", d.response));
  pane.replaceChildren(...nodes);
  pane.scrollTop = 0;
}

// ---- packets ------------------------------------------------------------------------------------

let packetIndexColumn = -1;
const packetTable = new VirtualTable($("packets"), [], (row) => openPacket(row));
const packetDetail = new DetailPane($("split-packets"), $("packet-detail"), $("packet-resizer"), $("packet-close"),
  "packet-detail");
packetDetail.onClose = () => { packetTable.container.focus({ preventScroll: true }); window.dispatchEvent(new Event("resize")); };

const PAYLOAD_COLUMNS = new Set(["payload_utf8", "payload_binary"]);

let packetsSeq = 0;

async function runPackets(text) {
  const seq = ++packetsSeq;
  let body;
  try {
    body = await getJSON(`/api/packets?sql=${encodeURIComponent(text || "1")}`);
  } catch (err) {
    if (seq === packetsSeq) showError("sql-error", err.message);
    return;
  }
  if (seq !== packetsSeq) return;  // a later query was run meanwhile: its answer is the one to show
  showError("sql-error", "");
  packetIndexColumn = body.columns.indexOf("index");
  const times = body.times || {};
  packetTable.setColumns(body.columns.map((name, i) => {
    const raw = (r) => (r[i] === null ? "NULL" : String(r[i]));
    const worded = times[String(i)];
    if (worded) {
      // An event time, worded by the server (its unit detected); the raw value is in the tooltip.
      return { title: name, min: 224, grow: 1, get: (r, k) => worded[k] || raw(r), full: (r, k) => `${worded[k] || ""} (${raw(r)})` };
    }
    return { title: name, min: PAYLOAD_COLUMNS.has(name) ? 220 : 64, grow: PAYLOAD_COLUMNS.has(name) ? 4 : 1, get: raw };
  }));
  packetTable.setRows(body.rows);
  packetDetail.close();
  $("packet-count").textContent = `${fmtNumber(body.rows.length)} rows${body.truncated ? " (first ones only)" : ""}`;
}

function openPacket(row) {
  const opening = !packetDetail.isOpen;
  packetDetail.open();
  if (opening) {
    window.dispatchEvent(new Event("resize"));
    packetTable.scrollIntoView(packetTable.selected);
  }
  return showPacket(row);
}

let packetSeq = 0;

async function showPacket(row) {
  const pane = $("packet-detail-body");
  if (packetIndexColumn < 0) {
    pane.replaceChildren(el("p", "hint", "select an index column to see a packet's payload"));
    return;
  }
  const seq = ++packetSeq;
  let p;
  try {
    p = await getJSON(`/api/packet/${row[packetIndexColumn]}`);
  } catch (err) {
    pane.replaceChildren(el("p", "bad", err.message));
    return;
  }
  if (seq !== packetSeq) return;  // a later selection won
  const info = [["time", p.time], ["timestamp", `${p.timestamp} (${p.time_unit})`], ["uuid", p.uuid],
    ["source", `${p.src_ip}:${p.src_port}`], ["destination", `${p.dst_ip}:${p.dst_port}`],
    ["process", `${p.pname} (${p.pid})`], ["type", p.type], ["length", fmtSize(p.length)]];
  const pre = el("pre");
  const views = el("div", "seg");
  views.setAttribute("role", "group");
  views.setAttribute("aria-label", "payload view");
  const show = (kind) => {
    // Hex + ASCII for binary payloads by default; text (invalid bytes as U+FFFD) a click away.
    pre.className = kind === "hex" ? "payload hex" : "payload text";
    pre.textContent = kind === "hex" ? p.payload.hex : p.payload.text;
    for (const b of views.children) b.setAttribute("aria-pressed", String(b.dataset.kind === kind));
  };
  for (const [kind, label] of [["hex", "Hex + ASCII"], ["text", "Text"]]) {
    const b = el("button", "button", label);
    b.type = "button";
    b.dataset.kind = kind;
    b.id = `payload-${kind}`;
    b.addEventListener("click", () => show(kind));
    views.append(b);
  }
  show(p.payload.kind === "hex" ? "hex" : "text");
  const title = el("p", "meta", `payload, ${fmtSize(p.payload.size)}${p.payload.kind === "hex" ? ", binary" : ""}`);
  const nodes = [el("h2", "", `packet ${p.index}`), headerTable(info), el("h3", "", "payload"), title, views, pre];
  if (p.payload.truncated) nodes.push(el("p", "note", "… shown in part"));
  pane.replaceChildren(...nodes);
  pane.scrollTop = 0;
}

// ---- wiring -------------------------------------------------------------------------------------

let currentView = "exchanges";

function showView(name) {
  currentView = name;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("view-exchanges").hidden = name !== "exchanges";
  $("view-packets").hidden = name !== "packets";
  if (name === "packets" && packetTable.columns.length === 0) runPackets($("sql").value);
  (name === "packets" ? packetTable : table).render();
}

function currentParts() {
  return currentView === "packets"
    ? { table: packetTable, pane: packetDetail, filter: $("sql") }
    : { table, pane: detail, filter: $("filter") };
}

const MOVES = { ArrowDown: 1, ArrowUp: -1, PageDown: "page+", PageUp: "page-", Home: -Infinity, End: Infinity };

document.addEventListener("keydown", (e) => {
  // ↑ ↓ PageUp PageDown Home End move; Enter opens the detail; / goes to the filter; Esc leaves the filter,
  // then closes the detail.
  if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  const target = e.target;
  const typing = target instanceof HTMLElement && target.matches("input, textarea, select, [contenteditable]");
  const parts = currentParts();
  if (e.key === "Escape") {
    if (typing) { target.blur(); parts.table.container.focus({ preventScroll: true }); }
    else if (parts.pane.isOpen) parts.pane.close();
    else return;
    e.preventDefault();
    return;
  }
  if (typing) return;
  if (e.key === "/") {
    e.preventDefault();
    parts.filter.focus();
    parts.filter.select();
    return;
  }
  const onControl = target instanceof HTMLElement && target.matches("button, a, summary, .resizer");
  if (e.key === "Enter" && !onControl) {
    if (parts.table.selected < 0 && !parts.table.move(1)) return;
    e.preventDefault();
    parts.table.select(parts.table.selected);
    return;
  }
  if (Object.hasOwn(MOVES, e.key) && !(onControl && target.matches(".resizer"))) {
    e.preventDefault();
    if (parts.table.move(MOVES[e.key]) && parts.pane.isOpen) parts.table.select(parts.table.selected);
  }
});

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
$("filter-form").addEventListener("submit", (e) => { e.preventDefault(); applyFilter($("filter").value.trim()); });
$("filter-clear").addEventListener("click", () => { $("filter").value = ""; applyFilter(""); });
$("sql-form").addEventListener("submit", (e) => { e.preventDefault(); runPackets($("sql").value.trim()); });
$("pause").addEventListener("click", () => setPaused(!state.paused));
$("jump-new").addEventListener("click", () => { setUnseen(0); table.toBottom(); table.container.focus({ preventScroll: true }); });
$("har").addEventListener("click", async (e) => {
  if (!session || e.target.dataset.ticketed) return;  // no token: the plain link works
  e.preventDefault();
  const link = el("a");
  link.href = await withTicket($("har").getAttribute("href"));
  link.download = "";
  link.dataset.ticketed = "1";
  document.body.append(link);
  link.click();
  link.remove();
});

// The mode (live or a database) first: the table follows new rows only when there is a source.
pollStatus().finally(startStream);
