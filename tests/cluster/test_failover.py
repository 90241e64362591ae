"""A cluster on one machine (`afterbeep cluster run`: Kamailio, two nodes, one PostgreSQL database,
one SeaweedFS bucket) losing a node: kill -9 under 20 calls/s, the dead node's spool recovered
by its restart or by `afterbeep spool recover` from elsewhere, its leased ringless sends
delivered by the other node; and the refusals a cluster makes at start-up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from afterbeep.cluster.node import SpoolBusy, SpoolLock, backends_problem, spool_directory
from afterbeep.cluster.supervisor import ClusterError, plan
from afterbeep.config import Settings
from tests.e2e.rig import BEEP_S, GREETING_S, Api, caller_pcap, silence, speech
from tests.fixtures.cluster import Cluster, cluster_fixture  # noqa: F401  (module fixture)
from tests.fixtures.service import run_cli, running_service
from tests.sip import conftest as sip_rig

sipp_bin = sip_rig.sipp_bin

SCENARIO = Path(__file__).resolve().parent.parent / "sipp" / "cluster_deposit_uac.xml"
LEAD_MS = int((GREETING_S + BEEP_S) * 1000) + 600  # skip_instructions: greeting, beep, margin
BOUND = 60.0  # any wait for background work; never a speed assertion
STORE_BOUND = 150.0  # for 100+ messages stored by post-call workers at idle priority
PCM_BYTES_PER_S = 16000


# --- cheap: planning, the lock, the refusals --------------------------------------------------


def test_plan_gives_each_node_its_ports_rtp_slice_and_data_dir(tmp_path: Path) -> None:
    ports = iter(range(41000, 41100))
    cluster = plan(
        3, host="127.0.0.1", proxy_port=0, sip_port_base=5070, http_port_base=0,
        rtp_min=20000, rtp_max=29999, data_dir=tmp_path, pick=lambda: next(ports),
    )  # fmt: skip
    assert [n.node_id for n in cluster.nodes] == ["n0", "n1", "n2"]
    assert [n.sip_port for n in cluster.nodes] == [5070, 5071, 5072]
    assert [n.http_port for n in cluster.nodes] == [41000, 41001, 41002]
    assert cluster.proxy_port == 41003
    slices = [(n.rtp_min, n.rtp_max) for n in cluster.nodes]
    assert slices == [(20000, 23331), (23332, 26663), (26664, 29995)]
    assert all((high - low + 1) % 2 == 0 for low, high in slices)  # whole RTP/RTCP pairs
    env = cluster.nodes[1].env({"AFTERBEEP_DATABASE_URL": "postgresql+asyncpg://db/x"})
    assert env["AFTERBEEP_NODE_ID"] == "n1"
    assert env["AFTERBEEP_DATA_DIR"] == str(tmp_path / "n1")
    assert env["AFTERBEEP_SIP_ADVERTISE"] == "127.0.0.1:5071"
    assert env["AFTERBEEP_DATABASE_URL"] == "postgresql+asyncpg://db/x"
    with pytest.raises(ClusterError, match="wildcard"):
        plan(
            2,
            host="0.0.0.0",
            proxy_port=1,
            sip_port_base=1,
            http_port_base=1,
            rtp_min=1,
            rtp_max=999,
            data_dir=tmp_path,
        )
    with pytest.raises(ClusterError, match="too small"):
        plan(
            4,
            host="127.0.0.1",
            proxy_port=1,
            sip_port_base=1,
            http_port_base=1,
            rtp_min=100,
            rtp_max=109,
            data_dir=tmp_path,
        )


def test_spool_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    directory = spool_directory(tmp_path, "n1")
    assert directory == tmp_path / "spool" / "n1"
    assert spool_directory(tmp_path, "") == tmp_path / "spool"  # a service alone, as before
    with SpoolLock(directory), pytest.raises(SpoolBusy, match="in use"):
        SpoolLock(directory).acquire()
    with SpoolLock(directory):  # released on exit
        pass


def test_sqlite_or_local_objects_are_refused_for_a_cluster(tmp_path: Path) -> None:
    alone = Settings(data_dir=tmp_path)
    problem = backends_problem(alone)
    assert problem is not None and problem.startswith("a cluster needs PostgreSQL and S3: ")
    assert "SQLite" in problem and "local directory" in problem
    assert (
        backends_problem(
            Settings(
                data_dir=tmp_path, database_url="postgresql+asyncpg://h/db", storage_url="s3://b"
            )
        )
        is None
    )
    env = {
        "AFTERBEEP_DATA_DIR": str(tmp_path / "var"),
        "AFTERBEEP_DATABASE_URL": "",
        "AFTERBEEP_STORAGE_URL": "",
    }
    ran = run_cli(env, "cluster", "run", "--nodes", "2")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "afterbeep: a cluster needs PostgreSQL and S3: " in ran.stderr
    assert not (tmp_path / "var" / "n0").exists()  # nothing was started
    served = run_cli({**env, "AFTERBEEP_NODE_ID": "n0"}, "serve")
    assert served.returncode == 2
    assert served.stderr.strip().splitlines() == [
        "afterbeep: a cluster needs PostgreSQL and S3: AFTERBEEP_DATABASE_URL is an SQLite file "
        "and AFTERBEEP_STORAGE_URL is a local directory (set postgresql+asyncpg://... and s3://...)"
    ]


async def test_readyz_of_a_draining_node_says_so(tmp_path: Path, sqlite_template: Path) -> None:
    from afterbeep.app import Runtime
    from tests.conftest import copy_sqlite_template

    copy_sqlite_template(sqlite_template, tmp_path / "var")
    runtime = Runtime(Settings(data_dir=tmp_path / "var", transcribe=False))
    await runtime.start(workers=False)
    try:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
            assert (await http.get("/readyz")).json() == {"status": "ok"}
            runtime.begin_drain()
            r = await http.get("/readyz")
            assert r.status_code == 503
            assert r.json() == {"status": "draining", "problems": ["draining"]}
    finally:
        await runtime.stop()


# --- SIPp through Kamailio --------------------------------------------------------------------


@dataclass
class CallTrace:
    invite_at: datetime
    answered_by: int | None = None  # the node's SIP port, from the 200's Contact
    answered_at: datetime | None = None
    completed_at: datetime | None = None  # when the BYE got its 200

    @property
    def completed(self) -> bool:
        return self.completed_at is not None


def read_trace(messages: str) -> dict[str, CallTrace]:
    """Call-ID → what happened to it, from SIPp's -trace_msg file."""
    calls: dict[str, CallTrace] = {}
    blocks = re.split(r"^-{10,} (\S+ \S+)", messages, flags=re.M)
    for stamp, block in zip(blocks[1::2], blocks[2::2], strict=True):
        body = block.split("\n\n", 1)[-1].lstrip()
        call_id = re.search(r"^Call-ID: *(\S+)", body, flags=re.M | re.I)
        if call_id is None:
            continue
        key = call_id.group(1)
        at = datetime.strptime(stamp, "%Y-%m-%d\t%H:%M:%S.%f")
        if "message sent" in block and body.startswith("INVITE ") and key not in calls:
            calls[key] = CallTrace(at)
        elif "message received" in block and body.startswith("SIP/2.0 200") and key in calls:
            if re.search(r"^CSeq: *\d+ INVITE", body, flags=re.M | re.I):
                contact = re.search(
                    r"^(?:Contact|m): *<?sip:[^>;]*?:(\d+)", body, flags=re.M | re.I
                )
                calls[key].answered_by = int(contact.group(1)) if contact else -1
                calls[key].answered_at = at
            elif re.search(r"^CSeq: *\d+ BYE", body, flags=re.M | re.I):
                calls[key].completed_at = at
    return calls


