"""The X-Aforo-Signature contract: known vectors, rotation, rejection, and Stripe compatibility."""

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from aforo.shared.signing import SIGNATURE_HEADER, sign_payload, verify_signature

BODY = b'{"eventId":"evt_1","type":"usage.threshold_reached","amount":"12.50"}'
TIMESTAMP = 1_700_000_000
OLD_SECRET = "whsec_old_0123456789"
NEW_SECRET = "whsec_new_9876543210"


def expected_v1(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_header_name_is_the_wire_name() -> None:
    assert SIGNATURE_HEADER == "X-Aforo-Signature"


def test_known_vector() -> None:
    header = sign_payload(BODY, [OLD_SECRET], TIMESTAMP)

    assert header == f"t={TIMESTAMP},v1={expected_v1(OLD_SECRET, TIMESTAMP, BODY)}"


def test_known_vector_fixed_digest() -> None:
    # Pinned literal from `printf '0.{}' | openssl dgst -sha256 -hmac secret`, so a change to the
    # signed-payload layout cannot pass by changing the code and the test's helper together.
    header = sign_payload(b"{}", ["secret"], 0)

    assert header == "t=0,v1=4bbe8d39de1ffea42cffafb4727e02f761bef8ed2886b51575ce417d542e918f"


def test_rotation_gives_one_v1_entry_per_secret_and_each_verifies() -> None:
    header = sign_payload(BODY, [OLD_SECRET, NEW_SECRET], TIMESTAMP)

    assert header == (
        f"t={TIMESTAMP},"
        f"v1={expected_v1(OLD_SECRET, TIMESTAMP, BODY)},"
        f"v1={expected_v1(NEW_SECRET, TIMESTAMP, BODY)}"
    )
    assert verify_signature(BODY, header, OLD_SECRET, now=TIMESTAMP)
    assert verify_signature(BODY, header, NEW_SECRET, now=TIMESTAMP)
    assert not verify_signature(BODY, header, "whsec_other", now=TIMESTAMP)


@pytest.mark.parametrize(
    "secrets",
    [pytest.param([], id="no-secrets"), pytest.param([OLD_SECRET, ""], id="empty-secret")],
)
def test_signing_refuses_without_a_usable_secret(secrets: list[str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_payload(BODY, secrets, TIMESTAMP)


def test_signing_refuses_a_bare_string_as_the_secret_list() -> None:
    with pytest.raises(TypeError, match="single string"):
        sign_payload(BODY, OLD_SECRET, TIMESTAMP)


def test_signing_refuses_a_negative_timestamp() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        sign_payload(BODY, [OLD_SECRET], -1)


@pytest.mark.parametrize(
    ("body", "secret", "now", "accepted"),
    [
        pytest.param(BODY, OLD_SECRET, TIMESTAMP, True, id="genuine"),
        pytest.param(BODY, OLD_SECRET, TIMESTAMP + 300, True, id="at-tolerance-edge"),
        pytest.param(BODY + b" ", OLD_SECRET, TIMESTAMP, False, id="tampered-body"),
        pytest.param(BODY.replace(b"12.50", b"99.50"), OLD_SECRET, TIMESTAMP, False, id="tampered-amount"),
        pytest.param(BODY, NEW_SECRET, TIMESTAMP, False, id="wrong-secret"),
        pytest.param(BODY, "", TIMESTAMP, False, id="empty-secret"),
        pytest.param(BODY, OLD_SECRET, TIMESTAMP + 301, False, id="stale"),
        pytest.param(BODY, OLD_SECRET, TIMESTAMP - 301, False, id="from-the-future"),
    ],
)
def test_verify(body: bytes, secret: str, now: int, accepted: bool) -> None:
    header = sign_payload(BODY, [OLD_SECRET], TIMESTAMP)

    assert verify_signature(body, header, secret, tolerance_seconds=300, now=now) is accepted


def test_verify_uses_the_clock_when_now_is_not_given() -> None:
    fresh = sign_payload(BODY, [OLD_SECRET], int(time.time()))
    stale = sign_payload(BODY, [OLD_SECRET], int(time.time()) - 3600)

    assert verify_signature(BODY, fresh, OLD_SECRET)
    assert not verify_signature(BODY, stale, OLD_SECRET)


GOOD_V1 = expected_v1(OLD_SECRET, TIMESTAMP, BODY)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="no-equals"),
        pytest.param(f"v1={GOOD_V1}", id="no-timestamp"),
        pytest.param(f"t={TIMESTAMP}", id="no-signature"),
        pytest.param(f"t={TIMESTAMP},v0={GOOD_V1}", id="only-unknown-scheme"),
        pytest.param(f"t=abc,v1={GOOD_V1}", id="timestamp-not-a-number"),
        pytest.param(f"t=-{TIMESTAMP},v1={GOOD_V1}", id="negative-timestamp"),
        pytest.param(f"t=+{TIMESTAMP},v1={GOOD_V1}", id="signed-timestamp"),
        pytest.param(f"t=1_700_000_000,v1={GOOD_V1}", id="underscored-timestamp"),
        pytest.param(f"t=\u0661\u0662,v1={GOOD_V1}", id="non-ascii-digits"),
        pytest.param(f"t={'9' * 5000},v1={GOOD_V1}", id="huge-timestamp"),
        pytest.param(f"t={TIMESTAMP},t={TIMESTAMP},v1={GOOD_V1}", id="duplicate-timestamp"),
        pytest.param(f"t={TIMESTAMP},v1=\u00e9\u00e9", id="non-ascii-signature"),
        pytest.param(f"t={TIMESTAMP},v1=\udcff", id="lone-surrogate"),
        pytest.param(f"t={TIMESTAMP},v1={GOOD_V1},", id="trailing-comma"),
        pytest.param(f"t={TIMESTAMP};v1={GOOD_V1}", id="wrong-separator"),
    ],
)
def test_malformed_headers_are_rejected_without_raising(header: str) -> None:
    assert verify_signature(BODY, header, OLD_SECRET, now=TIMESTAMP) is False


