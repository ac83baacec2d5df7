// sqlcoder-web: the page's own script. It draws the chart from the JSON the
// server embedded (never from HTML), and marks a form busy while it waits.
"use strict";

(function () {
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed"];

  function drawChart() {
    var canvas = document.getElementById("chart");
    var data = document.getElementById("chart-data");
    if (!canvas || !data || typeof Chart === "undefined") return;
    var spec = JSON.parse(data.textContent);
    var datasets = spec.series.map(function (s, i) {
      var c = COLORS[i % COLORS.length];
      return { label: s.label, data: s.data, borderColor: c, backgroundColor: spec.type === "bar" ? c + "cc" : c,
               tension: 0.2, pointRadius: spec.labels.length > 60 ? 0 : 3 };
    });
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: true } },
        scales: { x: { title: { display: true, text: spec.x } }, y: { beginAtZero: spec.type === "bar" } }
      }
    });
    canvas.setAttribute("data-chart-type", spec.type);
  }

  function busyForms() {
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var button = form.querySelector("button[type=submit]");
        if (button) { button.disabled = true; button.textContent = form.getAttribute("data-busy"); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawChart(); busyForms(); });
})();
