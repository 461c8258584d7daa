/* The entity page's Explain panel (docs/user-guide/explain.md): the what-if patch is sent
   to POST /api/entities/{id}/explain as it is typed (debounced), and the list of
   processes is redrawn from the answer. Also the why-timeline's kind filter. */
(function () {
  "use strict";
  const DEBOUNCE_MS = 300;

  function csrf() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function seenText(seen) {
    return Object.entries(seen || {}).map(([path, value]) =>
      path + " = " + (value && value.absent ? "(absent)" : JSON.stringify(value))).join(", ");
  }

  function drawProcess(process) {
    const item = el("li", { "data-process": process.process,
                            "data-would-start": String(process.wouldStart) });
    const verdict = process.wouldStart ? "would start" : "would not start";
    item.appendChild(el("strong", {}, process.name));
    item.appendChild(el("span", { class: "ef-verdict" }, " · " + verdict));
    if (process.wouldStart) {
      const steps = process.firstSteps.map((s) => s.name + (s.input !== undefined
        ? " (input " + JSON.stringify(s.input) + ")" : "")).join(" → ");
      if (steps) item.appendChild(el("div", { class: "ef-meta" }, "first: " + steps));
      (process.flowControl || []).forEach((note) => {  // queued, debounced, deduplicated
        item.appendChild(el("div", { class: "ef-meta ef-flow", "data-code": note.code },
                            note.message));
      });
    }
    process.reasons.forEach((reason) => {
      const seen = seenText(reason.seen);
      item.appendChild(el("div", { class: "ef-meta ef-reason", "data-code": reason.code },
                          reason.message + (seen ? " (saw " + seen + ")" : "")));
    });
    return item;
  }

  function explainPanel(panel) {
    const patch = panel.querySelector("#ef-explain-patch");
    const status = panel.querySelector("#ef-explain-status");
    const state = panel.querySelector("#ef-explain-state");
    const statusLine = panel.querySelector("#ef-explain-status-line");
    const list = panel.querySelector("#ef-explain-processes");
    let timer = null, asked = 0;

    async function ask() {
      let changes;
      try {
        changes = JSON.parse(patch.value.trim() || "{}");
      } catch (error) {
        state.textContent = "Not JSON yet: " + error.message;
        return;
      }
      if (changes === null || typeof changes !== "object" || Array.isArray(changes)) {
        state.textContent = "The patch must be a JSON object.";
        return;
      }
      const mine = ++asked;
      state.textContent = "Explaining…";
      const response = await fetch(panel.dataset.explainUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "X-CSRFToken": csrf() },
        body: JSON.stringify({ changes: changes, status: status.value }),
      });
      const body = await response.json().catch(() => ({}));
      if (mine !== asked) return;  // a later edit was sent meanwhile: its answer wins
      if (!response.ok) {
        state.textContent = (body.error && body.error.message) || ("The server answered " + response.status + ".");
        return;
      }
      const starting = body.processes.filter((p) => p.wouldStart).length;
      state.textContent = starting + " of " + body.processes.length +
        " processes would start. Nothing was saved, run or sent.";
      const through = body.status.passesThrough.length
        ? " (entering " + body.status.passesThrough.join(" → ") + ")" : "";
      const refused = body.transition && !body.transition.allowed
        ? " · move refused: " + body.transition.message : "";
      statusLine.textContent = "Status: " + body.status.from + " → " + body.status.to + through + refused;
      list.replaceChildren(...body.processes.map(drawProcess));
    }

    function later() {
      clearTimeout(timer);
      timer = setTimeout(() => ask().catch((error) => { state.textContent = error.message; }),
                         DEBOUNCE_MS);
    }
    patch.addEventListener("input", later);
    status.addEventListener("change", later);
    later();
  }

  function timelineFilter() {
    const select = document.getElementById("ef-timeline-kind");
    if (!select) return;
    select.addEventListener("change", () => {
      document.querySelectorAll("#ef-why-timeline li[data-kind]").forEach((item) => {
        item.hidden = Boolean(select.value) && item.dataset.kind !== select.value;
      });
    });
  }

  function start() {
    const panel = document.getElementById("ef-explain");
    if (panel) explainPanel(panel);
    timelineFilter();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
