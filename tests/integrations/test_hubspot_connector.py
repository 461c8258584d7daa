import time

import pytest

from integrations.base import ConnectionConfig
from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConfigError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
)
from integrations.hubspot import HubSpotConnector


def test_upsert_contact_creates_then_updates(hubspot, hubspot_fake):
    first = hubspot.run("upsert_contact", {"email": "ada@example.com",
                                           "properties": {"firstname": "Ada"}})
    assert first.output["created"] is True
    contact_id = first.output["id"]
    assert first.external_links == [{
        "provider": "hubspot", "objectType": "contact", "externalId": contact_id,
        "url": f"https://app.hubspot.com/contacts/12345678/record/0-1/{contact_id}"}]

    second = hubspot.run("upsert_contact", {"email": "ADA@example.com",
                                            "properties": {"lastname": "Lovelace"}})
    assert second.output["created"] is False
    assert second.output["id"] == contact_id
    assert len(hubspot_fake.objects["contacts"]) == 1
    stored = hubspot_fake.objects["contacts"][contact_id]["properties"]
    assert stored["firstname"] == "Ada" and stored["lastname"] == "Lovelace"
    assert hubspot_fake.count("/account-info/v3/details") == 1  # cached per instance


def test_search_request_follows_the_documented_shape(hubspot, hubspot_fake):
    hubspot.run("upsert_contact", {"email": "ada@example.com"})
    search = next(c for c in hubspot_fake.calls if c.path.endswith("/search"))
    assert search.json() == {
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ",
                                       "value": "ada@example.com"}]}],
        "properties": ["email"], "limit": 1}
    assert search.headers["Authorization"] == f"Bearer {hubspot_fake.token}"


def test_upsert_contact_uses_existing_id_from_409_when_search_lags(hubspot, hubspot_fake):
    hubspot.run("upsert_contact", {"email": "ada@example.com"})
    hubspot_fake.objects["contacts"]["501"]["_searchable"] = False
    result = hubspot.run("upsert_contact", {"email": "ada@example.com",
                                            "properties": {"phone": "+46 1"}})
    assert result.output == {**result.output, "id": "501", "created": False}
    assert hubspot_fake.objects["contacts"]["501"]["properties"]["phone"] == "+46 1"
    assert [(c.method, c.path) for c in hubspot_fake.calls[-3:]] == [
        ("POST", "/crm/v3/objects/contacts/search"), ("POST", "/crm/v3/objects/contacts"),
        ("PATCH", "/crm/v3/objects/contacts/501")]


def test_upsert_company_by_domain(hubspot, hubspot_fake):
    a = hubspot.run("upsert_company", {"domain": "acme.example", "properties": {"name": "Acme"}})
    b = hubspot.run("upsert_company", {"domain": "acme.example",
                                       "properties": {"numberofemployees": 12}})
    assert a.output["id"] == b.output["id"] and b.output["created"] is False
    assert hubspot_fake.objects["companies"][a.output["id"]]["properties"]["numberofemployees"] \
        == "12"
    assert a.external_links[0]["url"].endswith(f"/record/0-2/{a.output['id']}")


def test_upsert_deal_create_update_by_id_and_by_name(hubspot, hubspot_fake):
    created = hubspot.run("upsert_deal", {"dealname": "Order A-1", "properties": {
        "dealstage": "appointmentscheduled", "pipeline": "default", "amount": 1500.5}})
    deal_id = created.output["id"]
    assert created.output["created"] is True
    assert created.external_links[0]["url"] == \
        f"https://app.hubspot.com/contacts/12345678/record/0-3/{deal_id}"
    assert hubspot_fake.objects["deals"][deal_id]["properties"]["amount"] == "1500.5"

    by_id = hubspot.run("upsert_deal", {"externalId": deal_id,
                                        "properties": {"dealstage": "closedwon"}})
    assert by_id.output["created"] is False and by_id.output["id"] == deal_id
    by_name = hubspot.run("upsert_deal", {"dealname": "Order A-1",
                                          "properties": {"amount": "99"}})
    assert by_name.output["id"] == deal_id
    assert len(hubspot_fake.objects["deals"]) == 1
    assert hubspot_fake.objects["deals"][deal_id]["properties"]["dealstage"] == "closedwon"


def test_upsert_deal_with_stale_external_id_creates(hubspot, hubspot_fake):
    result = hubspot.run("upsert_deal", {"externalId": "999", "dealname": "Order B-2",
                                         "properties": {"dealstage": "qualifiedtobuy"}})
    assert result.output["created"] is True and result.output["id"] != "999"


def test_associate_uses_v4_default(hubspot, hubspot_fake):
    contact = hubspot.run("upsert_contact", {"email": "ada@example.com"}).output["id"]
    company = hubspot.run("upsert_company", {"domain": "acme.example"}).output["id"]
    result = hubspot.run("associate", {"fromObjectType": "contacts", "fromObjectId": contact,
                                       "toObjectType": "companies", "toObjectId": company})
    assert result.output["status"] == "COMPLETE"
    assert ("contacts", contact, "companies", company) in hubspot_fake.associations
    assert hubspot_fake.count(
        f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}",
        method="PUT") == 1


def test_add_note_with_associations(hubspot, hubspot_fake):
    contact = hubspot.run("upsert_contact", {"email": "ada@example.com"}).output["id"]
    result = hubspot.run("add_note", {"body": "Called the customer.", "associations": [
        {"objectType": "contacts", "objectId": contact}]})
    note = hubspot_fake.objects["notes"][result.output["id"]]
    assert note["properties"]["hs_note_body"] == "Called the customer."
    assert note["properties"]["hs_timestamp"].endswith("Z")
    assert ("notes", result.output["id"], "contacts", contact) in hubspot_fake.associations
    assert result.external_links[0]["objectType"] == "note"


