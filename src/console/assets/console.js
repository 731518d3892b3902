// model-ledger console script. Loaded from this origin only (the CSP forbids inline script).

// htmx requests carry the session's CSRF token in a header, as forms carry it in a field.
document.addEventListener("htmx:configRequest", function (event) {
  var token = document.body.dataset.csrf;
  if (token) {
    event.detail.headers["X-CSRF-Token"] = token;
  }
});

// Live refresh: when the server says something was committed, re-read this page's <main>
// (unless the user is typing in a form, which a swap would wipe).
document.addEventListener("DOMContentLoaded", function () {
  if (!document.body.dataset.live || typeof EventSource === "undefined" || !window.htmx) {
    return;
  }
  var source = new EventSource("/console/events");
  source.addEventListener("changed", function () {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA")) {
      return;
    }
    htmx.ajax("GET", window.location.pathname + window.location.search, {
      target: "#main", select: "#main", swap: "outerHTML"
    }).then(function () {
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    });
  });
});
