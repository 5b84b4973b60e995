"""`AFORO_DISPATCHER_SMTP_EHLO_HOSTNAME`: a host name or address literal, nothing that could end the
EHLO line and start another SMTP command."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aforo.dispatcher.settings import DispatcherSettings

KEY = "x" * 43 + "="


@pytest.mark.parametrize(
    "name", ["", "mail.example.com", "dispatcher-7.mail.example.test", "[127.0.0.1]", "[::1]"]
)
def test_an_ehlo_name_may_be_a_host_name_or_an_address_literal(name: str) -> None:
    settings = DispatcherSettings(smtp_ehlo_hostname=name, secrets_encryption_keys=KEY)
    assert settings.smtp_ehlo_hostname == name


@pytest.mark.parametrize(
    "name",
    ["mail.example.com\r\nMAIL FROM:<x@y>", "mail example.com", "mail.example.com\n", "ünïcode.example"],
)
def test_an_ehlo_name_that_could_break_the_smtp_line_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="smtp_ehlo_hostname"):
        DispatcherSettings(smtp_ehlo_hostname=name, secrets_encryption_keys=KEY)
