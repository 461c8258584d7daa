import json

import pytest
from fakes.server import load_fixture

from integrations.exceptions import SignatureError
from integrations.signing import compute_signature, sign, verify

VECTOR = load_fixture("webhook", "stripe_vector")


def test_stripe_vector_from_vendors_doc():
    assert compute_signature(VECTOR["secret"], VECTOR["body"], VECTOR["timestamp"]) == VECTOR["v1"]
    header = sign(VECTOR["secret"], VECTOR["body"].encode(), timestamp=VECTOR["timestamp"])
    assert header == f"t={VECTOR['timestamp']},v1={VECTOR['v1']}"
    verify(VECTOR["secret"], VECTOR["body"], header, now=VECTOR["timestamp"] + 10)


def test_round_trip_with_the_current_time():
    body = json.dumps({"event": "workflow.completed", "id": "run-1"}).encode()
    verify("whsec_abc", body, sign("whsec_abc", body))


def test_any_of_several_v1_entries_may_match_and_v0_is_ignored():
    t, body = 1_700_000_000, b"{}"
    good = compute_signature("new-secret", body, t)
    header = f"t={t},v0=deadbeef,v1={'0' * 64},v1={good}"
    verify("new-secret", body, header, now=t)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=1700000000", "v1=abc",
                                    "t=soon,v1=abc", "t=1700000000,v1="])
def test_missing_or_malformed_headers(header):
    with pytest.raises(SignatureError):
        verify("secret", b"{}", header, now=1_700_000_000)


def test_wrong_secret_or_tampered_body_fails():
    header = sign("secret", b'{"total": 10}', timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match="No v1 signature"):
        verify("other", b'{"total": 10}', header, now=1_700_000_000)
    with pytest.raises(SignatureError, match="No v1 signature"):
        verify("secret", b'{"total": 99}', header, now=1_700_000_000)


def test_non_ascii_signature_is_rejected_not_crashing():
    with pytest.raises(SignatureError):
        verify("secret", b"{}", "t=1700000000,v1=é", now=1_700_000_000)


def test_tolerance_window():
    t, body = 1_700_000_000, b"{}"
    header = sign("s", body, timestamp=t)
    verify("s", body, header, now=t + 300)
    verify("s", body, header, now=t - 300)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("s", body, header, now=t + 301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("s", body, header, now=t - 301)
    verify("s", body, header, tolerance=3600, now=t + 3000)


def test_signature_error_is_an_api_401():
    assert SignatureError.http_status == 401
    assert SignatureError.code == "invalid_signature"
