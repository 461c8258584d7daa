"""Human tasks through the API (docs/user-guide/human-tasks.md): `data` checked against the step's
form, the list filtered by assignee, and decisions bound to a request version."""

from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_update
from tests.api.support import API_DB, assert_error
from tests.factories import make_order

pytestmark = API_DB

FORM = {"type": "object", "required": ["amount"], "properties": {
    "amount": {"type": "integer", "minimum": 1}, "note": {"type": "string", "maxLength": 20}}}


def start(approvers, **config):
    process = process_save(slug=f"review-{len(approvers)}-{len(config)}", name="Review",
                           definition={"steps": [{"id": "review", "type": "human", "config": {
                               "approvers": approvers, **config}}]})
    order = make_order()
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order, input={})
    return run, order


def test_decide_validates_data_against_the_form(api):
    run, _ = start(["manager@example.com"], form=FORM)
    approval = api.get("/api/approvals").json()["results"][0]
    assert approval["form"] == FORM and approval["version"] == 1
    url = f"/api/approvals/{approval['id']}/decide"
    for data, field in [({}, "data.amount"), ({"amount": "x"}, "data.amount"),
                        ({"amount": 3, "note": "y" * 21}, "data.note"), ([1], "data")]:
        error = assert_error(api.post(url, {"approved": True, "decidedBy": "manager@example.com",
                                            "data": data}, format="json"), 422)
        assert field in error["fields"], (data, error)
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    ok = api.post(url, {"approved": True, "decidedBy": "manager@example.com", "comment": "fine",
                        "data": {"amount": 7}}, format="json")
    assert ok.status_code == 200, ok.content
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    output = run.steps.get(step_id="review").output
    assert {k: output[k] for k in ("approved", "comment", "data", "decidedBy")} == {
        "approved": True, "comment": "fine", "data": {"amount": 7},
        "decidedBy": "manager@example.com"}


def test_assignee_me_lists_what_the_staff_user_may_decide(api, staff):
    start(["manager@example.com"])
    start(["someone-else"])
    mine = staff.get("/api/approvals?assignee=me&status=pending").json()
    assert mine["count"] == 1 and mine["results"][0]["approvers"] == ["manager@example.com"]
    assert api.get("/api/approvals?assignee=someone-else").json()["count"] == 1
    assert_error(api.get("/api/approvals?assignee=me"), 422)


def test_a_decision_on_an_outdated_version_is_refused(api):
    run, order = start(["manager@example.com"], fields=["total"])
    approval = api.get("/api/approvals").json()["results"][0]
    entity_update(entity=order, data={"total": 1}, merge=True)
    again = api.get("/api/approvals").json()["results"][0]
    assert again["version"] == 2 and again["changes"][0]["field"] == "total"
    url = f"/api/approvals/{approval['id']}/decide"
    assert_error(api.post(url, {"approved": True, "decidedBy": "manager@example.com",
                                "version": 1}, format="json"), 409)
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    assert api.post(url, {"approved": True, "decidedBy": "manager@example.com", "version": 2},
                    format="json").status_code == 200
