"""Answering machine detection by the words of the first turn: cue phrases and the one rule
that weighs them against timing. Pure: no I/O, no clock (audio milliseconds are passed in).

The timing detector (`afterbeep.audio.amd`) hears a first turn end, has it transcribed once
(off its thread), and asks `decide_first_turn` at every frame of the silence after it what the
turn and its words say. The rule, people first:

- words that say machine (a machine cue: "leave a message", "after the tone", "voicemail",
  "not available", "you've reached", ...): ``machine`` at once, whatever the turn's length
  (cause WORDS-MACHINE): a beep or the end of the greeting is still waited for;
- a turn up to `WordsSettings.short_turn_ms` (a hello, "Hi, this is Mark") whose words do not
  say machine, then `quick_silence_ms` (500; in practice when the words are back, since they
  are asked for after 500 ms) when they hold a person's phrase that is no name ("who is this",
  "speaking": `quick_cue`), `human_silence_ms` (800) of silence when they are a person's
  otherwise ("Hello?" alone, "this is <name>": a greeting may open with these and go on after
  a pause) or open with a filler and hold no cue ("Hello, Nisyanis." for "Hello, this is
  Jenny": a hello, Verdict.HELLO), or `neutral_silence_ms` (1000) when they hold no cue (time
  for a beep after a greeting whose words were not understood to start): ``human``
  (HUMAN-SHORT-WORDS);
- a longer first turn whose words are a person's ("how can I help you", "speaking", a turn
  ending "this is <name>"), then `human_silence_ms` of silence: ``human`` (HUMAN-WORDS);
- a longer first turn up to `neutral_turn_ms` (6 s, a business greeting's length) whose words
  hold no cue, then `neutral_long_silence_ms` (1.1 s): ``human`` (HUMAN-WORDS): people first,
  a machine whose words were not understood is left rather than a person played a message;
- a longer turn still, without cue: no decision here; timing alone decides (a greeting's 3 s
  of silence, a beep);
- words not back yet: wait, at most until `wait_ms` of silence, then timing alone decides and
  the cause says so; no words at all (switched off, every worker busy, the model unavailable):
  timing alone, with the reason in the cause.

A machine cue also counts when heard near (Whisper mishears synthetic and telephone voices:
"después de la semial", "erwunden mit"): a run of the turn's words, one fewer to one more than
the cue has, whose letters (spaces dropped) are within 25 % edits of the cue's
(`NEAR_SIMILARITY`), for cues of at least 7 letters; only when the turn holds no exact cue of
either kind, and its cue is reported as "~cue". On the tuning seeds the nearest person's turn
came to 0.73 ("office how" for "office hours").

Machine cues win over person cues in the same turn: a greeting that begins "Hi, this is
Kevin." goes on to say it cannot come to the phone. A transcript that covers only the start of
a turn that then went on counts for machine cues only (the detector has the whole turn
transcribed once more when it ends again). Thresholds chosen on the tuning seeds of
`benchmarks/amd`.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

NAME = "<name>"
_NAME_WORDS = 2  # "<name>" stands for one or two words
NEAR_SIMILARITY = 0.75  # a machine cue heard near: 1 - edit distance / length, letters only
NEAR_MIN_LETTERS = 7  # shorter machine cues ("press", "buzon") only count when heard exactly
NEAR_MARK = "~"  # a cue heard near is reported as "~leave a message"


class CueError(ValueError):
    """A cue list that cannot be read; `str()` says which line."""


class Verdict(enum.StrEnum):
    MACHINE = "machine"
    PERSON = "person"
    HELLO = "hello"  # opens with a filler ("Hello, ..."), no cue after it: a person's if short
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class CueList:
    language: str
    machine: tuple[tuple[str, ...], ...]
    person: tuple[tuple[str, ...], ...]
    fillers: frozenset[str]


@dataclass(frozen=True, slots=True)
class Words:
    """What the words of a turn say, and the cue that said it (None: no cue found)."""

    transcript: str
    verdict: Verdict
    cue: str | None = None
    phrase: bool = False  # the cue is a phrase of the list (not fillers alone, "Hello?")


def normalise(text: str) -> tuple[str, ...]:
    """Lower case, accents and apostrophes dropped, punctuation as spaces: the words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub("['\u2019\u0060\u00b4]", "", plain).replace("\u00df", "ss")
    return tuple(re.sub(r"[^\w<>]+", " ", plain).split())


