"""The embed rules both sides share: exact origins, the origin check, signing-key lifecycles, CORS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from aforo.shared.embed import (
    AllowedDomains,
    SigningKeyStatus,
    effective_signing_status,
    normalise_origin,
    origin_allowed,
    signing_key_verifies,
)
from aforo.sse_gateway.cors import cors_headers, preflight_headers

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("https://app.acme.com", "https://app.acme.com"),
        ("https://APP.Acme.COM", "https://app.acme.com"),
        ("HTTPS://app.acme.com/", "https://app.acme.com"),
        ("https://app.acme.com:443", "https://app.acme.com"),
        ("http://app.acme.com:80", "http://app.acme.com"),
        ("https://app.acme.com:8443", "https://app.acme.com:8443"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("https://XN--BCHER-KVA.example", "https://xn--bcher-kva.example"),  # bücher, as browsers send it
    ],
)
def test_origins_normalise_as_browsers_send_them(value: str, origin: str) -> None:
    assert normalise_origin(value) == origin


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "origin of at most"),
        ("app.acme.com", "http or https"),
        ("ftp://app.acme.com", "http or https"),
        ("https://app.acme.com/path", "no path"),
        ("https://app.acme.com?x=1", "no path"),
        ("https://app.acme.com#top", "no path"),
        ("https://user:pw@app.acme.com", "no credentials"),
        ("https://*.acme.com", "no wildcards"),
        ("https://app.acme.com:0", "port 0"),
        ("https://app.acme.com:99999", "not a valid origin"),
        ("https://app .acme.com", "whitespace"),
        ("https://" + "a" * 300 + ".com", "at most"),
        # Internationalised hosts only in punycode: IDNA 2003 (Python's codec) would turn faß.de into
        # fass.de, another domain, so nothing non-ASCII is converted.
        ("https://bücher.example", "punycode"),
        ("https://faß.de", "punycode"),
    ],
)
def test_unusable_origins_say_why(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_origin(value)


ALLOWED = ["https://app.acme.com", "http://127.0.0.1:5173"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.acme.com", True),
        ("https://APP.acme.com:443", True),
        ("http://127.0.0.1:5173", True),
        ("http://127.0.0.1:5174", False),  # another port is another origin
        ("http://app.acme.com", False),  # another scheme too
        ("https://evil.acme.com", False),
        ("https://app.acme.com.evil.com", False),
        ("null", False),  # sandboxed frames and file:// pages
        (None, False),
        ("not an origin", False),
    ],
)
def test_the_origin_check_is_an_exact_allowlist(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, ALLOWED) is allowed


class Domains(BaseModel):
    allowed_domains: AllowedDomains


def test_allowed_domains_are_normalised_and_deduplicated_in_order() -> None:
    domains = Domains(allowed_domains=["https://B.com", "https://a.com:443", "https://b.com/"])

    assert domains.allowed_domains == ["https://b.com", "https://a.com"]


@pytest.mark.parametrize("values", [[], ["https://a.com/x"], ["https://a.com"] * 51])
def test_allowed_domains_refuse_empty_paths_and_too_many(values: list[str]) -> None:
    with pytest.raises(ValidationError):
        Domains(allowed_domains=values)


@given(st.text(max_size=60))
def test_origin_check_never_raises_and_never_allows_what_does_not_normalise(text: str) -> None:
    allowed = origin_allowed(text, ALLOWED)
    if allowed:
        assert normalise_origin(text) in ALLOWED


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("stored", "retires_at", "effective", "verifies"),
    [
        (SigningKeyStatus.NEXT, None, SigningKeyStatus.NEXT, True),
        (SigningKeyStatus.ACTIVE, None, SigningKeyStatus.ACTIVE, True),
        (SigningKeyStatus.ACTIVE, NOW + HOUR, SigningKeyStatus.ACTIVE, True),  # superseded, in its overlap
        (SigningKeyStatus.ACTIVE, NOW, SigningKeyStatus.RETIRED, False),  # the overlap just ended
        (SigningKeyStatus.ACTIVE, NOW - HOUR, SigningKeyStatus.RETIRED, False),
        (SigningKeyStatus.RETIRED, None, SigningKeyStatus.RETIRED, False),
        (SigningKeyStatus.REVOKED, None, SigningKeyStatus.REVOKED, False),
        (SigningKeyStatus.REVOKED, NOW + HOUR, SigningKeyStatus.REVOKED, False),
    ],
)
def test_signing_key_lifecycle(
    stored: SigningKeyStatus, retires_at: datetime | None, effective: SigningKeyStatus, verifies: bool
) -> None:
    assert effective_signing_status(stored, retires_at, NOW) is effective
    assert signing_key_verifies(stored, retires_at, NOW) is verifies


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (
            "https://app.acme.com",
            True,
            {"Vary": "Origin", "Access-Control-Allow-Origin": "https://app.acme.com"},
        ),
        ("https://evil.com", False, {"Vary": "Origin"}),
        (None, True, {"Vary": "Origin"}),
        (None, False, {"Vary": "Origin"}),
    ],
)
def test_cors_headers_echo_only_an_allowed_origin_and_never_a_wildcard(
    origin: str | None, allowed: bool, expected: dict[str, str]
) -> None:
    headers = cors_headers(origin, allowed)

    assert headers == expected
    assert "*" not in headers.values()


def test_preflight_headers_name_the_methods_and_headers_the_sdk_uses() -> None:
    headers = preflight_headers("https://app.acme.com", True)

    assert headers["Access-Control-Allow-Origin"] == "https://app.acme.com"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert preflight_headers("https://evil.com", False) == {"Vary": "Origin"}
