"""Transcription never delays a call: N spoken deposits at once into the real ``afterbeep
serve``, with AFTERBEEP_TRANSCRIBE off and then on; INVITE-to-200 compared, and every message's
transcript awaited.

Each run starts a fresh service (SQLite, local storage, an aiosmtpd server for the emails); a
SIPp caller (`benchmarks.sip_load`'s scenario) places N calls within about a second, each
speaking one espeak-ng sentence after the beep; as soon as those N messages are stored, N more
calls come at once, answered while (transcription on) the first N are being transcribed. Measured per run: SIPp's
INVITE-to-200 (p50 / p99 / max, whole milliseconds) and the service's own histogram; calls
failed; recordings compared with the audio sent; with transcription on, how many messages end
`done` and how long after the last call the last transcript was written, and whether each
holds the sentence's key words.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tests.fixtures.rtp_pcap import RtpStreamBuilder, g711_roundtrip, write_pcap
from tests.fixtures.smtp import smtp_server

from afterbeep.audio.levels import DEFAULT_SILENCE_THRESHOLD, trim_trailing_silence
from afterbeep.telephony.media import Codec
from afterbeep.telephony.prompts import beep, prompt
from benchmarks.sip_load.run import (
    BIN,
    LEAD_MS,
    SCENARIO,
    TAIL_MS,
    DepositApi,
    Pcm,
    Result,
    check_recordings,
    cpu_seconds,
    free_port,
    process,
    read_wav,
    report,
    run_sipp,
    scraped_invite_to_200,
    service_env,
    wait_for,
    wait_ready,
)
from benchmarks.sip_load.run import _healthy as healthy

SENTENCE = "Hi, this is John. The delivery will arrive tomorrow morning."
KEY_WORDS = ("tomorrow", "morning")
MAX_CALLS = 200


@dataclass
class Run:
    transcribe: str
    sip: Result
    invite_to_200_service: str = ""
    transcripts_done: int = 0
    transcripts_failed: int = 0
    transcripts_with_key_words: int = 0
    transcribed_after_s: float | None = None
    wave1_invite_to_200_ms: dict[str, float] = field(default_factory=dict)
    calls_ok: bool = False
    recordings_ok: bool = False
    notes: list[str] = field(default_factory=list)


def spoken(text: str) -> Pcm:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "130", "--stdout", text],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip
    pcm, rate = sf.read(io.BytesIO(wav), dtype="int16")
    samples = np.asarray(soxr.resample(pcm, rate, 8000)).astype(np.int16)
    return samples[: len(samples) // 160 * 160]  # whole 20 ms packets


def wave_dir(work: Path, name: str, speech: Pcm) -> Path:
    """A SIPp working directory: the caller scenario and the pcap of the sentence."""
    directory = work / name
    directory.mkdir()
    hold_ms = len(speech) // 8
    write_pcap(directory / "speech.pcap", RtpStreamBuilder(Codec.PCMU, 20, 101).audio(speech).take())
    prompts_ms = (len(prompt("vm-greeting")) + len(prompt("vm-instructions")) + len(beep())) // 8
    wait = f'<pause milliseconds="{prompts_ms + LEAD_MS}"/>'
    (directory / "caller.xml").write_text(
        SCENARIO.replace("{wait}", wait).replace("{hold_ms}", str(hold_ms + TAIL_MS))
    )
    return directory


def one_run(args: argparse.Namespace, transcribe: str, speech: Pcm) -> Run:
    """Wave 1: N deposits at once. Wave 2: N more at once as soon as wave 1's messages are
    stored, so that (transcription on) they are answered while the post-call process is busy
    transcribing wave 1. INVITE-to-200 is that of wave 2; the transcripts of both are awaited."""
    work = Path(tempfile.mkdtemp(prefix=f"transcribe_load_{transcribe}_"))
    sipp_args = argparse.Namespace(
        rate=args.calls, concurrency=args.calls, calls=args.calls, time_limit=args.time_limit
    )
    hold_s = len(speech) / 8000
    first = Result("deposit", args.calls, args.calls, args.calls, hold_s)
    result = Result("deposit", args.calls, args.calls, args.calls, hold_s)
    run = Run(transcribe, result)
    sip_port = free_port()
    http_port = free_port(socket.SOCK_STREAM)
    url = f"http://127.0.0.1:{http_port}"
    with smtp_server() as smtp:
        env = service_env(
            work / "var",
            sip_port,
            args.calls + 200,
            {
                "AFTERBEEP_HTTP_ADDR": f"127.0.0.1:{http_port}",
                "AFTERBEEP_SMTP_URL": smtp.url(),
                "AFTERBEEP_TRANSCRIBE": transcribe,
            },
        )
        log = work / "service.log"
        with process([str(BIN / "afterbeep"), "serve"], env, log) as proc:
            wait_ready(proc, log, lambda: healthy(url))
            api = DepositApi(url, env)
            run_sipp(sipp_args, wave_dir(work, "wave1", speech), sip_port, first, proc.pid)
            wait_for(api.messages, lambda m: len(m) >= first.successful, 120)
            busy = [m["transcription_status"] for m in api.messages()].count("pending")
            run.notes.append(f"wave 2 started with {busy} transcription(s) pending")
            start_cpu = cpu_seconds(proc.pid)
            run_sipp(sipp_args, wave_dir(work, "wave2", speech), sip_port, result, proc.pid)
            calls_ended = time.monotonic()
            total = first.successful + result.successful
            messages = wait_for(api.messages, lambda m: len(m) >= total, 120)
            result.messages_stored_after_s = time.monotonic() - calls_ended
            result.cpu_seconds_total = cpu_seconds(proc.pid) - start_cpu  # the call process
            result.cpu_ms_per_call = 1000 * result.cpu_seconds_total / max(1, result.created)
            if transcribe == "on":
                messages = wait_for(
                    api.messages,
                    lambda m: all(x["transcription_status"] != "pending" for x in m),
                    args.drain_seconds,
                )
                run.transcribed_after_s = time.monotonic() - calls_ended
            statuses = [m["transcription_status"] for m in messages]
            run.transcripts_done = statuses.count("done")
            run.transcripts_failed = statuses.count("failed")
            run.transcripts_with_key_words = sum(
                1
                for m in messages
                if m["transcript"] and all(w in m["transcript"]["text"].lower() for w in KEY_WORDS)
            )
            # What a hang-up keeps: the sentence up to 200 ms after its last sound.
            reference = trim_trailing_silence(
                g711_roundtrip(Codec.PCMU, speech), DEFAULT_SILENCE_THRESHOLD, 200
            )
            check_recordings(result, reference, (read_wav(api.audio(m["id"])) for m in messages))
            run.recordings_ok = (
                result.recordings == total == 2 * args.calls and result.mismatches == 0
            )
            run.calls_ok = all(
                r.sipp_exit == 0 and r.failed == 0 and r.successful == args.calls
                for r in (first, result)
            )
            run.invite_to_200_service = scraped_invite_to_200(url)
            run.wave1_invite_to_200_ms = first.invite_to_200_ms
    report(result, work)  # its PASSED counts wave 2's calls against both waves' recordings
    if not args.keep and run.calls_ok and run.recordings_ok:
        shutil.rmtree(work, ignore_errors=True)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=50, help="deposits placed at once")
    parser.add_argument("--runs", type=int, default=1, help="off/on pairs")
    parser.add_argument("--time-limit", type=int, default=120, help="SIPp -timeout, seconds")
    parser.add_argument("--drain-seconds", type=float, default=900, help="wait for transcripts")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= MAX_CALLS or not 1 <= args.runs <= 5 or args.drain_seconds > 3600:
        parser.error(f"bounded: 1 to {MAX_CALLS} calls, 1 to 5 runs, 3600 s of draining")
    speech = spoken(SENTENCE)
    runs: list[Run] = []
    for _ in range(args.runs):
        for transcribe in ("off", "on"):
            runs.append(one_run(args, transcribe, speech))
    print()
    print("| transcribe | wave 2 calls ok / failed | wave 2 INVITE→200 p50 / p99 / max ms (SIPp) | "
          "wave 1 p99 | service-side, both waves | loop thread waiting for a CPU, wave 2 | "
          "recordings exact | transcripts done / with key words | last transcript after wave 2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        r, lat = run.sip, run.sip.invite_to_200_ms
        after = f"{run.transcribed_after_s:.0f} s" if run.transcribed_after_s is not None else "-"
        print(
            f"| {run.transcribe} | {r.successful} / {r.failed} | "
            f"{lat.get('p50', float('nan')):.0f} / {lat.get('p99', float('nan')):.0f} / "
            f"{lat.get('max', float('nan')):.0f} | "
            f"{run.wave1_invite_to_200_ms.get('p99', float('nan')):.0f} | "
            f"{run.invite_to_200_service} | {r.loop_thread_waiting_s:.1f} s | "
            f"{r.recordings_exact} / {r.recordings} | "
            f"{run.transcripts_done} / {run.transcripts_with_key_words} | {after} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=2, default=str))
    ok = all(
        run.calls_ok
        and run.recordings_ok
        and (run.transcribe == "off" or run.transcripts_done == 2 * args.calls)
        for run in runs
    )
    sys.exit(0 if ok else 1)
