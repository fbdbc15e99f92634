// Sort tables by clicking a header; filter the layer table; print folded sections open. The page reads fine
// without this.
(function () {
  "use strict";
  function sortKey(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent; }
    var num = parseFloat(raw);
    return { empty: raw === "", isNum: raw !== "" && !isNaN(num) && isFinite(Number(raw)), num: num, text: raw.toLowerCase() };
  }
  function compare(a, b) {
    if (a.empty || b.empty) { return a.empty === b.empty ? 0 : (a.empty ? 1 : -1); }
    if (a.isNum && b.isNum) { return a.num - b.num; }
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.classList.add("sortable");
      th.setAttribute("title", "click to sort");
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = sortKey(r1.cells[col]), b = sortKey(r2.cells[col]);
          if (a.empty || b.empty) { return compare(a, b); }
          return dir * compare(a, b);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var filter = document.getElementById("layer-filter");
  if (filter) {
    filter.hidden = false;
    filter.addEventListener("input", function () {
      var needle = filter.value.toLowerCase();
      document.querySelectorAll("#layers tbody tr").forEach(function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) === -1;
      });
    });
  }
  // Print every collapsed section too, then fold back what was closed.
  var opened = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) { d.open = true; opened.push(d); });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
  // A link to a layer card (a graph node, a finding) opens the card; without JavaScript it still jumps to it.
  function openCard(href) {
    var el = href && href.charAt(0) === "#" ? document.getElementById(decodeURIComponent(href.slice(1))) : null;
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", function () { openCard(location.hash); });
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a") : null;
    if (a) { openCard(a.getAttribute("href")); }
  });
  openCard(location.hash);
  document.body.setAttribute("data-js", "ready");
})();
