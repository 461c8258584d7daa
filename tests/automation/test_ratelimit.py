"""Rate limits per connection (docs/user-guide/rate-limits.md): the shared bucket on the
database and on Redis, concurrent takers, a vendor's 429 holding it, the checks when a
limit is saved, and a step over the limit put off (not failed, not an attempt)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from automation.connections.limits import RateLimit
from automation.connections.services import ConnectionInvalidError, connection_create
from automation.engine.executor import execute_step
from automation.exceptions import DefinitionInvalidError
from automation.functions import buckets
from automation.functions.ratelimit import Throttle
from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = RateLimit(requests=100, per_seconds=86_400)  # a burst of 10, then one per ~16 min


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    if request.param == "redis" and not settings.Q_CLUSTER.get("redis"):
        pytest.skip("the Redis bucket needs REDIS_URL (the PostgreSQL + Redis lane)")
    settings.ENTITYFLOW_RATE_LIMIT_BACKEND = request.param
    return request.param


def unique_key(name: str) -> str:
    # Redis is shared by the whole test session: each test takes its own bucket
    return f"test:{name}:{timezone.now().timestamp()}"


def test_a_bucket_grants_its_burst_then_says_how_long_until_the_next(backend):
    key = unique_key("burst")
    granted = [buckets.take(key, SLOW, max_wait=0) for _ in range(12)]
    assert [ok for ok, _ in granted] == [True] * 10 + [False] * 2
    assert all(wait == 0 for _, wait in granted[:10])
    interval = buckets.Rates.of(SLOW).interval
    assert interval * 0.9 < granted[10][1] <= interval


def test_a_request_reserved_ahead_is_granted_with_its_wait(backend):
    key = unique_key("reserve")
    for _ in range(10):
        buckets.take(key, SLOW, max_wait=0)
    interval = buckets.Rates.of(SLOW).interval
    ok, wait = buckets.take(key, SLOW, max_wait=interval * 2)
    assert ok and interval * 0.9 < wait <= interval
    ok, wait = buckets.take(key, SLOW, max_wait=interval * 2)  # the turn after that one
    assert ok and interval * 1.9 < wait <= interval * 2


def test_concurrent_takers_share_one_bucket(backend):
    """40 threads, each with its own database connection (or Redis client), take at
    once: exactly the burst of 10 is granted, whoever asks."""
    key, results, start = unique_key("concurrent"), [], threading.Barrier(40)

    def taker():
        try:
            start.wait()
            results.append(buckets.take(key, SLOW, max_wait=0)[0])
        finally:
            db_connection.close()

    threads = [threading.Thread(target=taker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and results.count(True) == 10


def test_a_vendor_429_holds_the_bucket_for_everyone(backend):
    key = unique_key("held")
    limit = RateLimit(requests=190, per_seconds=10)
    assert buckets.take(key, limit, max_wait=0) == (True, 0.0)
    sleeps = []
    throttle = Throttle(key, limit, label="the test limit", sleep=sleeps.append)
    throttle.sent = 2  # halfway through a call: the hold is waited out, not put off
    throttle.refused(30)
    ok, wait = buckets.take(key, limit, max_wait=0)  # another worker: no request until then
    assert not ok and 29 < wait <= 30


def test_a_429_on_a_calls_first_request_puts_the_call_off(backend):
    from automation.exceptions import StepDeferredError

    key, limit = unique_key("first"), RateLimit(requests=190, per_seconds=10)
    throttle = Throttle(key, limit, label="the rate limit of 'x'", sleep=lambda s: None)
    throttle.before_request()
    with pytest.raises(StepDeferredError) as raised:
        throttle.refused(5)
    assert 5 <= raised.value.seconds <= 6.5
    assert "Delayed by the rate limit of 'x' (the vendor answered 429)" in raised.value.message


def test_only_the_vendors_retry_after_when_no_number_is_published(backend):
    key = unique_key("dropbox")
    limit = RateLimit(requests=None, per_seconds=1)  # Dropbox's default
    assert all(buckets.take(key, limit, max_wait=0)[0] for _ in range(50))
    buckets.hold(key, limit, 20)
    ok, wait = buckets.take(key, limit, max_wait=0)
    assert not ok and 19 < wait <= 20


def test_any_window_holds_no_more_than_the_limit():
    """The arithmetic behind the acceptance test: a burst plus the refill over any
    window of perSeconds stays within the limit, for small and large limits."""
    for requests, per in ((1, 1), (2, 60), (10, 1), (190, 10), (250, 10), (100_000, 86_400)):
        rates = buckets.Rates.of(RateLimit(requests=requests, per_seconds=per))
        burst = round(rates.tolerance / rates.interval) + 1
        assert burst + int(per / rates.interval) <= requests, (requests, per)


# -- saving a limit ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ({"requests": 0, "perSeconds": 10}, "requests must be a whole number from 1"),
    ({"requests": 10}, "perSeconds must be a number of seconds above 0"),
    ({"perSeconds": 10}, "requests is required"),
    ({"requests": 10, "perSeconds": 10, "per": 1}, "Unknown key 'per'"),
    ({"requests": 10, "perSeconds": 10, "key": "entity.("}, "key:"),
    ("fast", "rateLimit is an object"),
])
def test_a_connection_with_a_bad_limit_is_refused_with_the_reason(value, message):
    with pytest.raises(ConnectionInvalidError) as raised:
        connection_create(provider="hubspot", name="hs", credentials={"accessToken": "pat-x"},
                          options={"rateLimit": value})
    assert message in str(raised.value.fields["options.rateLimit"])
    assert raised.value.message.startswith("options.rateLimit: ")


def test_a_connection_may_set_or_disable_its_limit():
    for value in ({"requests": 50, "perSeconds": 10, "key": "entity.data.region"}, None, 0):
        connection_create(provider="hubspot", name=f"hs-{value and 1 or 0}-{value is None}",
                          credentials={"accessToken": "pat-x"}, options={"rateLimit": value})


def test_a_function_step_with_a_bad_limit_is_refused_at_save():
    step = {"id": "s", "type": "function", "function": "noop",
            "config": {"rateLimit": {"requests": "many", "perSeconds": 10}}}
    with pytest.raises(DefinitionInvalidError) as raised:
        process_save(slug="bad-limit", name="Bad limit", definition={"steps": [step]})
    assert "steps[0].config.rateLimit" in str(raised.value.fields)


# -- a step over the limit -----------------------------------------------------------------


@pytest.fixture
def one_an_hour(hubspot_fake):
    """A HubSpot connection allowing one request an hour, and a process adding a note."""
    connection = connection_create(
        provider="hubspot", name="hubspot-slow", base_url=hubspot_fake.url,
        credentials={"accessToken": hubspot_fake.token},
        options={"rateLimit": {"requests": 1, "perSeconds": 3600}})
    return connection


def note_process(slug: str, *, config: dict | None = None):
    step = {"id": "note", "type": "function", "function": "hubspot.add_note",
            "config": {"params": {"body": "{{ input.text }}", "connection": "hubspot-slow"},
                       **(config or {})}}
    return process_save(slug=slug, name=slug, definition={"steps": [step]})


def test_a_step_over_the_limit_is_put_off_not_failed_nor_counted(one_an_hour, hubspot_fake):
    process = note_process("notes")
    first, _ = run_start(process=process, trigger={"type": "manual"}, input={"text": "one"})
    second, _ = run_start(process=process, trigger={"type": "manual"}, input={"text": "two"})

    first.refresh_from_db()
    assert first.status == Run.Status.COMPLETED
    step = StepRun.objects.get(run=second)
    assert step.status == StepRun.Status.PENDING and step.attempt == 0 and step.error is None
    assert timedelta(minutes=50) < step.not_before - timezone.now() <= timedelta(minutes=61)
    [line] = step.logs
    assert line["event"] == "rate_limited" and line["times"] == 1
    assert line["message"].startswith(
        "Delayed by the rate limit of 'hubspot-slow' (1 requests per 3600 s); due again in ")
    assert Run.objects.get(pk=second.pk).status != Run.Status.FAILED
    assert hubspot_fake.count("/crm/v3/objects/notes", "POST") == 1

    # due again while the bucket is still empty: put off again, the same log line updated
    StepRun.objects.filter(pk=step.pk).update(not_before=timezone.now())
    execute_step(step.pk)
    step.refresh_from_db()
    assert step.status == StepRun.Status.PENDING and step.attempt == 0
    [line] = step.logs
    assert line["times"] == 2 and line["message"].endswith("(put off 2 times)")
    assert hubspot_fake.count("/crm/v3/objects/notes", "POST") == 1


def test_a_steps_own_limit_overrides_the_connections(one_an_hour, hubspot_fake):
    process = note_process("notes-free", config={"rateLimit": None})
    runs = [run_start(process=process, trigger={"type": "manual"}, input={"text": str(n)})[0]
            for n in range(3)]
    assert {Run.objects.get(pk=r.pk).status for r in runs} == {Run.Status.COMPLETED}
    assert hubspot_fake.count("/crm/v3/objects/notes", "POST") == 3


def test_a_key_gives_each_value_its_own_bucket(one_an_hour, hubspot_fake):
    process = note_process("notes-keyed", config={"rateLimit": {
        "requests": 1, "perSeconds": 3600, "key": "input.text"}})
    runs = [run_start(process=process, trigger={"type": "manual"}, input={"text": text})[0]
            for text in ("a", "b", "a")]
    statuses = [StepRun.objects.get(run=r).status for r in runs]
    assert statuses == [StepRun.Status.COMPLETED, StepRun.Status.COMPLETED,
                        StepRun.Status.PENDING]


def test_a_vendor_429_puts_the_step_off_and_it_completes_as_attempt_one(hubspot_fake):
    connection_create(provider="hubspot", name="hubspot-slow", base_url=hubspot_fake.url,
                      credentials={"accessToken": hubspot_fake.token})
    hubspot_fake.rate_limit(times=1, retry_after=1)
    process = note_process("notes-429")
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"text": "x"})

    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    step = StepRun.objects.get(run=run)
    assert step.attempt == 1
    assert [line["event"] for line in step.logs if line.get("event")] == ["rate_limited"]
    assert "the vendor answered 429" in step.logs[0]["message"]
    assert hubspot_fake.count("/crm/v3/objects/notes", "POST") == 2  # the 429, then the note


def test_the_admin_shows_each_connections_limit(admin_client, hubspot_fake):
    connection_create(provider="hubspot", name="hs-default", credentials={"accessToken": "pat-x"})
    connection_create(provider="hubspot", name="hs-own", credentials={"accessToken": "pat-x"},
                      options={"rateLimit": {"requests": 100, "perSeconds": 10,
                                             "key": "entity.data.region"}})
    connection_create(provider="http", name="plain-http", credentials={})
    page = admin_client.get("/admin/automation/connection/").content.decode()
    assert "190 requests per 10 s (the default)" in page
    assert "100 requests per 10 s, one bucket per entity.data.region" in page
    assert "<td class=\"field-rate_limit\">none</td>" in page
