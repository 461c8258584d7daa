"""Thin django-q2 adapters: take ids, call one service."""

from automation.engine.executor import execute_step


def step_execute(step_run_id: int) -> None:
    execute_step(step_run_id)


def sweep() -> dict:
    from automation.services.sweeper import sweep_all

    return sweep_all()


def batch_fanout(batch_id: str) -> None:
    from automation.services.batches import batch_fanout_run

    batch_fanout_run(batch_id)
