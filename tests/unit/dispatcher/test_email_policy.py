"""The e-mail sender's message policy builds each header class once; the messages it writes must be
byte for byte those of `email.policy.SMTP`, folding, encoded words and MIME parts included."""

from __future__ import annotations

from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP, Policy

from hypothesis import given, settings
from hypothesis import strategies as st

from aforo.dispatcher.channels.email import MESSAGE_POLICY

WORDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    min_size=1,
    max_size=120,
)


def message(policy: Policy, subject: str, name: str, text: str, html: str) -> bytes:
    built = EmailMessage(policy=policy)
    built["From"] = f'"{name}" <alerts@example.com>'
    built["To"] = "jane@customer.example.com"
    built["Reply-To"] = "billing@example.com"
    built["Subject"] = subject
    built["Date"] = "Mon, 07 Dec 2026 04:00:00 +0000"
    built["Message-ID"] = "<evt-1.cd_1@example.com>"
    built["Auto-Submitted"] = "auto-generated"
    built["X-Aforo-Event-Id"] = "evt-1"
    built.set_content(text)
    built.add_alternative(html, subtype="html")
    built.set_boundary("==aforo-test-boundary==")  # otherwise random on each side
    return built.as_bytes()


@settings(max_examples=150)
@given(
    subject=WORDS,
    name=WORDS.filter(lambda value: '"' not in value and "\\" not in value),
    text=WORDS,
    html=WORDS,
)
def test_messages_are_those_of_the_smtp_policy(subject: str, name: str, text: str, html: str) -> None:
    assert message(MESSAGE_POLICY, subject, name, text, html) == message(SMTP, subject, name, text, html)


def test_each_header_class_is_built_once() -> None:
    factory = MESSAGE_POLICY.header_factory
    assert isinstance(factory, HeaderRegistry)
    assert factory["Subject"] is factory["subject"]
    assert factory["X-Aforo-Event-Id"] is factory["x-aforo-event-id"]
