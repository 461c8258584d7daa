"""The operator pages: re-run form with preview, retry with a version choice, the
paused-process banner and the breaker page that resumes (release or discard)."""

import pytest
from django.urls import reverse

from automation.models import HeldStart, Run
from automation.services import breaker
from automation.services.runs import run_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def failing(make_process):
    return make_process([
        {"id": "pick", "type": "function", "function": "test.record", "next": "ship"},
        {"id": "ship", "type": "function", "function": "test.flaky",
         "config": {"params": {"failures": 1}}}], slug="ship-it", name="Ship it")


def failed(process) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"order": 1})
    run.refresh_from_db()
    assert run.status == "failed"
    return run


def test_rerun_page_previews_then_starts_a_linked_attempt(admin_client, failing):
    run = failed(failing)
    page = reverse("admin:automation_run_rerun", args=[run.pk])
    html = admin_client.get(page, {"step": "ship"}).content.decode()
    assert 'id="ef-rerun-input"' in html and "&quot;order&quot;" in html  # its old input

    preview = admin_client.post(page, {"step": "ship", "version": "pinned", "preview": "1",
                                       "input": '{"order": 2}'}).content.decode()
    assert 'id="ef-plan-steps">ship<' in preview and 'id="ef-plan-kept">pick<' in preview
    assert Run.objects.count() == 1

    bad = admin_client.post(page, {"step": "ship", "version": "pinned", "start": "1",
                                   "input": "{not json"}).content.decode()
    assert "not valid JSON" in bad and Run.objects.count() == 1

    response = admin_client.post(page, {"step": "ship", "version": "pinned", "start": "1",
                                        "input": '{"order": 2}'}, follow=True)
    new = run.reruns.get()
    assert response.redirect_chain[-1][0] == reverse("admin:automation_run_change", args=[new.pk])
    assert new.status == "completed" and new.steps.get(step_id="ship").input == {"order": 2}
    html = response.content.decode()
    assert 'id="ef-attempts"' in html and str(run.pk)[:8] in html and "kept" in html
    old = admin_client.get(reverse("admin:automation_run_change", args=[run.pk])).content.decode()
    assert str(new.pk)[:8] in old and "Re-run from here" in old


def test_retry_offers_pinned_or_latest(admin_client, failing, make_process):
    run = failed(failing)
    html = admin_client.get(reverse("admin:automation_run_change", args=[run.pk])).content.decode()
    assert 'name="version"' in html and "latest (v1)" in html
    make_process([{"id": "pick", "type": "function", "function": "test.record", "next": "ship"},
                  {"id": "ship", "type": "function", "function": "noop"}], slug="ship-it")
    admin_client.post(reverse("admin:automation_run_retry", args=[run.pk]), {"version": "latest"})
    new = run.reruns.get()
    assert new.version.number == 2 and new.status == "completed"


def test_banner_and_breaker_page_resume(admin_client, make_process):
    process = make_process([{"id": "a", "type": "function", "function": "noop"}], name="Noisy")
    breaker.pause(process=process, reason="too many starts")
    with pytest.raises(breaker.ProcessPausedError):
        run_start(process=process, trigger={"type": "manual"})
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="ef-paused-banner"' in index and "Noisy" in index and "1 start(s) held" in index
    page = reverse("admin:automation_apiprocess_breaker", args=[process.pk])
    assert "too many starts" in admin_client.get(page).content.decode()

    admin_client.post(page, {"limits": '{"perMinute": 5}'})
    assert breaker.breaker_of(process).limits == {"perMinute": 5}
    admin_client.post(page, {"limits": '{"nope": 1}'})
    assert breaker.breaker_of(process).limits == {"perMinute": 5}

    admin_client.post(page, {"held": "release"})
    assert HeldStart.objects.get().status == "released"
    assert Run.objects.get(process=process).status == "completed"
    assert 'id="ef-paused-banner"' not in admin_client.get(reverse("admin:index")).content.decode()


def test_bulk_rerun_page_previews_starts_and_the_batch_page_pauses(admin_client, failing):
    runs = [failed(failing) for _ in range(3)]
    page = reverse("admin:automation_bulk_rerun")
    preview = admin_client.post(page, {"process": "ship-it", "status": "failed",
                                       "failedAt": "ship", "rate": "20", "preview": "1"})
    html = preview.content.decode()
    assert 'id="ef-bulk-count">3<' in html and str(runs[0].pk)[:8] in html
    assert Run.objects.count() == 3
    response = admin_client.post(page, {"process": "ship-it", "status": "failed", "rate": "20",
                                        "start": "1"}, follow=True)
    html = response.content.decode()
    assert "re-run of 3 runs" in html and 'id="ef-rate-limit">20.0<' in html
    assert Run.objects.filter(rerun_of__in=runs, status="completed").count() == 3
    batch_url = response.redirect_chain[-1][0]
    paused = admin_client.post(batch_url.rstrip("/").rsplit("/", 1)[0] + "/pause/", follow=True)
    assert any("Only a batch that is starting runs" in str(m) for m in paused.context["messages"])
    panel = admin_client.get(reverse("admin:automation_batch_changelist")).content.decode()
    assert "re-run of runs" in panel
