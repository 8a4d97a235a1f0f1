"""The HTML leaderboard's inline style sheet and script (sorting, filtering, the URL-hash view); no external files."""

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 1.5em 3em;color:#1d2330;background:#fff}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .3em;border-bottom:1px solid #d8dce6}
p{margin:.35em 0;max-width:75em}code{background:#f1f3f7;padding:0 .25em;border-radius:3px}
nav a{margin-right:1em}.sub{color:#4b5468}.warn{color:#a3261b;font-weight:600}#filters label{white-space:nowrap}
#filters{background:#f7f8fb;border:1px solid #d8dce6;border-radius:6px;padding:.5em .8em;margin:.8em 0;display:flex;
flex-wrap:wrap;gap:.4em 1.2em;align-items:center}select,input[type=search]{font:inherit;max-width:16em}
table{border-collapse:collapse;margin:.3em 0 .8em;font-variant-numeric:tabular-nums}
th,td{padding:2px 8px;border-bottom:1px solid #e6e8ee;text-align:left;vertical-align:middle}
th{background:#eef0f5;position:sticky;top:0;z-index:1;white-space:nowrap}
th[data-type=text],th[data-type=num]{cursor:pointer}th[data-type=text]:hover,th[data-type=num]:hover{background:#dfe3ec}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}.v-refuted{color:#a3261b;font-weight:600}
td.set{font-family:ui-monospace,monospace;font-size:.85em;color:#4b5468;max-width:22em}
tbody tr:nth-child(even){background:#fafbfd}tbody tr:hover{background:#eef4ff}.count{color:#4b5468;font-size:.9em}
svg.bar{display:block}svg.bar rect{fill:#5b8bd0}svg.bar rect.neg{fill:#d0705b}svg.bar path{stroke:#1d2330;fill:none}
svg.bar line{stroke:#8a92a6;stroke-dasharray:2 2}.v-holds{color:#17713a;font-weight:600}.v-inconclusive{color:#6b5a10}
.grid{display:grid;align-items:start;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}
figure{margin:0;border:1px solid #e6e8ee;border-radius:6px;padding:6px;background:#fff}
figure.wide{grid-column:1/-1}figure img{width:100%;height:auto;cursor:zoom-in}figure.wide img{cursor:zoom-out}
figcaption{font-size:.85em;color:#4b5468;word-break:break-all}
"""

JS = """
"use strict";
(function () {
  const doc = document, root = doc.documentElement, all = (sel) => Array.from(doc.querySelectorAll(sel));
  window.addEventListener("error", (e) => { root.dataset.jsError = String(e.message); });
  const selects = all("select[data-filter]"), tables = all("table.board");
  const query = doc.getElementById("q"), percat = doc.getElementById("percat");
  function matches(row, want, text) {
    if (want.some(([k, v]) => row.dataset[k] !== undefined && !row.dataset[k].split("|").includes(v))) return false;
    if (row.dataset.percat && !percat.checked) return false;
    return !text || row.textContent.toLowerCase().includes(text);
  }
  function apply(save) {
    const want = selects.filter((s) => s.value).map((s) => [s.dataset.filter, s.value]);
    const text = query.value.trim().toLowerCase();
    for (const table of tables) {
      const rows = Array.from(table.tBodies[0].rows), shown = new Set(rows.filter((r) => matches(r, want, text)));
      rows.forEach((row) => { row.hidden = !shown.has(row); });
      doc.getElementById(table.id + "-count").textContent = shown.size + " of " + rows.length + " rows shown";
    }
    if (save) saveState();
  }
  function sortBy(th, descending) {
    const body = th.closest("table").tBodies[0], col = th.cellIndex, num = th.dataset.type === "num";
    const key = (row) => {
      const cell = row.cells[col], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
      return num ? (v === "" ? NaN : parseFloat(v)) : v;
    };
    const rows = Array.from(body.rows).map((row) => [key(row), row]), sign = descending ? -1 : 1;
    rows.sort(([a], [b]) => (num && (isNaN(a) || isNaN(b))) ? isNaN(a) - isNaN(b)  // no number: last either way
      : sign * (num ? a - b : a.localeCompare(b)));
    for (const other of th.parentNode.cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    body.append(...rows.map((pair) => pair[1]));
  }
  function saveState() {
    const p = new URLSearchParams(), th = doc.querySelector("#summary th[aria-sort]");
    selects.forEach((s) => { if (s.value) p.set(s.dataset.filter, s.value); });
    if (query.value) p.set("q", query.value);
    if (percat.checked) p.set("percat", "1");
    if (th) p.set("sort", (th.getAttribute("aria-sort") === "descending" ? "-" : "") + th.dataset.key);
    try { history.replaceState(null, "", "#" + p.toString()); } catch (e) { /* a browser may refuse on file: */ }
  }
  function loadState() {  // #task=...&method=...&q=...&percat=1&sort=-mean: a link to a view
    const p = new URLSearchParams(location.hash.slice(1)), sort = p.get("sort") || "";
    selects.forEach((s) => {
      const v = p.get(s.dataset.filter);
      if (Array.from(s.options).some((o) => o.value === v)) s.value = v;  // an unknown value is ignored
    });
    query.value = p.get("q") || "";
    percat.checked = p.get("percat") === "1";
    const th = all("#summary th").find((h) => h.dataset.key === sort.replace(/^-/, "") && h.dataset.type !== "none");
    if (th) sortBy(th, sort.startsWith("-"));
  }
  tables.forEach((table) => table.tHead.addEventListener("click", (e) => {
    const th = e.target.closest("th"), now = th && th.getAttribute("aria-sort");
    if (!th || th.dataset.type === "none") return;
    sortBy(th, now ? now === "ascending" : th.dataset.type === "num");  // numbers: largest first
    saveState();
  }));
  [...selects, percat].forEach((el) => el.addEventListener("change", () => apply(true)));
  query.addEventListener("input", () => apply(true));
  doc.getElementById("reset").addEventListener("click", () => {
    selects.forEach((s) => { s.value = ""; }); query.value = ""; percat.checked = false; apply(true);
  });
  all("figure img").forEach((img) => img.addEventListener("click", () => img.parentNode.classList.toggle("wide")));
  loadState();
  apply(false);
  root.dataset.js = "ready";
})();
"""
