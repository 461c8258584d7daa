"""Re-encrypting every stored secret with the current key (`manage.py rotate_encryption_key`,
docs/operating.md, "Rotating the key").

A field that holds a secret encrypted by `automation.connections.secrets` is named
`<something>_encrypted`; that is how the rotation finds it, so a new model that stores a
secret only has to follow the convention. Each value is read with any key a secret may
have been written with and written back with the current one, in chunks, and only if
nobody changed it in between (a concurrent writer already uses the current key).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.db import models, transaction

SUFFIX = "_encrypted"
CHUNK = 200


@dataclass(frozen=True)
class EncryptedField:
    model: type[models.Model]
    name: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.name}"

    def stored(self) -> models.QuerySet:
        """The rows that hold a secret in this field ('' means none), by primary key."""
        return (self.model._base_manager.exclude(**{self.name: ""})
                .exclude(**{f"{self.name}__isnull": True}).order_by("pk"))


@dataclass
class RotationReport:
    rotated: int = 0  # written again with the current key (or would be, in a dry run)
    current: int = 0  # already written with the current key: left alone
    changed: int = 0  # changed by someone else meanwhile, so written with the current key
    unreadable: list[str] = field(default_factory=list)  # "<model>.<field> pk=<pk>"


def encrypted_fields() -> list[EncryptedField]:
    """Every concrete field of every installed model whose name ends in `_encrypted`."""
    return [EncryptedField(model, f.name) for model in apps.get_models()
            for f in model._meta.concrete_fields if f.name.endswith(SUFFIX)]


def stored_count(fields: list[EncryptedField]) -> int:
    return sum(f.stored().count() for f in fields)


def _chunks(f: EncryptedField) -> Iterator[list[tuple[object, str]]]:
    last = None
    while True:
        page = f.stored() if last is None else f.stored().filter(pk__gt=last)
        rows = list(page.values_list("pk", f.name)[:CHUNK])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _rotate_one(f: EncryptedField, pk: object, token: str, keys: tuple[Fernet, MultiFernet],
                dry_run: bool, report: RotationReport) -> None:
    current, every = keys
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        report.unreadable.append(f"{f.label} pk={pk}")
        return
    try:
        current.decrypt(raw)
        report.current += 1
        return
    except InvalidToken:
        pass
    try:
        rotated = every.rotate(raw).decode("ascii")
    except InvalidToken:
        report.unreadable.append(f"{f.label} pk={pk}")
        return
    if dry_run:
        report.rotated += 1
        return
    # Compare and set: a row rewritten since we read it already carries the current key.
    if f.model._base_manager.filter(pk=pk, **{f.name: token}).update(**{f.name: rotated}):
        report.rotated += 1
    else:
        report.changed += 1


def rotate(fields: list[EncryptedField], keys: tuple[Fernet, MultiFernet], *, dry_run: bool,
           progress: Callable[[int], None] = lambda done: None) -> RotationReport:
    """Re-encrypt every stored secret of `fields` with `keys[0]`; `keys[1]` reads them.
    Calls `progress` with the number of values handled so far after each chunk."""
    report, done = RotationReport(), 0
    for f in fields:
        for rows in _chunks(f):
            with transaction.atomic():
                for pk, token in rows:
                    _rotate_one(f, pk, token, keys, dry_run, report)
            done += len(rows)
            progress(done)
    return report
