"""The lock files `dev.py` installs from (docs/contributing.md, "Dependencies and lock
files") name every dependency pyproject.toml asks for, and pin each to one version with
hashes."""

import re

import pytest

import dev


def test_the_lock_files_match_pyproject():
    dev.lock_check(dev.RUN_LOCK, None)
    dev.lock_check(dev.DEV_LOCK, "dev")
    assert dev.pinned(dev.RUN_LOCK) < dev.pinned(dev.DEV_LOCK)  # run.lock: no test tools
    assert "pytest" not in dev.pinned(dev.RUN_LOCK)


def test_run_lock_takes_dev_locks_versions():
    def versions(lock):
        return dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", lock.read_text(), re.M))

    run, dev_ = versions(dev.RUN_LOCK), versions(dev.DEV_LOCK)
    assert {name: dev_[name] for name in run} == run


def test_every_pin_carries_a_hash():
    for lock in (dev.RUN_LOCK, dev.DEV_LOCK):
        entries = re.split(r"\n(?=[a-z0-9._-]+==)", lock.read_text())[1:]
        assert entries and all("--hash=sha256:" in entry for entry in entries), lock


def test_a_lock_that_misses_a_dependency_is_refused(tmp_path):
    stale = tmp_path / "run.lock"
    stale.write_text(dev.RUN_LOCK.read_text().replace("\nwhitenoise==", "\nsomething-else=="))
    with pytest.raises(dev.Failed, match=r"missing: whitenoise\). .*python3 dev.py lock"):
        dev.lock_check(stale, None)
