"""Address rules, masking and the stored shapes of providers and contact destinations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aforo.shared.channels import (
    AddressError,
    ChannelProviderDocument,
    ContactDestinationDocument,
    address_key,
    mask_address,
    normalise_address,
    plaintext_host_admitted,
    public_document,
    secret_hint,
)
from aforo.shared.delivery import Channel

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.mark.parametrize(
    ("channel", "given", "stored", "masked"),
    [
        (Channel.EMAIL, "jane@acme.com", "jane@acme.com", "j***@acme.com"),
        (Channel.EMAIL, "Jane.Doe@ACME.com", "Jane.Doe@acme.com", "J***@acme.com"),
        (Channel.SMS, "+447911123123", "+447911123123", "+4479*****123"),
        (Channel.SMS, "+44 7911 123123", "+447911123123", "+4479*****123"),
        (Channel.SMS, "+1 (415) 555-2671", "+14155552671", "+1415****671"),
        (Channel.PAGERDUTY, ROUTING_KEY, ROUTING_KEY, "****CDEF"),
    ],
)
def test_addresses_are_normalised_and_masked(channel: Channel, given: str, stored: str, masked: str) -> None:
    normalised = normalise_address(channel, given)

    assert normalised == stored
    assert mask_address(channel, normalised) == masked


@pytest.mark.parametrize(
    ("channel", "given", "reason"),
    [
        (Channel.EMAIL, "not-an-address", "not a valid e-mail address"),
        (Channel.EMAIL, "jane@", "not a valid e-mail address"),
        (Channel.EMAIL, "jane@acme..com", "not a valid e-mail address"),
        (Channel.SMS, "07911123123", "E.164"),
        (Channel.SMS, "+44791112", "not a valid phone number"),
        (Channel.SMS, "+hello", "not a phone number"),
        (Channel.PAGERDUTY, "short", "32 letters and digits"),
        (Channel.PAGERDUTY, "R0UT1NGKEY0123456789abcdefABCDE!", "32 letters and digits"),
        (Channel.WEBHOOK, "https://x", "endpoints"),
    ],
)
def test_unusable_addresses_are_refused_without_echoing_them(
    channel: Channel, given: str, reason: str
) -> None:
    with pytest.raises(AddressError, match=reason) as refusal:
        normalise_address(channel, given)

    assert given not in str(refusal.value) or len(given) < 6


def test_address_keys_fold_email_case_and_hide_routing_keys() -> None:
    assert address_key("t", "c", Channel.EMAIL, "Jane@acme.com") == address_key(
        "t", "c", Channel.EMAIL, "jane@acme.com"
    )
    hashed = address_key("t", "c", Channel.PAGERDUTY, ROUTING_KEY)
    assert hashed.startswith("sha256:")
    assert ROUTING_KEY not in hashed
    assert hashed != address_key("t2", "c", Channel.PAGERDUTY, ROUTING_KEY)


@pytest.mark.parametrize(
    ("secret", "hint"), [("short", ""), ("exactly-16-chars", "hars"), ("a-much-longer-secret-1234", "1234")]
)
def test_secret_hints_show_at_most_the_last_four_characters_of_long_secrets(secret: str, hint: str) -> None:
    assert secret_hint(secret) == hint


@pytest.mark.parametrize(
    ("host", "allowlist", "admitted"),
    [
        ("127.0.0.1", "127.0.0.1/32", True),
        ("localhost", "127.0.0.0/8", True),
        ("10.1.2.3", "10.0.0.0/8, 127.0.0.1/32", True),
        ("10.1.2.3", "127.0.0.1/32", False),
        ("smtp.example.com", "0.0.0.0/0", False),
        ("127.0.0.1", "", False),
    ],
)
def test_plaintext_smtp_only_for_allowlisted_literal_hosts(host: str, allowlist: str, admitted: bool) -> None:
    assert plaintext_host_admitted(host, allowlist) is admitted


def provider(**changes: object) -> dict[str, object]:
    return {
        "tenantId": "t1",
        "channel": "SMS",
        "sms": {
            "baseUrl": "https://api.twilio.com",
            "accountSid": "AC1",
            "authTokenCiphertext": "gAAAA-ciphertext",
            "authTokenHint": "1234",
            "fromNumber": "+15005550006",
        },
        "createdAt": NOW,
        "updatedAt": NOW,
        **changes,
    }


def test_a_provider_defaults_to_live_with_the_endpoint_retry_defaults() -> None:
    document = ChannelProviderDocument.model_validate(provider())

    assert (document.mode.value, document.max_retry_attempts, document.initial_backoff_seconds) == (
        "live",
        3,
        2.0,
    )
    assert document.backoff_multiplier == 2.0
    assert document.config == document.sms


def test_a_provider_carries_only_its_own_channels_config() -> None:
    with pytest.raises(ValidationError, match="sms"):
        ChannelProviderDocument.model_validate(provider(pagerduty={"eventsUrl": "https://x"}))
    with pytest.raises(ValidationError, match="email"):
        ChannelProviderDocument.model_validate(provider(channel="EMAIL"))


def test_public_documents_have_no_ciphertexts_at_any_depth() -> None:
    public = public_document({"_id": 1, **provider(), "addressCiphertext": "x"})

    assert "_id" not in public
    assert "addressCiphertext" not in public
    assert public["sms"] == {
        "baseUrl": "https://api.twilio.com",
        "accountSid": "AC1",
        "authTokenHint": "1234",
        "fromNumber": "+15005550006",
    }


def destination(**changes: object) -> dict[str, object]:
    return {
        "tenantId": "t1",
        "destinationId": "cd_1",
        "endCustomerId": "c1",
        "channel": "PAGERDUTY",
        "addressCiphertext": "gAAAA-ciphertext",
        "addressKey": "sha256:abc",
        "maskedAddress": "****CDEF",
        "createdAt": NOW,
        "updatedAt": NOW,
        **changes,
    }


def test_a_routing_key_is_stored_encrypted_only() -> None:
    stored = ContactDestinationDocument.model_validate(destination())
    assert (stored.address, stored.events, stored.active) == (None, ["*"], True)
    assert stored.subscribed_to("INVOICE_GENERATED")

    with pytest.raises(ValidationError, match="addressCiphertext"):
        ContactDestinationDocument.model_validate(destination(address=ROUTING_KEY))
    with pytest.raises(ValidationError, match="address"):
        ContactDestinationDocument.model_validate(destination(channel="EMAIL"))


def test_a_destination_filters_events_like_an_endpoint() -> None:
    stored = ContactDestinationDocument.model_validate(
        destination(channel="EMAIL", address="j@acme.com", addressCiphertext=None, events=["PAYMENT_OVERDUE"])
    )

    assert stored.subscribed_to("PAYMENT_OVERDUE")
    assert not stored.subscribed_to("INVOICE_GENERATED")
