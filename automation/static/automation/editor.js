/* Process editor: live validation while typing, step list <-> graph <-> JSON navigation. */
(function () {
  "use strict";
  const textarea = document.querySelector("textarea[data-ef-editor]");
  const panel = document.getElementById("ef-steps");
  if (!textarea || !panel) return;
  const stepsBody = document.getElementById("ef-steps-body");
  const graphBody = document.getElementById("ef-graph-body");
  const check = document.getElementById("ef-check");
  let sequence = 0;

  function setCheck(valid, count) {
    check.className = "ef-check " + (valid ? "ef-check-ok" : "ef-check-bad");
    check.textContent = valid ? "✓ valid" : "✗ " + (count ? count + " problem" + (count > 1 ? "s" : "") : "not valid");
  }

  const preview = EF.debounce(async function () {
    const mine = ++sequence;
    check.className = "ef-check ef-quiet";
    check.textContent = "checking…";
    try {
      const body = await EF.request(panel.dataset.previewUrl, { method: "POST", data: { definition: textarea.value } });
      if (mine !== sequence) return;  // a newer edit is on its way
      stepsBody.innerHTML = body.steps;
      graphBody.innerHTML = body.graph;
      setCheck(body.valid, body.errorCount);
    } catch (error) {
      check.textContent = error.message;
    }
  }, 350);

  textarea.addEventListener("input", preview);
  textarea.addEventListener("keydown", function (event) {
    if (event.key === "Tab" && !event.shiftKey) {
      event.preventDefault();
      textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
      preview();
    }
    if ((event.metaKey || event.ctrlKey) && event.key === "s") {
      event.preventDefault();
      const keep = textarea.form.querySelector("[name=_continue]");
      keep ? keep.click() : textarea.form.requestSubmit();
    }
  });

  document.querySelector("[data-ef-format]")?.addEventListener("click", function () {
    try {
      textarea.value = JSON.stringify(JSON.parse(textarea.value), null, 2);
      preview();
    } catch (error) {
      setCheck(false, 0);
      check.textContent = "✗ " + error.message;
    }
  });

  /* Click a step (list or graph): select its id in the JSON and mark it in both views. */
  function focusStep(index) {
    document.querySelectorAll(".ef-focus").forEach((el) => el.classList.remove("ef-focus"));
    document.querySelectorAll('[data-step-index="' + index + '"]').forEach((el) => el.classList.add("ef-focus"));
    const item = stepsBody.querySelector('li[data-step-index="' + index + '"]');
    if (!item) return;
    item.scrollIntoView({ block: "nearest", behavior: "smooth" });
    const id = item.dataset.stepId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const match = new RegExp('"id"\\s*:\\s*"' + id + '"').exec(textarea.value);
    if (!match) return;
    textarea.focus({ preventScroll: true });
    textarea.setSelectionRange(match.index, match.index + match[0].length);
    const line = textarea.value.slice(0, match.index).split("\n").length;
    const height = parseFloat(getComputedStyle(textarea).lineHeight) || 19;
    textarea.scrollTop = Math.max(0, (line - 4) * height);
  }
  document.addEventListener("click", function (event) {
    const target = event.target.closest("[data-step-index]");
    if (target && (stepsBody.contains(target) || graphBody.contains(target))) focusStep(target.dataset.stepIndex);
  });
  graphBody.addEventListener("keydown", function (event) {
    const node = event.target.closest("[data-step-index]");
    if (node && event.key === "Enter") focusStep(node.dataset.stepIndex);
  });
})();
