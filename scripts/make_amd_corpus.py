"""Generate the labelled answering machine detection corpus: 8 kHz mono WAV files + labels.csv.

    .venv/bin/python scripts/make_amd_corpus.py OUT_DIR [--count N] [--seed S] [--voices a,b]

Needs espeak-ng (Debian package ``espeak-ng``). Deterministic for a given seed and count; see
``afterbeep.audio.amd_corpus`` for what is in it. ``labels.csv`` has ``file,label,beep_end_ms``
(label human | machine_beep | machine_nobeep | fax) and, for the breakdowns, ``voice, kind,
snr_db, loss, codec``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from afterbeep.audio.amd_corpus import VOICES, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--voices", default=",".join(VOICES), help="espeak-ng voices, comma separated")
    args = parser.parse_args()
    voices = tuple(v for v in args.voices.split(",") if v)
    samples = generate(args.out_dir, args.count, args.seed, voices)
    counts = Counter(s.label for s in samples)
    print(f"{len(samples)} files in {args.out_dir}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