async def start_sipp(
    sipp: str, work: Path, proxy_port: int, dialled: str, *, calls: int, rate: int, hold_ms: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sipp, f"127.0.0.1:{proxy_port}",
        "-sf", str(SCENARIO), "-s", dialled,
        "-m", str(calls), "-l", str(calls), "-r", str(rate), "-rp", "1000",
        "-t", "u1", "-i", "127.0.0.1",
        "-p", str(sip_rig.free_udp_port()), "-mp", str(sip_rig.free_udp_port()),
        "-d", str(hold_ms), "-timeout", "90s", "-recv_timeout", "20000", "-nostdin",
        "-trace_msg", "-message_file", str(work / "messages.log"),
        "-trace_err", "-error_file", str(work / "errors.log"),
        cwd=work, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def spooled(spool: Path) -> dict[str, dict[str, Any]]:
    """call id → the entry's metadata and its audio bytes so far."""
    found: dict[str, dict[str, Any]] = {}
    for meta in spool.glob("*.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        pcm = meta.with_suffix(".pcm")
        data["pcm_bytes"] = pcm.stat().st_size if pcm.exists() else 0
        found[meta.stem] = data
    return found


async def wait_until(check: Any, what: str, bound: float = BOUND) -> Any:
    deadline = time.monotonic() + bound
    while not (found := await asyncio.to_thread(check)):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.2)
    return found


async def cluster_api(cluster: Cluster, http: httpx.AsyncClient) -> Api:
    created = json.loads(cluster.cli("account", "create", "Acme", "--json").stdout)
    return Api(http, {"Authorization": f"Bearer {created['api_key']}"}, created["account_id"])


async def mailbox_at(api: Api, dialled: str, **settings: Any) -> dict[str, Any]:
    """A mailbox reached by `+1<dialled>` (each test of the module's database its own number)."""
    body = {"name": "Front desk", "min_message_seconds": 1, **settings}
    mailbox = await api.post("/v1/mailboxes", body)
    await api.post(
        "/v1/numbers", {"e164": "+1" + dialled, "dest_kind": "voicemail", "dest_id": mailbox["id"]}
    )
    return mailbox


async def missing_messages(cluster: Cluster, mailbox_id: str) -> list[Any]:
    """For a failure's message: how many messages the database holds, and each call the nodes
    logged that has none (node, call id, its log lines)."""
    pg = cluster.env["AFTERBEEP_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(pg)
    try:
        rows = await conn.fetch("SELECT call_id FROM messages WHERE mailbox_id = $1", mailbox_id)
    finally:
        await conn.close()
    stored = {r[0] for r in rows}
    logs = {
        n: await asyncio.to_thread(Path(cluster.node(n)["log"]).read_text) for n in ("n0", "n1")
    }
    missing = []
    for node, text in logs.items():
        for call in re.findall(r"call (call_\w+) from \S+ to \*+0111", text):
            if call not in stored:
                lines = [line[:160] for line in text.splitlines() if call in line]
                missing.append((node, call, lines))
    return [len(stored), missing]


async def messages_of(api: Api, base: str, mailbox_id: str) -> list[dict[str, Any]]:
    r = await api.http.get(
        f"{base}/v1/mailboxes/{mailbox_id}/messages", params={"limit": 100}, headers=api.headers
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    while r.json().get("next_cursor"):
        r = await api.http.get(
            f"{base}/v1/mailboxes/{mailbox_id}/messages",
            params={"limit": 100, "cursor": r.json()["next_cursor"]},
            headers=api.headers,
        )
        items += r.json()["items"]
    return items


@pytest.mark.timeout(330)
async def test_kill_9_of_a_node_under_20_calls_per_second(
    cluster: Cluster, sipp_bin: str, tmp_path: Path
) -> None:
    calls, rate, speech_s = 200, 20, 1.5  # 10 s of calls, n1 killed after about 7 s
    n0, n1 = cluster.node("n0"), cluster.node("n1")
    restarts_before = n1["restarts"]
    caller_pcap(tmp_path / "sipp", silence(LEAD_MS), speech(speech_s, seed=23))
    async with httpx.AsyncClient(base_url=n0["http_url"], timeout=10) as http:
        api = await cluster_api(cluster, http)
        mailbox = await mailbox_at(api, "2025550111", skip_instructions=True, max_messages=1000)
        sipp = await start_sipp(
            sipp_bin, tmp_path / "sipp", cluster.proxy_port, "2025550111",
            calls=calls, rate=rate, hold_ms=LEAD_MS + int(speech_s * 1000) + 400,
        )  # fmt: skip
        try:
            spool1 = cluster.spool("n1")
            # n1 has finished calls (their messages must be kept) and is recording others: kill it
            n1_log = Path(n1["log"])
            await wait_until(
                lambda: (
                    len(re.findall(r"call call_\w+ ended", n1_log.read_text())) >= 3
                    and sum(e["pcm_bytes"] > 0 for e in spooled(spool1).values()) >= 3
                ),
                "n1 finished calls and recording others",
            )
            await asyncio.sleep(1.2)  # the finished ones' recordings closed well before the kill
            cluster.kill("n1")
            # after the process is dead: an INVITE sent in the moment before could still be
            # answered by it, and is counted among the calls before the kill
            killed_at = datetime.now()
            at_kill = spooled(spool1)
            async with asyncio.timeout(120):
                await sipp.wait()
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
        trace = read_trace((tmp_path / "sipp" / "messages.log").read_text(errors="replace"))
        assert len(trace) == calls

        # new calls keep being answered, by the other node once n1 is gone. An INVITE that n1
        # took just before it died (its 100 Trying sent, not its 200) is never answered: Kamailio,
        # holding a provisional answer, waits for a final one as RFC 3261 proxies do (a call to
        # a user may ring for minutes), and the caller gives up. That is a call lost with n1.
        unanswered = {k: c for k, c in trace.items() if c.answered_by is None}
        assert all(c.invite_at <= killed_at for c in unanswered.values()), unanswered
        after = [c for c in trace.values() if c.invite_at > killed_at]
        assert all(c.completed for c in after), (
            f"n0 {n0['sip_port']}, n1 {n1['sip_port']}, killed at {killed_at}",
            [(k, c) for k, c in trace.items() if c.invite_at > killed_at and not c.completed],
        )
        # n0 takes the new calls until n1 is back (the supervisor starts it again): n1 answers
        # none of them before its new process started
        cluster.wait_ready("n1", restarts=restarts_before + 1)
        n1_back_at = datetime.fromtimestamp(cluster.node("n1")["started_at"])
        assert sum(c.answered_by == n0["sip_port"] for c in after) >= 10, (
            "too few calls after the kill"
        )
        assert all(
            c.answered_by == n0["sip_port"]
            or (c.answered_at is not None and c.answered_at > n1_back_at)
            for c in after
        )
        before = [c for c in trace.values() if c.invite_at <= killed_at]
        assert {c.answered_by for c in before} - {None} == {
            n0["sip_port"],
            n1["sip_port"],
        }  # both took calls
        # failures only among the calls connected on the dead node
        failed = [c for c in trace.values() if not c.completed]
        connected_on_n1 = [
            c for c in before if c.answered_by in (n1["sip_port"], None) and not c.completed
        ]
        assert all(
            c.answered_by in (n1["sip_port"], None) and c.invite_at <= killed_at for c in failed
        )
        print(
            f"{calls} calls at {rate}/s; n1 killed with {len(at_kill)} recording(s) in its spool; "
            f"{len(failed)} failed calls (connected on n1); {len(after)} calls after the kill, all answered "
            f"({Counter(c.answered_by == n1['sip_port'] for c in after)[True]} by n1 once it was back)"
        )
        assert failed == connected_on_n1 and len(failed) >= 1
        completed = sum(c.completed for c in trace.values())

        # n1, started again by the supervisor, recovers its own spool
        await wait_until(lambda: not spooled(spool1), "n1's spool recovered", STORE_BOUND)
        unfinished = [e for e in at_kill.values() if e.get("ended_by") is None]
        surely_kept = [e for e in unfinished if e["pcm_bytes"] >= 2 * PCM_BYTES_PER_S]

        # the post-call workers store at idle CPU priority (slow on a busy machine): wait until
        # both spools are empty, every recording stored or discarded
        spool0 = cluster.spool("n0")
        await wait_until(
            lambda: not spooled(spool0) and not spooled(spool1), "both spools empty", STORE_BOUND
        )
        await asyncio.sleep(1.0)  # nothing more arrives (no duplicate stored late)
        assert not spooled(spool0) and not spooled(spool1)
        stored = await messages_of(api, "", mailbox["id"])
        recovered = [m for m in stored if m["recovered"]]
        assert len({m["call_id"] for m in stored}) == len(stored)
        assert len(stored) - len(recovered) <= completed
        assert len(surely_kept) <= len(recovered) <= len(unfinished)

        # every call that finished before the kill (its recording closed, synced, at least a
        # second before), on either node, left its message
        by_call = {m["call_id"] for m in stored}
        logged = await node_calls(cluster)
        killed_utc = killed_at.astimezone(UTC)
        ended_before = {
            c
            for c, (_, ended) in logged.items()
            if ended is not None and ended < killed_utc - timedelta(seconds=1)
        }
        assert ended_before, "no call finished before the kill"
        assert ended_before <= by_call, await missing_messages(cluster, mailbox["id"])
        # and n0 went on taking messages after it: the calls it answered after the kill. On a
        # loaded machine the failover burst can make its loop start some recordings late (the
        # caller's words then fall before the recording: too short, no message; issue 24).
        after_kill = {c for c, (node, _) in logged.items() if node == "n0" and c not in ended_before}  # fmt: skip
        kept_after = after_kill & by_call
        print(
            f"{len(ended_before)} calls ended before the kill, all with a message; n0 took "
            f"{len(after_kill)} calls not ended at the kill, {len(kept_after)} with a message"
        )
        assert kept_after, "n0 stored no message of a call after the kill"


async def node_calls(cluster: Cluster) -> dict[str, tuple[str, datetime | None]]:
    """Each call of the test's number the nodes logged: the node, and when it ended (UTC)."""
    calls: dict[str, tuple[str, datetime | None]] = {}
    for node in ("n0", "n1"):
        text = await asyncio.to_thread(Path(cluster.node(node)["log"]).read_text)
        for call in re.findall(r"call (call_\w+) from \S+ to \*+0111", text):
            calls[call] = (node, None)
        for stamp, call, why in re.findall(
            r"^(\S+) .*call (call_\w+) ended \((\S+)\)", text, re.MULTILINE
        ):
            if why == "cancelled":  # answered after the proxy gave up on the node: taken elsewhere
                calls.pop(call, None)
            elif call in calls:
                calls[call] = (calls[call][0], datetime.fromisoformat(stamp))
    return calls


@pytest.mark.timeout(180)
async def test_spool_recover_of_a_dead_node_from_elsewhere(
    cluster: Cluster, sipp_bin: str, tmp_path: Path
) -> None:
    n0, n1 = cluster.node("n0"), cluster.node("n1")
    restarts_before = n1["restarts"]
    caller_pcap(tmp_path / "sipp", silence(LEAD_MS), speech(25.0, seed=7))
    spool1 = cluster.spool("n1")
    n1_data = n1["data_dir"]
    await wait_until(lambda: not spooled(spool1), "n1's spool empty before the test")
    async with httpx.AsyncClient(base_url=n0["http_url"], timeout=10) as http:
        api = await cluster_api(cluster, http)
        mailbox = await mailbox_at(api, "2025550112", skip_instructions=True)
        sipp = await start_sipp(
            sipp_bin,
            tmp_path / "sipp",
            cluster.proxy_port,
            "2025550112",
            calls=8,
            rate=10,
            hold_ms=LEAD_MS + 25_000,
        )
        try:
            await wait_until(
                lambda: (
                    sum(e["pcm_bytes"] >= 2 * PCM_BYTES_PER_S for e in spooled(spool1).values())
                    >= 2
                ),
                "n1 recording",
            )
            # the node holds its spool while it runs: no recovery from elsewhere
            refused = cluster.cli("spool", "recover", "--node", "n1", "--data-dir", n1_data)
            assert refused.returncode == 2
            assert "is in use by another process" in refused.stderr
            with cluster.supervisor_paused():
                cluster.kill("n1")
                at_kill = spooled(spool1)
                await asyncio.sleep(0.5)
                ran = await asyncio.to_thread(
                    cluster.cli,
                    "spool",
                    "recover",
                    "--node",
                    "n1",
                    "--data-dir",
                    n1_data,
                    "--wait",
                    "30",
                )
                assert ran.returncode == 0, ran.stdout + ran.stderr
                assert f"{len(at_kill)} recording(s) stored, 0 left" in ran.stdout
                assert not spooled(spool1)
        finally:
            sipp.send_signal(signal.SIGTERM)
            await sipp.wait()
        stored = await messages_of(api, "", mailbox["id"])
        recovered = [m for m in stored if m["recovered"]]
        print(f"recovered {len(recovered)} message(s) of n1 from {len(at_kill)} spool entries")
        assert len(recovered) == len(at_kill) >= 2
        assert all(m["duration_ms"] >= 1500 for m in recovered)
    cluster.wait_ready("n1", restarts=restarts_before + 1)


# --- ringless sends leased by the dead node ---------------------------------------------------

SENDER = "+12025550177"
RECIPIENT = "+12025550109"


@pytest.mark.timeout(200)
async def test_leased_sends_of_a_dead_node_are_delivered_by_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    import io

    import numpy as np
    import soundfile as sf

    from tests.e2e.rig import rtp_range

    pcm = np.repeat(speech(11.0, seed=5), 2).astype(np.float32) / 32768
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 16000, format="MP3")
    low, high = rtp_range()
    env_b = {
        "AFTERBEEP_RTP_PORT_MIN": str(low),
        "AFTERBEEP_RTP_PORT_MAX": str(high),
        "AFTERBEEP_DEPOSIT_PEERS": "127.0.0.1",
        "AFTERBEEP_RTP_TIMEOUT_SECONDS": "3",
    }
    (tmp_path / "b").mkdir()
    n0, n1 = cluster.node("n0"), cluster.node("n1")
    restarts_before = n1["restarts"]
    pg = cluster.env["AFTERBEEP_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    with running_service(tmp_path / "b" / "var", env_b) as carrier:
        async with (
            httpx.AsyncClient(base_url=carrier.url, timeout=10) as http_b,
            httpx.AsyncClient(timeout=10) as http,
        ):
            created_b = json.loads(carrier.cli("account", "create", "Carrier", "--json").stdout)
            api_b = Api(http_b, {"Authorization": f"Bearer {created_b['api_key']}"})
            inbox = await api_b.post("/v1/mailboxes", {"name": "Inbox", "min_message_seconds": 1})
            await api_b.post(
                "/v1/numbers", {"e164": RECIPIENT, "dest_kind": "voicemail", "dest_id": inbox["id"]}
            )

            api = await cluster_api(cluster, http)
            cluster.cli("numbers", "verify", SENDER, "--account", api.account_id).check_returncode()
            on_n1 = n1["http_url"]
            setup = await api.post(
                f"{on_n1}/v1/telephony-setups",
                {
                    "name": "to the carrier", "trunk_host": "127.0.0.1", "trunk_port": 5060,
                    "transport": "udp", "max_calls_per_second": 20, "max_concurrent_calls": 50,
                    "numbers": [{"e164": SENDER}], "deposit_uri": "sip:{to}@" + carrier.env["AFTERBEEP_SIP_ADDR"],
                },
            )  # fmt: skip
            use_case = await api.post(
                f"{on_n1}/v1/use-cases",
                {
                    "channel": "ringless_voicemail", "name": "reminders", "setup_id": setup["id"],
                    "sender_selection": "fixed", "sender_number": SENDER, "require_consent": False,
                    "calling_window": {"start": "00:00", "end": "00:00"}, "max_attempts": 3,
                    "retry_backoff_seconds": 1, "recipient_cap": {"attempts": 100, "period_hours": 1},
                },
            )  # fmt: skip
            r = await http.post(
                f"{on_n1}/v1/media",
                files={"file": ("m.mp3", buffer.getvalue(), "audio/mpeg")},
                headers=api.headers,
            )
            assert r.status_code == 201, r.text
            body = {"to": RECIPIENT, "use_case_id": use_case["id"], "media_id": r.json()["id"]}

            async def leased() -> int:
                conn = await asyncpg.connect(pg)
                try:
                    return int(await conn.fetchval(
                        "SELECT count(*) FROM voicemail_sends WHERE account_id = $1 AND status = 'accepted' "
                        "AND claimed_until > now()", api.account_id,
                    ))  # fmt: skip
                finally:
                    await conn.close()

            with cluster.supervisor_paused():  # n1 stays dead until the end of the block
                # created through n1, claimed by n1 at once (n0 looks only every 600 s)
                sends = [
                    (await api.post(f"{on_n1}/v1/voicemails", body, status=202))["id"]
                    for _ in range(4)
                ]
                deadline = time.monotonic() + BOUND
                while await leased() < len(sends):
                    assert time.monotonic() < deadline, "n1 never claimed the sends"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # its calls to the carrier are under way
                cluster.kill("n1")
                # the lease's end, brought forward (it is minutes long: a whole attempt and more)
                conn = await asyncpg.connect(pg)
                try:
                    moved = await conn.execute(
                        "UPDATE voicemail_sends SET claimed_until = now() - interval '1 second' "
                        "WHERE account_id = $1 AND claimed_until IS NOT NULL",
                        api.account_id,
                    )
                finally:
                    await conn.close()
                assert moved == f"UPDATE {len(sends)}"
                # one more send through n0 wakes its worker, which finds the expired leases
                sends.append(
                    (await api.post(f"{n0['http_url']}/v1/voicemails", body, status=202))["id"]
                )
                deadline = time.monotonic() + 90
                while True:
                    r = await http.get(
                        f"{n0['http_url']}/v1/voicemails",
                        params={"limit": 100},
                        headers=api.headers,
                    )
                    statuses = {s["id"]: s["status"] for s in r.json()["items"]}
                    if all(statuses.get(s) in ("delivered", "failed") for s in sends):
                        break
                    assert time.monotonic() < deadline, Counter(statuses.values())
                    await asyncio.sleep(0.3)
                assert [statuses[s] for s in sends] == ["delivered"] * len(sends)
            # the carrier holds one message per send
            deadline = time.monotonic() + 30
            while True:
                names = Counter(m["call_id"] for m in await api_b.messages(inbox["id"]))
                if {f"rvm_{s}" for s in sends} <= set(names) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert {f"rvm_{s}" for s in sends} <= set(names)
            assert max(names.values()) == 1
    cluster.wait_ready("n1", restarts=restarts_before + 1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- last: the cluster's own stop ---------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_sigterm_drains_the_calls_then_stops_everything(
    cluster: Cluster, sipp_bin: str, tmp_path: Path
) -> None:
    """(Stops the module's cluster: the last test of the file.)"""
    status = cluster.status()
    caller_pcap(tmp_path / "sipp", silence(LEAD_MS), speech(3.0, seed=3))
    async with httpx.AsyncClient(base_url=cluster.node("n0")["http_url"], timeout=10) as http:
        api = await cluster_api(cluster, http)
        mailbox = await mailbox_at(api, "2025550113", skip_instructions=True)
    sipp = await start_sipp(
        sipp_bin,
        tmp_path / "sipp",
        cluster.proxy_port,
        "2025550113",
        calls=2,
        rate=10,
        hold_ms=LEAD_MS + 3400,
    )
    try:
        spools = [cluster.spool("n0"), cluster.spool("n1")]
        await wait_until(
            lambda: sum(e["pcm_bytes"] > 0 for s in spools for e in spooled(s).values()) >= 2,
            "both calls recording",
        )
        cluster.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert (
                await sipp.wait() == 0
            )  # both calls ended normally, their BYEs relayed by Kamailio
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
    assert await asyncio.to_thread(cluster.process.wait, 60) == 0
    pids = [status["proxy"]["pid"], *(n["pid"] for n in status["nodes"])]
    assert not [pid for pid in pids if alive(pid)]
    log = await asyncio.to_thread(cluster.log.read_text)
    assert "stopping: the nodes drain their calls, then Kamailio stops" in log
    trace = read_trace((tmp_path / "sipp" / "messages.log").read_text(errors="replace"))
    assert len(trace) == 2 and all(c.completed for c in trace.values())
    pg = cluster.env["AFTERBEEP_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(pg)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE mailbox_id = $1", mailbox["id"]
        )
    finally:
        await conn.close()
    assert stored == 2
