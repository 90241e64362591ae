"""Word error rate that counts words, not formatting.

`normalise` turns a reference or a transcript into comparable words: Unicode NFKC, lower case,
accents dropped (the Spanish texts of the corpus often lack them where Whisper writes them),
numbers written out in the language (``8`` → ``eight`` / ``ocho`` / ``huit``; English ordinals
``1st`` → ``first``; ``%`` → percent; ``*``, ``#`` → the words said for the keys), hyphens and
punctuation as word breaks, one spelling for English words written several ways (``okay``/``ok``,
``voice mail``/``voicemail``, ``re-record``/``rerecord``, ``you're``/``you are``). `wer` is the
word-level Levenshtein distance (substitutions + deletions + insertions) over the reference's
word count; over a set, edits and reference words are summed before dividing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}

_ES_ONES = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once", "doce", "trece", "catorce", "quince", "dieciseis", "diecisiete", "dieciocho", "diecinueve", "veinte", "veintiuno", "veintidos", "veintitres", "veinticuatro", "veinticinco", "veintiseis", "veintisiete", "veintiocho", "veintinueve"]
_ES_TENS = ["_", "_", "_", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa"]
_ES_HUNDREDS = ["_", "ciento", "doscientos", "trescientos", "cuatrocientos", "quinientos", "seiscientos", "setecientos", "ochocientos", "novecientos"]

_FR_ONES = ["zero", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf"]
_FR_TENS = ["_", "_", "vingt", "trente", "quarante", "cinquante", "soixante", "soixante", "quatre-vingt", "quatre-vingt"]

# One spelling for words written several ways (compounds with or without a space or hyphen,
# contractions), and the keys the English prompts write as symbols but say as words.
_SPELLINGS = {
    "en": {
        "okay": "ok", "e-mail": "email", "voice mail": "voicemail", "voice mails": "voicemails",
        "mail box": "mailbox", "file name": "filename", "key words": "keywords",
        "black list": "blacklist", "touch tone": "touchtone", "re-record": "rerecord",
        "log in": "login", "un-delete": "undelete", "i'm": "i am", "you're": "you are",
        "we're": "we are", "they're": "they are", "that's": "that is", "it's": "it is",
        "there's": "there is", "what's": "what is", "you've": "you have", "i've": "i have",
        "we've": "we have", "you'll": "you will", "i'll": "i will", "we'll": "we will",
        "can't": "cannot", "can not": "cannot", "don't": "do not", "doesn't": "does not",
        "didn't": "did not", "isn't": "is not", "aren't": "are not", "won't": "will not",
        "you'd": "you would", "i'd": "i would", "let's": "let us",
    },
}
_SYMBOLS = {"en": {"*": " star ", "#": " pound "}, "es": {"*": " asterisco ", "#": " numeral "},
            "fr": {"*": " étoile ", "#": " dièse "}}


def _en(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("" if n % 10 == 0 else " " + _EN_ONES[n % 10])
    if n < 1000:
        return _EN_ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _en(n % 100))
    if n < 1_000_000:
        return _en(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + _en(n % 1000))
    return _en(n // 1_000_000) + " million" + ("" if n % 1_000_000 == 0 else " " + _en(n % 1_000_000))


def _en_ordinal(n: int) -> str:
    words = _en(n).split()
    last = words[-1]
    if last in _EN_ORDINALS:
        words[-1] = _EN_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _es(n: int) -> str:
    if n < 30:
        return _ES_ONES[n]
    if n < 100:
        return _ES_TENS[n // 10] + ("" if n % 10 == 0 else " y " + _ES_ONES[n % 10])
    if n == 100:
        return "cien"
    if n < 1000:
        return _ES_HUNDREDS[n // 100] + ("" if n % 100 == 0 else " " + _es(n % 100))
    if n < 1_000_000:
        head = "mil" if n // 1000 == 1 else _es(n // 1000) + " mil"
        return head + ("" if n % 1000 == 0 else " " + _es(n % 1000))
    head = "un millon" if n // 1_000_000 == 1 else _es(n // 1_000_000) + " millones"
    return head + ("" if n % 1_000_000 == 0 else " " + _es(n % 1_000_000))


def _fr(n: int) -> str:
    if n < 20:
        return _FR_ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        if tens in (7, 9):
            unit += 10
        base = _FR_TENS[tens]
        if unit == 0:
            return base + ("s" if tens == 8 else "")
        if unit in (1, 11) and tens not in (8, 9):
            return base + " et " + _FR_ONES[unit]
        return base + "-" + _FR_ONES[unit]
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = "cent" if hundreds == 1 else _FR_ONES[hundreds] + " cent" + ("s" if rest == 0 else "")
        return head + ("" if rest == 0 else " " + _fr(rest))
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        head = "mille" if thousands == 1 else _fr(thousands) + " mille"
        return head + ("" if rest == 0 else " " + _fr(rest))
    millions, rest = divmod(n, 1_000_000)
    head = _fr(millions) + (" million" if millions == 1 else " millions")
    return head + ("" if rest == 0 else " " + _fr(rest))


_NUMBER_WORDS = {"en": _en, "es": _es, "fr": _fr}
_PERCENT = {"en": "percent", "es": "por ciento", "fr": "pour cent"}
_NUMBER = re.compile(r"\d+(?:[.,]\d{3})*(?:st|nd|rd|th)?")


def _spell_numbers(text: str, language: str) -> str:
    say = _NUMBER_WORDS.get(language, _en)

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        ordinal = token[-2:] in ("st", "nd", "rd", "th")
        value = int(re.sub(r"\D", "", token[:-2] if ordinal else token))
        if value >= 10**9:
            return " ".join(say(int(d)) for d in str(value))
        if ordinal and language == "en":
            return f" {_en_ordinal(value)} "
        return f" {say(value)} "

    return _NUMBER.sub(one, text)


def normalise(text: str, language: str) -> list[str]:
    """The words of ``text`` (in ``language``: `en`, `es`, `fr`; others get the English
    numbers) after the normalisation described at the top of this module."""
    language = language.split("-")[0].lower()
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("%", f" {_PERCENT.get(language, 'percent')} ").replace("&", " and " if language == "en" else " ")
    for symbol, word in _SYMBOLS.get(language, {}).items():
        text = text.replace(symbol, word)
    text = _spell_numbers(text, language)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"\s+", " ", text)
    for spelling, common in _SPELLINGS.get(language, {}).items():
        text = re.sub(rf"(?<![\w']){re.escape(spelling)}(?![\w'])", common, text)
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"[^\w\s']", " ", text)
    words = [w.strip("'") for w in text.split()]
    return [w for w in words if w]


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance: the fewest substitutions, deletions and insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


@dataclass(frozen=True, slots=True)
class Score:
    edits: int
    reference_words: int

    @property
    def wer(self) -> float:
        return self.edits / self.reference_words if self.reference_words else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(self.edits + other.edits, self.reference_words + other.reference_words)


def score(reference: str, hypothesis: str, language: str) -> Score:
    ref = normalise(reference, language)
    return Score(edit_distance(ref, normalise(hypothesis, language)), len(ref))
