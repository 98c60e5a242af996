// Follows a running job's log (server-sent events from /live/…) and reloads the page
// into the job's final status when the server says the job has ended.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !log.dataset.live || !window.EventSource) {
    return;
  }
  var state = document.getElementById("live-state");
  var source = new EventSource(log.dataset.live);
  source.addEventListener("log", function (event) {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
    log.appendChild(document.createTextNode(JSON.parse(event.data).text));
    if (atBottom) {
      window.scrollTo(0, document.body.scrollHeight);
    }
  });
  source.addEventListener("end", function (event) {
    source.close();
    if (state) {
      state.textContent = "The job ended: " + JSON.parse(event.data).status + ".";
    }
    window.location.reload();
  });
  source.onerror = function () {
    if (state && source.readyState !== EventSource.CLOSED) {
      state.textContent = "Connection lost; reconnecting…";
    }
  };
})();
