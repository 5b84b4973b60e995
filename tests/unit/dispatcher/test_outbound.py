"""The outbound SSRF policy: pure address decisions, and what a real session.post does with them.

Only loopback servers are started; public addresses appear in pure-function tests only, so nothing
here can reach beyond this machine.
"""

import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from aforo.dispatcher.outbound import (
    IPNetwork,
    OutboundAddressRefused,
    SafeConnector,
    SafeResolver,
    address_refusal,
    build_outbound_session,
    outbound_refusal_of,
    parse_cidr_allowlist,
)

LOOPBACK_ONLY = parse_cidr_allowlist("127.0.0.1/32")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.5", "private"),
        ("64:ff9b::a00:5", "private"),
        ("2002:7f00:1::", "loopback"),
        ("93.184.216.34", None),
        ("::ffff:93.184.216.34", None),
        ("64:ff9b::5db8:d822", None),
        ("2606:4700::1", None),
    ],
)
def test_address_refusal_names_each_non_public_class(address: str, kind: str | None) -> None:
    reason = address_refusal(ipaddress.ip_address(address), ())

    if kind is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(f"refused: {address}")
        assert f" {kind} address (not in the outbound allowlist)" in reason


def test_address_refusal_reason_text() -> None:
    reason = address_refusal(ipaddress.ip_address("10.0.0.5"), ())

    assert reason == "refused: 10.0.0.5 is a private address (not in the outbound allowlist)"


def test_address_refusal_spells_out_the_embedded_ipv4() -> None:
    reason = address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), ())

    assert reason == (
        "refused: ::ffff:127.0.0.1 (IPv4 127.0.0.1) is a loopback address (not in the outbound allowlist)"
    )


@pytest.mark.parametrize(
    ("address", "allowlist", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1/32", True),
        ("127.0.0.2", "127.0.0.1/32", False),
        ("::ffff:127.0.0.1", "127.0.0.1/32", True),
        ("::1", "127.0.0.1/32", False),
        ("::1", "::1/128", True),
        ("10.1.2.3", "10.0.0.0/8, 192.168.0.0/16", True),
        ("192.168.7.7", "10.0.0.0/8, 192.168.0.0/16", True),
        ("172.16.0.1", "10.0.0.0/8, 192.168.0.0/16", False),
        ("93.184.216.34", "", True),
    ],
)
def test_allowlist_admits_only_what_it_names(address: str, allowlist: str, allowed: bool) -> None:
    reason = address_refusal(ipaddress.ip_address(address), parse_cidr_allowlist(allowlist))

    assert (reason is None) is allowed


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_gets_the_same_decision(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")

    assert (address_refusal(mapped, ()) is None) == (address_refusal(address, ()) is None)


@given(st.ip_addresses(network="10.0.0.0/8") | st.ip_addresses(network="169.254.0.0/16"))
def test_private_and_metadata_ranges_are_always_refused(address: ipaddress.IPv4Address) -> None:
    assert address_refusal(address, ()) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (" , ", ()),
        ("127.0.0.1/32", ("127.0.0.1/32",)),
        ("127.0.0.1", ("127.0.0.1/32",)),
        (" 10.0.0.0/8 , ::1/128 ", ("10.0.0.0/8", "::1/128")),
        (["10.0.0.0/8", "fd00::/8"], ("10.0.0.0/8", "fd00::/8")),
    ],
)
def test_parse_cidr_allowlist(value: str | list[str], expected: tuple[str, ...]) -> None:
    assert tuple(entry.network for entry in parse_cidr_allowlist(value)) == tuple(
        ipaddress.ip_network(entry) for entry in expected
    )


