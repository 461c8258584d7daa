"""Demo data: the `order` type, demo API processes (and the `hubspot` connection they
use), orders ORD-00001.. and a demo login. Safe to run again."""

import time

from django.core.management.base import BaseCommand, CommandParser

from automation.demo import (
    COPY_TO_HUBSPOT_SLUG,
    HUBSPOT_CONNECTION,
    HUBSPOT_TOKEN_ENV,
    demo_processes_ensure,
)
from entities.demo import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    create_demo_orders,
    demo_user_ensure,
    order_type_ensure,
)
from entities.management.commands._progress import ProgressBar
from entities.models import Entity


class Command(BaseCommand):
    help = "Load the demo order type, N orders (default 500) and a demo staff login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=500, metavar="N",
                            help="Orders ORD-00001..N to have (existing ones are kept).")

    def handle(self, *args, orders: int, **options) -> None:
        started = time.monotonic()
        order = order_type_ensure()
        demo_user_ensure()
        processes = demo_processes_ensure()  # first, so new orders start their runs
        bar = ProgressBar(self.stderr, orders, label="orders")
        created = create_demo_orders(orders, progress=bar.update)
        if created:
            bar.finish()
        by_status = {
            status: Entity.objects.filter(entity_type=order, status=status).count()
            for status in order.statuses.values_list("key", flat=True)
        }
        summary = ", ".join(f"{count} {status}" for status, count in by_status.items() if count)
        self.stdout.write(self.style.SUCCESS(
            f"Created {created} orders ({orders - created} already there) "
            f"in {time.monotonic() - started:.1f}s. Orders now: {summary or 'none'}."
        ))
        self.stdout.write("Demo processes: " + ", ".join(
            p.name + ("" if p.enabled else " (disabled)") for p in processes))
        hubspot = next((p for p in processes if p.slug == COPY_TO_HUBSPOT_SLUG), None)
        if hubspot is not None and not hubspot.enabled:
            self.stdout.write(
                f"{hubspot.name} is disabled: enter a HubSpot private-app token on the "
                f"connection '{HUBSPOT_CONNECTION}' in the admin and enable the process, or "
                f"set {HUBSPOT_TOKEN_ENV} and run load_demo again.")
        self.stdout.write(f"Demo login: {DEMO_USERNAME} / {DEMO_PASSWORD} (staff superuser)")