def test_record_url_uses_ui_domain_and_setting(hubspot, hubspot_fake, override):
    hubspot_fake.account["uiDomain"] = "app-eu1.hubspot.com"
    link = hubspot.run("upsert_contact", {"email": "a@b.example"}).external_links[0]
    assert link["url"].startswith("https://app-eu1.hubspot.com/contacts/12345678/record/0-1/")
    override(HUBSPOT_RECORD_URL_TEMPLATE="https://{uiDomain}/c/{portalId}/{objectTypeId}/{recordId}")
    link = hubspot.run("upsert_contact", {"email": "c@d.example"}).external_links[0]
    assert link["url"] == f"https://app-eu1.hubspot.com/c/12345678/0-1/{link['externalId']}"


def test_test_connection_reports_the_portal(hubspot):
    assert hubspot.test_connection() == {"ok": True, "portalId": 12345678,
                                         "uiDomain": "app.hubspot.com",
                                         "accountType": "STANDARD", "timeZone": "US/Eastern"}


def test_base_url_from_settings(hubspot_fake, override):
    override(HUBSPOT_BASE_URL=hubspot_fake.url)
    connector = HubSpotConnector(ConnectionConfig("hubspot", {"accessToken": hubspot_fake.token}))
    assert connector.base_url == hubspot_fake.url
    assert connector.test_connection()["ok"] is True


def test_429_with_retry_after_is_waited_out(hubspot, hubspot_fake):
    hubspot.sleep = time.sleep  # a real wait, once
    hubspot_fake.rate_limit(retry_after=1, path="/crm/v3/objects/contacts/search")
    started = time.monotonic()
    result = hubspot.run("upsert_contact", {"email": "ada@example.com"})
    assert time.monotonic() - started >= 1.0
    assert result.output["created"] is True
    assert hubspot_fake.count("/crm/v3/objects/contacts/search") == 2


def test_429_retries_are_bounded_then_reported(hubspot, hubspot_fake, sleeps):
    hubspot_fake.rate_limit(times=10, retry_after=2)
    with pytest.raises(ConnectorRateLimitedError) as exc:
        hubspot.run("upsert_contact", {"email": "ada@example.com"})
    assert sleeps == [2.0, 2.0, 2.0]
    assert hubspot_fake.count() == 4
    assert exc.value.retryable and exc.value.retry_after == 2.0


def test_429_longer_than_the_cap_is_handed_to_the_engine(hubspot, hubspot_fake, sleeps,
                                                          override):
    override(HUBSPOT_RATE_LIMIT_MAX_WAIT=5)
    hubspot_fake.rate_limit(retry_after=30)
    with pytest.raises(ConnectorRateLimitedError) as exc:
        hubspot.run("upsert_contact", {"email": "ada@example.com"})
    assert sleeps == [] and hubspot_fake.count() == 1
    assert exc.value.retry_after == 30.0


def test_429_without_retry_after_waits_the_ten_second_window(hubspot, hubspot_fake, sleeps):
    hubspot_fake.rate_limit(retry_after=None)
    hubspot.run("upsert_contact", {"email": "ada@example.com"})
    assert sleeps == [10.0]


def test_401_fails_at_once(hubspot_fake, connect):
    connector = connect("hubspot", {"accessToken": "pat-na1-wrong-token-000"}, hubspot_fake.url)
    with pytest.raises(ConnectorAuthError) as exc:
        connector.run("upsert_contact", {"email": "ada@example.com"})
    assert str(exc.value).startswith("HubSpot rejected the access token (401): Authentication "
                                     "credentials not found.")
    assert "correlationId" in str(exc.value)
    assert not exc.value.retryable
    assert hubspot_fake.count() == 1


def test_403_names_the_missing_scopes(hubspot, hubspot_fake):
    from fakes.server import load_fixture

    hubspot_fake.script(403, load_fixture("hubspot", "error_403_scopes", correlationId="c-1"))
    with pytest.raises(ConnectorAuthError, match="missing scopes: crm.objects.contacts.write"):
        hubspot.run("upsert_contact", {"email": "ada@example.com"})


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable_and_retryable(hubspot, hubspot_fake, status):
    hubspot_fake.fail(status)
    with pytest.raises(ConnectorUnavailableError) as exc:
        hubspot.run("upsert_contact", {"email": "ada@example.com"})
    assert exc.value.retryable and exc.value.upstream_status == status
    assert hubspot_fake.count() == 1


def test_missing_token_is_a_config_error(hubspot_fake, connect):
    with pytest.raises(ConnectorConfigError, match="accessToken"):
        connect("hubspot", {}, hubspot_fake.url).run("upsert_contact", {"email": "a@b.example"})
    assert hubspot_fake.count() == 0


def test_params_are_validated_before_any_call(hubspot, hubspot_fake):
    assert HubSpotConnector.validate_params("upsert_contact", {}) == {"email": ["is required"]}
    assert HubSpotConnector.validate_params("upsert_contact", {}, partial=True) == {}
    assert HubSpotConnector.validate_params("upsert_deal", {"properties": {}}) == {
        "params": ["give externalId (update) or dealname"]}
    assert HubSpotConnector.validate_params("upsert_contact", {
        "email": "a@b.example", "properties": {"x": {"nested": 1}}, "extra": 1}) == {
        "properties.x": ["must be of type string or number or boolean or null"],
        "extra": ["is not an allowed field"]}
    with pytest.raises(ConnectorConfigError) as exc:
        hubspot.run("add_note", {"associations": [{"objectType": "contacts"}]})
    assert exc.value.fields == {"body": ["is required"],
                                "associations[0].objectId": ["is required"]}
    assert hubspot_fake.count() == 0