def parse_cues(language: str, text: str) -> CueList:
    """Read a cue list: ``machine: PHRASE``, ``person: PHRASE`` or ``filler: WORD`` a line,
    ``#`` comments and blank lines ignored."""
    machine: list[tuple[str, ...]] = []
    person: list[tuple[str, ...]] = []
    fillers: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, sep, phrase = line.partition(":")
        words = normalise(phrase)
        if not sep or not words or kind.strip() not in ("machine", "person", "filler"):
            raise CueError(f"{language} cues, line {number}: expected 'machine|person|filler: words'")
        if kind.strip() == "machine":
            if NAME in words:
                raise CueError(f"{language} cues, line {number}: {NAME} is for person cues only")
            machine.append(words)
        elif kind.strip() == "person":
            person.append(words)
        elif len(words) != 1:
            raise CueError(f"{language} cues, line {number}: a filler is one word")
        else:
            fillers.add(words[0])
    if not machine or not person:
        raise CueError(f"{language} cues: need machine and person cues")
    return CueList(language, tuple(machine), tuple(person), frozenset(fillers))


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def _ends_with(words: tuple[str, ...], phrase: tuple[str, ...], fillers: frozenset[str]) -> bool:
    """The turn ends with ``phrase``, its ``<name>`` one or two words that are not fillers."""
    at = phrase.index(NAME)
    before, after = phrase[:at], phrase[at + 1 :]
    for name in range(1, _NAME_WORDS + 1):
        end = len(words) - len(after)
        start = end - name - len(before)
        if start < 0 or words[end:] != after:
            continue
        if words[start : start + len(before)] == before and not any(
            w in fillers for w in words[start + len(before) : end]
        ):
            return True
    return False


def _near(words: tuple[str, ...], phrase: tuple[str, ...]) -> float:
    """How close the nearest run of words (one fewer to one more than the phrase has) comes to
    ``phrase``, letters only, spaces dropped: 1 - edit distance / the longer's length. Whisper
    splits and joins words it mishears ("erwunden mit" for "verbunden mit")."""
    target = "".join(phrase)
    best = 0.0
    for size in range(max(1, len(phrase) - 1), len(phrase) + 2):
        for i in range(max(1, len(words) - size + 1)):
            best = max(best, Levenshtein.normalized_similarity(target, "".join(words[i : i + size])))
    return best


def read_words(transcript: str, cues: CueList) -> Words:
    """Which cue the transcript holds: a machine cue first, else a person cue, else a machine
    cue heard near (`NEAR_SIMILARITY`; cue reported with `NEAR_MARK`), else none. A turn of
    nothing but fillers ("Hello?", "Allô, oui ?") is a person's."""
    words = normalise(transcript)
    for phrase in cues.machine:
        if _contains(words, phrase):
            return Words(transcript, Verdict.MACHINE, " ".join(phrase))
    for phrase in cues.person:
        found = _ends_with(words, phrase, cues.fillers) if NAME in phrase else _contains(words, phrase)
        if found:
            return Words(transcript, Verdict.PERSON, " ".join(phrase), phrase=True)
    if words and all(w in cues.fillers for w in words):
        return Words(transcript, Verdict.PERSON, " ".join(dict.fromkeys(words)))  # "Hello?" alone
    if words:
        near = max(
            ((_near(words, p), p) for p in cues.machine if len("".join(p)) >= NEAR_MIN_LETTERS),
            default=(0.0, ()),
        )
        if near[0] >= NEAR_SIMILARITY:
            return Words(transcript, Verdict.MACHINE, NEAR_MARK + " ".join(near[1]))
        if words[0] in cues.fillers:
            return Words(transcript, Verdict.HELLO, words[0])
    return Words(transcript, Verdict.NEUTRAL)


