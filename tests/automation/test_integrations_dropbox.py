"""Dropbox steps against the fake Dropbox on 127.0.0.1: a folder per order, the order
as JSON (or CSV) in it, a shared link stored on the order, and renewed tokens stored."""

import csv
import io
import json

import pytest

from automation.connections.services import connection_create, connection_credentials
from automation.models import Connection, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_create, entity_update

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"customer": {"name": "Ada Lovelace"}, "total": 42.5, "items": 3}
FOLDER = "/Orders/{{ entity.reference }}"
FILE = "/Orders/{{ entity.reference }}/order.json"


@pytest.fixture
def dropbox_connection(dropbox_fake):
    return connection_create(
        provider="dropbox", name="dropbox-fake", base_url=dropbox_fake.url,
        options={"contentBaseUrl": dropbox_fake.content_url},
        credentials={"accessToken": dropbox_fake.access_token,
                     "refreshToken": dropbox_fake.refresh_token,
                     "appKey": dropbox_fake.app_key, "appSecret": dropbox_fake.app_secret})


def step(step_id, function, nxt=None, **params):
    return {"id": step_id, "type": "function", "function": function, "config": {"params": params},
            **({"next": nxt} if nxt else {})}


def export_process(order_type, *, content="entity.json", path=FILE):
    return process_save(slug="export-order", name="Export order", entity_type=order_type,
                        definition={"steps": [
                            step("folder", "dropbox.create_folder", "upload", path=FOLDER),
                            step("upload", "dropbox.upload_file", "share", path=path,
                                 content=content),
                            step("share", "dropbox.create_shared_link", path=path)]})


def run_for(process, order) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order)
    run.refresh_from_db()
    return run


def test_order_exported_as_json_with_a_shared_link_on_the_order(
        order_type, dropbox_fake, dropbox_connection):
    order = entity_create(entity_type=order_type, reference="ORD-7", data=ORDER)

    run = run_for(export_process(order_type), order)

    assert run.status == Run.Status.COMPLETED, run.error
    assert dropbox_fake.entries["/orders/ord-7"][".tag"] == "folder"
    uploaded = json.loads(dropbox_fake.content_of("/Orders/ORD-7/order.json"))
    assert uploaded["reference"] == "ORD-7" and uploaded["status"] == "received"
    assert uploaded["data"] == ORDER and uploaded["type"] == "order"
    shared = dropbox_fake.links["/orders/ord-7/order.json"]["url"]
    assert run.result["url"] == shared
    links = {link.object_type: link for link in order.external_links.filter(provider="dropbox")}
    assert set(links) == {"folder", "file"}
    assert links["file"].url == shared
    assert links["file"].external_id == dropbox_fake.entries["/orders/ord-7/order.json"]["id"]


def test_a_rerun_replaces_the_file_and_keeps_the_link(order_type, dropbox_fake,
                                                      dropbox_connection):
    order = entity_create(entity_type=order_type, reference="ORD-8", data=ORDER)
    process = export_process(order_type)
    first = run_for(process, order)
    entity_update(entity=order, data={**ORDER, "total": 50})

    second = run_for(process, order)

    assert first.status == second.status == Run.Status.COMPLETED, second.error
    assert json.loads(dropbox_fake.content_of("/Orders/ORD-8/order.json"))["data"]["total"] == 50
    upload = StepRun.objects.get(run=second, step_id="upload")
    assert upload.output["path"] == "/Orders/ORD-8/order.json"  # in place, not renamed
    uploads = [json.loads(c.headers["Dropbox-Api-Arg"]) for c in dropbox_fake.calls
               if c.path == "/2/files/upload"]
    assert [u["mode"] for u in uploads] == ["add", "overwrite"]
    assert second.result["url"] == first.result["url"]


def test_entity_csv_shorthand(order_type, dropbox_fake, dropbox_connection):
    order = entity_create(entity_type=order_type, reference="ORD-9", data=ORDER)
    process = export_process(order_type, content="entity.csv",
                             path="/Orders/{{ entity.reference }}/order.csv")

    run = run_for(process, order)

    assert run.status == Run.Status.COMPLETED, run.error
    rows = list(csv.DictReader(io.StringIO(
        dropbox_fake.content_of("/Orders/ORD-9/order.csv").decode())))
    assert rows == [{"reference": "ORD-9", "status": "received", "customer.name": "Ada Lovelace",
                     "total": "42.5", "items": "3"}]


def test_an_expired_token_is_refreshed_and_the_new_one_stored_encrypted(
        order_type, dropbox_fake, dropbox_connection):
    dropbox_fake.expire()
    order = entity_create(entity_type=order_type, reference="ORD-10", data=ORDER)

    run = run_for(export_process(order_type), order)

    assert run.status == Run.Status.COMPLETED, run.error
    assert dropbox_fake.count("/oauth2/token") == 1  # later steps use the stored new token
    renewed = connection_credentials(Connection.objects.get(pk=dropbox_connection.pk))
    assert renewed["accessToken"] == dropbox_fake.access_token != "sl.u.initial-access-token-0001"
    assert renewed["refreshToken"] == dropbox_fake.refresh_token
    stored = Connection.objects.get(pk=dropbox_connection.pk).credentials_encrypted
    assert dropbox_fake.access_token not in stored
    assert dropbox_fake.access_token not in json.dumps(
        list(StepRun.objects.values("output", "logs", "error")), default=str)


def test_an_upload_conflict_fails_the_step_with_a_readable_error(
        order_type, dropbox_fake, dropbox_connection):
    order = entity_create(entity_type=order_type, reference="ORD-11", data=ORDER)
    process = process_save(slug="twice", name="Twice", entity_type=order_type, definition={
        "steps": [step("a", "dropbox.upload_file", "b", path="/x.json", content="entity.json"),
                  step("b", "dropbox.upload_file", path="/x.json", content="entity.json",
                       mode="add")]})

    run = run_for(process, order)

    assert run.status == Run.Status.FAILED
    assert run.error["step"] == "b" and run.error["code"] == "connector_conflict"
    assert "/x.json" in run.error["message"]


def test_entity_shorthand_without_an_entity_fails_clearly(dropbox_connection):
    process = process_save(slug="no-entity", name="No entity", definition={"steps": [
        step("a", "dropbox.upload_file", path="/x.json", content="entity.json")]})

    run, _ = run_start(process=process, trigger={"type": "manual"})

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.error["code"] == "no_entity"
