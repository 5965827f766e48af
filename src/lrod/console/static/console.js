// lrod console: live updates of an operation page over server-sent events.
// Progressive enhancement only: every page reads without this file. Values
// are written with textContent, never as HTML.
"use strict";

(function () {
  var live = document.getElementById("live");
  if (!live || !live.dataset.events || !window.EventSource) {
    return;
  }
  function set(id, text) {
    var node = document.getElementById(id);
    if (node) {
      node.textContent = text;
    }
  }
  function show(id, visible) {
    var node = document.getElementById(id);
    if (node) {
      node.hidden = !visible;
    }
  }
  var source = new EventSource(live.dataset.events);
  source.onmessage = function (event) {
    var op = JSON.parse(event.data);
    var state = document.getElementById("state");
    state.textContent = op.state;
    state.className = "state " + op.state.toLowerCase();
    var bar = document.getElementById("bar");
    if (op.percent !== null) {
      bar.value = op.percent;
      bar.textContent = op.percent + "%";
      set("progress-text", op.percent + "% (" + op.completed + " of " + op.total + ")");
    }
    set("stage", op.stage || "-");
    set("eta", op.eta || "-");
    set("attempt", op.attempt);
    set("updated", op.updated.replace("T", " ").replace("+00:00", " UTC"));
    show("cancel-note", op.cancel_requested && !op.done);
    if (op.done) {
      source.close();
      live.removeAttribute("data-events");
      show("cancel-link", false);
      show("not-done", false);
      show("result-box", true);
      set("response", op.response);
      show("response", Boolean(op.response));
      show("response-heading", Boolean(op.response));
      set("error", op.error);
      show("error", Boolean(op.error));
      show("error-heading", Boolean(op.error));
      live.dataset.done = "true";
    }
  };
})();
