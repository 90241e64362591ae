"""`python -m benchmarks.amd.words_cpu --corpus DIR [--files N]`: CPU time per detection with
words, and how many detections one core holds at once.

Runs the detector with words over the first N files per language of an AMD corpus
(`scripts/make_amd_corpus.py`), transcribing each first turn when asked (no cache), and
measures process CPU time (`time.process_time`, so other work on a shared box does not count)
for the whole detection: every 20 ms frame until the final decision, plus the transcription.
One core holds about (audio seconds a detection listens) / (CPU seconds it takes) detections
at once; the transcriptions themselves are bounded by AFTERBEEP_AMD_WORDS_CONCURRENCY.
Models are loaded before measuring (a node loads each once)."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from afterbeep.asr.whisper import WhisperEngine
from afterbeep.audio.amd import FRAME, MachineDetector
from afterbeep.audio.amd_cues import load_cues
from afterbeep.audio.rendition import read_wav_pcm
from benchmarks.amd.run import read_labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.amd.words_cpu", description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--files", type=int, default=40, help="files per language")
    args = parser.parse_args(argv)
    engine = WhisperEngine(threads=1)
    per_language: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for item in read_labels(args.corpus):
        language = item.language
        if len(per_language[language]) >= args.files:
            continue
        engine.check(language)
        pcm, _ = read_wav_pcm(args.corpus / item.file)
        detector = MachineDetector(cues=load_cues(language))
        words_cpu = 0.0
        began = time.process_time()
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            detector.feed(pcm[i : i + FRAME])
            if detector.decision is not None:
                break
            turn = detector.turn_to_transcribe()
            if turn is not None:
                start = time.process_time()
                detector.hear(engine.transcribe_turn(turn, language))
                words_cpu += time.process_time() - start
        if detector.decision is None:
            detector.finish()
        total = time.process_time() - began
        per_language[language].append((total, words_cpu, detector.elapsed_ms / 1000))
    print("| language | detections | CPU per detection mean / p95 (ms) | of which words (ms) "
          "| audio listened mean (s) | detections one core holds |")
    print("|---|---|---|---|---|---|")
    everything = [x for runs in per_language.values() for x in runs]
    for name, runs in [*sorted(per_language.items()), ("all", everything)]:
        cpu = np.array([r[0] for r in runs])
        words = np.array([r[1] for r in runs])
        audio = np.array([r[2] for r in runs])
        print(f"| {name} | {len(runs)} | {1000 * cpu.mean():.0f} / {1000 * np.percentile(cpu, 95):.0f} "
              f"| {1000 * words.mean():.0f} | {audio.mean():.1f} | {audio.sum() / cpu.sum():.0f} |")


if __name__ == "__main__":
    main()
