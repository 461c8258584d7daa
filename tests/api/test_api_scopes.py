"""Scopes (docs/rest-api.md#scopes): read, run, define, admin; a token without the scope a
call needs gets a 403 in the error format; staff sessions are not limited."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from automation.models import ApiClient
from automation.models.clients import SCOPES, all_scopes
from automation.services.api_auth import api_client_create
from tests.api.support import API_DB, assert_error, bearer_client
from tests.test_architecture import api_operations

pytestmark = API_DB

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def scoped(*scopes):
    client, _ = api_client_create(name="Scoped " + ",".join(scopes), scopes=list(scopes),
                                  rate_limit_per_minute=0)
    return bearer_client(client)


def writing_operations():
    ops = [(method, path) for view, method, path in api_operations()
           if method in WRITES and view.__name__ not in {"AuthAuthorizeApi", "AuthRefreshApi"}
           and view.__name__ != "NotFoundApi"]
    assert len(ops) >= 15
    return ops


def test_a_read_only_token_gets_403_on_every_writing_endpoint():
    reader = scoped("read")
    for method, path in writing_operations():
        response = reader.generic(method, path, data="{}", content_type="application/json")
        error = assert_error(response, 403, "forbidden")
        assert "scope" in error["message"], (method, path, error)
    # ...and may still read
    assert reader.get("/api/workflow-definitions").status_code == 200
    assert reader.get("/api/runs").status_code == 200


def test_run_may_start_work_but_not_define_it(greeting_process):
    runner = scoped("read", "run")
    error = assert_error(runner.post("/api/workflow-definitions",
                                     {"id": "x", "name": "X", "steps": []}, format="json"),
                         403, "forbidden")
    assert "'define'" in error["message"]
    assert_error(runner.delete("/api/functions/greet"), 403, "forbidden")
    response = runner.post("/api/workflow-definitions/greet-case/trigger", {"input": {}},
                           format="json")
    assert response.status_code == 202, response.content
    assert runner.post("/api/events", {"type": "x.happened", "data": {}},
                       format="json").status_code != 403


def test_define_may_change_definitions_but_not_run_them(greeting_process):
    definer = scoped("define")
    response = definer.put("/api/functions/greet", {"action": "transform", "config": {
        "output": {"greeting": "'Hi'"}}}, format="json")
    assert response.status_code == 200, response.content
    assert_error(definer.post("/api/workflow-definitions/greet-case/trigger", {"input": {}},
                              format="json"), 403, "forbidden")
    assert_error(definer.get("/api/runs"), 403, "forbidden")


def test_admin_allows_everything(greeting_process):
    admin = scoped("admin")
    assert admin.get("/api/runs").status_code == 200
    assert admin.post("/api/workflow-definitions/greet-case/trigger", {"input": {}},
                      format="json").status_code == 202


def test_staff_sessions_are_not_scoped(staff):
    assert staff.get("/api/runs").status_code == 200


def test_a_client_without_scopes_may_do_nothing():
    nobody = scoped()
    assert_error(nobody.get("/api/runs"), 403, "forbidden")


def test_clients_made_before_scopes_keep_every_scope():
    """The migration adds the field with `all_scopes` as its default, which is what every
    existing row gets."""
    from importlib import import_module

    migration = import_module("automation.migrations.0010_apib_scopes_parameters_schema")
    added = next(op for op in migration.Migration.operations
                 if getattr(op, "name", "") == "scopes")
    assert added.field.default() == list(SCOPES) == all_scopes()
    client, _ = api_client_create(name="Default")
    assert client.scopes == list(SCOPES)


def test_create_api_client_with_scopes():
    out = StringIO()
    call_command("create_api_client", "ERP", "--scopes", "read,run", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["scopes"] == ["read", "run"]
    assert ApiClient.objects.get(key=printed["key"]).scopes == ["read", "run"]
    with pytest.raises(CommandError, match="Unknown scope"):
        call_command("create_api_client", "Bad", "--scopes", "read,root", stdout=StringIO())
    assert not ApiClient.objects.filter(name="Bad").exists()


def test_the_admin_edits_scopes(admin_client):
    client, _ = api_client_create(name="Warehouse")
    url = reverse("admin:automation_apiclient_change", args=[client.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="scopes"' in page and 'value="define"' in page
    response = admin_client.post(url, {"scopes": ["read"], "rate_limit_per_minute": 30})
    assert response.status_code == 302, response.content.decode()[:2000]
    client.refresh_from_db()
    assert client.scopes == ["read"] and client.rate_limit_per_minute == 30
    assert_error(bearer_client(client).post("/api/events", {"type": "a.b"}, format="json"),
                 403, "forbidden")


def test_the_admin_creates_a_client_with_scopes(admin_client):
    admin_client.post(reverse("admin:automation_apiclient_add"),
                      {"name": "Reporter", "rate_limit_per_minute": 60, "scopes": ["read"]})
    assert ApiClient.objects.get(name="Reporter").scopes == ["read"]
