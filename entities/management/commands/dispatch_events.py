"""Dispatch entity events that were left undispatched (e.g. the process died after commit)."""

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from entities.management.commands._progress import ProgressBar
from entities.models import EntityEvent
from entities.outbox import events_sweep

BATCH = 500


class Command(BaseCommand):
    help = "Hand undispatched entity events to their subscribers (once each)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=float, default=5, metavar="SECONDS",
            help="Only events at least this old; younger ones are still being dispatched "
                 "after their commit (default 5).",
        )
        parser.add_argument("--loop", action="store_true",
                            help="Keep sweeping until interrupted.")
        parser.add_argument("--interval", type=float, default=5, metavar="SECONDS",
                            help="Pause between sweeps with --loop (default 5).")

    def handle(self, *args, older_than: float, loop: bool, interval: float, **options) -> None:
        try:
            while True:
                dispatched = self.sweep(older_than)
                if dispatched or not loop:  # a quiet loop stays quiet
                    self.stdout.write(f"Dispatched {dispatched} event(s).")
                if not loop:
                    return
                close_old_connections()
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def sweep(self, older_than: float) -> int:
        cutoff = timezone.now() - timedelta(seconds=older_than)
        pending = EntityEvent.objects.filter(
            dispatched_at__isnull=True, created_at__lte=cutoff
        ).count()
        if not pending:
            return 0
        bar = ProgressBar(self.stderr, pending, label="events")
        dispatched = 0
        for _ in range(-(-pending // BATCH)):
            swept = events_sweep(older_than_seconds=older_than, limit=BATCH)
            dispatched += swept
            bar.update(min(dispatched, pending))
            if swept < BATCH:
                break
        bar.finish()
        return dispatched
