/* Batch page: poll progress, move the bar, refresh the outcome table as runs finish. */
(function () {
  "use strict";
  const root = document.getElementById("ef-batch");
  if (!root) return;
  const outcomes = document.getElementById("ef-outcomes");
  const bar = document.getElementById("ef-progress");
  const FINISHED = ["completed", "cancelled"];
  const NOTES = {
    pending: "Waiting for a worker to start creating the runs.",
    fanning_out: "A worker is creating the runs, 500 at a time; they start as they are created.",
    running: "Every run has been created; the workers are running them.",
    cancelled: "Cancelled: runs that had not finished were stopped.",
  };
  let view = new URLSearchParams(location.search);
  let lastKey = "", lastTableAt = 0;

  function render(p) {
    const total = p.total || 0;
    const pct = (n) => (total ? (100 * n) / total : 0).toFixed(2) + "%";
    bar.children[0].style.width = pct(p.done);
    bar.children[1].style.width = pct(p.failed);
    bar.children[2].style.width = pct(p.cancelled);
    bar.children[3].style.width = pct(p.running);
    bar.setAttribute("aria-valuenow", p.percent);
    document.getElementById("ef-percent").textContent = p.percent + "%";
    document.getElementById("ef-total").textContent = EF.num(total);
    const created = document.getElementById("ef-created");
    created.dataset.created = p.created;
    created.hidden = p.created >= total || p.status === "cancelled";
    created.querySelector("b").textContent = EF.num(p.created);
    ["queued", "running", "done", "failed", "cancelled"].forEach((k) => {
      root.querySelector('[data-k="' + k + '"]').textContent = EF.num(p[k]);
    });
    root.querySelector('[data-k="rate"]').textContent = p.ratePerSecond ? p.ratePerSecond.toFixed(1) : "—";
    root.querySelector('[data-k="eta"]').textContent = FINISHED.includes(p.status) ? "done"
      : p.etaSeconds != null ? EF.duration(p.etaSeconds) : "—";
    document.getElementById("ef-rate-eta").textContent = p.etaSeconds != null && !FINISHED.includes(p.status)
      ? "about " + EF.duration(p.etaSeconds) + " left at " + p.ratePerSecond.toFixed(1) + "/s" : "";
    const pill = document.getElementById("ef-batch-status");
    pill.className = "ef-status ef-status-lg ef-status-" + p.status;
    pill.textContent = p.status.replace("_", " ");
    const retry = document.getElementById("ef-retry-failed");
    if (retry) {
      retry.disabled = !p.failed;
      retry.textContent = "↻ Retry failed" + (p.failed ? " (" + EF.num(p.failed) + ")" : "");
    }
    const cancel = document.getElementById("ef-cancel-batch");
    if (cancel) cancel.disabled = FINISHED.includes(p.status);
    root.dataset.status = p.status;
    document.getElementById("ef-batch-note").textContent = NOTES[p.status] || "";
  }

  async function refreshTable() {
    lastTableAt = Date.now();
    outcomes.innerHTML = await EF.request(root.dataset.outcomesUrl + "?" + view);
  }

  outcomes.addEventListener("click", async function (event) {
    const link = event.target.closest("a[data-show], a[data-page]");
    if (!link) return;
    event.preventDefault();
    view = new URL(link.href).searchParams;
    history.replaceState(null, "", "?" + view);
    await refreshTable();
  });

  const initial = JSON.parse(document.getElementById("ef-progress-initial").textContent);
  render(initial);
  lastKey = [initial.done, initial.failed, initial.cancelled].join();
  if (FINISHED.includes(initial.status)) return;

  EF.poll(async function () {
    const p = await EF.request(root.dataset.progressUrl);
    render(p);
    const key = [p.done, p.failed, p.cancelled].join();
    const done = FINISHED.includes(p.status);
    // The table is the heavier query: refresh it when something finished, at most every 3 s.
    if (key !== lastKey && (done || Date.now() - lastTableAt > 3000)) {
      lastKey = key;
      await refreshTable();
    }
    return !done;
  }, 1000);
})();
