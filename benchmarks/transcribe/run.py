"""`python -m benchmarks.transcribe`: word error rate, real-time factor and peak memory of
`afterbeep.asr.WhisperEngine` on recorded speech through a G.711 round trip.

Each language runs in a child process of its own (so each peak memory is one model's), pinned
to one CPU with ``AFTERBEEP_ASR_THREADS`` threads (1 by default), and reports as JSON:
- WER over every kept prompt transcribed alone (``clips``: 1-15 s, as short messages are), and
  over the same prompts gathered into messages of up to ``--message-seconds`` (``messages``);
- the real-time factor (transcription seconds / audio seconds, model already loaded) of
  messages of exactly 5 s and 60 s (and ``--long-seconds``), median of ``--repeat`` runs, in
  CPU seconds of the process (what one core spends; the figure that does not depend on what
  else the machine runs) and in wall-clock seconds (which does);
- resident memory: after loading, and the peak (VmHWM) after the 60 s and the long message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.transcribe.corpus import SOUNDS, grouped, message_of, prompts, telephone_audio
from benchmarks.transcribe.wer import Score, score

LANGUAGES = ("en", "es", "fr")


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One language, in this process: pin, load, measure."""
    if args.cpu is not None and args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    from afterbeep.asr.whisper import WhisperEngine

    language = args.worker
    items = prompts(language, Path(args.sounds))
    if args.limit:
        items = items[: args.limit]
    engine = WhisperEngine(threads=int(os.environ.get("AFTERBEEP_ASR_THREADS", "1")), beam_size=args.beam_size,
                            vad=args.vad)
    started = time.perf_counter()
    engine.check(language)
    load_seconds = time.perf_counter() - started
    rss_loaded = _memory_mb("VmRSS")
    result: dict[str, Any] = {
        "language": language, "prompts": len(items), "beam_size": args.beam_size, "vad": args.vad,
        "threads": engine.threads, "cpu": args.cpu, "load_seconds": round(load_seconds, 2),
        "rss_after_load_mb": round(rss_loaded, 1),
    }

    clip_items: list[dict[str, str]] = []
    clip_audio = clip_time = 0.0
    for item in items:
        audio = telephone_audio(item.path)
        started = time.perf_counter()
        text = engine.transcribe(audio, language).text
        clip_time += time.perf_counter() - started
        clip_audio += len(audio) / 8000
        clip_items.append({"name": item.name, "reference": item.text, "transcript": text})
    result["clips"] = {"audio_seconds": round(clip_audio, 1), "rtf": round(clip_time / clip_audio, 4),
                       "items": clip_items}

    message_items: list[dict[str, str]] = []
    message_audio = message_time = 0.0
    for audio, reference in grouped(items, args.message_seconds):
        started = time.perf_counter()
        text = engine.transcribe(audio, language).text
        message_time += time.perf_counter() - started
        message_audio += len(audio) / 8000
        message_items.append({"reference": reference, "transcript": text})
    result["messages"] = {"audio_seconds": round(message_audio, 1), "rtf": round(message_time / message_audio, 4),
                          "items": message_items}

    rtf: dict[str, float] = {}
    rtf_wall: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for seconds in (5.0, 60.0, *([args.long_seconds] if args.long_seconds else [])):
        audio = message_of(items, seconds)
        cpu_runs, wall_runs = [], []
        for _ in range(args.repeat if seconds <= 60 else 1):
            started, started_cpu = time.perf_counter(), time.process_time()
            engine.transcribe(audio, language)
            cpu_runs.append((time.process_time() - started_cpu) / seconds)
            wall_runs.append((time.perf_counter() - started) / seconds)
        rtf[f"{seconds:g}s"] = round(statistics.median(cpu_runs), 4)
        rtf_wall[f"{seconds:g}s"] = round(statistics.median(wall_runs), 4)
        peaks[f"after_{seconds:g}s"] = round(_memory_mb("VmHWM"), 1)
    result["rtf"] = rtf
    result["rtf_wall"] = rtf_wall
    result["peak_rss_mb"] = peaks
    return scored(result)


def scored(result: dict[str, Any]) -> dict[str, Any]:
    """WER of the clips and the messages from the transcripts kept in ``result`` (so that a
    saved run can be scored again with `--rescore` when the normaliser changes)."""
    language = result["language"]
    for kind in ("clips", "messages"):
        total = Score(0, 0)
        for item in result[kind]["items"]:
            one = score(item["reference"], item["transcript"], language)
            item["edits"] = one.edits
            total += one
        result[kind].update(wer=round(total.wer, 4), edits=total.edits, words=total.reference_words)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transcribe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated: en,es,fr")
    parser.add_argument("--limit", type=int, default=0, help="first N kept prompts per language (0: all)")
    parser.add_argument("--beam-size", type=int, default=None, help="default: the engine's")
    parser.add_argument("--vad", action="store_true", help="with faster-whisper's voice activity filter")
    parser.add_argument("--message-seconds", type=float, default=45.0)
    parser.add_argument("--long-seconds", type=float, default=600.0, help="0: no long message")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin each worker to (default: the last one; -1: none)")
    parser.add_argument("--sounds", default=str(SOUNDS))
    parser.add_argument("--errors", action="store_true", help="print every prompt with an error")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--rescore", help="score the transcripts of a saved --json run again, transcribe nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.beam_size is None:
        from afterbeep.asr.whisper import DEFAULT_BEAM_SIZE

        args.beam_size = DEFAULT_BEAM_SIZE
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    if args.rescore:
        results = [scored(r) for r in json.loads(Path(args.rescore).read_text())]
        report(results, args)
        return 0
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    results = []
    for language in args.languages.split(","):
        command = [sys.executable, "-m", "benchmarks.transcribe", "--worker", language, "--cpu", str(cpu),
                   "--limit", str(args.limit), "--beam-size", str(args.beam_size),
                   "--message-seconds", str(args.message_seconds), "--long-seconds", str(args.long_seconds),
                   "--repeat", str(args.repeat), "--sounds", args.sounds, *(["--vad"] if args.vad else [])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"load average when the last worker ended: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    report(results, args)
    return 0


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    header = ("lang", "model", "prompts", "clips WER", "messages WER", "RTF 5 s", "RTF 60 s", "RTF long",
              "wall RTF 5 s / 60 s",
              "RSS loaded MB", "peak MB 60 s", "peak MB long", "load s")
    print(" | ".join(header))
    for r in results:
        long_key = next((k for k in r["rtf"] if k not in ("5s", "60s")), None)
        print(" | ".join(str(x) for x in (
            r["language"], "tiny.en" if r["language"] == "en" else "base", r["prompts"],
            f"{r['clips']['wer']:.2%} ({r['clips']['edits']}/{r['clips']['words']})",
            f"{r['messages']['wer']:.2%} ({r['messages']['edits']}/{r['messages']['words']})",
            r["rtf"]["5s"], r["rtf"]["60s"], r["rtf"].get(long_key, "-") if long_key else "-",
            f"{r['rtf_wall']['5s']} / {r['rtf_wall']['60s']}",
            r["rss_after_load_mb"], r["peak_rss_mb"]["after_60s"],
            r["peak_rss_mb"].get(f"after_{long_key}", "-") if long_key else "-", r["load_seconds"],
        )))
        if args.errors:
            for e in r["clips"]["items"]:
                if e["edits"]:
                    print(f"  {e['name']}: {e['edits']} | {e['reference']} | {e['transcript']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))
