"""Operations endpoints at the site root: /healthz and /metrics."""

from django.urls import path

from automation.api.health import healthz
from automation.api.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]