@pytest.mark.parametrize(
    ("value", "network", "port"),
    [
        ("127.0.0.1/32:3001", "127.0.0.1/32", 3001),
        ("[::1]/128:8080", "::1/128", 8080),
        ("[fd00::]/8", "fd00::/8", None),
        ("::1/128", "::1/128", None),
    ],
)
def test_an_allowlist_entry_may_name_a_port(value: str, network: str, port: int | None) -> None:
    [entry] = parse_cidr_allowlist(value)
    assert (entry.network, entry.port) == (ipaddress.ip_network(network), port)
    assert parse_cidr_allowlist(str(entry)) == (entry,)


def test_a_port_entry_admits_that_port_only() -> None:
    allowlist = parse_cidr_allowlist("127.0.0.1/32:3001")
    loopback = ipaddress.ip_address("127.0.0.1")
    assert address_refusal(loopback, allowlist, 3001) is None
    assert address_refusal(loopback, allowlist, 27017) is not None
    assert address_refusal(loopback, allowlist) is not None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowlist, 3001) is None


@pytest.mark.parametrize(
    "bad_entry", ["127.0.0.1/32:0", "127.0.0.1/32:70000", "127.0.0.1/32:http", "[::1/128:80"]
)
def test_a_bad_port_names_the_entry(bad_entry: str) -> None:
    with pytest.raises(ValueError, match="invalid CIDR entry"):
        parse_cidr_allowlist(bad_entry)


@pytest.mark.parametrize("bad_entry", ["localhost", "10.0.0.1/8", "300.0.0.0/8", "10.0.0.0/33"])
def test_parse_cidr_allowlist_names_the_bad_entry(bad_entry: str) -> None:
    with pytest.raises(ValueError, match=f"invalid CIDR entry '{bad_entry}'"):
        parse_cidr_allowlist(f"127.0.0.1/32,{bad_entry}")


def resolved(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)