class WordsState(enum.Enum):
    OFF = "off"  # switched off for this detector
    WAITING = "waiting"  # the turn has not ended yet, or its transcript is not back
    HEARD = "heard"
    NONE = "none"  # asked, but none came: every worker busy, or the engine failed


@dataclass(frozen=True, slots=True)
class WordsSettings:
    """Milliseconds of audio."""

    ask_after_ms: int = 500  # silence after the first turn before it is transcribed
    reask_after_ms: int = 500  # the same when the turn went on after it was first sent
    max_asks: int = 2  # a first turn is transcribed at most this often (it went on after each)
    short_turn_ms: int = 2000  # a first turn up to this long is a hello
    human_silence_ms: int = 800  # then this much silence: a person, unless the words say machine
    quick_silence_ms: int = 500  # a short turn with a person's cue that is no name: a person after
    # this much silence (0: off, as human_silence_ms); see `quick_cue`
    neutral_silence_ms: int = 1000  # the same when the words hold no cue (a beep may follow)
    neutral_turn_ms: int = 6000  # a longer first turn up to this long without cue words, then ...
    neutral_long_silence_ms: int = 1100  # ... this much silence: a person (0 above: off)
    wait_ms: int = 2000  # silence after which timing decides alone if the words are not back
    max_turn_ms: int = 8000  # a longer first turn is not transcribed (a greeting by its length)


class Call(enum.StrEnum):
    HUMAN = "human"
    MACHINE = "machine"


@dataclass(frozen=True, slots=True)
class FirstTurnDecision:
    call: Call
    cause: str
    cue: str | None


def decide_first_turn(
    turn_ms: int,
    silence_ms: int,
    state: WordsState,
    words: Words | None,
    *,
    whole_turn: bool = True,
    settings: WordsSettings = WordsSettings(),
) -> FirstTurnDecision | None:
    """What one turn of ``turn_ms`` followed by ``silence_ms`` of silence, with its words (if
    heard), decides; None: leave it to timing (or wait for the words). ``whole_turn``: the
    transcript covers the whole turn (not only its start, before the speaker went on)."""
    if state is not WordsState.HEARD or words is None:
        return None
    if words.verdict is Verdict.MACHINE:
        return FirstTurnDecision(Call.MACHINE, "WORDS-MACHINE", words.cue)
    if not whole_turn:
        return None
    person = words.verdict is Verdict.PERSON
    if turn_ms <= settings.short_turn_ms:
        hello = person or words.verdict is Verdict.HELLO
        wait = settings.human_silence_ms if hello else settings.neutral_silence_ms
        if person and settings.quick_silence_ms and quick_cue(words):
            wait = min(wait, settings.quick_silence_ms)
        if silence_ms >= wait:
            return FirstTurnDecision(Call.HUMAN, "HUMAN-SHORT-WORDS", words.cue)
    elif person and silence_ms >= settings.human_silence_ms:
        return FirstTurnDecision(Call.HUMAN, "HUMAN-WORDS", words.cue)
    elif turn_ms <= settings.neutral_turn_ms and silence_ms >= settings.neutral_long_silence_ms:
        return FirstTurnDecision(Call.HUMAN, "HUMAN-WORDS", None)
    return None


def quick_cue(words: Words) -> bool:
    """A person's phrase that is no name: "who is this", "speaking", "how can I help". A name
    ("Hi, this is Kevin.") and fillers alone ("Hello.", "Guten Morgen.") also open greetings,
    which go on after a pause of up to 700 ms."""
    return words.verdict is Verdict.PERSON and words.phrase and words.cue is not None and NAME not in words.cue


def timing_may_decide(state: WordsState, silence_ms: int, settings: WordsSettings = WordsSettings()) -> bool:
    """Whether the timing rules may decide now: not while the words of the first turn are
    awaited, up to `WordsSettings.wait_ms` of silence."""
    return state is not WordsState.WAITING or silence_ms >= settings.wait_ms