def test_unknown_schemes_are_ignored_next_to_a_valid_v1() -> None:
    header = f"t={TIMESTAMP},v0=deadbeef,v1={GOOD_V1}"

    assert verify_signature(BODY, header, OLD_SECRET, now=TIMESTAMP)


@given(
    body=st.binary(max_size=512),
    secrets=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3),
    timestamp=st.integers(min_value=0, max_value=10**11),
)
def test_every_secret_in_the_header_verifies(body: bytes, secrets: list[str], timestamp: int) -> None:
    header = sign_payload(body, secrets, timestamp)

    assert header.count(",v1=") == len(secrets)
    for secret in secrets:
        assert verify_signature(body, header, secret, now=timestamp)


@given(header=st.text(max_size=200), secret=st.text(max_size=20), now=st.integers(0, 10**11))
def test_verify_never_raises(header: str, secret: str, now: int) -> None:
    assert verify_signature(BODY, header, secret, now=now) in (True, False)


class TestStripeCompatibility:
    """Receivers may verify us with Stripe's library; its verify_header must accept our header."""

    @pytest.mark.parametrize(
        "secrets",
        [pytest.param([OLD_SECRET], id="single"), pytest.param([OLD_SECRET, NEW_SECRET], id="rotated")],
    )
    def test_stripe_accepts_our_header_for_every_secret(self, secrets: list[str]) -> None:
        # Stripe checks the timestamp against its own clock, so sign "now".
        header = sign_payload(BODY, secrets, int(time.time()))

        for secret in secrets:
            assert stripe.WebhookSignature.verify_header(BODY.decode("utf-8"), header, secret, 300)
            assert stripe.WebhookSignature.verify_header(BODY, header, secret, 300)

    def test_our_verifier_accepts_stripes_header(self) -> None:
        header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), OLD_SECRET, TIMESTAMP)

        assert verify_signature(BODY, header, OLD_SECRET, now=TIMESTAMP)

    @pytest.mark.parametrize(
        ("payload", "secret"),
        [
            pytest.param(BODY.decode() + " ", OLD_SECRET, id="tampered-body"),
            pytest.param(BODY.decode(), "whsec_other", id="wrong-secret"),
        ],
    )
    def test_stripe_rejects_a_tampered_delivery(self, payload: str, secret: str) -> None:
        header = sign_payload(BODY, [OLD_SECRET, NEW_SECRET], int(time.time()))

        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(payload, header, secret, 300)

    def test_stripe_rejects_a_stale_header(self) -> None:
        header = sign_payload(BODY, [OLD_SECRET], int(time.time()) - 3600)

        with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
            stripe.WebhookSignature.verify_header(BODY.decode(), header, OLD_SECRET, 300)


class TestSharedVectors:
    """The vectors the Python and Node receiver packages are tested with hold for the signer too."""

    VECTORS = json.loads(
        (
            Path(__file__).resolve().parents[3] / "clients" / "test-vectors" / "webhook-signatures.json"
        ).read_text(encoding="utf-8")
    )

    @pytest.mark.parametrize("vector", VECTORS["signing"], ids=lambda vector: vector["name"])
    def test_the_signer_writes_each_vectors_header(self, vector: dict[str, Any]) -> None:
        header = sign_payload(vector["body"].encode("utf-8"), vector["secrets"], vector["timestamp"])

        assert header == vector["header"]

    @pytest.mark.parametrize("vector", VECTORS["verification"], ids=lambda vector: vector["name"])
    def test_verify_signature_accepts_exactly_the_genuine_vectors(self, vector: dict[str, Any]) -> None:
        secrets = [vector["secrets"]] if isinstance(vector["secrets"], str) else vector["secrets"]
        # verify_signature checks the signature only; a signed body that is not JSON is still signed.
        genuine = vector["expected"].get("reason") in (None, "body_not_json")

        accepted = any(
            verify_signature(
                vector["body"].encode("utf-8"),
                vector["header"],
                secret,
                vector["toleranceSeconds"],
                vector["now"],
            )
            for secret in secrets
        )

        assert accepted is genuine
