"""One-row lookups on a hot path, with their SQL compiled once.

Django compiles a queryset's SQL each time it is evaluated. For the lookups every API
request makes (its access token with the client, the workflow definition in the URL)
that compiling cost more CPU than the database spent answering them. Their shape never
changes, only the value looked up, so here the SQL is compiled once per database with a
marker where the value goes; each lookup then only runs it and builds the instances as
Django's ModelIterable does (converters and select_related objects included). Every
lookup still reads the database: nothing about the row itself is cached.
"""

import datetime
import threading
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connections, models, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

from entities.db import driver, prepared


class CompiledLookup:
    """`CompiledLookup(lambda value: Model.objects.filter(unique_field=value))`, then
    `.first(value)`: the one matching row, or None. For lookups on a unique value.
    `marker`: the value the SQL is compiled with, found among its parameters (a string
    by default; a number no row has for a numeric field)."""

    def __init__(self, queryset_for: Callable[[Any], QuerySet], *, marker: Any = None):
        self._queryset_for = queryset_for
        self._marker = marker
        self._compiled: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def first(self, value: Any, *, using: str | None = None) -> Model | None:
        builder, sql, params, slot = self.compiled_for(using)
        params = list(params)
        params[slot] = value
        using = builder.compiler.using
        if connections[using].vendor == "sqlite":  # past Django's cursor (driver)
            row = driver.execute(sql, params, using=using).fetchone()
        else:
            with connections[using].cursor() as cursor:
                prepared.execute(cursor, sql, params, using=using)
                row = cursor.fetchone()
        return None if row is None else builder.build(row)

    def compiled_for(self, using: str | None) -> tuple:
        """(row builder, sql, params, the looked-up value's index in params): the compiled
        look-up, also for a caller that sends it inside a statement of its own (the
        token's and a view's look-ups joined, services.api_auth.token_client_with)."""
        # One compiler per database, shared by threads: after as_sql() it is only read,
        # and its converters use the connection's ops and features, never a cursor.
        key = using or ""
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(using)
                self._compiled[key] = compiled
        return compiled

    def _compile(self, using: str | None) -> tuple:
        marker = self._marker if self._marker is not None else \
            f"compiled-lookup-{uuid.uuid4().hex}"
        queryset = self._queryset_for(marker)
        using = using or router.db_for_read(queryset.model)
        compiler = queryset.order_by()[:1].query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = [i for i, param in enumerate(params) if param == marker]
        if len(slots) != 1:
            raise ValueError(f"the looked-up value must be one parameter, found {len(slots)}")
        return RowBuilder(compiler), sql, tuple(params), slots[0]


class CompiledRows:
    """`CompiledRows(lambda: Model.objects.filter(…))`, then `.all()`: every row of a
    queryset that looks up no value (its SQL never changes), in its own order, compiled
    once per database and read from the database each time."""

    def __init__(self, queryset: Callable[[], QuerySet]):
        self._queryset = queryset
        self._compiled: dict[str, tuple] = {}

    def all(self, *, using: str | None = None) -> list[Model]:
        queryset = None
        if using is None:
            queryset = self._queryset()
            using = router.db_for_read(queryset.model)
        compiled = self._compiled.get(using)
        if compiled is None:  # compiled again by a racing thread at worst: the same SQL
            compiler = (queryset or self._queryset()).query.get_compiler(using=using)
            sql, params = compiler.as_sql()
            compiled = self._compiled[using] = (RowBuilder(compiler), sql, tuple(params))
        builder, sql, params = compiled
        with connections[using].cursor() as cursor:
            prepared.execute(cursor, sql, params, using=using)
            return [builder.build(row) for row in cursor.fetchall()]


class RowBuilder:
    """Builds model instances (with their select_related objects) from rows of one
    compiled SELECT, the way Django's ModelIterable does, converters included; what
    that works out from the compiler is worked out once."""

    def __init__(self, compiler):
        select, klass_info = compiler.select, compiler.klass_info
        self.compiler, self.model = compiler, klass_info["model"]
        self.start = klass_info["select_fields"][0]
        self.end = klass_info["select_fields"][-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, compiler.using)
        self.converters = compiler.get_converters([column[0] for column in select])

    def build(self, row: tuple) -> Model:
        if self.converters:
            [row] = self.compiler.apply_converters([row], self.converters)
        obj = self.model.from_db(self.compiler.using, self.init_list, row[self.start:self.end])
        for populator in self.populators:
            populator.populate(row, obj)
        return obj


