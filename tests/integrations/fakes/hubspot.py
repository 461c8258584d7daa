"""Fake HubSpot CRM v3 / v4 associations / account-info (VENDORS §1.11 checklist)."""

import math
import time
import uuid
from collections import deque
from datetime import UTC, datetime

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from .server import FakeServer, json_response, load_fixture

TYPES = {"contact": "contacts", "contacts": "contacts", "0-1": "contacts",
         "company": "companies", "companies": "companies", "0-2": "companies",
         "deal": "deals", "deals": "deals", "0-3": "deals",
         "note": "notes", "notes": "notes", "0-46": "notes"}
DEFAULT_SEARCH_PROPERTIES = {
    "contacts": ["firstname", "lastname", "email", "lastmodifieddate", "hs_object_id",
                 "createdate"],
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "deals": ["dealname", "amount", "closedate", "pipeline", "dealstage", "createdate",
              "hs_lastmodifieddate", "hs_object_id"],
    "notes": ["hs_timestamp", "hs_note_body", "hs_object_id"],
}
RATE_HEADERS = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "99"}

URLS = Map([
    Rule("/crm/v3/objects/<otype>", methods=["POST"], endpoint="create"),
    Rule("/crm/v3/objects/<otype>/search", methods=["POST"], endpoint="search"),
    Rule("/crm/v3/objects/<otype>/<oid>", methods=["GET", "PATCH"], endpoint="record"),
    Rule("/crm/v4/objects/<ftype>/<fid>/associations/default/<ttype>/<tid>",
         methods=["PUT"], endpoint="associate"),
    Rule("/account-info/v3/details", methods=["GET"], endpoint="account"),
])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeHubSpot(FakeServer):
    def __init__(self, token: str = "pat-na1-11111111-2222-3333-4444-555555555555",
                 *, portal_id: int = 12345678, ui_domain: str = "app.hubspot.com"):
        super().__init__()
        self.token = token
        self.account = {**load_fixture("hubspot", "account_info"), "portalId": portal_id,
                        "uiDomain": ui_domain}
        self.objects: dict[str, dict[str, dict]] = {t: {} for t in set(TYPES.values())}
        self.associations: list[tuple[str, str, str, str]] = []
        self.searchable = True  # False: new records are missing from search (indexing lag)
        self._next_id = 501
        # enforce_limit: HubSpot's TEN_SECONDLY_ROLLING limit, a sliding window
        self.limit: tuple[int, float] | None = None
        self.accepted_at: list[float] = []  # time.monotonic() of every request let through
        self.refused = 0  # requests answered 429 by the enforced limit
        self._window: deque[float] = deque()

    # -- scripting helpers ----------------------------------------------------------

    def rate_limit(self, *, times: int = 1, retry_after: int | None = 1, path=None) -> None:
        headers = {**RATE_HEADERS, "X-HubSpot-RateLimit-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = load_fixture("hubspot", "error_429", correlationId=uuid.uuid4())
        self.script(429, body, headers=headers, times=times, path=path)

    def enforce_limit(self, requests: int = 190, per_seconds: float = 10.0) -> None:
        """Answer 429 (with Retry-After, as HubSpot does) to any authorised request that
        would make more than `requests` in the last `per_seconds` (VENDORS §1.10)."""
        self.limit = (requests, per_seconds)

    def busiest_window(self, seconds: float | None = None) -> int:
        """The most requests let through in any sliding window of `seconds` (default:
        the enforced limit's)."""
        seconds = seconds if seconds is not None else self.limit[1]
        times, most, start = sorted(self.accepted_at), 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def _over_limit(self, correlation: str):
        """The 429 for a request over the enforced limit, else None (and it is counted)."""
        if self.limit is None:
            return None
        requests, per_seconds = self.limit
        now = time.monotonic()
        while self._window and now - self._window[0] >= per_seconds:
            self._window.popleft()
        if len(self._window) >= requests:
            self.refused += 1
            wait = max(1, math.ceil(self._window[0] + per_seconds - now))
            headers = {**RATE_HEADERS, "X-HubSpot-RateLimit-Max": str(requests),
                       "X-HubSpot-RateLimit-Remaining": "0", "Retry-After": str(wait),
                       "X-HubSpot-Correlation-Id": correlation}
            body = load_fixture("hubspot", "error_429", correlationId=correlation)
            return json_response(body, 429, headers)
        self._window.append(now)
        self.accepted_at.append(now)
        return None

    def fail(self, status: int = 502, *, times: int = 1, path=None) -> None:
        body = {"status": "error", "message": "internal error", "correlationId": str(uuid.uuid4()),
                "category": "INTERNAL_ERROR"}
        self.script(status, body, times=times, path=path)

    # -- vendor behaviour -----------------------------------------------------------

    def handle(self, request, body, listener):
        correlation = str(uuid.uuid4())
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return json_response(load_fixture("hubspot", "error_401", correlationId=correlation),
                                 401, {"X-HubSpot-Correlation-Id": correlation})
        refused = self._over_limit(correlation)  # handle() runs one request at a time
        if refused is not None:
            return refused
        try:
            endpoint, args = URLS.bind("api.hubapi.com").match(request.path, request.method)
        except HTTPException as exc:
            return json_response({"status": "error", "message": exc.description,
                                  "correlationId": correlation}, exc.code)
        payload = request.get_json(silent=True) if body else None
        status, result = getattr(self, f"_{endpoint}")(request, payload or {}, **args)
        headers = {"X-HubSpot-Correlation-Id": correlation}
        if endpoint != "search":
            headers.update(RATE_HEADERS)
        if isinstance(result, dict) and result.get("status") == "error":
            result["correlationId"] = correlation
        return json_response(result, status, headers)

    def _type(self, name: str) -> str | None:
        return TYPES.get(name.lower())

    def _validation(self, message: str):
        return 400, {"status": "error", "message": message, "category": "VALIDATION_ERROR"}

    def _create(self, request, payload, otype):
        otype = self._type(otype)
        if otype is None:
            return self._validation("Unable to infer object type")
        props = payload.get("properties") or {}
        problem = self._check_properties(otype, props, creating=True)
        if problem:
            return self._validation(problem)
        if otype == "contacts" and props.get("email"):
            existing = self._find("contacts", "email", props["email"])
            if existing:
                return 409, load_fixture("hubspot", "error_409_contact_exists", id=existing["id"])
        record_id, now = str(self._next_id), _now()
        self._next_id += 1
        record = {"id": record_id, "properties": {**props, "hs_object_id": record_id,
                  "createdate": now, "lastmodifieddate": now},
                  "createdAt": now, "updatedAt": now, "archived": False,
                  "_searchable": self.searchable}
        self.objects[otype][record_id] = record
        for assoc in payload.get("associations") or []:
            self.associations.append((otype, record_id, "?", str(assoc["to"]["id"])))
        return 201, self._public(record)

    def _record(self, request, payload, otype, oid):
        otype = self._type(otype)
        record = self._lookup(otype, oid, request.args.get("idProperty"))
        if record is None:
            return 404, load_fixture("hubspot", "error_404", id=oid)
        if request.method == "GET":
            return 200, self._public(record)
        props = payload.get("properties") or {}
        problem = self._check_properties(otype, props, creating=False)
        if problem:
            return self._validation(problem)
        record["properties"].update(props)
        record["properties"]["lastmodifieddate"] = record["updatedAt"] = _now()
        return 200, self._public(record)

    def _search(self, request, payload, otype):
        otype = self._type(otype)
        groups = payload.get("filterGroups") or []
        matches = [r for r in self.objects[otype].values()
                   if r["_searchable"] and (not groups or any(self._group(r, g) for g in groups))]
        wanted = payload.get("properties") or DEFAULT_SEARCH_PROPERTIES[otype]
        limit = int(payload.get("limit") or 10)
        results = [{**self._public(r), "properties": {k: r["properties"].get(k) for k in
                    {*wanted, "hs_object_id"}}} for r in matches[:limit]]
        body = {"total": len(matches), "results": results}
        if len(matches) > limit:
            body["paging"] = {"next": {"after": str(limit), "link": "?after=" + str(limit)}}
        return 200, body

    def _associate(self, request, payload, ftype, fid, ttype, tid):
        source, target = self._type(ftype), self._type(ttype)
        if source is None or target is None:
            return self._validation("Unable to infer object type")
        if fid not in self.objects[source] or tid not in self.objects[target]:
            return 404, load_fixture("hubspot", "error_404", id=fid if fid not in
                                     self.objects[source] else tid)
        self.associations.append((source, fid, target, tid))
        now = _now()
        return 200, {"status": "COMPLETE", "results": [{"from": {"id": fid}, "to": {"id": tid},
                     "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                         "associationTypeId": 279}}],
                     "startedAt": now, "completedAt": now}

    def _account(self, request, payload):
        return 200, dict(self.account)

    # -- helpers --------------------------------------------------------------------

    def _check_properties(self, otype: str, props: dict, *, creating: bool) -> str | None:
        bad = [k for k, v in props.items() if v is not None and not isinstance(v, str)]
        if bad:
            return f"Property values were not valid: {bad} must be strings"
        if not creating:
            return None
        required = {"contacts": ["email", "firstname", "lastname"], "companies": ["name", "domain"]}
        if otype in required and not any(props.get(k) for k in required[otype]):
            return f"One of {required[otype]} is required"
        if otype == "deals" and not (props.get("dealname") and props.get("dealstage")):
            return "dealname and dealstage are required"
        if otype == "notes" and not props.get("hs_timestamp"):
            return "hs_timestamp is required"
        return None

    def _group(self, record: dict, group: dict) -> bool:
        return all(self._filter(record, f) for f in group.get("filters") or [])

    def _filter(self, record: dict, flt: dict) -> bool:
        value = record["properties"].get(flt.get("propertyName"))
        op = flt.get("operator")
        if op == "HAS_PROPERTY":
            return value is not None
        if op == "NOT_HAS_PROPERTY":
            return value is None
        same = value is not None and str(value).lower() == str(flt.get("value")).lower()
        return same if op == "EQ" else (not same if op == "NEQ" else False)

    def _find(self, otype: str, prop: str, value: str) -> dict | None:
        return next((r for r in self.objects[otype].values()
                     if str(r["properties"].get(prop, "")).lower() == value.lower()), None)

    def _lookup(self, otype: str | None, oid: str, id_property: str | None) -> dict | None:
        if otype is None:
            return None
        if id_property:
            return self._find(otype, id_property, oid)
        return self.objects[otype].get(oid)

    def _public(self, record: dict) -> dict:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    def make_searchable(self) -> None:
        for records in self.objects.values():
            for record in records.values():
                record["_searchable"] = True
