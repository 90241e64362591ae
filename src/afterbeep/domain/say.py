"""Numbers, phone numbers, dates and times as sequences of prompt fragments, in each language's grammar.

A fragment is the name of a system prompt; one name is one recording per language, and a language
only has the fragments its grammar uses (`telephony.prompts.sequence` plays a list of them).

Fragment names:
- `say-<n>` (0 to 99): the number word said on its own ("twenty-one", "veintiuno", "vingt et un",
  "einundzwanzig"); `say-<n>-f` its feminine form (es "una", "veintiuna"; fr "une", "vingt et une";
  de "eine"); `say-<n>-a` its form before a noun or a multiplier (es "un", "veintiún"; de "ein").
- Spanish hundreds are words of their own: `say-100` "cien", `say-100-c` "ciento" (followed by more),
  `say-200` to `say-900` and their feminine `say-200-f` ("doscientas"). The other languages say
  `say-hundred`; all say `say-thousand`, `say-million` and `say-millions`.
- `say-ord-<d>`: a day of the month as an ordinal (en "seventh", de "siebten", fr only "premier").
- `say-monday` to `say-sunday`, `say-january` to `say-december`, `say-today`, `say-yesterday`,
  `say-at` (es `say-at-1` "a la"), `say-on`, `say-the`, `say-of`, `say-and`, `say-oh`, `say-am`,
  `say-pm`, `say-hour`, `say-hours`, `say-minute`, `say-minutes`.
- `say-plus`, `say-star`, `say-pound` for phone numbers.
- For counts, a noun in `NOUNS`: `say-<noun>`, `say-<noun>s` and `say-no-<noun>s`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

LANGUAGES = ("en", "es", "fr", "de")
FALLBACK_LANGUAGE = "en"
MAX_NUMBER = 999_999_999

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# The nouns `say_count` counts, and the languages in which each is feminine (de "die Nachricht").
NOUNS: dict[str, frozenset[str]] = {
    "message": frozenset({"de"}),
    "new-message": frozenset({"de"}),
    "saved-message": frozenset({"de"}),
    "urgent-message": frozenset({"de"}),
}

_DIGIT_SEPARATORS = frozenset(" -.()/")
_DIGIT_SYMBOLS = {"+": "say-plus", "*": "say-star", "#": "say-pound"}


def language_of(language: str) -> str:
    """The language whose grammar is used: `es-MX` is `es`; one not supported falls back to English."""
    base = language.split("-")[0].split("_")[0].lower()
    return base if base in LANGUAGES else FALLBACK_LANGUAGE


def _word(n: int, form: str = "") -> str:
    return f"say-{n}-{form}" if form else f"say-{n}"


def _split(n: int) -> tuple[int, int, int]:
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"cannot say {n}: numbers from 0 to {MAX_NUMBER} only")
    return n // 1_000_000, n // 1000 % 1000, n % 1000


def _en(n: int, feminine: bool, before_noun: bool) -> list[str]:
    def group(g: int) -> list[str]:
        hundreds, rest = divmod(g, 100)
        out = [_word(hundreds), "say-hundred"] if hundreds else []
        return [*out, _word(rest)] if rest else out

    millions, thousands, units = _split(n)
    if n == 0:
        return [_word(0)]
    out: list[str] = []
    if millions:
        out += [*group(millions), "say-million"]
    if thousands:
        out += [*group(thousands), "say-thousand"]
    return out + group(units) if units else out


def _es(n: int, feminine: bool, before_noun: bool) -> list[str]:
    # form: "" as said alone ("uno"), "a" before a noun or multiplier ("un"), "f" feminine ("una").
    def group(g: int, form: str) -> list[str]:
        hundreds, rest = divmod(g, 100)
        out: list[str] = []
        if hundreds == 1:
            out.append("say-100" if rest == 0 else "say-100-c")
        elif hundreds:
            out.append(_word(hundreds * 100, "f" if form == "f" else ""))
        if rest:
            out.append(_word(rest, form if rest % 10 == 1 and rest != 11 else ""))
        return out

    millions, thousands, units = _split(n)
    if n == 0:
        return [_word(0)]
    out: list[str] = []
    if millions == 1:
        out += [_word(1, "a"), "say-million"]
    elif millions:
        out += [*group(millions, "a"), "say-millions"]
    if thousands > 1:
        out += group(thousands, "f" if feminine else "a")
    if thousands:
        out.append("say-thousand")
    if units:
        out += group(units, "f" if feminine else "a" if before_noun else "")
    return out


def _fr(n: int, feminine: bool, before_noun: bool) -> list[str]:
    # "deux cents" and "deux cent un", "quatre-vingts" and "quatre-vingt mille" sound the same.
    def group(g: int, feminine: bool) -> list[str]:
        hundreds, rest = divmod(g, 100)
        out: list[str] = []
        if hundreds > 1:
            out.append(_word(hundreds))
        if hundreds:
            out.append("say-hundred")
        if rest:
            agrees = feminine and rest % 10 == 1 and rest not in (11, 71, 91)
            out.append(_word(rest, "f" if agrees else ""))
        return out

    millions, thousands, units = _split(n)
    if n == 0:
        return [_word(0)]
    out: list[str] = []
    if millions:
        out += [*group(millions, False), "say-million" if millions == 1 else "say-millions"]
    if thousands > 1:
        out += group(thousands, False)
    if thousands:
        out.append("say-thousand")
    if units:
        out += group(units, feminine)
    return out


def _de(n: int, feminine: bool, before_noun: bool) -> list[str]:
    # Only a group ending in 01 changes: "hunderteins", "hunderteintausend", "eine Million".
    def group(g: int, form: str) -> list[str]:
        hundreds, rest = divmod(g, 100)
        out: list[str] = []
        if hundreds > 1:
            out.append(_word(hundreds))
        if hundreds:
            out.append("say-hundred")
        if rest:
            out.append(_word(rest, form if rest == 1 else ""))
        return out

    millions, thousands, units = _split(n)
    if n == 0:
        return [_word(0)]
    out: list[str] = []
    if millions:
        out += [*group(millions, "f"), "say-million" if millions == 1 else "say-millions"]
    if thousands > 1:
        out += group(thousands, "a")
    if thousands:
        out.append("say-thousand")
    if units:
        out += group(units, "f" if feminine else "a" if before_noun else "")
    return out


_NUMBERS: dict[str, Callable[[int, bool, bool], list[str]]] = {
    "en": _en,
    "es": _es,
    "fr": _fr,
    "de": _de,
}


def say_number(
    n: int, language: str, *, feminine: bool = False, before_noun: bool = False
) -> list[str]:
    """`n` (0 to 999,999,999) as fragments; `feminine` agrees with a feminine noun or unit (es
    "veintiuna horas", fr "une heure", de "eine Nachricht"), `before_noun` gives the form that
    precedes a noun (es "veintiún mensajes", de "ein Uhr")."""
    return _NUMBERS[language_of(language)](n, feminine, before_noun)


def say_digits(digits: str, language: str) -> list[str]:
    """A phone number digit by digit: `+` is "plus", `*` "star", `#` "pound"; spaces, dashes,
    dots, slashes and brackets are skipped."""
    language_of(language)
    out: list[str] = []
    for char in digits:
        if char.isascii() and char.isdigit():
            out.append(_word(int(char)))
        elif char in _DIGIT_SYMBOLS:
            out.append(_DIGIT_SYMBOLS[char])
        elif char not in _DIGIT_SEPARATORS:
            raise ValueError(f"cannot say {char!r} in a phone number")
    return out


def say_count(n: int, noun: str, language: str) -> list[str]:
    """The count and its noun: "2 new messages", "1 saved message", "no new messages" (`noun` is a
    key of `NOUNS`)."""
    if noun not in NOUNS:
        raise ValueError(f"no noun {noun!r} to count")
    lang = language_of(language)
    if n == 0:
        return [f"say-no-{noun}s"]
    out = say_number(n, lang, feminine=lang in NOUNS[noun], before_noun=True)
    if lang in ("es", "fr") and n % 1_000_000 == 0:
        out.append("say-of")  # "un millón de mensajes", "deux millions de messages"
    plural = n >= 2 if lang == "fr" else n != 1
    out.append(f"say-{noun}s" if plural else f"say-{noun}")
    return out


def say_counts(counts: Sequence[tuple[int, str]], language: str) -> list[str]:
    """Several counts joined with "and": "2 new messages and 1 saved message"."""
    out: list[str] = []
    for position, (n, noun) in enumerate(counts):
        if position and position == len(counts) - 1:
            out.append("say-and")
        out += say_count(n, noun, language)
    return out


def _year_en(year: int) -> list[str]:
    century, rest = divmod(year, 100)
    if 2000 <= year < 2010:
        return say_number(year, "en")  # "two thousand five"
    if rest == 0:
        return [_word(century), "say-hundred"]  # "nineteen hundred"
    return [_word(century), *(["say-oh"] if rest < 10 else []), _word(rest)]  # "twenty twenty-six"


def _date(day: date, lang: str, with_year: bool) -> list[str]:
    weekday, month = f"say-{WEEKDAYS[day.weekday()]}", f"say-{MONTHS[day.month - 1]}"
    if lang == "en":  # "Monday, December seventh, twenty twenty-six"
        out = [weekday, month, f"say-ord-{day.day}"]
        return out + _year_en(day.year) if with_year else out
    if lang == "es":  # "el lunes siete de diciembre de dos mil veintiséis"
        out = ["say-the", weekday, *say_number(day.day, lang), "say-of", month]
        return [*out, "say-of", *say_number(day.year, lang)] if with_year else out
    if lang == "fr":  # "lundi premier décembre", "lundi sept décembre deux mille vingt-six"
        number = ["say-ord-1"] if day.day == 1 else say_number(day.day, lang)
        out = [weekday, *number, month]
        return out + say_number(day.year, lang) if with_year else out
    # "am Montag, dem siebten Dezember"
    out = ["say-on", weekday, "say-the", f"say-ord-{day.day}", month]
    return out + say_number(day.year, lang) if with_year else out


def _time(hour: int, minute: int, lang: str) -> list[str]:
    if lang == "en":  # "at three forty-two PM", "at twelve oh five AM", "at three PM"
        out = ["say-at", _word(hour % 12 or 12)]
        if minute:
            out += ["say-oh", _word(minute)] if minute < 10 else [_word(minute)]
        return [*out, "say-am" if hour < 12 else "say-pm"]
    if lang == "es":  # "a las quince horas y cuarenta y dos minutos", "a la una y un minuto"
        out = ["say-at-1" if hour == 1 else "say-at", *say_number(hour, lang, feminine=True)]
        if hour != 1:
            out.append("say-hours")
        if minute:
            out += ["say-and", *say_number(minute, lang, before_noun=True)]
            out.append("say-minute" if minute == 1 else "say-minutes")
        return out
    if lang == "fr":  # "à quinze heures quarante-deux", "à une heure une", "à zéro heure"
        out = ["say-at", *say_number(hour, lang, feminine=True)]
        out.append("say-hour" if hour <= 1 else "say-hours")
        return out + say_number(minute, lang, feminine=True) if minute else out
    out = ["say-at", *say_number(hour, lang, before_noun=True), "say-hours"]  # "um ein Uhr eins"
    return out + say_number(minute, lang) if minute else out


def say_datetime(when: datetime, language: str, *, now: datetime) -> list[str]:
    """When a message came, as the mailbox's owner hears it: "today" or "yesterday", else the
    weekday, day and month (and the year when it is not this year's), then the time (en 12-hour
    with AM/PM, es/fr/de 24-hour). `when` is read in `now`'s time zone."""
    if when.tzinfo is None or now.tzinfo is None:
        raise ValueError("say_datetime needs aware datetimes")
    lang = language_of(language)
    local = when.astimezone(now.tzinfo)
    day, today = local.date(), now.date()
    if day == today:
        out = ["say-today"]
    elif day == today - timedelta(days=1):
        out = ["say-yesterday"]
    else:
        out = _date(day, lang, with_year=day.year != today.year)
    return out + _time(local.hour, local.minute, lang)