# The methods by which a field prepares a value for the database (Field.get_db_prep_save
# calls get_db_prep_value, which calls get_prep_value, which most fields build on
# to_python).
_PREPARATION = ("get_db_prep_save", "get_db_prep_value", "get_prep_value", "to_python")
# Django's own field classes whose preparation of a value depends only on the value's type
# (and, for a datetime, on whether it is aware), and returns a value the driver adapts by
# itself (a string, a number, a UUID, a datetime) unchanged where the database keeps that
# type: on PostgreSQL a UUID or an aware datetime is passed as it is, on SQLite it becomes
# a string, so there the shortcut below does not apply to them.
_PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField,
                 models.BigIntegerField, models.SmallIntegerField, models.PositiveIntegerField,
                 models.PositiveBigIntegerField, models.PositiveSmallIntegerField,
                 models.AutoField, models.BigAutoField, models.SmallAutoField,
                 models.BooleanField, models.UUIDField, models.DateTimeField)


def _prepares_as(field, cls) -> bool:
    return all(getattr(type(field), name) is getattr(cls, name) for name in _PREPARATION)


def _plain(field) -> bool:
    """Whether `field` prepares values with one of Django's plain field classes' methods;
    a foreign key as its target field does (an empty string aside, which Preparation
    always leaves to Django)."""
    if isinstance(field, models.ForeignKey) and _prepares_as(field, models.ForeignKey):
        field = field.target_field
    return any(_prepares_as(field, cls) for cls in _PLAIN_FIELDS)


# The values the driver takes as they are, where a plain field may pass them unchanged.
_SIMPLE = (str, int, uuid.UUID, datetime.datetime)
_AWARE = "aware"  # unchanged if aware: a naive datetime is made aware, with a warning
_EMPTY = "empty"  # (type, _EMPTY): what was learnt for that type's empty string


class Preparation:
    """`save(value)` and `lookup(value)`: what `field.get_db_prep_save(value, connection)`
    and `field.get_db_prep_value(value, connection)` return, for one field on one
    database, without calling them for the values they would return unchanged.

    On a step's path Django's per-field preparation was a fifth of the worker's Python
    time (docs/performance.md): each value goes through four or five method calls to come
    back as it went in. For a plain field (one of Django's own classes, _PLAIN_FIELDS)
    whether a string, a number, a UUID or an aware datetime comes back unchanged depends
    only on its type, so the first value of each type is prepared by Django's methods and
    the answer kept: the same value back, and later values of that type are passed as
    they are; anything else, and they keep taking Django's way (as do a naive datetime,
    and every value of any other type or field class). An integer that comes back as the
    driver's integer of the column's size (psycopg's Int4 on PostgreSQL: it depends on the
    field alone) is wrapped the same way without the calls. None and the empty string are
    single values, so their own answer is kept (for a JSONField too: None is SQL NULL). A
    JSONField's value is adapted as the field's get_db_prep_value does (the database's
    `adapt_json_value` with the field's encoder), without the calls in between.

    Every compiled statement here prepares its values through these two methods: their
    first tests are the whole cost of a value whose answer is known (a step writes some
    fifty values, docs/performance.md)."""

    def __init__(self, field):
        self.field = field
        self._plain = _plain(field)
        self._json = _prepares_as(field, models.JSONField)
        # per type of value (and (type, _EMPTY) for its empty string): True (passed as it
        # is), _AWARE (if aware), an int subclass (wrapped in it), False (Django's)
        self._saved: dict = {}
        self._looked_up: dict = {}

    def save(self, value, connection):
        known = self._saved.get(type(value))
        if known is True and (value or not isinstance(value, str)):
            return value
        if known is _AWARE and value.tzinfo is not None:
            return value
        if self._json and type(value) in _JSON_TYPES:
            return connection.ops.adapt_json_value(value, self.field.encoder)
        return self._known(self._saved, known, self.field.get_db_prep_save, value, connection)

    def lookup(self, value, connection):
        known = self._looked_up.get(type(value))
        if known is True and (value or not isinstance(value, str)):
            return value
        if known is _AWARE and value.tzinfo is not None:
            return value
        return self._known(self._looked_up, known, self.field.get_db_prep_value, value,
                           connection)

    def _known(self, unchanged: dict, known, method, value, connection):
        """`method(value, connection)` for a value save() and lookup() did not pass as it
        is: by what was learnt for its type (`known`) or the empty string, else learnt."""
        if isinstance(value, str) and not value:
            known = unchanged.get((type(value), _EMPTY))
            if known is True:
                return value
        elif known.__class__ is type:  # an int wrapped in the driver's integer
            return known(value)
        if known is None:
            return self._learn(unchanged, method, value, connection)
        return method(value, connection)

    def _learn(self, unchanged: dict, method, value, connection):
        """`method`'s value, having noted for the value's type what to do next time (not
        from a naive datetime: it says nothing of the others)."""
        prepared_value = method(value, connection)
        kind = type(value)
        if value is None or (isinstance(value, str) and not value):
            # one value each: whatever the type's answer, its own is kept
            learnt = (self._plain or self._json) and prepared_value is value
            unchanged[kind if value is None else (kind, _EMPTY)] = learnt
        elif not self._plain or not issubclass(kind, _SIMPLE):
            unchanged[kind] = False
        elif issubclass(kind, datetime.datetime):
            if value.tzinfo is not None:
                unchanged[kind] = _AWARE if prepared_value is value else False
        elif kind is int and prepared_value is not value:
            unchanged[kind] = _wrapper(value, prepared_value, connection)
        else:
            unchanged[kind] = prepared_value is value
        return prepared_value


