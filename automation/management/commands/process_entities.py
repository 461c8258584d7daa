import json
import time

from django.core.management.base import BaseCommand, CommandError

from automation.models import ApiProcess
from automation.services.batches import batch_create, batch_progress
from entities.management.commands._progress import ProgressBar
from entities.models import EntityType


class Command(BaseCommand):
    help = "Run an API process over every entity a filter matches (a batch), with progress."

    def add_arguments(self, parser):
        parser.add_argument("process", help="process slug")
        parser.add_argument("--type", required=True, help="entity type key")
        parser.add_argument("--filter", default="{}", help='JSON, e.g. {"status": "approved"}')
        parser.add_argument("--no-wait", action="store_true", help="start the batch and return")

    def handle(self, *args, **opts):
        process = ApiProcess.objects.filter(slug=opts["process"]).first()
        entity_type = EntityType.objects.filter(key=opts["type"]).first()
        if process is None or entity_type is None:
            raise CommandError("Unknown process or entity type.")
        try:
            spec = json.loads(opts["filter"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--filter is not JSON: {exc}") from exc
        batch = batch_create(entity_type=entity_type, process=process, filter=spec)
        self.stdout.write(f"batch {batch.pk}: {batch.total} entities")
        if opts["no_wait"]:
            return
        bar = ProgressBar(self.stderr, batch.total, label=process.slug)
        while True:
            batch.refresh_from_db()
            progress = batch_progress(batch)
            bar.update(progress["done"] + progress["failed"] + progress["cancelled"])
            if progress["status"] in ("completed", "cancelled"):
                break
            time.sleep(0.5)
        bar.finish()
        self.stdout.write(json.dumps(progress))
