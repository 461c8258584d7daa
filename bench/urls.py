"""The product's URLs plus the API scenario's baselines (bench/scenarios/api.py): a bare
Django view that authenticates the same bearer token as the API and inserts one row,
and the floor: the least any trigger must do (bench/trigger_floor.py). Served only by
the bench's gunicorn (bench/settings.py)."""

import uuid

from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from automation.api.auth import BearerAuthentication
from bench.trigger_floor import FLOOR_PATH, floor
from config.urls import urlpatterns as product

BARE_TABLE = "bench_bare_row"
BARE_PATH = "bench/bare"


@csrf_exempt
def bare(request):
    """The least a trigger must do: the same token check, one durable row, a 202."""
    try:
        found = BearerAuthentication().authenticate(request)
    except AuthenticationFailed:
        found = None
    if found is None:
        return JsonResponse({"error": "unauthenticated"}, status=401)
    row = uuid.uuid4().hex
    with connection.cursor() as cursor:  # autocommit: one statement, one commit
        cursor.execute(f"INSERT INTO {BARE_TABLE} (id, body) VALUES (%s, %s)",
                       [row, request.body.decode()])
    return JsonResponse({"executionId": row}, status=202)


def bare_table_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} "
                       "(id varchar(32) PRIMARY KEY, body text NOT NULL)")


urlpatterns = [path(BARE_PATH, bare), path(f"{FLOOR_PATH}<slug:slug>", floor), *product]
