"""HubSpot CRM v3 with a private-app token (VENDORS.md §1): upserts, associations, notes.

Upserts search first and fall back to the id in a 409 "Existing ID" message, because a
record just created can be missing from search for a few seconds.
"""

import re
from datetime import UTC, datetime
from urllib.parse import quote

import requests

from integrations.base import Action, ActionResult, Connector, CredentialField
from integrations.exceptions import (
    ConnectorConfigError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRequestError,
)
from integrations.hubspot.errors import error_for_response, stringify
from integrations.registry import register

OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3"}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "notes": "note"}
# Widely used but not a documented contract (VENDORS §1.8): hence the setting.
DEFAULT_RECORD_URL = "https://{uiDomain}/contacts/{portalId}/record/{objectTypeId}/{recordId}"
_EXISTING_ID = re.compile(r"Existing ID: (\d+)")

_STR = {"type": "string", "minLength": 1}
_ID = {"type": ["string", "integer"], "minLength": 1}
_PROPS = {"type": "object",
          "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}


def _params(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props,
            "additionalProperties": False}


@register
class HubSpotConnector(Connector):
    slug = "hubspot"
    display_name = "HubSpot"
    default_base_url = "https://api.hubapi.com"
    base_url_setting = "HUBSPOT_BASE_URL"
    rate_limit_default_wait = 10.0  # no Retry-After: wait out the 10-second window
    # Private apps on Professional and Enterprise: 190 requests per 10 s (VENDORS §1.10).
    default_rate_limit = {"requests": 190, "perSeconds": 10}
    creates_external_links = True
    credential_fields = (CredentialField(
        "accessToken", "Access token",
        help_text="The private app's access token (pat-…), with the CRM scopes you use."),)
    actions = {
        "upsert_contact": Action(
            "upsert_contact", _params(["email"], email=_STR, properties=_PROPS),
            "Create or update the contact with this email.", effect="always"),
        "upsert_company": Action(
            "upsert_company", _params(["domain"], domain=_STR, properties=_PROPS),
            "Create or update the company with this domain.", effect="always"),
        "upsert_deal": Action(
            "upsert_deal",
            {**_params([], externalId=_ID, dealname=_STR, properties=_PROPS,
                       matchByName={"type": "boolean"}),
             "anyOf": [{"required": ["externalId"]}, {"required": ["dealname"]}],
             "anyOfMessage": "give externalId (update) or dealname"},
            "Update the deal `externalId`, else the deal named `dealname`, else create it.",
            updates_existing_object_type="deal", effect="always"),
        "associate": Action(
            "associate",
            _params(["fromObjectType", "fromObjectId", "toObjectType", "toObjectId"],
                    fromObjectType=_STR, fromObjectId=_ID, toObjectType=_STR, toObjectId=_ID),
            "Default (unlabelled) association between two records (v4).", effect="always"),
        "add_note": Action(
            "add_note",
            _params(["body"], body={"type": "string", "minLength": 1, "maxLength": 65536},
                    timestamp={"type": ["string", "integer"]},
                    associations={"type": "array", "items": _params(
                        ["objectType", "objectId"], objectType=_STR, objectId=_ID)}),
            "Create a note and associate it with the given records.", effect="always"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._account_info: dict | None = None

    # -- actions -------------------------------------------------------------------

    def test_connection(self) -> dict:
        info = self._get_account_info()
        return {"ok": True, "portalId": info.get("portalId"), "uiDomain": info.get("uiDomain"),
                "accountType": info.get("accountType"), "timeZone": info.get("timeZone")}

    def upsert_contact(self, params: dict) -> ActionResult:
        return self._upsert("contacts", "email", params["email"], params.get("properties"))

    def upsert_company(self, params: dict) -> ActionResult:
        return self._upsert("companies", "domain", params["domain"], params.get("properties"))

    def upsert_deal(self, params: dict) -> ActionResult:
        props = stringify(params.get("properties"))
        if params.get("dealname"):
            props["dealname"] = params["dealname"]
        if params.get("externalId"):
            try:
                record = self._update("deals", params["externalId"], props)
                return self._result("deals", record, False)
            except ConnectorRequestError as err:
                if err.upstream_status != 404 or not props.get("dealname"):
                    raise
        if params.get("matchByName", True) and props.get("dealname"):
            found = self._search_one("deals", "dealname", props["dealname"])
            if found:
                return self._result("deals", self._update("deals", found["id"], props), False)
        return self._result("deals", *self._create("deals", props))

    def associate(self, params: dict) -> ActionResult:
        parts = [params["fromObjectType"], params["fromObjectId"], params["toObjectType"],
                 params["toObjectId"]]
        a, b, c, d = (quote(str(p), safe="") for p in parts)
        url = f"{self.base_url}/crm/v4/objects/{a}/{b}/associations/default/{c}/{d}"
        body = self.call_json("PUT", url)
        output = {"status": body.get("status"), "results": body.get("results", [])}
        return ActionResult(output=output)

    def add_note(self, params: dict) -> ActionResult:
        timestamp = params.get("timestamp") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        props = {"hs_timestamp": str(timestamp), "hs_note_body": params["body"]}
        note = self.call_json("POST", self._objects_url("notes"), json={"properties": props})
        for target in params.get("associations", []):
            self.associate({"fromObjectType": "notes", "fromObjectId": note["id"],
                            "toObjectType": target["objectType"], "toObjectId": target["objectId"]})
        output = {"id": str(note["id"]), "objectType": "note", "created": True,
                  "associations": params.get("associations", [])}
        return ActionResult(output=output, external_links=[self.link("note", note["id"], None)])

    # -- helpers -------------------------------------------------------------------

    def _objects_url(self, object_type: str, suffix: str = "") -> str:
        return f"{self.base_url}/crm/v3/objects/{object_type}{suffix}"

    def _upsert(self, object_type: str, key: str, value: str, properties) -> ActionResult:
        props = stringify(properties)
        props[key] = value
        found = self._search_one(object_type, key, value)
        if found:
            return self._result(object_type, self._update(object_type, found["id"], props), False)
        return self._result(object_type, *self._create(object_type, props))

    def _search_one(self, object_type: str, key: str, value: str) -> dict | None:
        query = {"filterGroups": [{"filters": [{"propertyName": key, "operator": "EQ",
                                                "value": value}]}],
                 "properties": [key], "limit": 1}
        body = self.call_json("POST", self._objects_url(object_type, "/search"), json=query)
        results = body.get("results") or []
        return results[0] if results else None

    def _create(self, object_type: str, props: dict) -> tuple[dict, bool]:
        try:
            body = {"properties": props}
            return self.call_json("POST", self._objects_url(object_type), json=body), True
        except ConnectorConflictError as err:  # created meanwhile, not yet searchable
            match = _EXISTING_ID.search(err.message)
            if not match:
                raise
            return self._update(object_type, match.group(1), props), False

    def _update(self, object_type: str, record_id, props: dict) -> dict:
        url = self._objects_url(object_type, f"/{quote(str(record_id), safe='')}")
        return self.call_json("PATCH", url, json={"properties": props})

    def _result(self, object_type: str, record: dict, created: bool) -> ActionResult:
        record_id = str(record["id"])
        output = {"id": record_id, "objectType": SINGULAR[object_type], "created": created,
                  "properties": record.get("properties", {})}
        url = self._record_url(object_type, record_id)
        return ActionResult(output=output,
                            external_links=[self.link(SINGULAR[object_type], record_id, url)])

    def _get_account_info(self) -> dict:
        if self._account_info is None:
            self._account_info = self.call_json("GET", f"{self.base_url}/account-info/v3/details")
        return self._account_info

    def _record_url(self, object_type: str, record_id: str) -> str | None:
        portal_id, ui_domain = self.options.get("portalId"), self.options.get("uiDomain")
        if not portal_id:
            try:
                info = self._get_account_info()
            except ConnectorError:  # the write succeeded; a missing link is not worth a retry
                return None
            portal_id, ui_domain = info.get("portalId"), ui_domain or info.get("uiDomain")
        template = self.setting("HUBSPOT_RECORD_URL_TEMPLATE", DEFAULT_RECORD_URL)
        return template.format(uiDomain=ui_domain or "app.hubspot.com", portalId=portal_id,
                               objectTypeId=OBJECT_TYPE_IDS[object_type], recordId=record_id)

    def _auth_headers(self) -> dict:
        token = self.credentials.get("accessToken")
        if not token:
            raise ConnectorConfigError("The HubSpot connection has no accessToken.")
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        kwargs["headers"] = {**self._auth_headers(), **kwargs.get("headers", {})}
        return super().call(method, url, **kwargs)

    def raise_for_status(self, resp: requests.Response, message: str | None = None) -> None:
        message = self.error_message(resp) if message is None else message
        wait = self.retry_after(resp) if resp.status_code in (429, 477) else None
        err = error_for_response(resp, message, wait)
        if err is not None:
            raise err
        super().raise_for_status(resp, message)
