import pytest
from django import forms
from django.urls import reverse

from entities.models import Entity, EntityEvent, Requirement
from entities.services import entity_update, external_link_upsert
from tests.factories import make_order

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:entities_entity_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:entities_{obj._meta.model_name}_change", args=[obj.pk])


def form_values(form) -> dict:
    """What a browser would post back for `form` untouched."""
    data = {}
    for bound in form:
        value = bound.value()
        if isinstance(bound.field, forms.BooleanField):
            if value:
                data[bound.html_name] = "on"
        elif value is not None:
            data[bound.html_name] = value
    return data


def page_values(response) -> dict:
    """The whole change form as posted: the main form, and every inline formset."""
    data = form_values(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        data.update(form_values(inline.formset.management_form))
        for form in inline.formset.forms:
            data.update(form_values(form))
    return data


# --- List -------------------------------------------------------------------------------


def test_changelist_shows_status_badges_in_bounded_queries(
    admin_client, order_type, django_assert_max_num_queries
):
    for number in range(50):
        make_order(reference=f"ORD-{number:05d}")

    with django_assert_max_num_queries(10):
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="ef-badge"') == 50
    assert "background:#16a34a" in html and ">Approved</span>" in html


def test_changelist_filters_by_status_and_type_and_searches_references(admin_client, order_type):
    make_order(reference="ORD-00001")
    make_order(reference="ORD-00002", customer={"name": "No mail"})

    received = admin_client.get(CHANGELIST, {"status": "received"})
    by_type = admin_client.get(CHANGELIST, {"entity_type__id__exact": order_type.pk})
    searched = admin_client.get(CHANGELIST, {"q": "00001"})

    assert [e.reference for e in received.context["cl"].result_list] == ["ORD-00002"]
    assert by_type.context["cl"].result_count == 2
    assert [e.reference for e in searched.context["cl"].result_list] == ["ORD-00001"]
    assert ("received", "Received") in received.context["cl"].filter_specs[1].lookup_choices


# --- Entity page ------------------------------------------------------------------------


def test_entity_page_shows_unmet_requirements_data_links_and_timeline(admin_client, order_type):
    order = make_order(reference="ORD-00001")
    entity_update(entity=order, data={**order.data, "customer": {"name": "Ada"}})
    external_link_upsert(entity=order, provider="hubspot", object_type="deal",
                         external_id="4711", url="https://app.hubspot.com/deals/4711")

    response = admin_client.get(change_url(order))

    html = response.content.decode()
    assert response.status_code == 200
    assert "The customer&#x27;s email address is missing." in html
    assert "Customer email present" in html
    assert 'href="https://app.hubspot.com/deals/4711"' in html
    assert "&quot;total&quot;" in html  # pretty-printed data
    timeline = response.context["entity_page"]["timeline"]
    # the why-timeline, newest first: the link, then the edit (status move, requirement
    # that stopped holding, the field), then the creation
    assert [item["kind"] for item in timeline] == [
        "link", "status", "requirements", "field_change", "status", "field_change"]
    assert timeline[1]["from"]["key"] == "approved" and timeline[1]["to"]["key"] == "suspended"
    assert 'id="ef-explain"' in html and 'id="ef-timeline-kind"' in html
    assert ">Suspended</span>" in html
    assert "{% block" not in html and 'class="ef-actions"' in html


def test_move_to_offers_only_the_allowed_targets(admin_client, order_type):
    order = make_order()

    response = admin_client.get(change_url(order))

    choices = response.context["adminform"].form.fields["move_to"].choices
    assert choices == [("", "— stay in Approved —"), ("shipped", "Shipped"),
                       ("suspended", "Suspended")]
    assert "status" not in response.context["adminform"].form.fields


def test_moving_an_entity_in_the_admin_goes_through_the_transition(admin_client, order_type):
    order = make_order()
    data = page_values(admin_client.get(change_url(order)))

    response = admin_client.post(change_url(order), {**data, "move_to": "shipped"})

    assert response.status_code == 302
    assert Entity.objects.get(pk=order.pk).status == "shipped"
    event = EntityEvent.objects.filter(entity=order).first()
    assert (event.type, event.from_status, event.to_status) == (
        "entity.status_changed", "approved", "shipped")


def test_editing_data_in_the_admin_applies_the_requirements(admin_client, order_type):
    order = make_order()
    data = page_values(admin_client.get(change_url(order)))
    data["data"] = '{"customer": {"name": "Ada"}, "total": 12}'

    response = admin_client.post(change_url(order), data)

    assert response.status_code == 302
    stored = Entity.objects.get(pk=order.pk)
    assert stored.status == "suspended"
    assert stored.data == {"customer": {"name": "Ada"}, "total": 12}
    assert EntityEvent.objects.filter(entity=order).count() == 2


def test_refused_move_is_shown_on_the_form_and_changes_nothing(admin_client, order_type):
    order = make_order(customer={"name": "No mail"})
    data = page_values(admin_client.get(change_url(order)))

    response = admin_client.post(change_url(order), {**data, "move_to": "approved"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "The customer's email address is missing." in errors["move_to"][0]
    assert Entity.objects.get(pk=order.pk).status == "received"
    assert EntityEvent.objects.filter(entity=order).count() == 1


def test_move_to_a_status_the_type_does_not_allow_is_a_form_error(admin_client, order_type):
    order = make_order(customer={"name": "No mail"})
    data = page_values(admin_client.get(change_url(order)))

    response = admin_client.post(change_url(order), {**data, "move_to": "shipped"})

    assert response.status_code == 200
    assert "move_to" in response.context["adminform"].form.errors
    assert Entity.objects.get(pk=order.pk).status == "received"


def test_invalid_data_in_the_admin_names_the_field(admin_client, order_type):
    order = make_order()
    data = page_values(admin_client.get(change_url(order)))
    data["data"] = '{"customer": {"name": "Ada"}, "total": -1}'

    response = admin_client.post(change_url(order), data)

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["data"]
    assert message.startswith("data.total:")
    assert Entity.objects.get(pk=order.pk).data == order.data


def test_stale_admin_form_is_refused_with_a_conflict_message(admin_client, order_type):
    order = make_order()
    data = page_values(admin_client.get(change_url(order)))
    entity_update(entity=order, data={**order.data, "items": 1})  # someone else saves first
    data["data"] = '{"customer": {"name": "Ada", "email": "a@x.io"}, "total": 5}'

    response = admin_client.post(change_url(order), data)

    assert response.status_code == 200
    assert "changed by someone else" in str(response.context["adminform"].form.non_field_errors())
    assert Entity.objects.get(pk=order.pk).data["items"] == 1


def test_adding_an_entity_in_the_admin_creates_it_through_the_service(admin_client, order_type):
    url = reverse("admin:entities_entity_add")
    payload = {"entity_type": order_type.pk, "reference": "ORD-NEW",
               "data": '{"customer": {"name": "Ada", "email": "ada@x.io"}, "total": 3}',
               "_continue": "1"}

    response = admin_client.post(url, payload)

    order = Entity.objects.get(reference="ORD-NEW")
    assert response.status_code == 302 and response.url == change_url(order)
    assert order.status == "approved"
    assert EntityEvent.objects.get(entity=order).entered_statuses == ["received", "approved"]


def test_adding_an_entity_with_invalid_data_shows_the_error(admin_client, order_type):
    url = reverse("admin:entities_entity_add")
    payload = {"entity_type": order_type.pk, "reference": "ORD-NEW",
               "data": '{"customer": {"name": "Ada"}, "total": "ten"}'}

    response = admin_client.post(url, payload)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["data"][0].startswith("data.total:")
    assert not Entity.objects.filter(reference="ORD-NEW").exists()


# --- Entity types, links, events --------------------------------------------------------


def test_bad_requirement_expression_is_an_inline_error(admin_client, order_type):
    url = change_url(order_type)
    data = page_values(admin_client.get(url))
    before = Requirement.objects.count()
    approved = order_type.statuses.get(key="approved").pk
    data.update({
        "requirements-TOTAL_FORMS": "3",
        "requirements-2-name": "Broken", "requirements-2-status": approved,
        "requirements-2-position": "3", "requirements-2-expression": "entity.data.total >",
        "requirements-2-message": "Broken",
    })

    response = admin_client.post(url, data)

    assert response.status_code == 200
    [requirements] = [i.formset for i in response.context["inline_admin_formsets"]
                      if i.formset.prefix == "requirements"]
    [message] = requirements.forms[2].errors["expression"]
    assert message.startswith("syntax error")
    assert "syntax error" in response.content.decode()  # shown next to the field
    assert Requirement.objects.count() == before


def test_entity_type_page_saves_unchanged(admin_client, order_type):
    url = change_url(order_type)
    data = page_values(admin_client.get(url))

    response = admin_client.post(url, data)

    assert response.status_code == 302


def test_links_and_events_are_read_only(admin_client, order_type):
    order = make_order()
    link = external_link_upsert(entity=order, provider="dropbox", object_type="folder",
                                external_id="id:1", url="https://www.dropbox.com/home/x")
    event = EntityEvent.objects.get(entity=order)

    for model in ("externallink", "entityevent"):
        listing = admin_client.get(reverse(f"admin:entities_{model}_changelist"))
        assert listing.status_code == 200
        assert admin_client.get(reverse(f"admin:entities_{model}_add")).status_code == 403
    assert 'href="https://www.dropbox.com/home/x"' in admin_client.get(
        reverse("admin:entities_externallink_changelist")).content.decode()
    for obj in (link, event):
        page = admin_client.get(change_url(obj))
        assert page.status_code == 200 and not page.context["has_change_permission"]
