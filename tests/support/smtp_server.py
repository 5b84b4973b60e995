"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the EMAIL tests: STARTTLS or implicit TLS with a
test-made certificate, AUTH, and scripted replies to DATA (451 then 250, 550, ...).

Every accepted message is kept as received (`ReceivedMail`), parsed with the standard library, so a
test checks what a mail server really got. aiosmtpd runs its own event loop in a thread; the lists
here are only appended to there and read after a condition wait.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.stack import free_port
from tests.support.tls import LocalCertificate

ACCEPTED = "250 2.0.0 Ok: queued"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    recipients: list[str]
    raw: bytes
    tls: bool
    login: str | None
    ehlo: str | None = None
    """The name the client gave in EHLO (or HELO)."""

    @property
    def message(self) -> EmailMessage:
        return _parsed(self.raw)


def _parsed(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass
class _Handler:
    replies: deque[str] = field(default_factory=deque)
    received: list[ReceivedMail] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    """Every message DATA carried, whatever the scripted reply (a 451'd one included)."""
    attempts: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # a slower server, so a burst is still going when it matters
        with self.lock:
            self.attempts += 1
            reply = self.replies.popleft() if self.replies else f"{ACCEPTED} as M{self.attempts}"
            self.data.append(bytes(envelope.original_content or envelope.content or b""))
            if reply.startswith("250"):
                login = session.auth_data
                self.received.append(
                    ReceivedMail(
                        mail_from=str(envelope.mail_from),
                        recipients=list(envelope.rcpt_tos),
                        raw=bytes(envelope.original_content or envelope.content or b""),
                        # STARTTLS sets session.ssl; implicit TLS shows only on the transport.
                        tls=session.ssl is not None
                        or (
                            server.transport is not None
                            and server.transport.get_extra_info("ssl_object") is not None
                        ),
                        login=login if isinstance(login, str) else None,
                        ehlo=session.host_name,
                    )
                )
        return reply


class SmtpServer:
    """`SmtpServer(certificate, mode="starttls", users={"mailer": "secret"})`; `mode` is starttls,
    tls (implicit), plain (no STARTTLS offered, AUTH allowed without TLS) or none."""

    def __init__(
        self,
        certificate: LocalCertificate | None,
        *,
        mode: str = "starttls",
        users: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.port = free_port()
        self.mode = mode
        self.users = dict(users or {})
        self.handler = _Handler(delay=delay)
        kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "server_hostname": "localhost",
            "ident": "aforo-test-smtpd",
        }
        if self.users:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # Implicit TLS is TLS from the start, which aiosmtpd's check (for STARTTLS) does not see.
            kwargs["auth_require_tls"] = mode == "starttls"
        if mode == "starttls":
            assert certificate is not None
            kwargs["tls_context"] = certificate.server_context()
            kwargs["require_starttls"] = True
        elif mode == "tls":
            assert certificate is not None
            kwargs["ssl_context"] = certificate.server_context()
        self.controller = Controller(self.handler, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def script(self, replies: Iterable[str]) -> None:
        """The next DATA commands are answered with these replies, in order; then 250 again."""
        with self.handler.lock:
            self.handler.replies.extend(replies)

    @property
    def received(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def data_messages(self) -> list[EmailMessage]:
        """Every message offered with DATA, parsed, accepted or not."""
        with self.handler.lock:
            raw = list(self.handler.data)
        return [_parsed(item) for item in raw]

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.received
            if len(received) >= count:
                return received
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} messages at the SMTP server, got {len(self.received)}")
