"""EMAIL over SMTP with aiosmtplib: one message per attempt, the same Message-ID on every attempt.

Transport security is the provider's `security`:
- `starttls`: STARTTLS is *required* (aiosmtplib's `start_tls=True`): a server that does not offer it
  is refused, never talked to in plaintext (opportunistic STARTTLS falls to a stripping attacker);
- `tls`: implicit TLS from the first byte;
- `none`: plaintext, only when every address the host resolves to is inside the outbound allowlist
  (local development), whatever the API accepted earlier.
Certificates are verified against the configured host name with the system's (or the configured)
trust store. The socket is opened here, to an address the outbound (SSRF) policy allows, then handed
to aiosmtplib: what is checked is what is connected to, as for webhooks.

Failure classes: a 4yz reply, a connect error or a timeout → RETRYABLE; a 5yz reply, 535 (bad
credentials) or a TLS failure → REJECTED. A timeout after DATA may leave a delivered message behind:
the retry carries the same Message-ID, so receiving systems can fold the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import Final

import aiosmtplib
from aiohttp.abc import ResolveResult

from aforo.dispatcher.channels.delivery import (
    PROVIDER_REJECTED_CREDENTIALS,
    ChannelDelivery,
    ChannelResult,
    Stopwatch,
    delivered,
    refused,
    rejected,
    retryable,
)
from aforo.dispatcher.outbound import AllowlistEntry, OutboundAddressRefused, SafeResolver, address_refusal
from aforo.shared.channels import EmailProviderConfig, EmailSecurity
from aforo.shared.delivery import Channel
from aforo.shared.templates import EmailContent

USER_AGENT: Final = "aforo-notify-email/1"
DEFAULT_PORTS: Final = {EmailSecurity.STARTTLS: 587, EmailSecurity.TLS: 465, EmailSecurity.NONE: 25}


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, each header class built once.

    Why: the stdlib's registry creates a new class (`type(...)`) every time a header is set or read,
    about a tenth of an e-mail delivery's CPU; the classes it builds for one name are all alike."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


MESSAGE_POLICY: Final = SMTP_POLICY.clone(header_factory=_HeaderClasses())
"""`email.policy.SMTP` (CRLF line ends, RFC 5322 headers), with the header classes built once."""


def message_id(event_id: str, destination_id: str, from_address: str) -> str:
    """`<eventId.destinationId@fromDomain>`: the same on every attempt, replay and crash recovery of
    one delivery, so mail systems and clients can recognise a repeat."""
    domain = from_address.rpartition("@")[2] or "aforo.invalid"
    return f"<{event_id}.{destination_id}@{domain}>"


def build_message(delivery: ChannelDelivery, config: EmailProviderConfig, now: datetime) -> EmailMessage:
    """The MIME message of one delivery: text and HTML alternatives, marked automatic (RFC 3834)."""
    content = delivery.content
    if not isinstance(content, EmailContent):
        raise TypeError("content: an EMAIL delivery carries EmailContent")
    envelope = delivery.envelope
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = config.from_address
    message["To"] = delivery.address
    if config.reply_to:
        message["Reply-To"] = config.reply_to
    message["Subject"] = content.subject
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id(envelope.event_id, delivery.destination_id, config.from_address)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Aforo-Event-Id"] = envelope.event_id
    message["X-Aforo-Event-Type"] = envelope.event_type
    message["X-Mailer"] = USER_AGENT
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message


def _inside(address: str, port: int, allowlist: Sequence[AllowlistEntry]) -> bool:
    """Whether the operator's allowlist names this address (and port): plaintext goes nowhere else."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(entry.admits(parsed, port) for entry in allowlist)


