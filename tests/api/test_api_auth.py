import json
from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from automation.models import ApiClient, ApiToken
from automation.services.api_auth import api_client_deactivate, token_hash
from tests.api.support import API_DB, assert_error

pytestmark = API_DB


def test_create_api_client_prints_key_and_secret_once_and_stores_only_a_hash():
    out = StringIO()
    call_command("create_api_client", "ERP", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    client = ApiClient.objects.get(key=printed["key"])
    assert printed["name"] == "ERP" and printed["secret"]
    assert printed["secret"] not in client.secret_hash
    assert client.secret_hash.startswith(("md5$", "pbkdf2_", "argon2", "bcrypt", "scrypt"))

    plain = StringIO()
    call_command("create_api_client", "CRM", stdout=plain)
    assert "secret:" in plain.getvalue() and "not shown again" in plain.getvalue()


def test_authorize_then_call_then_refresh(anon):
    out = StringIO()
    call_command("create_api_client", "ERP", "--json", stdout=out)
    creds = json.loads(out.getvalue())

    tokens = anon.post("/api/auth/authorize", {"key": creds["key"], "secret": creds["secret"]},
                       format="json").json()
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn"}
    assert tokens["expiresIn"] == 3600
    stored = ApiToken.objects.get(kind="access")
    assert stored.token_hash == token_hash(tokens["accessToken"])  # only the hash is kept

    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['accessToken']}")
    assert anon.get("/api/entity-types").status_code == 200

    fresh = APIClient().post("/api/auth/refresh", {"refreshToken": tokens["refreshToken"]},
                             format="json")
    assert fresh.status_code == 200 and fresh.json()["accessToken"] != tokens["accessToken"]
    again = APIClient().post("/api/auth/refresh", {"refreshToken": tokens["refreshToken"]},
                             format="json")
    assert_error(again, 401, "unauthorized")  # a refresh token is spent once


def test_wrong_secret_and_unknown_key_are_401_with_the_same_message(anon, api_client_row):
    wrong = anon.post("/api/auth/authorize", {"key": api_client_row.key, "secret": "nope"},
                      format="json")
    unknown = anon.post("/api/auth/authorize", {"key": "efk_unknown", "secret": "nope"},
                        format="json")
    assert assert_error(wrong, 401)["message"] == assert_error(unknown, 401)["message"]
    assert wrong["WWW-Authenticate"].startswith("Bearer")


def test_expired_access_token_is_401(api, tokens):
    ApiToken.objects.filter(token_hash=token_hash(tokens["accessToken"])).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    error = assert_error(api.get("/api/entity-types"), 401, "unauthorized")
    assert "expired" in error["message"]


def test_token_lifetime_comes_from_settings(anon, client_and_secret, settings):
    settings.ENTITYFLOW_ACCESS_TOKEN_SECONDS = 120
    client, secret = client_and_secret
    body = anon.post("/api/auth/authorize", {"key": client.key, "secret": secret},
                     format="json").json()
    row = ApiToken.objects.get(token_hash=token_hash(body["accessToken"]))
    assert body["expiresIn"] == 120
    assert timedelta(seconds=100) < row.expires_at - timezone.now() <= timedelta(seconds=120)


def test_deactivated_client_is_401_at_once_and_cannot_authorize(api, anon, client_and_secret):
    client, secret = client_and_secret
    assert api.get("/api/entity-types").status_code == 200
    api_client_deactivate(client=client)
    error = assert_error(api.get("/api/entity-types"), 401)
    assert "deactivated" in error["message"]
    assert_error(anon.post("/api/auth/authorize", {"key": client.key, "secret": secret},
                           format="json"), 401)


def test_malformed_authorization_header_is_401(anon):
    anon.credentials(HTTP_AUTHORIZATION="Bearer")
    assert_error(anon.get("/api/runs"), 401)
    anon.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(anon.get("/api/runs"), 401)


def test_staff_session_works_and_needs_csrf_for_writes(staff):
    assert staff.get("/api/entity-types").status_code == 200
    error = assert_error(staff.post("/api/cases", {"firstName": "Ada"}, format="json"), 403)
    assert "CSRF" in error["message"]


def test_staff_session_with_csrf_token_can_write(staff_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    client.get("/admin/")  # renders a form, which sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post("/api/cases", {"firstName": "Ada"}, format="json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


def test_non_staff_session_is_403(django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw-123456")
    client = APIClient()
    client.force_login(user)
    assert_error(client.get("/api/entity-types"), 403, "forbidden")
