"""The acceptance test of HubSpot's rate limit (docs/user-guide/rate-limits.md): a batch
of 2,000 HubSpot calls on two real worker clusters, against the fake HubSpot enforcing
190 requests per 10 s (as HubSpot does, answering 429 with Retry-After). The connection
sets no limit: HubSpot's documented default applies. Not one request is refused, no
sliding 10-second window of the fake's own timestamps holds more than 190, every run
completes. At ~17 requests a second this takes about two minutes."""

import os

import pytest

from automation.connections.services import connection_create
from automation.models import Batch, Run, StepRun
from automation.services.batches import batch_create
from automation.services.processes import process_save
from entities.models import Entity

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CALLS = int(os.environ.get("ENTITYFLOW_TEST_RATE_LIMIT_CALLS", "2000"))
LIMIT, WINDOW = 190, 10.0  # HubSpot private apps (Professional, Enterprise)


def test_a_batch_of_hubspot_calls_stays_under_hubspots_limit_on_two_workers(
        order_type, hubspot_fake, settings, tmp_path):
    from tests.worker import Worker, wait_for

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    hubspot_fake.enforce_limit(LIMIT, WINDOW)
    connection_create(provider="hubspot", name="hubspot", base_url=hubspot_fake.url,
                      credentials={"accessToken": hubspot_fake.token})
    process = process_save(slug="note-per-order", name="A note per order",
                           entity_type=order_type, definition={"steps": [
                               {"id": "note", "type": "function", "function": "hubspot.add_note",
                                "config": {"params": {"body": "Order {{ entity.reference }}"}}}]})
    Entity.objects.bulk_create(  # straight to the table: no events, no other runs
        [Entity(entity_type=order_type, reference=f"RL-{n}", status="received",
                data={"total": n}) for n in range(CALLS)], batch_size=1000)
    workers = [Worker(tmp_path / "worker-1.log"), Worker(tmp_path / "worker-2.log")]
    try:
        batch = batch_create(entity_type=order_type, process=process)
        wait_for(lambda: Run.objects.filter(batch=batch, status__in=Run.FINISHED).count() == CALLS,
                 CALLS / 5 + 300, interval=2, message=f"the {CALLS} runs to finish")
    finally:
        for worker in workers:
            worker.stop()

    assert hubspot_fake.refused == 0
    assert hubspot_fake.count("/crm/v3/objects/notes", "POST") == CALLS
    busiest = hubspot_fake.busiest_window(WINDOW)
    print(f"\n{CALLS} calls: busiest {WINDOW:g}-second window {busiest} requests "
          f"(limit {LIMIT}), refused {hubspot_fake.refused}")
    assert busiest <= LIMIT
    assert Run.objects.filter(batch=batch, status=Run.Status.COMPLETED).count() == CALLS
    assert not StepRun.objects.filter(run__batch=batch, attempt__gt=1).exists()
    # the limit was really met: steps waited for it, and their history says so
    waited = [s for s in StepRun.objects.filter(run__batch=batch).values_list("logs", flat=True)
              if any(line.get("event") == "rate_limited" for line in s)]
    assert len(waited) > CALLS / 2
    assert Batch.objects.get(pk=batch.pk).total == CALLS
