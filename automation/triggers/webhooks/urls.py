"""`/hooks/<path>`: a webhook trigger with config.path `/webhooks/stripe` listens on
`/hooks/webhooks/stripe`."""

from django.urls import re_path

from automation.triggers.webhooks.views import webhook_receive

app_name = "inbound"
urlpatterns = [
    re_path(r"^(?P<path>.*)$", webhook_receive, name="webhook"),
]
