"""`Idempotency-Key` for API calls that start runs: the same key from the same caller
returns the first run and starts nothing new (run_start's own idempotency key, namespaced
by caller so two clients cannot collide)."""

import hashlib

from automation.exceptions import RunStateError
from automation.models import ApiProcess, Run
from automation.services.runs import run_start

MAX_KEY_LENGTH = 200


class IdempotencyKeyReusedError(RunStateError):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used for another workflow definition."


def namespaced_key(*, principal: str, key: str) -> str:
    return f"api:{principal}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def run_start_once(*, process: ApiProcess, principal: str, key: str | None, **run_kwargs
                   ) -> tuple[Run, bool]:
    """run_start, once per (caller, key). Reusing a key for another process is a 409."""
    idempotency_key = namespaced_key(principal=principal, key=key) if key else None
    run, created = run_start(process=process, idempotency_key=idempotency_key, **run_kwargs)
    if not created and run.process_id != process.pk:
        raise IdempotencyKeyReusedError()
    return run, created