def _wrapper(value: int, prepared_value, connection) -> type | bool:
    """The driver's integer class the plain field wrapped `value` in (psycopg's Int2, Int4,
    Int8 by the column's size on PostgreSQL: Django picks it by the field alone), or False
    (Django's way each time) for any other answer."""
    wrapper = type(prepared_value)
    sizes = getattr(connection.ops, "integerfield_type_map", {}).values()
    if wrapper in sizes and prepared_value == value and type(wrapper(value)) is wrapper:
        return wrapper
    return False


# Values a JSONField adapts as they are (a lazy string, an expression: Django's way).
_JSON_TYPES = frozenset({dict, list, str, int, float, bool})


_PREPARATIONS: dict[tuple, Preparation] = {}


def preparation(field, using: str) -> Preparation:
    """The Preparation of `field` on the database `using` (one per field and database:
    whether a value is passed unchanged depends on the database's backend)."""
    key = (id(field), using)  # a field's own hash is worked out from three attributes
    found = _PREPARATIONS.get(key)
    if found is None:
        found = _PREPARATIONS.setdefault(key, Preparation(field))
    return found


class CompiledInsert:
    """`INSERT INTO <model> (<fields>) VALUES (%s, …)` for one row, its SQL compiled once
    per database; the values are prepared for each row by Django's own compiler steps
    (pre_save, then get_db_prep_save), so auto_now fields and JSON adapt as in save().

    Only fields that each take one plain placeholder qualify: that is checked when the
    SQL is first compiled, and a model that fails the check raises there."""

    def __init__(self, model: type[Model], *, fields: list | None = None,
                 on_conflict=None):
        self.model = model
        self.fields = fields if fields is not None else [
            f for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
        self.on_conflict = on_conflict
        # per database: the SQL, the fields that store an empty value (None) as NULL, and
        # each field's Preparation there
        self._sql: dict[str, tuple[str, frozenset, list]] = {}
        # Per field: whether its pre_save only reads the attribute (Field's own): for
        # those Django's call is skipped, as it would return what it reads.
        self._plan = [(field, field.attname, type(field).pre_save is models.Field.pre_save)
                      for field in self.fields]

    def sql_params(self, obj: Model, using: str) -> tuple[str, list]:
        compiled = self._sql.get(using)
        connection = connections[using]
        if compiled is None:  # the first row of this database: compile it the usual way
            [(sql, params)] = self._query(obj).get_compiler(using=using).as_sql()
            if len(params) != len(self.fields) or sql.count("%s") != len(self.fields):
                raise ValueError(f"{self.model.__name__}: a field needs its own placeholder")
            null = frozenset(field.attname for field in self.fields
                             if field.get_db_prep_save(None, connection) is None)
            self._sql[using] = sql, null, [preparation(f, using) for f in self.fields]
            return sql, list(params)
        # What the compiler's pre_save_val and prepare_value do for a plain value, without
        # building a query and its compiler for every row (most of an API trigger's
        # Python time in the run's and step's INSERTs, docs/performance.md); an empty
        # value of a field that stores it as NULL is not prepared again, nor a value
        # its field would pass as it is (Preparation).
        sql, null, preparations = compiled
        params = []
        for (field, attname, plain_read), prepare in zip(self._plan, preparations, strict=True):
            value = getattr(obj, attname) if plain_read else field.pre_save(obj, True)
            if value is None and attname in null:
                params.append(None)
                continue
            value = prepare.save(value, connection)
            if hasattr(value, "resolve_expression"):  # Django's own preparing returns it
                raise ValueError("an expression would need SQL of its own: save() the row")
            params.append(value)
        return sql, params

    def _query(self, obj: Model | None):
        from django.db.models.sql import InsertQuery

        query = InsertQuery(self.model, on_conflict=self.on_conflict)
        query.insert_values(self.fields, [obj] if obj is not None else [])
        return query


def update_sql(rows: QuerySet, values: dict, using: str) -> tuple[str, tuple]:
    """Django's own compiled `UPDATE … WHERE (…)` for `rows.update(**values)` (quoted
    names, every value a parameter), so the caller can add a condition and RETURNING."""
    from django.db.models.sql import UpdateQuery

    query = rows.query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(using=using).as_sql()
    if " WHERE " not in sql:
        raise RuntimeError(f"unexpected UPDATE shape: {sql[:80]}")
    return sql, params


def insert_from(row: Model, source: str | None, using: str, *,
                insert: CompiledInsert | None = None) -> tuple[str, tuple]:
    """`INSERT INTO <row's table> (…) SELECT <values> FROM <source> [ON CONFLICT …]`:
    Django's own compiled INSERT for `row` (or `insert`'s), written only if `source` (a
    CTE) returned a row; with no source, the plain INSERT … VALUES."""
    insert = insert or _INSERTS.get(type(row)) or _INSERTS.setdefault(type(row),
                                                                      CompiledInsert(type(row)))
    sql, params = insert.sql_params(row, using)
    if source is None:
        return sql, tuple(params)
    selected = _SELECTED.get((sql, source))
    if selected is None:  # worked out once per statement and source (a step writes one)
        head, _, rest = sql.rpartition(" VALUES (")
        values, closed, tail = rest.partition(")")  # placeholders hold no parenthesis
        if not head or not closed or values.replace("%s", "").replace(", ", ""):
            raise RuntimeError(f"unexpected INSERT shape: {sql[:80]}")
        selected = _SELECTED[(sql, source)] = f"{head} SELECT {values} FROM {source}{tail}"  # noqa: S608
    return selected, tuple(params)


_SELECTED: dict[tuple[str, str], str] = {}  # insert_from's: (INSERT, source) -> its SQL


def insert_select(row: Model, source: str, source_params: tuple, using: str, *,
                  expressions: dict[str, tuple[str, tuple]],
                  insert: CompiledInsert | None = None) -> tuple[str, tuple]:
    """`INSERT INTO <row's table> (…) SELECT <values> FROM <source> [ON CONFLICT …]`: one
    row per row of `source` (SQL with `source_params`), each with `row`'s values (as
    Django's own compiled INSERT prepares them) except the fields named in `expressions`
    (attname -> SQL over the source's columns, with its parameters), e.g. a new key."""
    insert = insert or _INSERTS.get(type(row)) or _INSERTS.setdefault(type(row),
                                                                      CompiledInsert(type(row)))
    sql, params = insert.sql_params(row, using)
    head, _, rest = sql.rpartition(" VALUES (")
    values, closed, tail = rest.partition(")")  # placeholders hold no parenthesis
    placeholders = values.split(", ")
    if not head or not closed or set(placeholders) != {"%s"} or len(placeholders) != len(params):
        raise RuntimeError(f"unexpected INSERT shape: {sql[:80]}")
    selected, selected_params = [], []
    for field, param in zip(insert.fields, params, strict=True):
        if field.attname in expressions:
            expression, expression_params = expressions[field.attname]
            selected.append(expression)
            selected_params += expression_params
        else:
            selected.append("%s")
            selected_params.append(param)
    unknown = set(expressions) - {f.attname for f in insert.fields}
    if unknown:
        raise ValueError(f"not inserted: {', '.join(sorted(unknown))}")
    return (f"{head} SELECT {', '.join(selected)} FROM {source}{tail}",  # noqa: S608
            (*selected_params, *source_params))


_INSERTS: dict[type, CompiledInsert] = {}


class CompiledUpdate:
    """`update_sql` for `model.objects.filter(<field> = value, …).update(**values)` with
    plain values (no expressions) and exact filters on concrete fields, compiled by Django
    once per database and shape (the filter and value names, and which values are None:
    Django writes `= NULL` for those) instead of building and compiling a queryset every
    time (a step's record did it twice per step, most of its Python time). Later calls
    only prepare the values as Django's compiler does (`get_db_prep_save` for what is
    set, `get_db_prep_value` for what is filtered); the first call of each shape checks
    that the two ways render the same statement."""

    def __init__(self, model: type[Model]):
        self.model = model
        self._sql: dict[tuple, str] = {}
        self._fields: dict[str, _FieldPreparations] = {}  # per database

    def sql_params(self, filters: dict, values: dict, using: str) -> tuple[str, tuple]:
        connection = connections[using]
        fields = self._fields.get(using)
        if fields is None:
            fields = self._fields[using] = _FieldPreparations(self.model, using)
        # Q() orders keyword filters by name: so do the parameters of the WHERE clause
        wheres = sorted(filters.items())
        saved = {}
        for name, value in values.items():
            value = saved[name] = fields[name].save(value, connection)
            if hasattr(value, "as_sql") or hasattr(value, "resolve_expression"):
                raise ValueError("an expression needs Django's own compiling: use update_sql")
        params = [value for value in saved.values() if value is not None]
        params += [fields[name].lookup(value, connection) for name, value in wheres]
        key = (using, tuple(filters), tuple((name, value is None) for name, value in saved.items()))
        sql = self._sql.get(key)
        if sql is None:
            sql, django_params = update_sql(self.model._default_manager.filter(**filters),
                                            values, using)
            if _rendered(connection, sql, params) != _rendered(connection, sql, django_params):
                raise RuntimeError(f"{self.model.__name__}: an update needs Django's own "
                                   "compiling (a value it prepares differently)")
            self._sql[key] = sql
        return sql, tuple(params)


class _FieldPreparations(dict):
    """Field name ("pk" too) -> its Preparation on one database, found on first use."""

    def __init__(self, model: type[Model], using: str):
        super().__init__()
        self.model, self.using = model, using

    def __missing__(self, name: str) -> Preparation:
        meta = self.model._meta
        found = self[name] = preparation(meta.pk if name == "pk" else meta.get_field(name),
                                         self.using)
        return found


class CompiledStatement:
    """A statement whose shape never changes, only its values, that CompiledUpdate cannot
    say (an expression among the values, an OR in the filter): Django compiles it once
    per database, `build(using, *values)` -> (sql, params) (for instance `update_sql` of
    the queryset), and each later call only works out its parameters, `params(connection,
    *values)`, in the order of Django's SQL. The first call on each database checks that
    both render the same statement, so parameters in another order than Django's raise
    there instead of writing a wrong column."""

    def __init__(self, build: Callable[..., tuple[str, Any]], params: Callable[..., list]):
        self._build = build
        self._params = params
        self._sql: dict[str, str] = {}

    def sql_params(self, using: str, *values) -> tuple[str, tuple]:
        connection = connections[using]
        params = tuple(self._params(connection, *values))
        sql = self._sql.get(using)
        if sql is None:
            sql, django_params = self._build(using, *values)
            if _rendered(connection, sql, params) != _rendered(connection, sql, django_params):
                raise RuntimeError("a statement's parameters are not Django's: "
                                   f"{_rendered(connection, sql, django_params)[:200]}")
            self._sql[using] = sql
        return sql, params


def _rendered(connection, sql: str, params) -> str:
    """The statement with its values in it, as the database will receive it."""
    if connection.vendor == "postgresql":
        return connection.ops.compose_sql(sql, list(params))
    return repr((sql, [str(p) for p in params]))
