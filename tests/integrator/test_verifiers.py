"""The Python and Node verifiers: the shared vectors, and agreement with Stripe's verifier on 1,000 cases."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aforo.shared.signing import sign_payload
from aforo_webhooks import WebhookVerificationError, verify
from tests.integrator.vectors import NodeVerifier, vectors
from tests.support.stack import ROOT

VERIFICATION = vectors()["verification"]


def python_answer(body: str, header: str, secrets: Any, tolerance: int, now: float) -> dict[str, Any]:
    try:
        return {"envelope": verify(body.encode("utf-8"), header, secrets, tolerance, now)}
    except WebhookVerificationError as error:
        return {"reason": error.reason}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeVerifier]:
    verifier = NodeVerifier()
    yield verifier
    verifier.close()


@pytest.mark.parametrize("vector", VERIFICATION, ids=[vector["name"] for vector in VERIFICATION])
def test_python_verifier_gives_each_vectors_answer(vector: dict[str, Any]) -> None:
    answer = python_answer(
        vector["body"], vector["header"], vector["secrets"], vector["toleranceSeconds"], vector["now"]
    )

    assert answer == vector["expected"]


@pytest.mark.parametrize("vector", VERIFICATION, ids=[vector["name"] for vector in VERIFICATION])
def test_node_verifier_gives_each_vectors_answer(node: NodeVerifier, vector: dict[str, Any]) -> None:
    answer = node.verify(
        vector["body"], vector["header"], vector["secrets"], vector["toleranceSeconds"], vector["now"]
    )

    assert answer == vector["expected"]


def test_vectors_cover_every_reason() -> None:
    reasons = {vector["expected"].get("reason") for vector in VERIFICATION}

    assert reasons == {
        None,
        "header_malformed",
        "no_matching_signature",
        "timestamp_too_old",
        "timestamp_in_future",
        "body_not_json",
    }


@pytest.mark.parametrize("secrets", [[], "", ["whsec_ok", ""]], ids=["no-secrets", "empty", "one-empty"])
def test_python_verifier_refuses_to_check_without_a_secret(secrets: Any) -> None:
    with pytest.raises(ValueError, match="secrets"):
        verify(b"{}", "t=1,v1=00", secrets, now=1)


def test_python_verifier_refuses_a_parsed_body() -> None:
    with pytest.raises(TypeError, match="raw"):
        verify({"eventId": "e"}, "t=1,v1=00", "whsec_ok", now=1)  # type: ignore[arg-type]


# Stripe accepts timestamps from the future (it only refuses old ones); we refuse both directions, so
# the generated timestamps are at or before now, and kept 5 s away from the tolerance edge so the
# clock moving during a case cannot split the verdicts.
TOLERANCE = 300
text_bodies = st.text(max_size=300).map(lambda text: text)
secret_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
).filter(str.strip)  # Stripe refuses a blank secret
ages = st.one_of(st.integers(0, TOLERANCE - 5), st.integers(TOLERANCE + 5, 10 * TOLERANCE))


@st.composite
def delivery_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A delivery as signed (one or two secrets: rotation), then possibly spoiled on the way."""
    body = draw(st.one_of(text_bodies, st.builds(lambda n: f'{{"amount":{n}}}', st.integers())))
    signing = draw(st.lists(secret_text, min_size=1, max_size=2, unique=True))
    timestamp = int(time.time()) - draw(ages)
    header = sign_payload(body.encode("utf-8"), signing, timestamp)
    spoil = draw(st.sampled_from(["none", "none", "wrong-secret", "body", "signature", "unknown-scheme"]))
    holder = [draw(st.sampled_from(signing))]
    if spoil == "wrong-secret":
        holder = [draw(secret_text.filter(lambda s: s not in signing))]
    elif spoil == "body":
        body = body + draw(st.sampled_from([" ", "\n", "x", "é"]))
    elif spoil == "signature":
        header = header[:-1] + ("0" if header[-1] != "0" else "1")
    elif spoil == "unknown-scheme":
        header = header + ",v0=" + hmac.new(b"k", b"m", hashlib.sha256).hexdigest()
    if len(signing) == 2 and draw(st.booleans()):
        holder = signing  # the receiver holds both during the overlap
    return {"body": body, "header": header, "secrets": holder}


def stripe_accepts(body: str, header: str, secrets: list[str]) -> bool:
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, TOLERANCE)
        except stripe.SignatureVerificationError:
            continue
        return True
    return False


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=delivery_cases())
def test_python_and_node_agree_with_stripe(node: NodeVerifier, case: dict[str, Any]) -> None:
    now = time.time()
    expected = stripe_accepts(case["body"], case["header"], case["secrets"])

    ours = python_answer(case["body"], case["header"], case["secrets"], TOLERANCE, now)
    theirs = node.verify(case["body"], case["header"], case["secrets"], TOLERANCE, now)

    accepted = "envelope" in ours or ours.get("reason") == "body_not_json"
    assert accepted is expected, (case, ours)
    # Same verdict and reason; envelopes are not compared here because JavaScript's JSON.parse rounds
    # integers beyond 2**53 (the guide says so), which the generated amounts reach.
    assert theirs.get("reason") == ours.get("reason"), (case, ours, theirs)


def test_the_node_packages_own_tests_pass() -> None:
    """`npm test` in clients/node: the vectors again, and the Express middleware without Express."""
    result = subprocess.run(
        ["node", "--test", "test/"],
        cwd=ROOT / "clients" / "node",
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
