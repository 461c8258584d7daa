import json
import time

from django.core.management.base import BaseCommand, CommandError

from automation.models import ApiProcess, Run
from automation.triggers.manual import manual_start
from entities.models import Entity


class Command(BaseCommand):
    help = "Start one run of an API process (manual trigger) and optionally wait for it."

    def add_arguments(self, parser):
        parser.add_argument("process", help="process slug")
        parser.add_argument("--entity", help="entity id or reference")
        parser.add_argument("--input", default="{}", help="JSON input")
        parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the end")

    def handle(self, *args, **opts):
        process = ApiProcess.objects.filter(slug=opts["process"]).first()
        if process is None:
            raise CommandError(f"No process '{opts['process']}'.")
        try:
            payload = json.loads(opts["input"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--input is not JSON: {exc}") from exc
        entity = _entity(opts["entity"]) if opts["entity"] else None
        run = manual_start(process=process, input=payload, entity=entity, source="run_process")
        if run is None:
            raise CommandError("The process's manual trigger condition is false; nothing started.")
        deadline = time.monotonic() + opts["wait"]
        run.refresh_from_db()
        while run.status not in Run.FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
            run.refresh_from_db()
        self.stdout.write(json.dumps({"executionId": str(run.pk), "status": run.status,
                                      "result": run.result, "error": run.error}, default=str))


def _entity(value: str) -> Entity:
    entity = Entity.objects.filter(reference=value).first()
    if entity is None:
        try:
            entity = Entity.objects.filter(pk=value).first()
        except Exception:  # not a UUID
            entity = None
    if entity is None:
        raise CommandError(f"No entity '{value}'.")
    return entity