class StubResolver(AbstractResolver):
    """Answers every lookup with fixed addresses, standing in for a DNS server we control."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = addresses
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [resolved(host, address, port) for address in self.addresses]

    async def close(self) -> None:
        pass


async def test_safe_resolver_keeps_only_allowed_answers() -> None:
    resolver = SafeResolver((), StubResolver(["10.0.0.5", "93.184.216.34", "169.254.169.254"]))

    answers = await resolver.resolve("hooks.customer.test", 443)

    assert [answer["host"] for answer in answers] == ["93.184.216.34"]


async def test_safe_resolver_refuses_when_nothing_is_allowed() -> None:
    resolver = SafeResolver(LOOPBACK_ONLY, StubResolver(["10.0.0.5", "169.254.169.254", "not-an-ip"]))

    with pytest.raises(OutboundAddressRefused) as refused:
        await resolver.resolve("rebind.customer.test", 443)

    assert refused.value.host == "rebind.customer.test"
    assert refused.value.reason == (
        "refused: 10.0.0.5 is a private address (not in the outbound allowlist); "
        "refused: 169.254.169.254 is a link-local address (not in the outbound allowlist); "
        "refused: 'not-an-ip' is not an IP address"
    )
    assert str(refused.value).startswith("rebind.customer.test: refused: 10.0.0.5")


@dataclass
class Receiver:
    """A webhook receiver on loopback that records what reached it."""

    port: int = 0
    received: list[str] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def accept(request: web.Request) -> web.Response:
        state.received.append(request.path)
        return web.json_response({"ok": True})

    async def redirect_to_target(request: web.Request) -> web.Response:
        state.received.append(request.path)
        raise web.HTTPFound(state.url("/target"))

    async def redirect_inside(request: web.Request) -> web.Response:
        state.received.append(request.path)
        raise web.HTTPFound(state.url("/target", host="127.0.0.2"))

    app = web.Application()
    app.router.add_route("*", "/", accept)
    app.router.add_route("*", "/target", accept)
    app.router.add_post("/redirect", redirect_to_target)
    app.router.add_post("/redirect-inside", redirect_inside)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


def session_for(allowlist: Sequence[IPNetwork]) -> aiohttp.ClientSession:
    return build_outbound_session(allowlist, limit=4, limit_per_host=2, total_timeout_seconds=5)


async def post_refused(session: aiohttp.ClientSession, url: str) -> OutboundAddressRefused:
    """Post as the dispatcher does and return the refusal a caller recovers from the error."""
    with pytest.raises(aiohttp.ClientConnectorError) as failure:
        await session.post(url, data=b"{}", allow_redirects=False)
    refusal = outbound_refusal_of(failure.value)
    assert refusal is not None, f"not a policy refusal: {failure.value!r}"
    assert refusal.reason in str(failure.value)
    return refusal


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_target_is_refused_without_allowlist(receiver: Receiver, host: str) -> None:
    async with session_for(()) as session:
        refusal = await post_refused(session, receiver.url(host=host))

    assert refusal.host == host
    assert refusal.reason == "refused: 127.0.0.1 is a loopback address (not in the outbound allowlist)"
    assert receiver.received == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_target_is_reached_when_allowlisted(receiver: Receiver, host: str) -> None:
    async with (
        session_for(LOOPBACK_ONLY) as session,
        session.post(receiver.url(host=host), data=b"{}", allow_redirects=False) as response,
    ):
        assert response.status == 200
        assert await response.json() == {"ok": True}

    assert receiver.received == ["/"]


@pytest.mark.parametrize(
    ("host", "allowlist"),
    [
        pytest.param("[::ffff:127.0.0.1]", (), id="ipv4-mapped-literal"),
        pytest.param("[::1]", LOOPBACK_ONLY, id="ipv6-loopback-not-allowlisted"),
        pytest.param("127.0.0.2", LOOPBACK_ONLY, id="next-loopback-not-allowlisted"),
    ],
)
async def test_other_loopback_spellings_are_refused(
    receiver: Receiver, host: str, allowlist: tuple[IPNetwork, ...]
) -> None:
    async with session_for(allowlist) as session:
        refusal = await post_refused(session, receiver.url(host=host))

    assert "is a loopback address (not in the outbound allowlist)" in refusal.reason
    assert receiver.received == []


async def test_hostname_is_judged_by_the_address_it_resolves_to(receiver: Receiver) -> None:
    # A customer-controlled DNS name pointing at our loopback: the name looks harmless, the
    # address is not, and the address is what the connector would have connected to.
    dns = StubResolver(["127.0.0.1"])
    async with aiohttp.ClientSession(connector=SafeConnector((), resolver=dns)) as session:
        refusal = await post_refused(session, receiver.url(host="hooks.customer.test"))

    assert dns.lookups == ["hooks.customer.test"]
    assert refusal.host == "hooks.customer.test"
    assert str(refusal) == (
        "hooks.customer.test: refused: 127.0.0.1 is a loopback address (not in the outbound allowlist)"
    )
    assert receiver.received == []


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    async with (
        session_for(LOOPBACK_ONLY) as session,
        session.post(receiver.url("/redirect"), data=b"{}", allow_redirects=False) as response,
    ):
        assert response.status == 302
        assert response.headers["Location"] == receiver.url("/target")

    assert receiver.received == ["/redirect"]


async def test_a_followed_redirect_is_still_held_to_the_policy(receiver: Receiver) -> None:
    # Belt and braces for a caller that forgets allow_redirects=False: every hop connects through
    # the same connector, so a redirect into the internal network is refused too.
    async with session_for(LOOPBACK_ONLY) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as failure:
            await session.post(receiver.url("/redirect-inside"), data=b"{}")

    refusal = outbound_refusal_of(failure.value)
    assert refusal is not None
    assert refusal.reason == "refused: 127.0.0.2 is a loopback address (not in the outbound allowlist)"
    assert receiver.received == ["/redirect-inside"]


def test_refusal_is_not_found_in_unrelated_errors() -> None:
    assert outbound_refusal_of(ConnectionRefusedError(111, "Connection refused")) is None
