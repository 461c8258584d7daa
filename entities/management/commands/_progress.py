"""A one-line progress bar for management commands (stderr, no dependency)."""

import time


class ProgressBar:
    def __init__(self, stream, total: int, label: str = "", width: int = 30):
        self.stream, self.total, self.label, self.width = stream, total, label, width
        self.started = time.monotonic()

    def update(self, done: int, total: int | None = None) -> None:
        total = self.total if total is None else total
        share = done / total if total else 1.0
        filled = int(self.width * share)
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {done}/{total} {share:4.0%} {rate:6.0f}/s", ending=""
        )
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("")
