"""Kamailio in front of afterbeep nodes (issue 23): the rendered configuration, and calls
through a real Kamailio on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
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
from afterbeep.telephony.server import TelephonyServer, telephony_configs
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
from tests.e2e.test_registration import PASSWORD, make_device, registrations
from tests.fixtures import baresip as phone
from tests.fixtures.kamailio import kamailio_proxy, options
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

needs_kamailio = pytest.mark.skipif(
    shutil.which(KAMAILIO) is None,
    reason="kamailio is not installed (scripts/install-system-deps.sh)",
)

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
    assert 'modparam("tm", "fr_timer", 2000)' in cfg
    assert "children=4" in cfg
    assert "ds_next_dst()" in cfg and "add_path_received()" in cfg
    assert "$shtinc(cps=>$si::$Ts) > 50" in cfg


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
    assert "htable" not in cfg and "$shtinc" not in cfg
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


@needs_kamailio
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
    assert "kamailio" in result.output


def test_cluster_config_command_refuses_a_wildcard_node(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["cluster", "config", "--nodes", "0.0.0.0:5071", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "p" / CONFIG_FILE).exists()


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


@needs_kamailio
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


@needs_kamailio
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


@needs_kamailio
@pytest.mark.skipif(not phone.available(), reason="baresip is not installed")
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

        assert accepted(n1) == 1 and accepted(n2) == 1  # one call entered on each node
        log = proxy.output()
        for node in (n1, n2):  # each node's INVITE to the phone went through the proxy
            assert f"from node 127.0.0.1:{sip_port(node)}: INVITE sip:" in log, log[-3000:]
        await settle(n1)
        await settle(n2)