def _literal_results(host: str, port: int, allowlist: Sequence[AllowlistEntry]) -> list[ResolveResult] | None:
    """An IP-literal host needs no lookup (a thread per connection otherwise); the policy still applies."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    reason = address_refusal(address, allowlist, port)
    if reason is not None:
        raise OutboundAddressRefused(host, reason)
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return [ResolveResult(hostname=host, host=str(address), port=port, family=family, proto=0, flags=0)]


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


class EmailSender:
    """Sends EMAIL deliveries; one SMTP connection per attempt (providers throttle long sessions, and
    a fresh connection keeps one tenant's session state away from another's)."""

    channel = Channel.EMAIL

    def __init__(
        self,
        allowlist: Sequence[AllowlistEntry],
        *,
        timeout_seconds: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        clock: type[datetime] = datetime,
    ) -> None:
        self._allowlist = tuple(allowlist)
        self._timeout = timeout_seconds
        self._tls_context = tls_context or ssl.create_default_context()
        self._local_hostname = local_hostname
        self._resolver: SafeResolver | None = None
        self._clock = clock

    async def send(self, delivery: ChannelDelivery) -> ChannelResult:
        clock = Stopwatch()
        config = delivery.provider.config
        if not isinstance(config, EmailProviderConfig):
            return rejected(clock, "provider_misconfigured: not an EMAIL provider")
        try:
            message = build_message(delivery, config, self._clock.now(UTC))
        except (ValueError, TypeError) as error:
            return rejected(clock, f"message_invalid: {error}")
        try:
            async with asyncio.timeout(self._timeout * 3):
                return await self._send(delivery, config, message, clock)
        except TimeoutError:
            return retryable(clock, f"timeout: the SMTP exchange took over {self._timeout * 3:g} s")

    async def _send(
        self, delivery: ChannelDelivery, config: EmailProviderConfig, message: EmailMessage, clock: Stopwatch
    ) -> ChannelResult:
        port = config.port or DEFAULT_PORTS[config.security]
        try:
            sock = await self._connect(config.host, port, config.security)
        except OutboundAddressRefused as refusal:
            return refused(clock, str(refusal))
        except OSError as error:
            return retryable(clock, f"connect_error: {config.host}:{port}: {error.strerror or error}")
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            sock=sock,
            use_tls=config.security is EmailSecurity.TLS,
            start_tls=config.security is EmailSecurity.STARTTLS,
            tls_context=self._tls_context,
            username=config.username if delivery.secret else None,
            password=delivery.secret or None,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()
            errors, reply = await smtp.send_message(
                message, sender=config.from_address, recipients=[delivery.address]
            )
        except aiosmtplib.SMTPAuthenticationError as error:
            return rejected(
                clock, f"{PROVIDER_REJECTED_CREDENTIALS}: {error.code} {error.message}", error.code
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            first = error.recipients[0]
            return _by_code(clock, first.code, f"recipient refused: {first.code} {first.message}")
        except aiosmtplib.SMTPResponseException as error:
            return _by_code(clock, error.code, f"{error.code} {error.message}")
        except aiosmtplib.SMTPException as error:
            tls = _tls_failure(error)
            if tls is not None:
                return rejected(clock, f"tls_failed: {tls}")
            if "STARTTLS extension not supported" in str(error):
                return rejected(clock, "tls_required: the server does not offer STARTTLS")
            return retryable(clock, f"{type(error).__name__}: {error}")
        except ssl.SSLError as error:
            return rejected(clock, f"tls_failed: {error}")
        except OSError as error:
            return retryable(clock, f"{type(error).__name__}: {error}")
        finally:
            await _close(smtp)
        if errors:
            _address, response = next(iter(errors.items()))
            return _by_code(clock, response.code, f"recipient refused: {response.code} {response.message}")
        return delivered(clock, f"250 {reply}".strip(), 250)

    async def _connect(self, host: str, port: int, security: EmailSecurity) -> socket.socket:
        """A connected socket to the first address of `host` the outbound policy allows."""
        results = _literal_results(host, port, self._allowlist)
        if results is None:
            if self._resolver is None:
                self._resolver = SafeResolver(self._allowlist)
            results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        if security is EmailSecurity.NONE:
            results = [result for result in results if _inside(result["host"], port, self._allowlist)]
            if not results:
                raise OutboundAddressRefused(
                    host,
                    "refused: plaintext SMTP (security none) only to an address in the outbound allowlist",
                )
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for result in results:
            sock = socket.socket(result["family"], socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self._timeout):
                    await loop.sock_connect(sock, (result["host"], port))
            except (OSError, TimeoutError) as error:
                sock.close()
                last_error = (
                    error if isinstance(error, OSError) else OSError(f"timed out after {self._timeout:g} s")
                )
                continue
            return sock
        raise last_error or OSError(f"no address of {host} answered")

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely when the session is still up (servers log abrupt closes), then close the socket."""
    if smtp.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await asyncio.wait_for(smtp.quit(), 2.0)
    smtp.close()


def _by_code(clock: Stopwatch, code: int, text: str) -> ChannelResult:
    """4yz: the server may accept later; 5yz: it will not."""
    if 400 <= code < 500:
        return retryable(clock, text, code)
    if code == 535:
        return rejected(clock, f"{PROVIDER_REJECTED_CREDENTIALS}: {text}", code)
    return rejected(clock, text, code)
