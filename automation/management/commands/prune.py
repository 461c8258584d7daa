"""manage.py prune [--dry-run] [--chunk N]: delete what retention says may go."""

from django.core.management.base import BaseCommand, CommandParser

from automation.services.retention import cutoffs, prune, prune_counts, retention_days
from entities.management.commands._progress import ProgressBar


class Command(BaseCommand):
    help = ("Delete runs (with their steps and logs), events, webhook and inbound deliveries "
            "and task results older than their retention (ENTITYFLOW_RETENTION_DAYS), in "
            "short chunks. Unfinished runs and what they need are kept.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Only count what would be deleted.")
        parser.add_argument("--chunk", type=int, default=None, metavar="ROWS",
                            help="Rows per transaction (default ENTITYFLOW_PRUNE_CHUNK).")

    def handle(self, *args, dry_run: bool, chunk: int | None, **options) -> None:
        days = retention_days()
        counts = prune_counts()
        if dry_run:
            for kind, count in counts.items():
                self.stdout.write(f"{kind}: {count} would be deleted{self._kept(kind, days)}")
            return
        deleted = self._prune(counts, chunk)
        deleted.pop("more")
        for kind, count in deleted.items():
            self.stdout.write(f"{kind}: {count} deleted{self._kept(kind, days)}")

    def _prune(self, totals: dict[str, int], chunk: int | None) -> dict[str, int]:
        bars: dict[str, ProgressBar] = {}

        def progress(kind: str, done: int) -> None:
            if kind not in bars:
                for bar in bars.values():
                    bar.finish()
                bars.clear()
                bars[kind] = ProgressBar(self.stderr, totals[kind], label=kind)
            bars[kind].update(done, max(done, totals[kind]))

        deleted = prune(chunk=chunk, progress=progress)
        for bar in bars.values():
            bar.finish()
        return deleted

    @staticmethod
    def _kept(kind: str, days: dict[str, int]) -> str:
        if kind == "steps":
            return " (with their runs)"
        return f" (kept {days[kind]} days)" if kind in cutoffs() else " (kept forever)"
