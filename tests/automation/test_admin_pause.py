"""Pausing and resuming processes from the admin's process list
(docs/user-guide/operating-runs.md#pause-and-resume)."""

import pytest
from django.urls import reverse

from automation.models import HeldStart, Run
from automation.services.breaker import ProcessPausedError
from automation.services.runs import run_start

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:automation_apiprocess_changelist")


def test_pause_and_resume_selected_processes_from_the_list(admin_client, make_process):
    process = make_process([{"id": "a", "type": "function", "function": "noop"}], slug="ship")
    other = make_process([{"id": "a", "type": "function", "function": "noop"}], slug="other")
    response = admin_client.post(CHANGELIST, {"action": "pause_selected",
                                              "_selected_action": [process.pk]}, follow=True)
    assert "1 process(es) paused." in response.content.decode()
    html = admin_client.get(CHANGELIST).content.decode()
    assert html.count(">paused</a>") == 1 and "paused by admin" in html
    with pytest.raises(ProcessPausedError):
        run_start(process=process, trigger={"type": "manual"})
    run_start(process=other, trigger={"type": "manual"})  # the other one is not paused

    response = admin_client.post(CHANGELIST, {"action": "resume_selected",
                                              "_selected_action": [process.pk, other.pk]},
                                 follow=True)
    assert ("1 process(es) resumed: 0 held step(s) continued, 1 held start(s) released."
            in response.content.decode())
    assert HeldStart.objects.get().status == "released"
    assert Run.objects.filter(process=process).count() == 1
    assert ">paused</a>" not in admin_client.get(CHANGELIST).content.decode()
