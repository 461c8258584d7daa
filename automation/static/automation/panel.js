/* Control panel: live count of matching entities, then start a batch and go to its page. */
(function () {
  "use strict";
  const form = document.getElementById("ef-panel");
  if (!form) return;
  const options = JSON.parse(document.getElementById("ef-panel-options").textContent);
  const type = form.elements.entity_type, status = form.elements.status, process = form.elements.process;
  const countN = document.getElementById("ef-count-n"), countBox = document.getElementById("ef-count");
  const countLabel = document.getElementById("ef-count-label"), countNote = document.getElementById("ef-count-note");
  const start = document.getElementById("ef-start"), startError = document.getElementById("ef-start-error");
  const startNote = document.getElementById("ef-start-note");
  let count = 0, sequence = 0;

  function fill(select, rows, first) {
    const keep = select.value;
    select.innerHTML = first ? '<option value="">' + EF.esc(first) + "</option>" : "";
    rows.forEach(([value, label]) => select.insertAdjacentHTML("beforeend",
      '<option value="' + EF.esc(value) + '">' + EF.esc(label) + "</option>"));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  function typeChanged() {
    fill(status, options.statuses[type.value] || [], "Any status");
    const usable = options.processes.filter((p) => p.type === null || String(p.type) === type.value);
    fill(process, usable.map((p) => [p.slug, p.name + (p.type === null ? " (any type)" : "")]));
    if (!usable.length) process.innerHTML = '<option value="">No enabled process for this type</option>';
  }

  function ready() {
    start.disabled = !(count > 0 && process.value);
    const chosen = process.selectedOptions[0];
    document.getElementById("ef-start-summary").textContent = count > 0 && process.value
      ? "Runs “" + chosen.textContent + "” once for each of them." : "";
  }

  const recount = EF.debounce(async function () {
    const mine = ++sequence;
    countBox.classList.add("ef-loading");
    const query = new URLSearchParams(new FormData(form));
    query.delete("csrfmiddlewaretoken");
    const began = performance.now();
    try {
      const body = await EF.request(form.dataset.countUrl + "?" + query);
      if (mine !== sequence) return;
      count = body.count;
      countN.textContent = EF.num(count);
      countLabel.textContent = (body.label || "entities").toLowerCase() + (count === 1 ? "" : "s") + " match";
      countNote.textContent = "counted in " + Math.round(performance.now() - began) + " ms";
    } catch (error) {
      if (mine !== sequence) return;
      count = 0;
      countN.textContent = "–";
      countNote.textContent = error.message;
    } finally {
      if (mine === sequence) countBox.classList.remove("ef-loading");
      ready();
    }
  }, 250);

  type.addEventListener("change", typeChanged);
  form.addEventListener("input", recount);
  form.addEventListener("change", function () { recount(); ready(); });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (start.disabled) return;
    start.disabled = true;
    start.textContent = "Starting…";
    startError.hidden = true;
    const began = performance.now();
    try {
      const body = await EF.request(form.dataset.startUrl, { method: "POST", data: new FormData(form) });
      const took = Math.round(performance.now() - began);
      window.efLastStartMs = took;
      startNote.hidden = false;
      startNote.textContent = "Batch of " + EF.num(body.total) + " started in " + took + " ms. Opening it…";
      location.href = body.url + "?started=" + took;
    } catch (error) {
      startError.hidden = false;
      startError.textContent = error.message;
      start.textContent = "Start batch";
      ready();
    }
  });

  typeChanged();
  recount();
})();
