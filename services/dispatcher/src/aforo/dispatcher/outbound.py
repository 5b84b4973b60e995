"""Which addresses a webhook delivery may connect to, enforced where the socket is opened.

Webhook URLs are chosen by customers, so without a policy the dispatcher is an SSRF proxy into our
network (cloud metadata at 169.254.169.254, Kafka, Mongo, admin ports). The policy refuses every
non-public destination - loopback, private, link-local, multicast, reserved, unspecified, and the
IPv4-mapped / NAT64 / 6to4 IPv6 spellings of those - unless an operator's CIDR allowlist admits it
(local dev and tests admit ``127.0.0.1/32`` explicitly). An entry may name a port as well
(``127.0.0.1/32:3001``, ``[::1]/128:3001``), which admits that one port of those addresses and no
other: the rest of the host's ports stay refused.

Why the check lives in the connector and not in URL validation: a host name can resolve to a public
address when a URL is checked and to a private one when it is fetched (DNS rebinding). Here the check
runs on the resolved addresses that aiohttp is about to hand to ``connect()``, so what is checked is
what is connected to. aiohttp 3.14 does not call the resolver for IP-literal hosts
(``TCPConnector._resolve_host`` returns them directly), so ``SafeConnector`` overrides that one
method and filters its result: literals, fresh lookups and DNS-cache hits all pass through it.
``SafeResolver`` filters as well, so refused answers never enter the connector's DNS cache.

Redirects: callers pass ``allow_redirects=False``; a webhook receiver's 3xx is a delivery outcome,
not an instruction to post the event somewhere else. Should a caller forget, every hop still goes
through this connector, so a redirect into the internal network is refused all the same.
Proxies defeat the check (the proxy resolves the target), so sessions never read proxy settings.
"""

import errno
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from aiohttp.tracing import Trace

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowlistEntry:
    """Non-public addresses an operator admits: a network, and optionally one port of it."""

    network: IPNetwork
    port: int | None = None

    def admits(self, address: IPAddress, port: int | None) -> bool:
        return address in self.network and (self.port is None or self.port == port)

    def __str__(self) -> str:
        if self.port is None:
            return str(self.network)
        spelled = f"[{self.network}]" if self.network.version == 6 else str(self.network)
        return f"{spelled}:{self.port}"


# NAT64 well-known prefix (RFC 6052): the translator connects to the IPv4 address in the low 32 bits.
_NAT64_WELL_KNOWN_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")


# The name is the one the dispatcher's contract uses for this delivery outcome, hence no Error suffix.
class OutboundAddressRefused(OSError):  # noqa: N818
    """A delivery target resolved only to addresses the outbound policy refuses.

    An OSError so that aiohttp's connector wraps it into ``aiohttp.ClientConnectorError`` like any
    other connect failure; ``outbound_refusal_of`` digs it back out for the caller, which should
    treat it as a permanent failure of the subscription, not as something to retry.
    """

    def __init__(self, host: str, reason: str) -> None:
        message = reason if _is_ip_literal(host) else f"{host}: {reason}"
        super().__init__(errno.EACCES, message)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return str(self.strerror)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``address`` really ends up at, for the IPv6 forms that embed one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def _non_public_kind(address: IPAddress) -> str | None:
    """Name the non-public class ``address`` belongs to, or None when it is publicly routable.

    Specific classes come first so the reason names the most telling one (``::1`` is also
    "reserved"); ``is_global`` is the backstop for ranges without a flag (e.g. 100.64.0.0/10).
    """
    if address.is_unspecified:
        return "an unspecified"
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_multicast:
        return "a multicast"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local"
    if address.is_reserved:
        return "a reserved"
    if address.is_private:
        return "a private"
    if not address.is_global:
        return "a non-global"
    return None


def address_refusal(
    address: IPAddress, allowlist: Sequence[AllowlistEntry], port: int | None = None
) -> str | None:
    """None if a delivery may connect to ``address``; otherwise the reason it may not.

    The allowlist only matters for non-public addresses: public ones are always allowed. An
    IPv4-mapped IPv6 address is the same socket destination as its IPv4 form, so either form in the
    allowlist admits it.
    """
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    judged = address if embedded is None else embedded
    kind = _non_public_kind(judged)
    if kind is None:
        return None
    same_destination: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        same_destination.append(address.ipv4_mapped)
    if any(entry.admits(candidate, port) for candidate in same_destination for entry in allowlist):
        return None
    return f"refused: {_spelled(address, embedded)} is {kind} address (not in the outbound allowlist)"


def _spelled(address: IPAddress, embedded: ipaddress.IPv4Address | None) -> str:
    if embedded is None:
        return str(address)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # Python 3.11 prints ::ffff:7f00:1; write it the way people type it.
        return f"::ffff:{embedded} (IPv4 {embedded})"
    return f"{address} (IPv4 {embedded})"


