"""Helpers of the browser tests."""

import time
from pathlib import Path

STAFF_EMAIL = "staff@example.com"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shot(page, name: str, *, full_page: bool = True) -> Path:
    """A screenshot for people to look at (test-artifacts/ is not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


class Timer:
    """Wall time of a block, to print (the tests assert no timings; bench/ measures)."""

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


# The batch page caught part-way: null until the bar is between 0 and 100 % with a rate
# and an ETA shown, then the numbers on the page at that moment.
LIVE_PROGRESS = """() => {
  const text = (selector) => document.querySelector(selector).textContent.trim();
  const count = (key) => Number(text('[data-k="' + key + '"]').replace(/[^0-9.]/g, ""));
  const percent = parseFloat(text("#ef-percent"));
  const rate = text('[data-k="rate"]'), eta = text('[data-k="eta"]');
  if (!(percent > 0 && percent < 100) || rate === "—" || eta === "—") return null;
  const bar = document.getElementById("ef-progress");
  return {percent, rate, eta, status: text("#ef-batch-status"), queued: count("queued"),
          bar: Number(bar.getAttribute("aria-valuenow")),
          filled: parseFloat(bar.querySelector(".ef-p-done").style.width),
          running: count("running"), done: count("done"), failed: count("failed")};
}"""
