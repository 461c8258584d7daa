/* "Process entity" modal: choose a process, see its dry run, run it, watch it finish. */
(function () {
  "use strict";
  const dialog = document.getElementById("ef-process-modal");
  const opener = document.getElementById("ef-process-open");
  if (!dialog || !opener) return;
  const choices = document.getElementById("ef-process-choices");
  const dry = document.getElementById("ef-dry");
  const live = document.getElementById("ef-run-live");
  const runButton = document.getElementById("ef-run-btn");
  const note = document.getElementById("ef-modal-note");
  let loaded = false, running = false, ranOnce = false, stopPolling = null;

  const selected = () => dialog.querySelector("input[name=ef-process]:checked");

  async function loadProcesses() {
    try {
      choices.innerHTML = await EF.request(dialog.dataset.processesUrl);
      loaded = true;
      if (selected()) preview();
    } catch (error) {
      choices.innerHTML = '<p class="ef-notice">' + EF.esc(error.message) + "</p>";
    }
  }

  async function preview() {
    const choice = selected();
    if (!choice) return;
    runButton.disabled = true;
    live.hidden = true;
    dry.innerHTML = '<span class="ef-live"><span class="ef-spinner"></span> Working out what would run…</span>';
    try {
      const html = await EF.request(dialog.dataset.dryRunUrl + "?process=" + encodeURIComponent(choice.value));
      if (selected() !== choice) return;
      dry.innerHTML = html;
      runButton.disabled = running;
      note.textContent = "Nothing runs until you press Run.";
    } catch (error) {
      dry.innerHTML = '<p class="ef-notice">' + EF.esc(error.message) + "</p>";
    }
  }

  function showRun(body) {
    live.hidden = false;
    const finished = body.finished;
    const error = body.error && body.status === "failed" ? '<p class="ef-small" style="color:var(--ef-red);margin:6px 0 0">' +
      EF.esc(body.error.message) + "</p>" : "";
    const step = !finished && body.current ? '<span class="ef-quiet ef-small" id="ef-run-step">step <span class="ef-mono">' +
      EF.esc(body.current.step) + "</span> " + EF.esc(body.current.status) + "</span>" : "";
    live.innerHTML = '<div class="ef-live" id="ef-run-state" data-status="' + EF.esc(body.status) + '">' +
      (finished ? "" : '<span class="ef-spinner"></span>') + "<b>Run</b> " + EF.pill(body.status) + step +
      '<a style="margin-left:auto" href="' + EF.esc(body.url || body.runUrl) + '" id="ef-open-run">Open the run →</a></div>' + error;
  }

  async function run() {
    const choice = selected();
    if (!choice || running) return;
    running = true;
    runButton.disabled = true;
    runButton.textContent = "Starting…";
    try {
      const started = await EF.request(dialog.dataset.runUrl, { method: "POST", data: { process: choice.value } });
      ranOnce = true;
      runButton.textContent = "Running…";
      showRun(started);
      note.textContent = "Started. This window follows the run.";
      stopPolling = EF.poll(async function () {
        const body = await EF.request(started.statusUrl);
        showRun(body);
        if (!body.finished) return true;
        running = false;
        runButton.disabled = false;
        runButton.textContent = "▶ Run again";
        note.textContent = "The run " + body.status + ".";
        return false;
      }, 700);
    } catch (error) {
      running = false;
      runButton.disabled = false;
      runButton.textContent = "▶ Run";
      live.hidden = false;
      live.innerHTML = '<p class="ef-notice" style="color:var(--ef-red)">' + EF.esc(error.message) + "</p>";
    }
  }

  opener.addEventListener("click", function () {
    dialog.showModal();
    if (!loaded) loadProcesses();
  });
  dialog.addEventListener("change", function (event) {
    if (event.target.name === "ef-process") preview();
  });
  runButton.addEventListener("click", run);
  dialog.addEventListener("click", function (event) {
    if (event.target.closest("[data-close]") || event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", function () {
    if (stopPolling && !running) stopPolling();
    if (ranOnce && !running) location.reload();  // show the new run and status on the page
  });
})();
