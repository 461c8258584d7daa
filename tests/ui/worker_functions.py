"""Functions the browser tests' processes call. The test process imports this module
(tests/ui/conftest.py) and so does a real `qcluster` started by the `ui_worker` fixture
(ENTITYFLOW_FUNCTION_MODULES), so the same names resolve on both sides.

`params.seconds` slows a step down on purpose: with a real worker the pages then have
in-between states (queued, running) to show before a run or a batch finishes.
"""

import time

from automation.exceptions import StepFailedError
from automation.functions import function


def _pause(ctx) -> None:
    seconds = float((ctx.params or {}).get("seconds", 0))
    if seconds > 0:
        time.sleep(seconds)


@function("ui.ship")
def ship(ctx):
    _pause(ctx)
    ctx.log("label printed", carrier="postnord")
    return {"shipped": ctx.entity.reference if ctx.entity else None}


@function("ui.convert-currency")
def convert_currency(ctx):
    """Fails for an order without an exchange rate in its data (the tests "fix" that)."""
    _pause(ctx)
    data = ctx.entity.data if ctx.entity else {}
    ctx.log("looking up exchange rate", currency=data.get("currency"))
    if not data.get("fxRate"):
        raise StepFailedError(
            f"No exchange rate for {data.get('currency')}", code="no_fx_rate", retryable=False
        )
    return {"totalEur": round(data["total"] * data["fxRate"], 2)}


@function("ui.reserve-stock")
def reserve_stock(ctx):
    ctx.log("calling the warehouse", sku="SKU-1138")
    ctx.log("warehouse answered 503")
    raise RuntimeError("warehouse said no: out of stock for SKU-1138")


@function("ui.reserve-qty")
def reserve_qty(ctx):
    """Fails for more than 5 (the stock); the operator re-runs it with a smaller qty."""
    qty = (ctx.input or {}).get("qty", 0)
    if qty > 5:
        raise StepFailedError(f"only 5 in stock, {qty} asked", code="out_of_stock",
                              retryable=False)
    _pause(ctx)
    return {"reserved": qty}
