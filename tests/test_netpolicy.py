"""domain.netpolicy: every written form of an address, and what the policy allows."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest

from afterbeep.domain.errors import InvalidInput
from afterbeep.domain.netpolicy import (
    NetworkPolicy,
    is_hostname,
    is_public,
    literal_address,
    parse_ipv4,
    parse_networks,
    sip_uri_hosts,
)
from afterbeep.services.netguard import HostGuard

DEFAULT = NetworkPolicy()
LOOPBACK = NetworkPolicy.parse("127.0.0.0/8")


@pytest.mark.parametrize(
    ("written", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("0x7f.0.0.0x1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("00", "0.0.0.0"),
        ("0x0", "0.0.0.0"),
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("4294967295", "255.255.255.255"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_ipv4_is_read_as_inet_aton_reads_it(written: str, address: str) -> None:
    assert parse_ipv4(written) == IPv4Address(address)
    # the C library agrees (this is what a connect() to the name would reach)
    assert socket.inet_ntoa(socket.inet_aton(written)) == address


@pytest.mark.parametrize(
    "text",
    ["", ".", "1.", "1..1", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1.2.65536", "4294967296",
     "0x", "08", "09.1.1.1", "0x1g", "1e3", "+1", "-1", " 1", "a.b.c.d", "example.com",
     "0x100.0.0.1", "1.2.3.4 "],
)  # fmt: skip
def test_not_an_ipv4_form(text: str) -> None:
    assert parse_ipv4(text) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
    ],
)
def test_literal_addresses(host: str, address: str) -> None:
    assert literal_address(host) == (IPv6Address(address) if ":" in address else IPv4Address(address))


@pytest.mark.parametrize("host", ["localhost", "example.com", "a.b", "[not-v6]", "", "1.2.3.4.5"])
def test_names_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


BLOCKED_BY_DEFAULT = [
    # loopback, every form
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.255.255.254",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[64:ff9b::127.0.0.1]",
    "[2002:7f00:1::]", "localhost", "LOCALHOST.", "foo.localhost", "ip6-localhost",
    # unspecified
    "0.0.0.0", "0", "[::]",
    # link-local, metadata
    "169.254.169.254", "2852039166", "[fe80::1]", "[::ffff:169.254.169.254]",
    # private, shared, unique-local, site-local
    "10.0.0.1", "10.1", "172.16.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1",
    "[fc00::1]", "[fd12:3456::1]", "[fec0::1]", "[::ffff:10.0.0.1]", "[::ffff:8.8.8.8]",
    # multicast, reserved, broadcast, documentation
    "224.0.0.1", "239.255.255.250", "[ff02::1]", "240.0.0.1", "255.255.255.255",
    "192.0.2.1", "198.51.100.1", "203.0.113.1", "[2001:db8::1]", "198.18.0.1",
]  # fmt: skip


@pytest.mark.parametrize("host", BLOCKED_BY_DEFAULT)
def test_refused_by_default(host: str) -> None:
    assert DEFAULT.host_verdict(host) is False


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "134744072", "1.1.1.1", "93.184.216.34", "[2606:4700:4700::1111]",
             "[2002:808:808::]", "[64:ff9b::8.8.8.8]"]
)  # fmt: skip
def test_public_addresses_allowed(host: str) -> None:
    assert DEFAULT.host_verdict(host) is True


def test_names_are_left_to_resolution() -> None:
    assert DEFAULT.host_verdict("hooks.example.com") is None
    assert DEFAULT.host_verdict("sip.carrier.example") is None


def test_allow_list_opens_only_its_ranges() -> None:
    for host in ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "[::ffff:127.0.0.1]"]:
        assert LOOPBACK.host_verdict(host) is True, host
    # "localhost" may also be ::1, which the list does not open
    assert LOOPBACK.host_verdict("localhost") is False
    assert NetworkPolicy.parse("127.0.0.0/8, ::1").host_verdict("localhost") is True
    for host in ["10.0.0.1", "169.254.169.254", "[::1]", "0.0.0.0", "192.168.1.1"]:
        assert LOOPBACK.host_verdict(host) is False, host
    metadata = NetworkPolicy.parse("169.254.169.254/32")
    assert metadata.host_verdict("169.254.169.254") is True
    assert metadata.host_verdict("169.254.169.253") is False


def test_first_permitted_address_is_the_one_to_connect_to() -> None:
    assert DEFAULT.first_permitted(["127.0.0.1", "::1"]) is None
    assert DEFAULT.first_permitted(["10.0.0.1", "8.8.8.8"]) == "8.8.8.8"
    assert LOOPBACK.first_permitted(["::1", "127.0.0.1"]) == "127.0.0.1"
    assert DEFAULT.first_permitted(["not an address"]) is None


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.0/8 ,127.0.0.1,, fd00::/8 ")] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "fd00::/8",
    ]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_networks("10.0.0.0/33")
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_networks("localhost")


def test_is_public_handles_embedded_ipv4() -> None:
    assert not is_public(IPv6Address("::ffff:8.8.8.8"))  # mapped: refused outright
    assert is_public(IPv6Address("64:ff9b::808:808"))
    assert not is_public(IPv6Address("64:ff9b::a00:1"))
    assert not is_public(IPv6Address("2002:a00:1::"))


@pytest.mark.parametrize(
    ("uri", "hosts"),
    [
        ("sip:+15550000000@vm.carrier.example", ["vm.carrier.example"]),
        ("sip:+15550000000@127.1:5080;transport=tcp", ["127.1"]),
        ("sips:u@[::1]:5061", ["[::1]"]),
        ("sip:u@[::ffff:127.0.0.1];maddr=10.0.0.1", ["[::ffff:127.0.0.1]", "10.0.0.1"]),
        ("sip:proxy.example:5070;lr", ["proxy.example"]),
        ("proxy.example:5070", ["proxy.example"]),
        ("sip:a@b.example;MADDR=169.254.169.254?x=y", ["b.example", "169.254.169.254"]),
        ("sip:+1555;phone-context=x@h.example;maddr=[::1]", ["h.example", "[::1]"]),
        ("sip:u@93.184.216.34;maddr=[::ffff:127.0.0.1]", ["93.184.216.34", "[::ffff:127.0.0.1]"]),
    ],
)
def test_sip_uri_hosts(uri: str, hosts: list[str]) -> None:
    assert sip_uri_hosts(uri) == hosts


@pytest.mark.parametrize("host", ["example.com", "a-b.c_d.example.", "127.1", "[::1]", "::1", "x"])
def test_hostnames(host: str) -> None:
    assert is_hostname(host)


@pytest.mark.parametrize(
    "host", ["", "a b", "a\r\nVia: x", "a\x00b", "-a.example", "a..b", "a;maddr=x", "a@b", "a>b",
             "a" * 64 + ".example", " 127.0.0.1"]
)  # fmt: skip
def test_not_hostnames(host: str) -> None:
    assert not is_hostname(host)


async def test_save_time_check_resolves_names() -> None:
    answers = {
        "internal.example": ["10.0.0.7"],
        "mixed.example": ["93.184.216.34", "127.0.0.1"],
        "public.example": ["93.184.216.34", "2606:2800:220:1::"],
        "unknown.example": [],
    }

    async def resolve(host: str) -> list[str]:
        return answers[host]

    guard = HostGuard(NetworkPolicy(), resolve)
    for host in ["internal.example", "mixed.example", "127.1", "localhost"]:
        with pytest.raises(InvalidInput) as refused:
            await guard.check("trunk_host", host)
        assert refused.value.error_id == "address-not-allowed"
        assert refused.value.field == "trunk_host"
    for host in ["public.example", "unknown.example", "8.8.8.8"]:
        await guard.check("trunk_host", host)
    await HostGuard(NetworkPolicy.parse("10.0.0.0/8"), resolve).check("url", "internal.example")
