"""Kamailio in front of afterbeep nodes (issue 23): the rendered configuration, and calls
through a real Kamailio on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
