"""Webhook endpoints: the URL policy, registration bodies, secret rotation, and what a client sees."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aforo.api import changes
from aforo.api.problems import InvalidRequestError, invalid_request_from
from aforo.api.resources.webhook_endpoints.rules import (
    DISABLED_BY_ADMIN,
    EndpointRegistration,
    EndpointUpdate,
    check_webhook_url,
    endpoint_changes,
    endpoint_view,
    new_endpoint_document,
    rotate_secrets,
)
from aforo.dispatcher.selection import EndpointView as DispatcherEndpointView
from aforo.shared.config_changes import ConfigKind

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SECRET = "whsec_0123456789abcdef"


def registration(**overrides: Any) -> EndpointRegistration:
    body: dict[str, Any] = {
        "endCustomerId": "c1",
        "url": "https://hooks.example.com/aforo",
        "events": ["INVOICE_GENERATED", "*", "INVOICE_GENERATED"],
        "secret": SECRET,
    }
    body.update(overrides)
    return EndpointRegistration.model_validate(body)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/aforo",
        "http://127.0.0.1:3001/webhook",
        "https://[2001:db8::1]:8443/x?token=abc",
        "HTTPS://Hooks.Example.com",
        "https://hooks.example.com/path/with@sign",
    ],
)
def test_usable_webhook_urls(url: str) -> None:
    assert check_webhook_url(url) == url
    assert registration(url=url).url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://token@hooks.example.com/", "credentials"),
        ("https:///path", "host"),
        ("https://hooks.example.com:0/", "port 0"),
        ("https://hooks.example.com:70000/", "not a valid URL"),
        ("https://hooks.example.com/#fragment", "fragment"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/\x00", "control"),
        ("https://hooks.example.com/" + "a" * 2100, "at most 2048"),
    ],
)
def test_unusable_webhook_urls_say_why_without_echoing_the_url(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        check_webhook_url(url)

    assert url not in str(refused.value)


def test_registration_dedupes_events_and_hides_the_secret() -> None:
    body = registration()

    assert body.events == ["INVOICE_GENERATED", "*"]
    assert SECRET not in repr(body)
    assert body.secret.get_secret_value() == SECRET
    assert (body.max_retry_attempts, body.initial_backoff_seconds, body.backoff_multiplier) == (3, 2.0, 2.0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "ftp://x.example"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["**"]}, "events[0]"),
        ({"secret": "x" * 15}, "secret"),
        ({"secret": "x" * 513}, "secret"),
        ({"maxRetryAttempts": 11}, "maxRetryAttempts"),
        ({"maxRetryAttempts": 2.0}, "maxRetryAttempts"),
        ({"maxRetryAttempts": True}, "maxRetryAttempts"),
        ({"initialBackoffSeconds": -1}, "initialBackoffSeconds"),
        ({"backoffMultiplier": 10.5}, "backoffMultiplier"),
        ({"endCustomerId": "x" * 129}, "endCustomerId"),
    ],
)
def test_registration_schema_errors_name_the_field_and_never_the_value(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as error:
        registration(**overrides)

    problem = invalid_request_from(error.value)
    assert problem.field == field
    assert str(next(iter(overrides.values()))) not in problem.message


def test_the_stored_document_is_the_shape_the_dispatcher_reads() -> None:
    document = new_endpoint_document(
        "t1", registration(), endpoint_id="e-1", ciphertext="gAAAA-cipher", now=NOW
    )

    assert document == {
        "endpointId": "e-1",
        "tenantId": "t1",
        "endCustomerId": "c1",
        "url": "https://hooks.example.com/aforo",
        "events": ["INVOICE_GENERATED", "*"],
        "active": True,
        "secrets": [{"ciphertext": "gAAAA-cipher", "createdAt": NOW, "retiresAt": None}],
        "maxRetryAttempts": 3,
        "initialBackoffSeconds": 2.0,
        "backoffMultiplier": 2.0,
        "version": 1,
        "createdAt": NOW,
        "updatedAt": NOW,
        "disabledReason": None,
    }
    routed = DispatcherEndpointView.from_document(document)
    assert (routed.endpoint_id, routed.events, routed.max_retry_attempts) == (
        "e-1",
        frozenset({"INVOICE_GENERATED", "*"}),
        3,
    )
    view = endpoint_view(document).to_wire()
    assert "secrets" not in view
    assert "gAAAA-cipher" not in str(view)
    assert view["signingSecrets"] == [{"createdAt": "2026-11-23T09:00:00.000Z", "retiresAt": None}]


def test_a_rotation_puts_the_new_secret_first_and_retires_the_current_one_after_the_overlap() -> None:
    current = [{"ciphertext": "old", "createdAt": NOW - HOUR, "retiresAt": None}]

    rotated = rotate_secrets(current, "new", now=NOW, overlap=24 * HOUR)

    assert rotated == [
        {"ciphertext": "new", "createdAt": NOW, "retiresAt": None},
        {"ciphertext": "old", "createdAt": NOW - HOUR, "retiresAt": NOW + 24 * HOUR},
    ]


def test_a_second_rotation_keeps_earlier_retirement_dates_and_drops_retired_secrets() -> None:
    current = [
        {"ciphertext": "b", "createdAt": NOW - HOUR, "retiresAt": None},
        {"ciphertext": "a", "createdAt": NOW - 2 * HOUR, "retiresAt": NOW + 5 * HOUR},
        {"ciphertext": "gone", "createdAt": NOW - 50 * HOUR, "retiresAt": NOW - HOUR},
    ]

    rotated = rotate_secrets(current, "c", now=NOW, overlap=24 * HOUR)

    assert [(entry["ciphertext"], entry["retiresAt"]) for entry in rotated] == [
        ("c", None),
        ("b", NOW + 24 * HOUR),
        ("a", NOW + 5 * HOUR),
    ]


def test_a_zero_overlap_replaces_the_secret_at_once() -> None:
    rotated = rotate_secrets(
        [{"ciphertext": "old", "createdAt": NOW, "retiresAt": None}], "new", now=NOW, overlap=timedelta(0)
    )

    assert [entry["ciphertext"] for entry in rotated] == ["new"]


@given(
    st.lists(st.tuples(st.integers(-100, 100), st.one_of(st.none(), st.integers(-100, 100))), max_size=6),
    st.integers(0, 200),
)
def test_rotation_invariants(entries: list[tuple[int, int | None]], overlap_hours: int) -> None:
    """Exactly one current secret, first; nothing retired is kept; no retirement date moves later."""
    current = [
        {
            "ciphertext": f"s{index}",
            "createdAt": NOW + created * HOUR,
            "retiresAt": None if retires is None else NOW + retires * HOUR,
        }
        for index, (created, retires) in enumerate(entries)
    ]
    overlap = overlap_hours * HOUR

    rotated = rotate_secrets(current, "new", now=NOW, overlap=overlap)

    assert rotated[0] == {"ciphertext": "new", "createdAt": NOW, "retiresAt": None}
    assert all(entry["retiresAt"] is not None and entry["retiresAt"] > NOW for entry in rotated[1:])
    before = {entry["ciphertext"]: entry["retiresAt"] for entry in current}
    for entry in rotated[1:]:
        previous = before[entry["ciphertext"]]
        assert entry["retiresAt"] == (NOW + overlap if previous is None else previous)


def test_patch_changes_and_the_disabled_reason() -> None:
    current = new_endpoint_document("t1", registration(), endpoint_id="e-1", ciphertext="old", now=NOW)

    disabled = endpoint_changes(
        current, EndpointUpdate.model_validate({"active": False}), new_ciphertext=None, now=NOW, overlap=HOUR
    )
    enabled = endpoint_changes(
        current,
        EndpointUpdate.model_validate({"active": True, "events": ["A", "A"], "backoffMultiplier": 3}),
        new_ciphertext=None,
        now=NOW,
        overlap=HOUR,
    )
    rotated = endpoint_changes(
        current,
        EndpointUpdate.model_validate({"secret": SECRET}),
        new_ciphertext="new",
        now=NOW,
        overlap=HOUR,
    )

    assert disabled == {"active": False, "disabledReason": DISABLED_BY_ADMIN}
    assert enabled == {"active": True, "disabledReason": None, "events": ["A"], "backoffMultiplier": 3.0}
    assert [entry["ciphertext"] for entry in rotated["secrets"]] == ["new", "old"]
    with pytest.raises(InvalidRequestError):
        endpoint_changes(
            current, EndpointUpdate.model_validate({}), new_ciphertext=None, now=NOW, overlap=HOUR
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"active": None}, "active"),
        ({"events": None}, "events"),
        ({"url": "https://elsewhere.example"}, "url"),
        ({"endCustomerId": "c2"}, "endCustomerId"),
        ({"active": "false"}, "active"),
    ],
)
def test_patch_refuses_nulls_and_fields_that_cannot_change(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        EndpointUpdate.model_validate(body)

    assert invalid_request_from(error.value).field == field


def test_a_config_change_never_carries_secrets_and_keys_the_document() -> None:
    document = {
        "_id": object(),
        **new_endpoint_document("t1", registration(), endpoint_id="e-1", ciphertext="gAAAA-cipher", now=NOW),
    }

    change = changes.upserted(ConfigKind.WEBHOOK_ENDPOINT, "e-1", document, now=NOW)
    removed = changes.deleted(ConfigKind.WEBHOOK_ENDPOINT, "t1", "e-1", version=2, now=NOW)

    assert change.key == b"webhook_endpoint:t1:e-1"
    assert change.version == 1
    assert change.document is not None
    assert "secrets" not in change.document
    assert "_id" not in change.document
    assert change.document["createdAt"] == "2026-11-23T09:00:00.000Z"
    assert b"gAAAA-cipher" not in change.to_json_bytes()
    assert (removed.operation.value, removed.version, removed.document) == ("delete", 2, None)
    assert changes.preference_document_id("c1", "INVOICE_GENERATED") == "c1:INVOICE_GENERATED"
