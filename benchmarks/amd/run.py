"""`python -m benchmarks.amd [--corpus DIR | --generate N] ...`: accuracy, error shares, decision
times, beep timing and CPU per frame of `afterbeep.audio.amd` and the app_amd baseline over a
folder of 8 kHz mono WAV files with a `labels.csv` (`file,label,beep_end_ms[,voice,...]`).

With ``--words``, also the detector listening to the first turn's words: each first turn is
transcribed when the detector asks (tiny.en / base, `WhisperEngine.transcribe_turn`), the
process CPU time of that transcription is measured, and the text is handed to the detector
that many 20 ms frames of audio later, as if a free core had transcribed it while the call
went on. Transcripts and their CPU times are cached in ``DIR/words_cache.json`` (keyed by
file and turn), so a rerun with other thresholds transcribes only turns it has not seen."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.audio.amd import AmdDecision, AnsweredBy, MachineDetector
from afterbeep.audio.amd_corpus import TUNING_VOICES, VOICES, generate
from afterbeep.audio.amd_cues import cue_language, load_cues
from afterbeep.audio.app_amd import AppAmd
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.amd_words import WordsSettings

FRAME = 160
MACHINE_LABELS = frozenset({"machine_beep", "machine_nobeep"})


class Detector(Protocol):
    def feed(self, pcm: npt.NDArray[np.int16]) -> list[AmdDecision]: ...
    def finish(self) -> list[AmdDecision]: ...


@dataclass(frozen=True, slots=True)
class Item:
    file: str
    label: str
    beep_end_ms: int | None
    voice: str
    kind: str
    carrier_ms: int = 0

    @property
    def language(self) -> str:
        return VOICES.get(self.voice, "en")


@dataclass(slots=True)
class Outcome:
    item: Item
    decisions: list[AmdDecision]
    frames: int
    seconds: float
    words_cpu_s: float | None = None  # transcription of the first turn
    words_late_ms: int | None = None  # audio from asking for the words to getting them

    @property
    def final(self) -> AmdDecision:
        return self.decisions[-1]

    @property
    def first(self) -> AmdDecision:
        return self.decisions[0]


class Words:
    """Transcribes first turns for the benchmark, measuring process CPU time, with a cache."""

    def __init__(self, cache: Path) -> None:
        from afterbeep.asr.whisper import WhisperEngine

        self._engine = WhisperEngine(threads=1)
        self._path = cache
        self._cache: dict[str, list[Any]] = json.loads(cache.read_text()) if cache.exists() else {}
        self.fresh = 0

    def transcribe(self, key: str, audio: npt.NDArray[np.int16], language: str) -> tuple[str, float]:
        if key not in self._cache:
            self._engine.check(language)  # the model's load is not the turn's CPU
            began = time.process_time()
            text = self._engine.transcribe_turn(audio, language)
            self._cache[key] = [text, time.process_time() - began]
            self.fresh += 1
            if self.fresh % 50 == 0:
                self.save()
        text, cpu = self._cache[key]
        return str(text), float(cpu)

    def save(self) -> None:
        self._path.write_text(json.dumps(self._cache))


def correct(label: str, answered_by: AnsweredBy) -> bool:
    """human -> human; machine_* labels -> any machine_* decision; fax -> fax; unknown is wrong."""
    if label == "human":
        return answered_by is AnsweredBy.HUMAN
    if label in MACHINE_LABELS:
        return answered_by.value.startswith("machine_")
    return label == "fax" and answered_by is AnsweredBy.FAX


def read_labels(corpus: Path) -> list[Item]:
    items = []
    with open(corpus / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            beep = (row.get("beep_end_ms") or "").strip()
            items.append(Item(row["file"], row["label"].strip(), int(float(beep)) if beep else None,
                              row.get("voice", "") or "", row.get("kind", "") or "",
                              int(float(row.get("carrier_ms") or 0))))
    return items


def run_one(make: Callable[[], Detector], pcm: npt.NDArray[np.int16], item: Item) -> Outcome:
    detector = make()
    decisions: list[AmdDecision] = []
    frames = 0
    started = time.perf_counter()
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        frames += 1
        got = detector.feed(pcm[i : i + FRAME])
        decisions.extend(got)
        if got and got[-1].final:
            break
    seconds = time.perf_counter() - started
    if not decisions or not decisions[-1].final:
        decisions.extend(detector.finish())
    return Outcome(item, decisions, frames, seconds)


def run_words(
    pcm: npt.NDArray[np.int16], item: Item, words: Words, *, instant: bool = False, settings: WordsSettings | None = None
) -> Outcome:
    """The detector with words: a turn asked for at frame k is heard at frame k + its CPU time
    in frames (``instant``: at frame k + 1)."""
    language = cue_language(item.language) or "en"
    detector = MachineDetector(cues=load_cues(language), words=settings)
    decisions: list[AmdDecision] = []
    frames = 0
    seconds = 0.0
    due: tuple[int, str] | None = None
    cpu: float | None = None
    late: int | None = None
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        frames += 1
        if due is not None and frames >= due[0]:
            detector.hear(due[1])
            due = None
        started = time.perf_counter()
        got = detector.feed(pcm[i : i + FRAME])
        seconds += time.perf_counter() - started
        decisions.extend(got)
        if got and got[-1].final:
            break
        turn = detector.turn_to_transcribe()
        if turn is not None:
            text, cpu = words.transcribe(f"{item.file}:{detector.elapsed_ms}:{len(turn)}", turn, language)
            wait = 1 if instant else max(1, math.ceil(cpu * 1000 / 20))
            late = wait * 20
            due = (frames + wait, text)
    if not decisions or not decisions[-1].final:
        decisions.extend(detector.finish())
    return Outcome(item, decisions, frames, seconds, cpu, late)


def pct(values: Iterable[float], q: float) -> float | None:
    v = list(values)
    return float(np.percentile(v, q)) if v else None


@dataclass(slots=True)
class Report:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        o = self.outcomes
        humans = [x for x in o if x.item.label == "human"]
        humans_here = [x for x in humans if not x.item.carrier_ms]
        turns = [x for x in o if x.words_cpu_s is not None]
        machines = [x for x in o if x.item.label in MACHINE_LABELS]
        beeps = [x for x in o if x.item.label == "machine_beep" and x.item.beep_end_ms is not None]
        found = [x for x in beeps if x.final.answered_by is AnsweredBy.MACHINE_END_BEEP
                 and x.final.beep_end_ms is not None]
        errors = [abs(x.final.beep_end_ms - x.item.beep_end_ms) for x in found]  # type: ignore[operator]
        late = [x.final.detection_ms - x.item.beep_end_ms for x in found]  # type: ignore[operator]
        frames = sum(x.frames for x in o)
        return {
            "files": len(o),
            "accuracy_pct": 100 * sum(correct(x.item.label, x.final.answered_by) for x in o) / max(1, len(o)),
            "humans": len(humans),
            "humans_as_machine_pct": 100 * sum(x.final.answered_by.value.startswith("machine_") or x.first.answered_by is AnsweredBy.MACHINE_START for x in humans) / max(1, len(humans)),
            "machines": len(machines),
            "machines_as_human_pct": 100 * sum(x.final.answered_by is AnsweredBy.HUMAN for x in machines) / max(1, len(machines)),
            "unknown_pct": 100 * sum(x.final.answered_by is AnsweredBy.UNKNOWN for x in o) / max(1, len(o)),
            "unknown_humans_pct": 100 * sum(x.final.answered_by is AnsweredBy.UNKNOWN for x in humans) / max(1, len(humans)),
            "human_decision_nocarrier_p50_ms": pct((x.final.detection_ms for x in humans_here), 50),
            "human_decision_nocarrier_p95_ms": pct((x.final.detection_ms for x in humans_here), 95),
            "human_decision_p50_ms": pct((x.final.detection_ms for x in humans), 50),
            "human_decision_p95_ms": pct((x.final.detection_ms for x in humans), 95),
            "decision_p50_ms": pct((x.first.detection_ms for x in o), 50),
            "decision_p95_ms": pct((x.first.detection_ms for x in o), 95),
            "beep_files": len(beeps),
            "beep_found_pct": 100 * len(found) / max(1, len(beeps)),
            "beep_end_err_p50_ms": pct(errors, 50),
            "beep_end_err_p95_ms": pct(errors, 95),
            "beep_end_err_max_ms": max(errors) if errors else None,
            "beep_within_100ms_pct": 100 * sum(e <= 100 for e in errors) / max(1, len(beeps)),
            "beep_reported_after_end_p95_ms": pct(late, 95),
            "us_per_frame": 1e6 * sum(x.seconds for x in o) / max(1, frames),
            "transcribed_pct": 100 * len(turns) / max(1, len(o)) if turns else None,
            "words_cpu_p50_ms": pct((1000 * x.words_cpu_s for x in turns if x.words_cpu_s is not None), 50),
            "words_cpu_p95_ms": pct((1000 * x.words_cpu_s for x in turns if x.words_cpu_s is not None), 95),
            "words_cpu_mean_ms": (1000 * sum(x.words_cpu_s or 0 for x in turns) / len(turns)) if turns else None,
            "words_late_p50_ms": pct((x.words_late_ms for x in turns if x.words_late_ms is not None), 50),
        }


ROWS = [
    ("files", "files", "{:.0f}"),
    ("accuracy (%)", "accuracy_pct", "{:.1f}"),
    ("people classed as machines (%)", "humans_as_machine_pct", "{:.2f}"),
    ("machines classed as people (%)", "machines_as_human_pct", "{:.2f}"),
    ("unknown (%)", "unknown_pct", "{:.2f}"),
    ("unknown on people (%)", "unknown_humans_pct", "{:.2f}"),
    ("decision on people p50, no carrier silence (ms)", "human_decision_nocarrier_p50_ms", "{:.0f}"),
    ("decision on people p95, no carrier silence (ms)", "human_decision_nocarrier_p95_ms", "{:.0f}"),
    ("decision on people p50 (ms)", "human_decision_p50_ms", "{:.0f}"),
    ("decision on people p95 (ms)", "human_decision_p95_ms", "{:.0f}"),
    ("first decision, all, p50 (ms)", "decision_p50_ms", "{:.0f}"),
    ("first decision, all, p95 (ms)", "decision_p95_ms", "{:.0f}"),
    ("beeps found (%)", "beep_found_pct", "{:.1f}"),
    ("beep end error p50 (ms)", "beep_end_err_p50_ms", "{:.0f}"),
    ("beep end error p95 (ms)", "beep_end_err_p95_ms", "{:.0f}"),
    ("beep end error max (ms)", "beep_end_err_max_ms", "{:.0f}"),
    ("beeps with end within 100 ms (%)", "beep_within_100ms_pct", "{:.1f}"),
    ("beep reported after its end p95 (ms)", "beep_reported_after_end_p95_ms", "{:.0f}"),
    ("CPU per 20 ms frame (µs)", "us_per_frame", "{:.1f}"),
    ("files whose first turn was transcribed (%)", "transcribed_pct", "{:.1f}"),
    ("CPU per transcription p50 (ms)", "words_cpu_p50_ms", "{:.0f}"),
    ("CPU per transcription p95 (ms)", "words_cpu_p95_ms", "{:.0f}"),
    ("CPU per transcription mean (ms)", "words_cpu_mean_ms", "{:.0f}"),
    ("words back after (audio ms) p50", "words_late_p50_ms", "{:.0f}"),
]


def table(columns: dict[str, dict[str, Any]]) -> str:
    names = list(columns)
    width = max(len(r[0]) for r in ROWS)
    lines = [f"| {'':<{width}} | " + " | ".join(names) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * (len(n) + 2) for n in names) + "|"]
    for title, key, fmt in ROWS:
        cells = []
        for n in names:
            v = columns[n].get(key)
            cells.append(f"{'-' if v is None else fmt.format(v):>{len(n)}}")
        lines.append(f"| {title:<{width}} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.amd", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="a folder with WAV files and labels.csv")
    source.add_argument("--generate", type=int, metavar="N", help="generate N files first (espeak-ng)")
    parser.add_argument("--seed", type=int, default=2024, help="seed for --generate")
    parser.add_argument("--out", type=Path, help="where --generate writes (default: a temp dir)")
    parser.add_argument("--tuned-voices", default=",".join(sorted(TUNING_VOICES)),
                        help="voices the detector was tuned on: also report the others apart")
    parser.add_argument("--errors", action="store_true", help="list the files our detector got wrong")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--words", action="store_true", help="also the detector with words (first turn transcribed)")
    parser.add_argument("--instant", action="store_true", help="with --words: also with words back at once")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=MS",
                        help="with --words: a WordsSettings field (tuning)")
    parser.add_argument("--only", help="with --words: comma-separated labels to run (tuning)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = args.out or Path(tmp)
            print(f"generating {args.generate} files (seed {args.seed}) in {corpus}", file=sys.stderr)
            generate(corpus, args.generate, args.seed)
        items = read_labels(corpus)
        if args.only:
            items = [i for i in items if i.label in args.only.split(",")]
        ours, baseline = Report("afterbeep"), Report("app_amd")
        with_words, instant = Report("words"), Report("instant")
        words = Words(corpus / "words_cache.json") if args.words else None
        tuned_words = WordsSettings(**{k: int(v) for k, v in (x.split("=") for x in args.set)})
        for item in items:
            pcm, rate = read_wav_pcm(corpus / item.file)
            if rate != 8000:
                raise SystemExit(f"{item.file}: {rate} Hz, the benchmark takes 8 kHz files")
            ours.outcomes.append(run_one(MachineDetector, pcm, item))
            baseline.outcomes.append(run_one(AppAmd, pcm, item))
            if words is not None:
                with_words.outcomes.append(run_words(pcm, item, words, settings=tuned_words))
                if args.instant:
                    instant.outcomes.append(run_words(pcm, item, words, instant=True, settings=tuned_words))
        if words is not None:
            words.save()

    tuned = {v for v in args.tuned_voices.split(",") if v}
    columns = {"afterbeep": ours.figures(), "app_amd": baseline.figures()}
    if words is not None:
        columns = {"words": with_words.figures(), "words off": ours.figures(), "app_amd": baseline.figures()}
        if args.instant:
            columns["words, at once"] = instant.figures()
        unseen = [x for x in with_words.outcomes if x.item.voice and x.item.voice not in tuned]
        if unseen and tuned:
            columns["words, unseen voices"] = Report("u", unseen).figures()
        ours = with_words
    if words is None and any(x.item.voice for x in ours.outcomes) and tuned:
        held = Report("held-out", [x for x in ours.outcomes if x.item.voice and x.item.voice not in tuned])
        if held.outcomes:
            columns["afterbeep, unseen voices"] = held.figures()
            columns["app_amd, unseen voices"] = Report(
                "b", [x for x in baseline.outcomes if x.item.voice and x.item.voice not in tuned]
            ).figures()
    print(f"corpus: {corpus} ({len(items)} files: "
          + ", ".join(f"{lab} {sum(i.label == lab for i in items)}" for lab in ("human", "machine_beep", "machine_nobeep", "fax"))
          + ")")
    print(table(columns))
    if args.errors:
        for x in ours.outcomes:
            if not correct(x.item.label, x.final.answered_by) or (
                x.item.label == "human" and x.first.answered_by is AnsweredBy.MACHINE_START
            ) or (x.item.beep_end_ms is not None and (x.final.beep_end_ms is None or abs(x.final.beep_end_ms - x.item.beep_end_ms) > 100)):
                print(x.item.file, x.item.label, x.item.voice, x.item.kind, x.item.beep_end_ms,
                      [(d.answered_by.value, d.detection_ms, d.cause, d.beep_end_ms) for d in x.decisions],
                      repr(x.final.transcript), x.final.cue)
    if args.json:
        args.json.write_text(json.dumps(columns, indent=2))
