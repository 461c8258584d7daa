"""`manage.py rotate_encryption_key`: every stored secret read with any key it may have been
written with and written again with the current one (docs/operating.md, "Rotating the key")."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from automation.connections import rotation, secrets
from automation.connections.services import connection_create, connection_credentials
from automation.models import Connection, WebhookSubscription
from automation.services.webhooks import subscription_secret, webhook_subscription_create

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def rotate(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_encryption_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def stored(settings):
    """Three secrets: two under the old key, one from before a key was configured (the
    key derived from SECRET_KEY). Returns their values as stored."""
    settings.ENTITYFLOW_ENCRYPTION_KEY = ""
    connection_create(provider="http", name="derived", credentials={"token": "tok-derived"})
    settings.ENTITYFLOW_ENCRYPTION_KEY = OLD
    connection_create(provider="http", name="old", credentials={"token": "tok-old"})
    webhook_subscription_create(url="https://example.com/hook", events=["workflow.completed"],
                                secret="whsec-old")
    settings.ENTITYFLOW_ENCRYPTION_KEY = f"{NEW},{OLD}"
    return values()


def values() -> list[str]:
    return [*Connection.objects.order_by("name").values_list("credentials_encrypted", flat=True),
            *WebhookSubscription.objects.values_list("secret_encrypted", flat=True)]


def test_every_encrypted_field_is_found_by_its_name():
    labels = {f.label for f in rotation.encrypted_fields()}
    assert {"automation.Connection.credentials_encrypted",
            "automation.WebhookSubscription.secret_encrypted"} <= labels


def test_dry_run_reads_every_secret_and_writes_nothing(stored):
    out, err = rotate("--dry-run")
    assert "Would re-encrypt 3 secret(s); 0 already used the current key" in out
    assert "secrets [" in err  # the progress bar
    assert values() == stored


def test_rotation_round_trip(stored, settings):
    out, _ = rotate()
    assert "Re-encrypted 3 secret(s)" in out and "may be removed" in out
    assert all(Fernet(NEW.encode()).decrypt(v.encode()) for v in values())
    settings.ENTITYFLOW_ENCRYPTION_KEY = NEW  # the old key is gone: everything still reads
    by_name = {c.name: connection_credentials(c) for c in Connection.objects.all()}
    assert by_name == {"derived": {"token": "tok-derived"}, "old": {"token": "tok-old"}}
    assert subscription_secret(WebhookSubscription.objects.get()) == "whsec-old"
    again, _ = rotate()
    assert "Re-encrypted 0 secret(s); 3 already used the current key" in again


def test_an_unreadable_secret_is_named_and_the_others_still_rotate(stored, settings):
    stranger = Fernet(Fernet.generate_key()).encrypt(b"{}").decode()
    bad = Connection.objects.create(provider="http", name="lost", credentials_encrypted=stranger)
    with pytest.raises(CommandError) as caught:
        rotate()
    assert f"automation.Connection.credentials_encrypted pk={bad.pk}" in str(caught.value)
    settings.ENTITYFLOW_ENCRYPTION_KEY = NEW
    assert connection_credentials(Connection.objects.get(name="old")) == {"token": "tok-old"}
    assert Connection.objects.get(name="lost").credentials_encrypted == stranger


def test_a_secret_changed_meanwhile_is_left_to_its_writer(stored):
    keys = secrets.rotation_keys()
    field = rotation.EncryptedField(Connection, "credentials_encrypted")
    row = Connection.objects.get(name="old")
    rewritten = secrets.encrypt_json({"token": "tok-new"})
    Connection.objects.filter(pk=row.pk).update(credentials_encrypted=rewritten)
    report = rotation.RotationReport()
    rotation._rotate_one(field, row.pk, row.credentials_encrypted, keys, False, report)
    assert report.changed == 1 and report.rotated == 0
    assert Connection.objects.get(pk=row.pk).credentials_encrypted == rewritten
