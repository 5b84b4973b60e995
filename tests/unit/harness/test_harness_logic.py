"""The harness's decisions without a server: verdicts and their words, scripted answers, duplicates,
and the audit's explanations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from aforo.harness.audit import SKIP_WORDS, explain, explained
from aforo.harness.inbox import FailureScript, Inbox, answer_for
from aforo.harness.verification import CheckMode, ReceiverSecret, altered, generate_secret, judge
from aforo.shared.signing import sign_payload

BODY = b'{"eventId":"e1","eventType":"webhook.test","payload":{"note":"caf\xc3\xa9"}}'
NOW = 1_800_000_000
FIRST = ReceiverSecret("secret #1", "whsec_first_0123456789abcdef", datetime(2026, 1, 1, tzinfo=UTC))
SECOND = ReceiverSecret("secret #2", "whsec_second_0123456789abcdef", datetime(2026, 1, 2, tzinfo=UTC))


def header(*secrets: ReceiverSecret, at: int = NOW) -> str:
    return sign_payload(BODY, [secret.secret for secret in secrets], at)


@pytest.mark.parametrize(
    ("signed_with", "held", "mode", "at", "verified", "reason", "matched"),
    [
        pytest.param((FIRST,), [FIRST], CheckMode.NORMAL, NOW, True, None, ("secret #1",), id="genuine"),
        pytest.param(
            (SECOND, FIRST),
            [FIRST, SECOND],
            CheckMode.NORMAL,
            NOW,
            True,
            None,
            ("secret #1", "secret #2"),
            id="rotation-both",
        ),
        pytest.param(
            (FIRST,), [FIRST, SECOND], CheckMode.NORMAL, NOW, True, None, ("secret #1",), id="old-only"
        ),
        pytest.param(
            (FIRST,),
            [FIRST],
            CheckMode.WRONG_SECRET,
            NOW,
            False,
            "wrong_secret",
            ("secret #1",),
            id="wrong-secret-mode",
        ),
        pytest.param(
            (SECOND,), [FIRST], CheckMode.NORMAL, NOW, False, "wrong_secret", (), id="unknown-secret"
        ),
        pytest.param(
            (FIRST,),
            [FIRST],
            CheckMode.ALTERED_BODY,
            NOW,
            False,
            "body_altered",
            ("secret #1",),
            id="altered-body",
        ),
        pytest.param(
            (FIRST,),
            [FIRST],
            CheckMode.NORMAL,
            NOW - 301,
            False,
            "timestamp_outside_tolerance",
            ("secret #1",),
            id="stale",
        ),
        pytest.param(
            (FIRST,),
            [FIRST],
            CheckMode.NORMAL,
            NOW + 301,
            False,
            "timestamp_outside_tolerance",
            ("secret #1",),
            id="future",
        ),
        pytest.param((FIRST,), [], CheckMode.NORMAL, NOW, False, "no_secret", (), id="no-secret-yet"),
    ],
)
def test_judge(
    signed_with: tuple[ReceiverSecret, ...],
    held: list[ReceiverSecret],
    mode: CheckMode,
    at: int,
    verified: bool,
    reason: str | None,
    matched: tuple[str, ...],
) -> None:
    verdict = judge(BODY, header(*signed_with, at=at), held, mode, now=NOW)

    assert (verdict.verified, verdict.reason, verdict.matched) == (verified, reason, matched)
    assert verdict.explanation


@pytest.mark.parametrize("value", [None, "", "garbage", "t=1", "v1=00"])
def test_a_malformed_header_is_named(value: str | None) -> None:
    verdict = judge(BODY, value, [FIRST], CheckMode.NORMAL, now=NOW)

    assert (verdict.verified, verdict.reason) == (False, "header_malformed")
    assert verdict.explanation.startswith("header malformed")


def test_an_altered_body_differs_but_parses_the_same() -> None:
    import json

    assert altered(BODY) != BODY
    assert json.loads(altered(BODY)) == json.loads(BODY)


def test_generated_secrets_are_whsec_and_distinct() -> None:
    secrets = {generate_secret() for _ in range(50)}

    assert len(secrets) == 50
    assert all(secret.startswith("whsec_") and len(secret) > 40 for secret in secrets)


def test_a_secrets_view_never_shows_the_secret() -> None:
    view = FIRST.view()

    assert FIRST.secret not in str(view)
    assert FIRST.secret not in repr(FIRST)
    assert view["preview"] == "whsec_firs…"


def test_the_script_answers_the_next_n_then_stops() -> None:
    script = FailureScript()
    script.set("500", 2)

    answers = [script.take() for _ in range(4)]

    assert answers == ["500", "500", None, None]
    assert script.view() == {"answer": None, "remaining": 0}


@pytest.mark.parametrize(("answer", "count"), [("418", 1), ("500", -1), ("500", 1001)])
def test_the_script_refuses_what_it_cannot_do(answer: str, count: int) -> None:
    with pytest.raises(ValueError, match=r"answer|count"):
        FailureScript().set(answer, count)  # type: ignore[arg-type]


def test_answers_follow_the_script_first_then_the_verdict() -> None:
    genuine = judge(BODY, header(FIRST), [FIRST], CheckMode.NORMAL, now=NOW)
    forged = judge(BODY, header(SECOND), [FIRST], CheckMode.NORMAL, now=NOW)

    assert answer_for(None, genuine, 7) == (200, "200")
    assert answer_for(None, forged, 7) == (400, "400 wrong_secret")
    assert answer_for("500", genuine, 7) == (500, "500 (scripted)")
    assert answer_for("410", genuine, 7) == (410, "410 Gone (scripted)")
    assert answer_for("slow", forged, 7) == (200, "200 after 7 s (scripted slow)")


def delivery(event_id: str, status: int) -> dict[str, object]:
    return {"eventId": event_id, "answer": {"status": status}}


def test_a_repeat_after_a_refusal_is_a_retry_and_after_an_acknowledgement_a_duplicate() -> None:
    inbox = Inbox()

    first = inbox.add(delivery("e1", 500))
    retry = inbox.add(delivery("e1", 200))
    duplicate = inbox.add(delivery("e1", 200))
    other = inbox.add(delivery("e2", 200))

    assert [d["seq"] for d in (first, retry, duplicate, other)] == [1, 2, 3, 4]
    assert (first["duplicate"], first["repeatOf"]) == (False, None)
    assert (retry["duplicate"], retry["repeatOf"]) == (False, 1)
    assert (duplicate["duplicate"], duplicate["duplicateOf"], duplicate["repeatOf"]) == (True, 2, 2)
    assert (other["duplicate"], other["repeatOf"]) == (False, None)
    assert [d["seq"] for d in inbox.since(2)] == [3, 4]


async def test_a_waiting_stream_wakes_on_a_new_delivery() -> None:
    inbox = Inbox()
    waiter = asyncio.create_task(inbox.wait_beyond(0, heartbeat_seconds=30))
    await asyncio.sleep(0)

    inbox.add(delivery("e1", 200))
    await inbox.announce()

    await asyncio.wait_for(waiter, 5)


@pytest.mark.parametrize(("gate", "words"), sorted(SKIP_WORDS.items()))
def test_every_gate_is_explained_in_words(gate: str, words: str) -> None:
    assert explain({"status": "SKIPPED", "skipReason": gate, "error": None}) == f"skipped: {words}"


def test_failed_and_retrying_rows_keep_the_verbatim_error() -> None:
    failed = {
        "status": "FAILED",
        "error": "timeout: Read timed out (no response within 5 s)",
        "channel": "WEBHOOK",
        "endpointId": "ep",
    }
    retrying = {
        "status": "RETRYING",
        "error": "HTTP 500 Internal Server Error",
        "nextAttemptAt": "2026-01-01T00:00:02.000Z",
    }

    [shown] = explained([failed])

    assert (
        shown["explanation"] == "failed, no more attempts: timeout: Read timed out (no response within 5 s)"
    )
    assert shown["replayable"] is True
    assert "HTTP 500 Internal Server Error" in explain(retrying)
    assert (
        explained([{"status": "DELIVERED", "channel": "WEBHOOK", "endpointId": "ep", "responseStatus": 204}])[
            0
        ]["replayable"]
        is False
    )
