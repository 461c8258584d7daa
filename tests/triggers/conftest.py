"""Fixtures for trigger tests: processes saved the way callers save them, with the
after-commit work (index refresh, schedule sync, queued steps) actually run."""

import pytest

from automation.services.processes import process_save

ECHO_STEPS = [{"id": "echo", "type": "function", "function": "noop"}]


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs what would run after commit (tests share one transaction)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def save_process(committed):
    def save(slug: str, triggers: list, *, steps: list | None = None, **kwargs):
        with committed():
            return process_save(slug=slug, name=kwargs.pop("name", slug.title()),
                                definition={"steps": steps or ECHO_STEPS, "triggers": triggers},
                                **kwargs)

    return save
