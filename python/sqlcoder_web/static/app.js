// sqlcoder-web: the page's own script. It draws the chart from the JSON the
// server embedded (never from HTML), shows a question's progress with the time
// it has taken and a Cancel that stops it on the server, and fills the question
// box from a suggestion. Every form works without it.
"use strict";

(function () {
  var COLORS = ["#1d4ed8", "#b91c1c", "#15803d", "#b45309", "#6d28d9"];

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
    var chart = new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: datasets.length > 1 },
                   title: { display: !!spec.title, text: spec.title, color: "#1f2937" } },
        scales: { x: { title: { display: true, text: spec.x, color: "#1f2937" }, ticks: { color: "#334155" } },
                  y: { beginAtZero: true, title: { display: !!spec.y, text: spec.y, color: "#1f2937" },
                       ticks: { color: "#334155" } } }
      }
    });
    canvas.setAttribute("data-chart-type", spec.type);
    canvas.setAttribute("data-y-min", String(chart.scales.y.min));
  }

  function csrfOf(form) {
    var input = form.querySelector("input[name=csrf]");
    return input ? input.value : "";
  }

  function busyForms() {
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.getAttribute("data-sent") === "yes") { event.preventDefault(); return; }  // one at a time
        form.setAttribute("data-sent", "yes");
        var button = event.submitter && event.submitter.form === form ? event.submitter
                     : form.querySelector("button[type=submit]");
        if (button && button.id !== "thumbs-up" && button.id !== "thumbs-down") {
          button.setAttribute("data-label", button.textContent);
          button.setAttribute("aria-busy", "true");
          button.textContent = form.getAttribute("data-busy");
        }
        if (form.hasAttribute("data-cancel") && window.fetch && window.AbortController) {
          event.preventDefault();
          askInPage(form, button);
        }
      });
    });
  }

  // The question is sent by fetch, so that Cancel can abort it and the page can count the seconds; the
  // answer's page then replaces this one. Without script the form posts as any form does.
  function askInPage(form, button) {
    var box = form.querySelector(".progress");
    var elapsed = box.querySelector(".elapsed");
    var cancel = box.querySelector(".cancel");
    var label = button ? button.getAttribute("data-label") || "" : "";
    var started = Date.now();
    var request = new AbortController();
    box.hidden = false;
    var timer = setInterval(function () {
      elapsed.textContent = Math.floor((Date.now() - started) / 1000) + " s";
    }, 250);
    function done() {
      clearInterval(timer);
      form.removeAttribute("data-sent");
      if (button) { button.removeAttribute("aria-busy"); button.textContent = label; }
    }
    cancel.onclick = function () {
      request.abort();  // the page stops waiting for the answer ...
      var body = new URLSearchParams();
      body.set("csrf", csrfOf(form));
      // ... and the server cancels the question: PostgreSQL stops sqlcoder.ask, which closes the model request.
      fetch(form.getAttribute("data-cancel"), { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) { return r.ok; }, function () { return false; })
        .then(function (ok) {
          done();
          box.querySelector(".progress-text").textContent = ok ? "Cancelled." : "Could not cancel; reload the page.";
          elapsed.textContent = "";
          cancel.hidden = true;
          box.setAttribute("data-cancelled", ok ? "yes" : "no");
        });
    };
    fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
                         signal: request.signal })
      .then(function (r) {
        if (!/text\/html/.test(r.headers.get("content-type") || "")) { window.location.reload(); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        clearInterval(timer);
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.replaceChild(document.adoptNode(doc.documentElement), document.documentElement);
        var id = document.querySelector("#sql-form input[name=ask_id]");
        if (id && id.value) history.replaceState(null, "", "./?h=" + id.value);  // a reload reopens this answer
        start();
      }, function (err) { if (err && err.name !== "AbortError") { done(); form.submit(); } });
  }

  function suggestions() {
    document.querySelectorAll("button.suggestion").forEach(function (b) {
      b.addEventListener("click", function () {
        var q = document.getElementById("question");
        q.value = b.getAttribute("data-question");
        q.focus();
      });
    });
  }

  function start() { drawChart(); busyForms(); suggestions(); }

  document.addEventListener("DOMContentLoaded", start);
  window.addEventListener("pageshow", function (e) {  // back to a page from the cache: nothing is being sent
    if (e.persisted) document.querySelectorAll("form[data-sent]").forEach(function (f) { f.removeAttribute("data-sent"); });
  });
})();
