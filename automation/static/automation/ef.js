/* Shared helpers of the entityflow staff pages: CSRF-aware fetch, polling, formatting. */
(function () {
  "use strict";
  const EF = (window.EF = window.EF || {});

  EF.csrf = function () {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  };

  /* JSON or HTML from `url`; a non-2xx answer throws an Error carrying the server's message. */
  EF.request = async function (url, options) {
    const { method = "GET", data = null } = options || {};
    const init = { method, credentials: "same-origin",
                   headers: { "X-Requested-With": "fetch", Accept: "application/json, text/html" } };
    if (method !== "GET") {
      init.headers["X-CSRFToken"] = EF.csrf();
      init.body = new URLSearchParams(data instanceof FormData ? data : data || {});
    }
    const response = await fetch(url, init);
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const message = body && body.error ? body.error.message
        : response.status === 403 ? "You do not have permission to do this."
        : "The server answered " + response.status + ".";
      const error = new Error(message);
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  };

  /* Calls `fn` every `interval` ms until it returns false; slower while the tab is hidden. */
  EF.poll = function (fn, interval) {
    let stopped = false, timer = null;
    const tick = async function () {
      if (stopped) return;
      let again = true;
      try { again = (await fn()) !== false; } catch (error) { console.warn(error); }
      if (again && !stopped) timer = setTimeout(tick, document.hidden ? interval * 4 : interval);
    };
    tick();
    return function stop() { stopped = true; clearTimeout(timer); };
  };

  EF.debounce = function (fn, wait) {
    let timer = null;
    return function () {
      const args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, wait);
    };
  };

  EF.num = (n) => Number(n || 0).toLocaleString();
  EF.esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  EF.duration = function (seconds) {
    if (seconds == null) return "—";
    if (seconds < 60) return Math.max(1, Math.round(seconds)) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.round(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  };
  EF.pill = (status) => '<span class="ef-status ef-status-' + EF.esc(status) + '">' +
    EF.esc(String(status).replace("_", " ")) + "</span>";
})();
