import json
import time

from django.core.management.base import BaseCommand

from automation.tasks import sweep_all


class Command(BaseCommand):
    help = ("Dispatch events, re-enqueue lost steps, time out approvals and retry webhooks "
            "that are due. Also scheduled every minute in the worker.")

    def add_arguments(self, parser):
        parser.add_argument("--loop", type=float, default=0, help="repeat every N seconds")

    def handle(self, *args, **opts):
        while True:
            self.stdout.write(json.dumps(sweep_all()))
            if not opts["loop"]:
                return
            time.sleep(opts["loop"])
