"""A doorbell's task package is signed by a signer built once per key
(store.doorbell._signer, docs/performance.md "The API trigger's doorbell package and
process columns"): it must be the very package django-q2's `SignedPackage.dumps` makes
of the same task, which its workers read."""

import pytest
import time_machine
from django_q.conf import Conf
from django_q.signing import BadSignature, PickleSerializer, SignedPackage

from automation.store.doorbell import TASK, _package, _signer


def test_a_package_is_the_one_django_q2_signs():
    with time_machine.travel("2026-12-05 12:00:00Z", tick=False):  # one time stamp for both
        package = _package(TASK, (5,), 30)
        task = SignedPackage.loads(package)
        assert package == SignedPackage.dumps(task)
    assert (task["func"], task["args"], task["name"], task["timeout"]) == (TASK, (5,), "step-5", 30)


def test_the_signer_is_kept_per_key_and_another_keys_package_is_refused():
    assert _signer(Conf.SECRET_KEY, Conf.PREFIX) is _signer(Conf.SECRET_KEY, Conf.PREFIX)
    other = _signer(f"{Conf.SECRET_KEY}-other", Conf.PREFIX)
    forged = other.sign_object({"func": TASK, "args": (5,)}, serializer=PickleSerializer)
    with pytest.raises(BadSignature):
        SignedPackage.loads(forged)
