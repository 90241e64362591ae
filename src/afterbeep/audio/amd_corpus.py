"""A generated, labelled corpus for answering machine detection (what `scripts/make_amd_corpus.py`
and `python -m benchmarks.amd --generate N` write).

Speech comes from espeak-ng (Debian package ``espeak-ng``) in several voices, languages, rates
and pitches; everything else is numpy. Each file is what the caller hears from the answer on:
carrier silence, then one of

- ``human``: a short hello, a longer one, or a business greeting spoken by a person; then the
  person waits for an answer and, hearing nothing, speaks again after 1 to 2.5 s (mostly);
  or (20 %: kinds ``hello_wait`` and ``business_wait``) says one hello or one business greeting
  and then waits 3 to 5 s in silence, never speaking again, until the file ends;
- ``machine_beep``: a recorded greeting of 1 to 20 s (sentences with short pauses), a beep of
  400 to 2000 Hz lasting 150 to 1000 ms, then the silence of the recording;
- ``machine_nobeep``: the same greeting followed by seconds of silence;
- ``fax``: CED (2100 Hz, sometimes with phase reversals) then V.21 flags, or CNG (1100 Hz,
  0.5 s on / 3 s off);

then background noise at several SNRs (white, pink, mains hum, far babble), a G.711 round trip
(µ-law or A-law) and 20 ms packet loss (0 to 3 %). Deterministic for a given seed and count.
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from afterbeep.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from afterbeep.audio.rendition import write_wav

RATE = 8000
FRAME = 160
Floats = npt.NDArray[np.float64]

# voice -> phrase language; the first four are the voices the detector was tuned on
VOICES: dict[str, str] = {
    "en-us": "en",
    "en+f3": "en",
    "es": "es",
    "de": "de",
    "en-gb": "en",
    "en+m3": "en",
    "fr": "fr",
    "en-us+f4": "en",
    "en-gb-scotland": "en",
    "es+f2": "es",
}
TUNING_VOICES = frozenset({"en-us", "en+f3", "es", "de"})
LABELS = ("human", "machine_beep", "machine_nobeep", "fax")


@dataclass(frozen=True, slots=True)
class Phrases:
    short_hello: tuple[str, ...]
    medium_hello: tuple[str, ...]
    business: tuple[str, ...]
    reprompt: tuple[str, ...]
    intro: tuple[str, ...]
    middle: tuple[str, ...]
    outro: tuple[str, ...]
    short_greeting: tuple[str, ...]


PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        short_hello=("Hello?", "Hi.", "Yeah?", "Hello.", "Yes?", "Hey.", "Hi there.", "Speaking."),
        medium_hello=(
            "Hi, this is Mark.", "Hello, who's calling?", "Hello, this is Jenny.", "Yeah, hello?",
            "Hello, Tom speaking.", "Hi, who is this?", "Hello, yes?",
        ),
        business=(
            "Good morning, Acme Dental, this is Sarah speaking, how can I help you?",
            "Thank you for calling Riverside Plumbing, this is Dave.",
            "Acme Insurance, Karen speaking.",
            "Good afternoon, Doctor Patel's office, how may I help you?",
            "Hello, front desk, this is Mike.",
            "Northside Auto, this is Jim, what can I do for you?",
        ),
        reprompt=("Hello?", "Hello? Anyone there?", "Hello?", "Hi? Hello?", "Is anybody there?"),
        intro=(
            "Hi, you've reached John Smith.", "Hello, you have reached the voicemail of Maria Lopez.",
            "Thank you for calling Acme Dental.", "The person you are trying to reach is not available.",
            "Hi, this is Kevin.", "Hey, it's Laura.",
        ),
        middle=(
            "I can't come to the phone right now.", "Our office is currently closed.",
            "Our office hours are Monday through Friday, nine to five.",
            "If this is an emergency, please hang up and dial nine one one.",
            "I'm either on the other line or away from my desk.",
            "For billing questions, please visit our website.",
            "I will be out of the office until Monday.",
        ),
        outro=(
            "Please leave your name, number and a short message after the tone.",
            "Leave a message and I'll get back to you as soon as possible.",
            "Thanks, and have a great day.", "At the tone, please record your message.",
            "Please leave a message.",
        ),
        short_greeting=(
            "Leave a message.", "Please leave a message after the tone.",
            "Not available, leave a message.", "Hi, it's Dan. Leave a message.",
            "You've reached Amy. Leave a message.",
        ),
    ),
    "es": Phrases(
        short_hello=("¿Hola?", "¿Sí?", "¿Diga?", "¿Bueno?", "Dígame."),
        medium_hello=("Hola, habla Marta.", "¿Hola, quién habla?", "Sí, dígame, ¿quién es?"),
        business=(
            "Buenos días, Clínica Dental Acme, le atiende Sara, ¿en qué puedo ayudarle?",
            "Seguros Acme, habla Carmen.", "Taller Norte, buenas tardes, ¿dígame?",
        ),
        reprompt=("¿Hola?", "¿Hola? ¿Hay alguien?", "¿Oiga?"),
        intro=("Hola, has llamado a Juan García.", "Gracias por llamar a Seguros Acme."),
        middle=(
            "En este momento no puedo atenderte.",
            "Nuestro horario es de lunes a viernes, de nueve a cinco.",
            "Si es una urgencia, llame al uno uno dos.",
        ),
        outro=(
            "Por favor, deja tu nombre y tu número después de la señal.",
            "Te devolveré la llamada lo antes posible.",
        ),
        short_greeting=("Deja tu mensaje.", "Deja un mensaje después de la señal."),
    ),
    "fr": Phrases(
        short_hello=("Allô ?", "Oui ?", "Allô, oui ?", "Oui, allô."),
        medium_hello=("Allô, c'est Marc.", "Allô, qui est à l'appareil ?", "Oui, bonjour ?"),
        business=(
            "Bonjour, cabinet dentaire Acme, Sophie à l'appareil, que puis-je faire pour vous ?",
            "Assurances Acme, bonjour.", "Garage du Nord, Paul à l'appareil.",
        ),
        reprompt=("Allô ?", "Allô ? Il y a quelqu'un ?", "Allô, allô ?"),
        intro=(
            "Bonjour, vous êtes bien sur la messagerie de Pierre Martin.",
            "Merci d'avoir appelé la société Acme.",
        ),
        middle=(
            "Je ne suis pas disponible pour le moment.",
            "Nos bureaux sont ouverts du lundi au vendredi.",
            "En cas d'urgence, composez le quinze.",
        ),
        outro=("Laissez-moi un message après le bip sonore.", "Je vous rappellerai dès que possible."),
        short_greeting=("Laissez un message.", "Laissez un message après le bip."),
    ),
    "de": Phrases(
        short_hello=("Hallo?", "Ja?", "Ja, bitte?", "Hallo, ja?"),
        medium_hello=("Hallo, hier ist Markus.", "Hallo, wer ist da?", "Ja, hallo, wer spricht?"),
        business=(
            "Guten Morgen, Zahnarztpraxis Acme, Sie sprechen mit Sarah, wie kann ich helfen?",
            "Acme Versicherung, Meier am Apparat.", "Autohaus Nord, guten Tag.",
        ),
        reprompt=("Hallo?", "Hallo? Ist da jemand?", "Hallo, hallo?"),
        intro=(
            "Hallo, Sie sind verbunden mit der Mailbox von Thomas Müller.",
            "Vielen Dank für Ihren Anruf bei Acme.",
        ),
        middle=(
            "Ich bin im Moment leider nicht erreichbar.",
            "Unsere Öffnungszeiten sind Montag bis Freitag von neun bis siebzehn Uhr.",
        ),
        outro=(
            "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
            "Ich rufe Sie so bald wie möglich zurück.",
        ),
        short_greeting=("Bitte sprechen Sie.", "Nachricht nach dem Ton."),
    ),
}


@dataclass(frozen=True, slots=True)
class Sample:
    file: str
    label: str
    beep_end_ms: int | None
    voice: str
    kind: str
    snr_db: float
    loss: float
    codec: str
    carrier_ms: int = 0  # carrier silence before the far end's first sound (0: none)


class CorpusError(Exception):
    """espeak-ng is missing or failed."""


@cache
def speak(text: str, voice: str, rate: int, pitch: int) -> Floats:
    """espeak-ng speech at 8 kHz, floats in [-1, 1], leading and trailing silence trimmed."""
    try:
        done = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
            capture_output=True, check=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CorpusError(f"espeak-ng failed for voice {voice}: {exc}") from exc
    data, source_rate = sf.read(io.BytesIO(done.stdout), dtype="float64")
    if data.ndim > 1:
        data = data.mean(axis=1)
    audio = np.asarray(soxr.resample(data, source_rate, RATE), dtype=np.float64)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if len(loud) == 0:
        raise CorpusError(f"espeak-ng produced silence for voice {voice}")
    return audio[loud[0] : loud[-1] + 1]


def _at_level(x: Floats, dbfs: float) -> Floats:
    rms = math.sqrt(float(np.mean(x * x))) or 1.0
    return x * (10 ** (dbfs / 20) / rms)


def _silence(ms: float) -> Floats:
    return np.zeros(round(ms * RATE / 1000))


def _tone(freq: float, ms: float, amplitude: float, reversals_ms: float | None = None) -> Floats:
    n = round(ms * RATE / 1000)
    t = np.arange(n) / RATE
    phase = 2 * np.pi * freq * t
    if reversals_ms:
        phase = phase + np.pi * (np.floor(t * 1000 / reversals_ms) % 2)
    x = amplitude * np.sin(phase)
    ramp = min(40, n // 2)
    if ramp:
        w = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        x[:ramp] *= w
        x[-ramp:] *= w[::-1]
    return x


def _fsk_flags(ms: float, amplitude: float, rng: np.random.Generator) -> Floats:
    """V.21 channel 2 at 300 baud: 1650 Hz for 1, 1850 Hz for 0 (HDLC flags 01111110)."""
    bits = np.tile(np.array([0, 1, 1, 1, 1, 1, 1, 0]), int(ms * 0.3 / 8) + 1)
    per_bit = RATE // 300 + 1
    freqs = np.repeat(np.where(bits == 1, 1650.0, 1850.0), per_bit)[: round(ms * RATE / 1000)]
    phase = 2 * np.pi * np.cumsum(freqs) / RATE + rng.uniform(0, 2 * np.pi)
    return amplitude * np.sin(phase)


def _pink(n: int, rng: np.random.Generator) -> Floats:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum))
    f[0] = 1
    return np.asarray(np.fft.irfft(spectrum / np.sqrt(f), n), dtype=np.float64)


class _Builder:
    """One file's signal, built left to right; records where the beep ended."""

    def __init__(self) -> None:
        self.parts: list[Floats] = []
        self.length = 0
        self.beep_end: int | None = None
        self.speech_rms: list[float] = []

    def add(self, x: Floats, *, speech: bool = False) -> None:
        self.parts.append(x)
        self.length += len(x)
        if speech:
            self.speech_rms.append(math.sqrt(float(np.mean(x * x))))

    def pause(self, ms: float) -> None:
        self.add(_silence(ms))

    @property
    def ms(self) -> int:
        return self.length * 1000 // RATE

    def signal(self) -> Floats:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)


def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def make_sample(index: int, seed: int, voices: tuple[str, ...]) -> tuple[Sample, npt.NDArray[np.int16]]:
    rng = np.random.default_rng([seed, index])
    u = rng.random()
    label = "human" if u < 0.42 else "machine_beep" if u < 0.72 else "machine_nobeep" if u < 0.95 else "fax"
    voice = voices[int(rng.integers(len(voices)))]
    phrases = PHRASES[VOICES.get(voice, "en")]
    rate = int(rng.integers(135, 206))
    pitch = int(rng.integers(25, 76))
    level = float(rng.uniform(-28, -14))

    def say(text: str) -> Floats:
        return _at_level(speak(text, voice, rate, pitch), level + rng.uniform(-2, 2))

    b = _Builder()
    carrier = rng.random() < 0.3
    lead = rng.uniform(500, 3000) if carrier else rng.uniform(60, 500)
    b.pause(lead)
    kind = label
    if label == "human":
        v = rng.random()
        kind, first, p_reprompt = (
            ("short", _pick(rng, phrases.short_hello), 0.7) if v < 0.35
            else ("medium", _pick(rng, phrases.medium_hello), 0.85) if v < 0.6
            else ("business", _pick(rng, phrases.business), 1.0) if v < 0.8
            else ("hello_wait", _pick(rng, phrases.short_hello + phrases.medium_hello), 0.0) if v < 0.9
            else ("business_wait", _pick(rng, phrases.business), 0.0)
        )
        b.add(say(first), speech=True)
        if kind.endswith("_wait"):
            b.pause(rng.uniform(3000, 5000))
        else:
            for _ in range(2):
                if rng.random() >= p_reprompt:
                    break
                b.pause(rng.uniform(1000, 2500))
                b.add(say(_pick(rng, phrases.reprompt)), speech=True)
            b.pause(rng.uniform(4000, 6000))
    elif label in ("machine_beep", "machine_nobeep"):
        short = rng.random() < 0.25
        kind = "short" if short else "long"
        if short:
            b.add(say(_pick(rng, phrases.short_greeting)), speech=True)
        else:
            target_ms = math.exp(rng.uniform(math.log(2500), math.log(20000)))
            start = b.ms
            sentences = [_pick(rng, phrases.intro)]
            while True:
                b.add(say(sentences[-1]), speech=True)
                if b.ms - start >= target_ms - 2500 or len(sentences) > 12:
                    break
                b.pause(rng.uniform(150, 700))
                sentences.append(_pick(rng, phrases.middle))
            if b.ms - start < target_ms:
                b.pause(rng.uniform(150, 700))
                b.add(say(_pick(rng, phrases.outro)), speech=True)
        if label == "machine_beep":
            b.pause(rng.uniform(100, 1000))
            freq = float(rng.choice([440, 500, 800, 850, 1000, 1000, 1400, 2000])) if rng.random() < 0.5 else float(rng.uniform(400, 2000))
            duration = math.exp(rng.uniform(math.log(150), math.log(1000)))
            b.add(_tone(freq, duration, 10 ** (rng.uniform(-16, -4) / 20)))
            b.beep_end = b.ms
            kind += f"_beep{round(freq)}x{round(duration)}"
            b.pause(rng.uniform(2000, 4000))
        else:
            b.pause(rng.uniform(4000, 6000))
    else:
        amplitude = 10 ** (rng.uniform(-16, -6) / 20)
        if rng.random() < 0.5:
            kind = "ced"
            b.add(_tone(2100, rng.uniform(2600, 4000), amplitude, 450 if rng.random() < 0.5 else None))
            b.pause(75)
            b.add(_fsk_flags(rng.uniform(1000, 2000), amplitude, rng))
            b.pause(rng.uniform(1000, 3000))
        else:
            kind = "cng"
            for _ in range(3):
                b.add(_tone(1100, 500, amplitude))
                b.pause(3000)
    x = b.signal()
    snr, noise_kind = _add_noise(x, b, rng)
    codec = "pcmu" if rng.random() < 0.7 else "pcma"
    pcm = np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)
    pcm = ulaw_decode(ulaw_encode(pcm)) if codec == "pcmu" else alaw_decode(alaw_encode(pcm))
    loss = float(rng.choice([0.0, 0.0, 0.005, 0.01, 0.02, 0.03]))
    if loss:
        frames = len(pcm) // FRAME
        for f in np.flatnonzero(rng.random(frames) < loss):
            pcm[f * FRAME : (f + 1) * FRAME] = 0
    sample = Sample(
        file=f"{index:05d}.wav", label=label, beep_end_ms=b.beep_end, voice=voice,
        kind=f"{kind}/{noise_kind}", snr_db=snr, loss=loss, codec=codec,
        carrier_ms=round(lead) if carrier else 0,
    )
    return sample, pcm


def _add_noise(x: Floats, b: _Builder, rng: np.random.Generator) -> tuple[float, str]:
    """Background noise in place, at an SNR relative to the speech (or -30 dBFS without speech);
    always a faint floor so no stretch of the file is digital silence."""
    n = len(x)
    reference = float(np.mean(b.speech_rms)) if b.speech_rms else 10 ** (-30 / 20)
    snr = float(rng.choice([40.0, 30.0, 25.0, 20.0, 15.0, 10.0]))
    kinds: dict[str, Callable[[], Floats]] = {
        "white": lambda: rng.standard_normal(n),
        "pink": lambda: _pink(n, rng),
        "hum": lambda: sum(
            (np.sin(2 * np.pi * 60 * k * np.arange(n) / RATE + rng.uniform(0, 6.3)) / k for k in (1, 2, 3, 5)),
            start=0.3 * rng.standard_normal(n),
        ),
        "babble": lambda: _babble(n, rng),
    }
    name = str(rng.choice(["white", "pink", "pink", "hum", "babble"]))
    if name == "babble":
        snr = max(snr, 20.0)
    noise = kinds[name]()
    x += _at_level(noise, 20 * math.log10(reference) - snr)
    x += _at_level(rng.standard_normal(n), float(rng.uniform(-72, -60)))
    return snr, name


def _babble(n: int, rng: np.random.Generator) -> Floats:
    """Far-away talk: a few espeak voices summed and smeared."""
    out = np.zeros(n)
    texts = PHRASES["en"].middle + PHRASES["en"].intro
    for _ in range(3):
        voice = str(rng.choice(["en-us", "en-gb", "en+f2", "en+m7"]))
        talk = np.concatenate([speak(_pick(rng, texts), voice, 170, 50) for _ in range(4)])
        talk = np.tile(talk, n // len(talk) + 1)
        start = int(rng.integers(len(talk) - n + 1))
        out += talk[start : start + n]
    return np.convolve(out, np.ones(8) / 8, mode="same")


def generate(out_dir: Path, count: int, seed: int, voices: tuple[str, ...] | None = None) -> list[Sample]:
    """Write `count` WAV files and `labels.csv` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = voices or tuple(VOICES)
    samples: list[Sample] = []
    for index in range(count):
        sample, pcm = make_sample(index, seed, chosen)
        write_wav(out_dir / sample.file, pcm)
        samples.append(sample)
    with open(out_dir / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "beep_end_ms", "voice", "kind", "snr_db", "loss", "codec", "carrier_ms"])
        for s in samples:
            writer.writerow([
                s.file, s.label, "" if s.beep_end_ms is None else s.beep_end_ms,
                s.voice, s.kind, s.snr_db, s.loss, s.codec, s.carrier_ms,
            ])
    return samples
