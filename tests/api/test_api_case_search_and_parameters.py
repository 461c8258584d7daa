"""GET /api/cases finds a returning person's case; parameter sets are listed and read, and
checked against the definition's parameters JSON Schema (docs/rest-api.md#cases)."""

import json

from django.urls import reverse

from automation.models import ApiProcess, Parameters
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

AMOUNT_SCHEMA = {"type": "object", "required": ["amount"],
                 "properties": {"amount": {"type": "number", "minimum": 1}},
                 "additionalProperties": False}


def test_find_cases_by_personal_number_company_number_or_email(api):
    ada = api.post("/api/cases", {"firstName": "Ada", "personalNumber": "19121210-1234",
                                  "email": "Ada@Example.com"}, format="json").json()
    acme = api.post("/api/cases", {"companyName": "Acme", "companyNumber": "556677-8899"},
                    format="json").json()
    api.post("/api/cases", {"firstName": "Bob", "personalNumber": "19800101-0000"}, format="json")

    found = api.get("/api/cases", {"personalNumber": "19121210-1234"}).json()
    assert found["count"] == 1 and found["results"][0]["id"] == ada["id"]
    assert found["results"][0]["email"] == "Ada@Example.com"
    assert [c["id"] for c in api.get("/api/cases", {"email": "ada@example.COM"}).json()[
        "results"]] == [ada["id"]]
    assert [c["id"] for c in api.get("/api/cases", {"companyNumber": "556677-8899"}).json()[
        "results"]] == [acme["id"]]
    # every filter given must match
    assert api.get("/api/cases", {"personalNumber": "19121210-1234",
                                  "companyNumber": "556677-8899"}).json()["count"] == 0
    assert api.get("/api/cases").json()["count"] == 3
    assert api.get("/api/cases", {"email": "nobody@example.com"}).json()["results"] == []


def test_case_email_must_be_an_email(api):
    error = assert_error(api.post("/api/cases", {"email": "not an email"}, format="json"), 422)
    assert "email" in error["fields"]


def test_parameter_sets_are_listed_and_read(api, greeting_process):
    made = [api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                         "parameters": {"amount": n}}, format="json").json()
            for n in (1, 2)]
    one = api.get(f"/api/parameters/{made[0]['id']}")
    assert one.status_code == 200
    assert one.json() == made[0]
    listed = api.get("/api/parameters", {"workflowDefinitionId": "greet-case"}).json()
    assert [p["id"] for p in listed["results"]] == [made[1]["id"], made[0]["id"]]
    assert api.get("/api/parameters", {"workflowDefinitionId": "other"}).json()["count"] == 0
    assert_error(api.get("/api/parameters/00000000-0000-0000-0000-000000000000"), 404)


def test_parameters_are_checked_against_the_definitions_schema(api, greeting_process):
    response = api.patch("/api/workflow-definitions/greet-case",
                         {"parametersSchema": AMOUNT_SCHEMA}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["parametersSchema"] == AMOUNT_SCHEMA
    # a PATCH or PUT that leaves it out keeps it
    assert api.patch("/api/workflow-definitions/greet-case", {"description": "x"},
                     format="json").json()["parametersSchema"] == AMOUNT_SCHEMA

    error = assert_error(api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                                      "parameters": {"amount": 0}},
                                  format="json"), 422)
    assert "parameters.amount" in error["fields"]
    error = assert_error(api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                                      "parameters": {}}, format="json"), 422)
    assert "'amount' is a required property" in error["fields"]["parameters"][0]
    assert not Parameters.objects.exists()
    ok = api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                      "parameters": {"amount": 5}}, format="json")
    assert ok.status_code == 201, ok.content

    # null removes it
    assert api.patch("/api/workflow-definitions/greet-case", {"parametersSchema": None},
                     format="json").json()["parametersSchema"] is None
    assert api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                        "parameters": {"anything": True}},
                    format="json").status_code == 201


def test_an_invalid_parameters_schema_is_a_422(api, greeting_process):
    error = assert_error(api.patch("/api/workflow-definitions/greet-case",
                                   {"parametersSchema": {"type": "banana"}}, format="json"), 422)
    assert "parametersSchema" in error["fields"]
    assert ApiProcess.objects.get(slug="greet-case").parameters_schema is None


def test_the_admin_shows_parameter_sets_and_edits_the_schema(admin_client, api,
                                                              greeting_process):
    process = ApiProcess.objects.get(slug="greet-case")
    page = reverse("admin:automation_apiprocess_change", args=[process.pk])
    form = admin_client.get(page).content.decode()
    assert 'name="parameters_schema_text"' in form
    response = admin_client.post(page, {
        "name": process.name, "description": "", "entity_type": "", "enabled": "on",
        "definition": json.dumps(process.definition),
        "parameters_schema_text": json.dumps(AMOUNT_SCHEMA)})
    assert response.status_code == 302, response.content.decode()[:3000]
    process.refresh_from_db()
    assert process.parameters_schema == AMOUNT_SCHEMA

    made = api.post("/api/parameters", {"workflowDefinitionId": "greet-case",
                                        "parameters": {"amount": 7}}, format="json").json()
    listing = admin_client.get(reverse("admin:automation_parameters_changelist")).content.decode()
    assert made["id"] in listing
    detail = admin_client.get(reverse("admin:automation_parameters_change",
                                      args=[made["id"]])).content.decode()
    assert "&quot;amount&quot;: 7" in detail and "minimum" in detail  # the set and its schema
