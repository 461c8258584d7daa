"""entities.db.driver: compiled statements sent on SQLite's own handle keep what Django's
cursor gives them (errors as Django's, the transaction they are in, a broken transaction
refused)."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from entities.db import driver
from entities.db.compiled import CompiledInsert
from entities.models import EntityType

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own driver handle"),
]

INSERT = CompiledInsert(EntityType)


def _insert(key: str):
    """The entity type's compiled INSERT (Django's own SQL, `%s` placeholders), sent."""
    sql, params = INSERT.sql_params(EntityType(key=key, name=key), "default")
    return driver.execute(sql, params, using="default")


def test_a_statement_is_written_in_the_transaction_it_is_sent_in():
    with pytest.raises(RuntimeError), transaction.atomic():
        _insert("t-rolled")
        assert EntityType.objects.filter(key="t-rolled").exists()  # seen in this transaction
        raise RuntimeError("roll back")
    assert not EntityType.objects.filter(key="t-rolled").exists()
    INSERT.sql_params(EntityType(key="t-first", name="t"), "default")  # compiled
    cursor = _insert("t-kept")
    assert cursor.rowcount == 1
    assert EntityType.objects.get(key="t-kept").pk == cursor.lastrowid


def test_errors_are_djangos_and_a_broken_transaction_is_refused():
    _insert("t-twice")
    with pytest.raises(IntegrityError):  # Django's, as its cursor would raise it
        _insert("t-twice")
    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            _insert("t-broken")
    with pytest.raises(ValueError, match="placeholders"):
        driver.execute("SELECT 1 WHERE 'a' LIKE '%%' AND 1 = %s", (1,), using="default")


def test_where_django_logs_every_statement_the_statement_is_in_its_log():
    """DEBUG, or a test capturing statements (an ordering the engine promises is checked
    that way): the statement goes through Django's cursor, so the log misses none."""
    with CaptureQueriesContext(connection) as queries:
        cursor = _insert("t-logged")
    assert cursor.rowcount == 1
    assert EntityType.objects.get(key="t-logged").pk == cursor.lastrowid
    assert [q["sql"] for q in queries.captured_queries if "t-logged" in q["sql"]]
