"""The idempotency ledger: every external effect a step makes is recorded under its
effect key with its result, and a retry or re-run that reaches the same key is served
the stored result instead of calling out again (docs/user-guide/operating-runs.md).

The key is `origin:step:scope:digest`. `origin` is the first run of a re-run chain (a
run's own id when it is no re-run), and `digest` is a hash of the action and its
rendered params: the attempt is left out, so a retry of the step reaches the same key,
and a re-run of a step whose input left its call unchanged reaches it too, while an
edited input that changes the call makes a new effect. The key the connector sends the
vendor (`run:step:scope:attempt`) is unchanged.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from automation.functions.registry import StepContext
from automation.models import Effect

SERVED_LOG = "served from the idempotency ledger"


def effect_key(ctx: StepContext, action: str, params: Any) -> str:
    body = json.dumps([action, params], sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]
    return f"{ctx.effect_origin or ctx.run_id}:{ctx.step_id}:{ctx.scope_key}:{digest}"


def once(ctx: StepContext, action: str, params: Any, call: Callable[[], Any]) -> Any:
    """`call()` unless the ledger holds this effect already (then its stored result);
    with `ctx.repeat_effects` it is made again and the new result stored."""
    key = effect_key(ctx, action, params)
    if not ctx.repeat_effects:
        recorded = Effect.objects.filter(key=key).first()
        if recorded is not None:
            Effect.objects.filter(pk=recorded.pk).update(served=F("served") + 1,
                                                         run_id=ctx.run_id)
            ctx.log(f"{action}: {SERVED_LOG} (made by an earlier attempt; not repeated)",
                    ledger="served", key=key)
            return recorded.result
    result = call()
    _record(ctx, key, action, result)
    if ctx.repeat_effects:
        ctx.log(f"{action}: repeated on request (repeatEffects)", ledger="repeated", key=key)
    return result


def _record(ctx: StepContext, key: str, action: str, result: Any) -> None:
    updated = Effect.objects.filter(key=key).update(result=result, calls=F("calls") + 1,
                                                    run_id=ctx.run_id)
    if updated:
        return
    try:
        with transaction.atomic():
            Effect.objects.create(key=key, run_id=ctx.run_id, step_id=ctx.step_id,
                                  scope=ctx.scope_key, action=action, result=result)
    except IntegrityError:  # two attempts at once (a lost worker's twin): keep one row
        Effect.objects.filter(key=key).update(result=result, calls=F("calls") + 1)
