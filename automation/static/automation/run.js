/* Run page: choose a step in the timeline, switch its tabs, follow a run that is still going. */
(function () {
  "use strict";
  const root = document.getElementById("ef-run");
  if (!root) return;

  function showStep(paneId, tab) {
    const pane = document.getElementById(paneId);
    if (!pane) return;
    root.querySelectorAll(".ef-step-pane").forEach((p) => { p.hidden = p !== pane; });
    root.querySelectorAll(".ef-timeline [data-pane]").forEach((b) => {
      b.setAttribute("aria-selected", String(b.dataset.pane === paneId));
    });
    if (tab) showTab(pane, tab);
  }

  function showTab(pane, tab) {
    pane.querySelectorAll(".ef-tabs [data-tab]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === tab)));
    pane.querySelectorAll(".ef-tab-pane").forEach((p) => { p.hidden = p.dataset.tab !== tab; });
  }

  root.addEventListener("click", function (event) {
    const stepButton = event.target.closest(".ef-timeline [data-pane]");
    if (stepButton) {
      showStep(stepButton.dataset.pane);
      history.replaceState(null, "", "#" + stepButton.dataset.pane);
      return;
    }
    const tabButton = event.target.closest(".ef-tabs [data-tab]");
    if (tabButton) {
      const pane = tabButton.closest(".ef-step-pane");
      showTab(pane, tabButton.dataset.tab);
      history.replaceState(null, "", "#" + pane.id + ":" + tabButton.dataset.tab);
    }
  });

  const [paneId, tab] = decodeURIComponent(location.hash.slice(1)).split(":");
  if (paneId) showStep(paneId, tab);

  if (root.dataset.finished !== "1") {
    EF.poll(async function () {
      const body = await EF.request(root.dataset.statusUrl);
      if (body.status !== root.dataset.status || String(body.steps) !== root.dataset.steps) {
        location.reload();
        return false;
      }
      return !body.finished;
    }, 1500);
  }
})();