def parse_cidr_allowlist(value: str | Sequence[str]) -> tuple[AllowlistEntry, ...]:
    """Parse the outbound allowlist setting: entries as a list or one comma-separated string, each a
    CIDR (``10.0.0.0/8``) or a CIDR and one port (``127.0.0.1/32:3001``, ``[::1]/128:3001``).

    Strict about host bits (``10.0.0.1/8`` is an error, not ``10.0.0.0/8``): in a security allowlist a
    typo should stop the service, not silently widen or narrow the policy.
    """
    entries = value.split(",") if isinstance(value, str) else list(value)
    parsed: list[AllowlistEntry] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            parsed.append(_allowlist_entry(text))
        except ValueError as error:
            raise ValueError(f"outbound allowlist: invalid CIDR entry {text!r}: {error}") from error
    return tuple(parsed)


def _allowlist_entry(text: str) -> AllowlistEntry:
    port_text: str | None = None
    if text.startswith("["):
        # `[::1/128]:3001` or `[::1]/128:3001`: the brackets keep the port apart from the address.
        network_text, closed, rest = text[1:].partition("]")
        if rest.startswith("/"):
            prefix, colon, port_part = rest.partition(":")
            network_text, rest = network_text + prefix, colon + port_part
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("expected [network]:port for an IPv6 entry with a port")
        if rest:
            port_text = rest[1:]
    elif text.count(":") == 1:
        network_text, port_text = text.split(":")
    else:
        network_text = text
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not 1-65535")
        port = int(port_text)
    return AllowlistEntry(ipaddress.ip_network(network_text, strict=True), port)


def _allowed_results(
    host: str, results: Sequence[ResolveResult], allowlist: Sequence[AllowlistEntry]
) -> list[ResolveResult]:
    """Keep the resolved addresses the policy allows; raise if none remain."""
    allowed: list[ResolveResult] = []
    reasons: list[str] = []
    for result in results:
        try:
            address = ipaddress.ip_address(result["host"])
        except ValueError:
            # Fail closed: an address we cannot classify is an address we do not connect to.
            reasons.append(f"refused: {result['host']!r} is not an IP address")
            continue
        reason = address_refusal(address, allowlist, result.get("port"))
        if reason is None:
            allowed.append(result)
        else:
            reasons.append(reason)
    if not allowed:
        raise OutboundAddressRefused(host, "; ".join(reasons) or "refused: no address resolved")
    return allowed


class SafeResolver(AbstractResolver):
    """A resolver that only ever answers with addresses the outbound policy allows.

    Mixed answers (public and private) keep the public ones; an answer with nothing allowed raises
    ``OutboundAddressRefused``. Needs a running event loop when built without ``resolver``, like
    aiohttp's own resolvers.
    """

    def __init__(self, allowlist: Sequence[AllowlistEntry], resolver: AbstractResolver | None = None) -> None:
        self._allowlist = tuple(allowlist)
        self._resolver = DefaultResolver() if resolver is None else resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        return _allowed_results(host, results, self._allowlist)

    async def close(self) -> None:
        await self._resolver.close()


class SafeConnector(aiohttp.TCPConnector):
    """A TCPConnector that refuses to open sockets to addresses the outbound policy refuses.

    Overrides only ``_resolve_host``, the single step every direct connection goes through to get
    the addresses it connects to (IP literals included, which never reach the resolver). It is a
    private aiohttp method: if an upgrade renames it, the override silently stops running, and
    ``test_loopback_target_is_refused_without_allowlist[127.0.0.1]`` is the test that catches that.
    """

    def __init__(
        self,
        allowlist: Sequence[AllowlistEntry],
        *,
        resolver: AbstractResolver | None = None,
        limit: int = 100,
        limit_per_host: int = 0,
    ) -> None:
        self._outbound_allowlist = tuple(allowlist)
        super().__init__(
            resolver=SafeResolver(self._outbound_allowlist) if resolver is None else resolver,
            limit=limit,
            limit_per_host=limit_per_host,
        )

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        return _allowed_results(host, results, self._outbound_allowlist)


def outbound_refusal_of(error: BaseException) -> OutboundAddressRefused | None:
    """The policy refusal behind an error raised by ``session.post``, if that is what it was.

    aiohttp wraps it as ``ClientConnectorError(...).os_error``; the cause chain is walked too so the
    answer does not depend on which layer wrapped it.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundAddressRefused):
            return current
        if isinstance(current, aiohttp.ClientConnectorError):
            pending.append(current.os_error)
        pending.extend((current.__cause__, current.__context__))
    return None


def build_outbound_session(
    allowlist: Sequence[AllowlistEntry], *, limit: int, limit_per_host: int, total_timeout_seconds: float
) -> aiohttp.ClientSession:
    """The one HTTP session webhook deliveries go out through, with the SSRF policy built in.

    Callers must pass ``allow_redirects=False`` on every request (see the module docstring). The
    session ignores proxy environment variables (a proxy would resolve targets past the policy) and
    keeps no cookies, so one customer's receiver cannot plant state for another's delivery. Must be
    called with a running event loop. `limit` bounds the connections in all (aiohttp's default, 100,
    would sit below the attempts the consumers run at once); `limit_per_host` those to one receiver.
    """
    return aiohttp.ClientSession(
        connector=SafeConnector(allowlist, limit=limit, limit_per_host=limit_per_host),
        timeout=aiohttp.ClientTimeout(total=total_timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )
