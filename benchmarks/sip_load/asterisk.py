"""Asterisk 20's app_voicemail as the other target of the fixed-time caller.

Asterisk is built outside the repository (``/work/shared/anchors/asterisk/README.md``; the
benchmark takes its install prefix). Each run gets a fresh Asterisk: the configuration of
``asterisk_conf/`` (the anchor's files, SIP on a free port instead of 5072) and its own
spool, database, run and log folders in the run's work directory; modules, sounds and the
binary come from the prefix. Any number reaches ``VoiceMail(1234@default,u)``: "the person at
extension 1 2 3 4 is unavailable", "vm-intro", "beep", record; ``attach = no``.

The caller's fixed time for Asterisk comes from the same rule as for afterbeep, applied to the
sound files Asterisk plays (read from the prefix's ``sounds/en``): Asterisk streams the files
one after another through its smoother, so their lengths add up sample for sample.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.sip_load.fixed_time import Nominal, Pcm

CONF = Path(__file__).parent / "asterisk_conf"
MAILBOX = "1234"
# invent_message() for "u" without a recorded greeting, then INTRO, then the beep tone
PROMPTS = ("vm-theperson", *(f"digits/{d}" for d in MAILBOX), "vm-isunavail", "vm-intro")
BEEP = "beep"


@dataclass(frozen=True, slots=True)
class Install:
    prefix: Path

    @property
    def binary(self) -> Path:
        return self.prefix / "sbin" / "asterisk"

    @property
    def sounds(self) -> Path:
        return self.prefix / "var" / "lib" / "asterisk" / "sounds" / "en"

    def check(self) -> None:
        if not self.binary.is_file():
            raise SystemExit(f"no Asterisk at {self.binary}: build it as the anchor's README says")
        if not (self.sounds / f"{BEEP}.wav").is_file():
            raise SystemExit(
                f"no sounds in {self.sounds}: ln -s /usr/share/asterisk/sounds/en_US_f_Allison "
                f"{self.sounds} (Debian asterisk-core-sounds-en-wav)"
            )

    def sound(self, name: str) -> Pcm:
        with wave.open(str(self.sounds / f"{name}.wav"), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
                raise ValueError(f"{name}.wav is not 8 kHz mono 16-bit")
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)

    def nominal(self) -> Nominal:
        return Nominal.of([len(self.sound(n)) for n in PROMPTS], len(self.sound(BEEP)), None)


def write_config(install: Install, home: Path, sip_port: int) -> Path:
    """The anchor's configuration under ``home``; the path of its asterisk.conf."""
    conf = home / "conf"
    conf.mkdir(parents=True)
    for source in CONF.glob("*.conf"):
        text = source.read_text()
        if source.name == "sip.conf":
            text = text.replace("udpbindaddr = 127.0.0.1:5072", f"udpbindaddr = 127.0.0.1:{sip_port}")
        (conf / source.name).write_text(text)
    lib = install.prefix / "var" / "lib" / "asterisk"
    own = {name: home / name for name in ("db", "spool", "run", "log", "cache")}
    for path in own.values():
        path.mkdir()
    directories = {
        "astetcdir": conf,
        "astmoddir": install.prefix / "lib" / "asterisk" / "modules",
        "astvarlibdir": lib,
        "astdbdir": own["db"],
        "astkeydir": lib,
        "astdatadir": lib,
        "astagidir": lib / "agi-bin",
        "astspooldir": own["spool"],
        "astrundir": own["run"],
        "astlogdir": own["log"],
        "astsbindir": install.prefix / "sbin",
        "astcachedir": own["cache"],
    }
    lines = ["[directories]", *(f"{k} => {v}" for k, v in directories.items()), ""]
    lines += [
        "[options]", "verbose = 0", "debug = 0", "hideconnect = yes", "transmit_silence = no",
        "documentation_language = en_US", "maxfiles = 20000", "",
    ]
    config = conf / "asterisk.conf"
    config.write_text("\n".join(lines))
    return config


def inbox(home: Path) -> Path:
    return home / "spool" / "voicemail" / "default" / MAILBOX / "INBOX"


def messages(home: Path) -> list[Path]:
    folder = inbox(home)
    return sorted(folder.glob("msg*.wav")) if folder.is_dir() else []


def cli(install: Install, config: Path, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(install.binary), "-C", str(config), "-rx", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@contextlib.contextmanager
def running(install: Install, home: Path, sip_port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A fresh Asterisk for the block; stopped with ``core stop now`` after it."""
    config = write_config(install, home, sip_port)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(install.binary), "-C", str(config), "-f", "-n"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while cli(install, config, "core waitfullybooted").returncode != 0:
            if proc.poll() is not None:
                raise RuntimeError(f"Asterisk exited: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not boot: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        if "VoiceMail" not in cli(install, config, "core show application VoiceMail").stdout:
            raise RuntimeError("app_voicemail is not loaded")
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                cli(install, config, "core stop now")
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def wait_messages(home: Path, expected: int, timeout: float) -> list[Path]:
    """The inbox's messages once ``expected`` are there and none has changed for a second
    (Asterisk writes a message as its call ends), or at the timeout."""
    deadline = time.monotonic() + timeout
    seen: tuple[tuple[str, int], ...] = ()
    while True:
        found = messages(home)
        state = tuple((p.name, p.stat().st_size) for p in found)
        if (len(found) >= expected and state == seen) or time.monotonic() > deadline:
            return found
        seen = state
        time.sleep(1.0)

