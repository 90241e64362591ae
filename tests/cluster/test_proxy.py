"""Kamailio in front of afterbeep nodes (issue 23): the rendered configuration (accepted by
`kamailio -c`), a node's answer to probes, and a real Kamailio on 127.0.0.1 in front of nodes
sharing one database: calls spread and leave messages, a draining or silent node is passed
over, a phone registered through the proxy is rung from either node, the per-source call limit,
and digest failures counted against the client rather than the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Self

import pytest
from aiosipua.message import SipRequest
from typer.testing import CliRunner

from afterbeep.app import Runtime
from afterbeep.audio.tones import speech_like
from afterbeep.cli import cli
from afterbeep.cluster.kamailio import (
    CONFIG_FILE,
    DISPATCHER_FILE,
    KAMAILIO,
    Node,
    ProxySpec,
    check_command,
    command,
    parse_nodes,
    render,
    write_config,
)
from afterbeep.telephony.server import ServerLimits, TelephonyServer, telephony_configs
from afterbeep.telephony.sip.message import parse_message
from afterbeep.telephony.sip.proxied import client_host
from tests.conftest import Backend
from tests.e2e.rig import (
    BEEP_S,
    CALLER,
    DIALLED,
    GREETING_S,
    NUMBER,
    WAIT,
    SippRun,
    api_of,
    caller_pcap,
    deposit_runtime,
    rtp_range,
    settle,
    silence,
    sip_port,
    sipp_calls,
    speech,
)
from tests.e2e.test_registration import PASSWORD, Phone, make_device, registrations
from tests.fixtures import baresip as phone
from tests.fixtures.kamailio import kamailio_proxy, options
from tests.fixtures.service import free_sip_port
from tests.sip import conftest as sip_rig
from tests.sip.peer import RawPeer, status_of

sipp_bin = sip_rig.sipp_bin

TWO = ProxySpec(
    listen_host="127.0.0.1",
    listen_port=5090,
    nodes=(Node("n1", "127.0.0.1", 5091), Node("n2", "127.0.0.1", 5092)),
)


def test_render_lists_every_node_in_the_dispatcher_set(tmp_path: Path) -> None:
    files = render(TWO, tmp_path)
    assert set(files) == {CONFIG_FILE, DISPATCHER_FILE}
    rows = [
        line.split() for line in files[DISPATCHER_FILE].splitlines() if not line.startswith("#")
    ]
    assert rows == [
        ["1", "sip:127.0.0.1:5091", "0", "0", "duid=n1"],
        ["1", "sip:127.0.0.1:5092", "0", "0", "duid=n2"],
    ]
    cfg = files[CONFIG_FILE]
    assert f'modparam("dispatcher", "list_file", "{tmp_path.resolve() / DISPATCHER_FILE}")' in cfg
    assert "listen=udp:127.0.0.1:5090" in cfg and "listen=tcp:127.0.0.1:5090" in cfg
    assert 'modparam("dispatcher", "flags", 2)' in cfg
    assert 'modparam("dispatcher", "ds_probing_mode", 1)' in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 2)' in cfg
    assert 'modparam("tm", "fr_timer", 2000)' in cfg  # a new call to a node, the probes
    assert cfg.count("t_set_fr(330000, 32000);") == 2  # in-dialog and nodes' own requests
    assert "children=4" in cfg
    assert "ds_next_dst()" in cfg and "add_path_received()" in cfg
    assert "$var(cps) > 50" in cfg


def test_render_follows_the_spec_and_drops_the_limit_at_zero(tmp_path: Path) -> None:
    spec = ProxySpec(
        "0.0.0.0",
        5060,
        (Node("a", "10.0.0.5", 5070),),
        calls_per_second_per_source=0,
        failover_timeout_ms=700,
        probe_interval_seconds=5,
        children=2,
        advertise_host="198.51.100.7",
    )
    cfg = render(spec, tmp_path)[CONFIG_FILE]
    assert "cps=>" not in cfg and "$shtinc" not in cfg
    assert 'modparam("tm", "fr_timer", 700)' in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 5)' in cfg
    assert "children=2" in cfg
    assert "listen=udp:0.0.0.0:5060 advertise 198.51.100.7:5060" in cfg


@pytest.mark.parametrize(
    "nodes",
    [
        (),
        (Node("a", "0.0.0.0", 5070),),
        (Node("a", "proxy.example", 5070),),
        (Node("a", "10.0.0.1", 5070), Node("a", "10.0.0.2", 5070)),
        (Node("a", "10.0.0.1", 0),),
    ],
)
def test_render_refuses_nodes_kamailio_cannot_reach(nodes: tuple[Node, ...]) -> None:
    with pytest.raises(ValueError):
        render(ProxySpec("127.0.0.1", 5060, nodes))


def test_parse_nodes_names_nodes_by_position_unless_given() -> None:
    assert parse_nodes("127.0.0.1:5071, b=10.0.0.2:5072,[::1]:5073") == (
        Node("node-1", "127.0.0.1", 5071),
        Node("b", "10.0.0.2", 5072),
        Node("node-3", "::1", 5073),
    )
    with pytest.raises(ValueError):
        parse_nodes("127.0.0.1")


def test_command_runs_kamailio_in_the_foreground_with_its_own_runtime_dir(tmp_path: Path) -> None:
    argv = command(tmp_path / CONFIG_FILE, tmp_path / "run")
    assert argv[0] == KAMAILIO
    assert "-DD" in argv and "-E" in argv
    assert argv[argv.index("-f") + 1] == str(tmp_path / CONFIG_FILE)
    assert argv[argv.index("-Y") + 1] == str(tmp_path / "run")


@pytest.mark.parametrize("cps", [50, 0])
def test_kamailio_accepts_the_rendered_config(tmp_path: Path, cps: int) -> None:
    spec = ProxySpec(
        "127.0.0.1", 5090, TWO.nodes, calls_per_second_per_source=cps, failover_timeout_ms=1500
    )
    cfg = write_config(spec, tmp_path / "cfg")
    assert cfg == (tmp_path / "cfg" / CONFIG_FILE).resolve()
    assert (tmp_path / "cfg" / DISPATCHER_FILE).is_file()
    done = subprocess.run(check_command(cfg), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "config file ok" in (done.stdout + done.stderr)


def test_cluster_config_command_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "proxy"
    result = CliRunner().invoke(
        cli,
        [
            "cluster",
            "config",
            "--nodes",
            "n1=127.0.0.1:5071,n2=127.0.0.1:5072",
            "--listen",
            "127.0.0.1:5070",
            "--cps",
            "0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sip:127.0.0.1:5072 0 0 duid=n2" in (out / DISPATCHER_FILE).read_text()
    assert "listen=udp:127.0.0.1:5070" in (out / CONFIG_FILE).read_text()
    assert "kamailio" in result.output and (out / "run").is_dir()


def test_cluster_config_command_refuses_a_wildcard_node(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["cluster", "config", "--nodes", "0.0.0.0:5071", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "p" / CONFIG_FILE).exists()


async def test_a_node_answers_a_probe_200_while_it_takes_calls_else_503() -> None:
    low, high = rtp_range()
    ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
    async with (
        TelephonyServer(ua_config, media_config) as node,
        TelephonyServer(ua_config, media_config, limits=ServerLimits(max_calls=0)) as full,
    ):
        assert node.udp_port is not None and full.udp_port is not None
        assert await asyncio.to_thread(options, node.udp_port) == 200
        assert await asyncio.to_thread(options, full.udp_port) == 503
        node.drain()
        assert await asyncio.to_thread(options, node.udp_port) == 503


# --- a real Kamailio in front of two nodes sharing one PostgreSQL database and one S3 store ---


@contextlib.asynccontextmanager
async def two_nodes(
    backend: Backend, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two in-process nodes (their own SIP port, RTP range, data directory and node id) on the
    same database and object store."""
    async with (
        deposit_runtime(backend, data_dir=tmp_path / "n1", node_id="n1", **overrides) as n1,
        deposit_runtime(backend, data_dir=tmp_path / "n2", node_id="n2", **overrides) as n2,
    ):
        yield n1, n2


LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600  # the caller speaks well after the beep


def nodes_of(*runtimes: Runtime) -> list[Node]:
    return [Node(rt.settings.node_id, "127.0.0.1", sip_port(rt)) for rt in runtimes]


def accepted(rt: Runtime) -> int:
    assert rt.telephony is not None
    return rt.telephony.stats.accepted


async def leave_messages(sipp: str, cwd: Path, proxy_port: int, calls: int) -> SippRun:
    caller_pcap(cwd, silence(LEAD_MS), speech(1.2, seed=7))
    return await sipp_calls(
        sipp, "deposit_uac_proxy.xml", cwd, proxy_port, calls=calls, hold_ms=LEAD_MS + 1500
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
async def test_calls_through_kamailio_land_on_both_nodes_and_leave_messages(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    async with (
        two_nodes(backend, tmp_path) as (n1, n2),
        kamailio_proxy(tmp_path, nodes_of(n1, n2), log_level=2) as proxy,
        api_of(n1) as api,
    ):
        box = await api.mailbox(skip_instructions=True)
        run = await leave_messages(sipp_bin, tmp_path / "calls", proxy.port, calls=4)
        assert run.returncode == 0, run.output + proxy.output()[-3000:]
        found = await api.wait_messages(box["id"], 4)
        assert len(found) == 4
        assert accepted(n1) >= 1 and accepted(n2) >= 1, proxy.output()[-3000:]
        assert accepted(n1) + accepted(n2) == 4
        await settle(n1)
        await settle(n2)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
async def test_a_draining_node_refuses_and_kamailio_sends_its_calls_to_the_other(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    # Probes every 60 s: the draining node is still in the set when the calls come, so its 503s
    # are what moves them (failure_route → ds_next_dst), not the probing.
    async with (
        two_nodes(backend, tmp_path) as (n1, n2),
        kamailio_proxy(tmp_path, nodes_of(n1, n2), probe_interval_seconds=60, log_level=2) as proxy,
        api_of(n1) as api,
    ):
        box = await api.mailbox(skip_instructions=True)
        assert await asyncio.to_thread(options, sip_port(n2)) == 200
        assert n2.telephony is not None
        n2.telephony.drain()
        assert await asyncio.to_thread(options, sip_port(n2)) == 503  # what a probe hears
        assert await asyncio.to_thread(options, sip_port(n1)) == 200

        run = await leave_messages(sipp_bin, tmp_path / "calls", proxy.port, calls=4)
        assert run.returncode == 0, run.output + proxy.output()[-3000:]
        assert run.received("SIP/2.0 503") == 0  # the caller never heard the refusal
        assert len(await api.wait_messages(box["id"], 4)) == 4
        assert accepted(n1) == 4 and accepted(n2) == 0
        assert n2.telephony.stats.rejected_draining >= 1, proxy.output()[-3000:]
        assert "503 from a node, next: sip:127.0.0.1:" in proxy.output()
        await settle(n1)


async def events(bare: phone.Baresip, kind: str, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while sum(e.get("type") == kind for e in bare.events) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
async def test_a_phone_registered_through_kamailio_is_reached_from_either_node(
    backend: Backend, tmp_path: Path
) -> None:
    """The REGISTER reaches one node with the proxy's Path; a call entering on each node in
    turn (round robin) rings the phone through the proxy (the Path as Route), both answered."""
    (tmp_path / "desk").mkdir()
    async with (
        two_nodes(backend, tmp_path, sip_digest_algorithms="MD5") as (n1, n2),  # baresip: MD5
        kamailio_proxy(tmp_path, nodes_of(n1, n2), log_level=2) as proxy,
        api_of(n1) as api,
        phone.baresip_phone(tmp_path / "desk", speech_like(3000, seed=9)) as desk,
    ):
        user_id, _ = await make_device(api, "201", "bare-desk")
        await api.post("/v1/numbers", {"e164": NUMBER, "dest_kind": "user", "dest_id": user_id})
        await desk.command(
            "uanew",
            f"<sip:bare-desk@127.0.0.1:{proxy.port};transport=udp>;auth_pass={PASSWORD};"
            "regint=300;audio_codecs=PCMU",
        )
        async with asyncio.timeout(WAIT):
            while not (found := await registrations(api, user_id)):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        [registration] = found
        assert registration["source"] == f"127.0.0.1:{proxy.port}"
        [path] = registration["path"]
        assert f"sip:127.0.0.1:{proxy.port};lr;received=" in path, path

        low, high = rtp_range()
        ua_config, media_config = telephony_configs("127.0.0.1:0", None, low, high)
        async with TelephonyServer(ua_config, media_config) as caller:
            for turn in (1, 2):
                outbound = await caller.dial(
                    f"sip:{DIALLED}@127.0.0.1:{proxy.port}", f"sip:{CALLER}@127.0.0.1", timeout=10
                )
                await events(desk, "CALL_INCOMING", turn)
                await desk.command("accept")
                call = await asyncio.wait_for(outbound.wait_answered(), WAIT)
                await events(desk, "CALL_ESTABLISHED", turn)
                await call.hangup()
                await events(desk, "CALL_CLOSED", turn)  # the node's BYE came through the proxy
            # the caller gives up while the phone rings: its CANCEL, then the node's, pass
            outbound = await caller.dial(
                f"sip:{DIALLED}@127.0.0.1:{proxy.port}", f"sip:{CALLER}@127.0.0.1", timeout=10
            )
            await events(desk, "CALL_INCOMING", 3)
            outbound.cancel()
            await events(desk, "CALL_CLOSED", 3)
            assert sum(e.get("type") == "CALL_ESTABLISHED" for e in desk.events) == 2

        assert accepted(n1) + accepted(n2) == 3
        assert accepted(n1) >= 1 and accepted(n2) >= 1  # calls entered on each node
        log = proxy.output()
        for node in (n1, n2):  # each node's INVITE to the phone went through the proxy
            assert f"from node 127.0.0.1:{sip_port(node)}: INVITE sip:" in log, log[-3000:]
        await settle(n1)
        await settle(n2)


def invite(port: int, sock: socket.socket, n: int) -> bytes:
    local = sock.getsockname()[1]
    call_id = f"{uuid.uuid4().hex}-{n}"
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
    return (
        f"INVITE sip:{DIALLED}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id[:20]};rport\r\n"
        f"From: <sip:{CALLER}@127.0.0.1>;tag=t{n}\r\n"
        f"To: <sip:{DIALLED}@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:c@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def first_answers(port: int, count: int) -> list[bytes]:
    """`count` INVITEs sent at once from one source; the first answer to each (by Call-ID)."""
    answers: dict[str, bytes] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        for n in range(count):
            sock.sendto(invite(port, sock, n), ("127.0.0.1", port))
        while len(answers) < count:
            data = sock.recv(65535)
            call_id = re.search(rb"^Call-ID: *(\S+)", data, re.M | re.I)
            assert call_id is not None, data
            answers.setdefault(call_id.group(1).decode(), data)
    return list(answers.values())


async def test_kamailio_refuses_new_calls_over_the_limit_per_source(tmp_path: Path) -> None:
    # One new call a second per source; nothing listens at the node (the admitted INVITE only
    # gets Kamailio's 100). Three INVITEs sent at once span at most two seconds: one is refused.
    dead = Node("gone", "127.0.0.1", free_sip_port())
    async with kamailio_proxy(tmp_path, [dead], calls_per_second_per_source=1) as proxy:
        answers = await asyncio.to_thread(first_answers, proxy.port, 3)
    refused = [a for a in answers if a.startswith(b"SIP/2.0 503")]
    admitted = [a for a in answers if a.startswith(b"SIP/2.0 100")]
    assert len(admitted) + len(refused) == 3
    assert 1 <= len(refused) <= 2 and 1 <= len(admitted) <= 2
    assert all(re.search(rb"^Retry-After: *1\r$", a, re.M) for a in refused), refused


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_a_node_that_does_not_answer_is_passed_over_after_the_failover_timeout(
    backend: Backend, sipp_bin: str, tmp_path: Path
) -> None:
    dead = Node("gone", "127.0.0.1", free_sip_port())  # nothing listens there
    async with (
        deposit_runtime(backend, node_id="n1") as n1,
        kamailio_proxy(
            tmp_path,
            [dead, *nodes_of(n1)],
            failover_timeout_ms=500,
            probe_interval_seconds=60,
            log_level=2,
        ) as proxy,
        api_of(n1) as api,
    ):
        box = await api.mailbox(skip_instructions=True)
        run = await leave_messages(sipp_bin, tmp_path / "calls", proxy.port, calls=2)
        assert run.returncode == 0, run.output + proxy.output()[-3000:]
        assert len(await api.wait_messages(box["id"], 2)) == 2
        assert accepted(n1) == 2
        assert f"408 from a node, next: sip:127.0.0.1:{sip_port(n1)}" in proxy.output()
        await settle(n1)


class SlowByeNode:
    """A stand-in node on UDP that answers an INVITE 200 at once and a BYE `bye_delay` later
    (its retransmissions unanswered), as a node whose loop stalls for a moment."""

    def __init__(self, bye_delay: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.bye_delay = bye_delay
        self.byes = 0
        self.tag = "node"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self._on(data.decode(), source)

    def _on(self, text: str, source: Any) -> None:
        if text.startswith("INVITE "):
            self.sock.sendto(self._answer(text, record_route=True), source)
        elif text.startswith("BYE "):
            self.byes += 1
            if self.byes == 1:
                answer = self._answer(text, record_route=False)
                threading.Timer(self.bye_delay, self.sock.sendto, (answer, source)).start()

    def _answer(self, request: str, *, record_route: bool) -> bytes:
        head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        names = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
        if record_route:
            names += ("record-route",)
        kept = [h for h in head if h.split(":", 1)[0].strip().lower() in names]
        kept = [
            h + f";tag={self.tag}" if h.lower().startswith(("to:", "t:")) and "tag=" not in h else h
            for h in kept
        ]
        return (
            "SIP/2.0 200 OK\r\n"
            + "\r\n".join(kept)
            + f"\r\nContact: <sip:node@127.0.0.1:{self.port}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()


def bye_through(proxy_port: int) -> bytes:
    """A call through the proxy: INVITE, its 200, ACK and BYE along the route set; the BYE's
    final answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        local = sock.getsockname()[1]
        sock.sendto(invite(proxy_port, sock, 0), ("127.0.0.1", proxy_port))
        while not (ok := sock.recv(65535)).startswith(b"SIP/2.0 200"):
            pass
        text = ok.decode()
        header = lambda name: re.search(rf"^{name}: *(.+?)\r$", text, re.M | re.I)  # noqa: E731
        routes = [m.group(1) for m in re.finditer(r"^Record-Route: *(.+?)\r$", text, re.M | re.I)]
        contact = re.search(r"<(sip:[^>]+)>", header("Contact").group(1)).group(1)  # type: ignore[union-attr]
        common = (
            f"From: {header('From').group(1)}\r\nTo: {header('To').group(1)}\r\n"  # type: ignore[union-attr]
            f"Call-ID: {header('Call-ID').group(1)}\r\n"  # type: ignore[union-attr]
            + "".join(f"Route: {r}\r\n" for r in reversed(routes))
            + "Max-Forwards: 70\r\nContent-Length: 0\r\n"
        )
        for method, cseq, branch in (("ACK", 1, "z9hG4bKack1"), ("BYE", 2, "z9hG4bKbye2")):
            sock.sendto(
                (
                    f"{method} {contact} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
                    f"CSeq: {cseq} {method}\r\n{common}\r\n"
                ).encode(),
                ("127.0.0.1", proxy_port),
            )
        while True:
            answer = sock.recv(65535)
            if re.search(rb"^CSeq: *2 BYE", answer, re.M | re.I) and not answer.startswith(
                b"SIP/2.0 1"
            ):
                return answer


async def test_a_bye_to_a_node_slower_than_the_failover_time_still_ends_the_call(
    tmp_path: Path,
) -> None:
    # Only a new call dispatched to a node waits the failover time; a BYE to a node that stalls
    # for longer than that must still reach it and get its 200 (not Kamailio's 408).
    with SlowByeNode(bye_delay=1.5) as node:
        async with kamailio_proxy(
            tmp_path, [Node("slow", "127.0.0.1", node.port)], failover_timeout_ms=500,
            calls_per_second_per_source=0,
        ) as proxy:  # fmt: skip
            answer = await asyncio.to_thread(bye_through, proxy.port)
        assert answer.startswith(b"SIP/2.0 200"), answer
        assert node.byes >= 2  # the proxy retransmitted the BYE past the failover time


class LateNode(SlowByeNode):
    """A stand-in node that answers each INVITE 200, with no 100 before it, `invite_delay`
    after it came (a node whose loop stalled, or that had just started again and read an
    INVITE its dead predecessor was sent); with `bye_after`, it then hangs up that long after
    its 200 (as a node does with no ACK or no RTP). What it is sent is kept."""

    def __init__(self, invite_delay: float, tag: str, bye_after: float | None = None) -> None:
        super().__init__(bye_delay=0.0)
        self.invite_delay, self.tag, self.bye_after = invite_delay, tag, bye_after
        self.received: list[str] = []
        self.answered = threading.Event()
        self.bye_answered = threading.Event()

    def _on(self, text: str, source: Any) -> None:
        self.received.append(text.split("\r\n", 1)[0])
        if text.startswith("INVITE "):
            answer = self._answer(text, record_route=True)
            threading.Timer(self.invite_delay, self._send, (text, answer, source)).start()
        elif re.search(r"^CSeq: *\d+ BYE", text, re.M | re.I) and text.startswith("SIP/2.0 "):
            self.bye_answered.set()

    def _send(self, invite: str, answer: bytes, source: Any) -> None:
        self.sock.sendto(answer, source)
        self.answered.set()
        if self.bye_after is not None:
            threading.Timer(self.bye_after, self._bye, (invite, source)).start()

    def _bye(self, invite: str, proxy: Any) -> None:
        """The UAS's BYE along the route set it was given (Record-Route, in order)."""
        header = lambda name: re.search(rf"^{name}: *(.+?)\r$", invite, re.M | re.I)  # noqa: E731
        caller = re.search(r"<(sip:[^>]+)>", header("Contact").group(1)).group(1)  # type: ignore[union-attr]
        routes = [m.group(1) for m in re.finditer(r"^Record-Route: *(.+?)\r$", invite, re.M | re.I)]
        bye = (
            f"BYE {caller} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{self.tag}bye;rport\r\n"
            f"From: {header('To').group(1)};tag={self.tag}\r\nTo: {header('From').group(1)}\r\n"  # type: ignore[union-attr]
            f"Call-ID: {header('Call-ID').group(1)}\r\nCSeq: 1 BYE\r\n"  # type: ignore[union-attr]
            + "".join(f"Route: {r}\r\n" for r in routes)
            + "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        self.sock.sendto(bye.encode(), proxy)


def answers_by_call(
    port: int, calls: int, *, after: threading.Event, quiet: float
) -> dict[str, list[bytes]]:
    """`calls` INVITEs sent at once; every answer to each (by Call-ID) until `after` is set
    and then `quiet` seconds pass without one."""
    answers: dict[str, list[bytes]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for n in range(calls):
            sock.sendto(invite(port, sock, n), ("127.0.0.1", port))
        sock.settimeout(0.2)
        bound, deadline = time.monotonic() + 20, None
        while time.monotonic() < (bound if deadline is None else deadline):
            if deadline is None and after.wait(0):
                deadline = time.monotonic() + quiet
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            call_id = re.search(rb"^Call-ID: *(\S+)", data, re.M | re.I)
            assert call_id is not None, data
            answers.setdefault(call_id.group(1).decode(), []).append(data)
    return answers


async def test_a_200_from_a_node_after_the_failover_time_is_not_forwarded(tmp_path: Path) -> None:
    # Two calls at once, one dispatched to each node: the late node's call fails over to the
    # prompt one and is answered there; the late node's 200, sent after the proxy gave up on
    # it, must not reach the caller as a second dialog of the same call. The late node then
    # hangs up, as a node never acknowledged does: the proxy answers that BYE itself.
    with (
        LateNode(invite_delay=2.0, tag="late", bye_after=0.3) as late,
        LateNode(invite_delay=0.0, tag="prompt") as prompt,
    ):
        async with kamailio_proxy(
            tmp_path, [Node("late", "127.0.0.1", late.port), Node("prompt", "127.0.0.1", prompt.port)],
            failover_timeout_ms=400, probe_interval_seconds=60, calls_per_second_per_source=0,
        ) as proxy:  # fmt: skip
            answers = await asyncio.to_thread(
                answers_by_call, proxy.port, 2, after=late.bye_answered, quiet=1.0
            )
            log = proxy.output()
    assert late.answered.is_set() and late.bye_answered.is_set()
    oks = {call: [a for a in got if a.startswith(b"SIP/2.0 200")] for call, got in answers.items()}
    assert len(oks) == 2
    assert all(len(ok) == 1 and b";tag=prompt" in ok[0] for ok in oks.values()), oks
    assert not [a for got in answers.values() for a in got if a.startswith(b"BYE ")]
    invites = [r for r in late.received if r.startswith("INVITE ")]
    assert invites and late.received == [*invites, "SIP/2.0 200 OK"]  # never an ACK; its BYE's 200
    assert f"200 from 127.0.0.1:{late.port} for" in log and "after the failover: dropped" in log


def test_client_host_behind_a_trusted_proxy_is_the_address_the_proxy_heard() -> None:
    def request(*vias: str) -> SipRequest:
        lines = [f"Via: {v}" for v in vias]
        raw = "\r\n".join(
            ["REGISTER sip:127.0.0.1 SIP/2.0", *lines, "From: <sip:a@x>;tag=1", "To: <sip:a@x>",
             "Call-ID: c", "CSeq: 1 REGISTER", "Content-Length: 0", "", ""]
        )  # fmt: skip
        message = parse_message(raw.encode())
        assert isinstance(message, SipRequest)
        return message

    proxy = (ip_network("10.0.0.5/32"),)
    kam = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKk"
    natted = request(kam, "SIP/2.0/UDP 192.168.1.20:5062;rport=40000;received=203.0.113.7")
    assert client_host(natted, "10.0.0.5", proxy) == "203.0.113.7"
    assert (
        client_host(
            request(kam, "SIP/2.0/UDP 198.51.100.4:5062;branch=z9hG4bKp"), "10.0.0.5", proxy
        )
        == "198.51.100.4"
    )
    assert (
        client_host(request(f"{kam}, SIP/2.0/UDP 198.51.100.4"), "10.0.0.5", proxy)
        == "198.51.100.4"
    )
    assert client_host(natted, "10.0.0.6", proxy) == "10.0.0.6"  # not a trusted proxy
    assert client_host(natted, "10.0.0.5", ()) == "10.0.0.5"  # no proxy trusted
    assert client_host(request(kam), "10.0.0.5", proxy) == "10.0.0.5"  # the proxy's own
    assert client_host(request(kam, "SIP/2.0/UDP phone.example"), "10.0.0.5", proxy) == "10.0.0.5"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_failed_digests_through_a_trusted_proxy_lock_out_the_client_not_the_proxy(
    backend: Backend, tmp_path: Path
) -> None:
    """A guesser at 127.0.0.2 tries six device names through Kamailio (at 127.0.0.1): its address
    is locked out (one failure per name, five per address); a phone at 127.0.0.1 still registers
    through the same proxy."""
    async with (
        deposit_runtime(
            backend, sip_auth_max_failures=1, sip_trusted_proxies="127.0.0.1/32"
        ) as node,
        kamailio_proxy(tmp_path, nodes_of(node)) as proxy,
        api_of(node) as api,
    ):
        user_id, _ = await make_device(api, "201", "desk-201")
        names = [f"guess-{n}" for n in range(6)]
        for name in [*names, "spare-201"]:
            await api.post(
                "/v1/devices", {"user_id": user_id, "auth_username": name, "password": PASSWORD}
            )
        loop = asyncio.get_running_loop()
        _, guesser = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.2", 0))
        desk_peer = await RawPeer.open()
        try:
            for name in names:
                guess = Phone(guesser, proxy.port, name)
                assert (
                    status_of(await guess.register(f"Contact: <{guess.contact}>", password="wrong"))
                    != 200
                )
            spare = Phone(guesser, proxy.port, "spare-201")  # right password, locked address
            assert status_of(await spare.register(f"Contact: <{spare.contact}>")) == 403
            desk = Phone(desk_peer, proxy.port, "desk-201")
            assert status_of(await desk.register(f"Contact: <{desk.contact}>")) == 200
        finally:
            guesser.close()
            desk_peer.close()
