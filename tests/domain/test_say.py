"""Numbers, phone numbers, counts, dates and times as prompt fragments, per language.

Each case is checked twice where it helps: the fragment names (the grammar decided in
`domain/say.py`) and the words those fragments are recorded with (scripts/say_texts.py).
2026 DST changes: Europe/Berlin 29 March 01:00 UTC (02:00 CET -> 03:00 CEST); America/New_York
1 November 06:00 UTC (02:00 EDT -> 01:00 EST).
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

from afterbeep.domain.say import (
    MAX_NUMBER,
    NOUNS,
    language_of,
    say_count,
    say_counts,
    say_datetime,
    say_digits,
    say_number,
)


def _load_say_texts() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "say_texts.py"
    spec = importlib.util.spec_from_file_location("say_texts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAY_TEXTS: dict[str, dict[str, str]] = _load_say_texts().SAY_TEXTS


def words(fragments: list[str], language: str) -> str:
    return " ".join(SAY_TEXTS[language][name] for name in fragments)


BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fragments", "text"),
    [
        (0, ["say-0"], "zero"),
        (7, ["say-7"], "seven"),
        (13, ["say-13"], "thirteen"),
        (21, ["say-21"], "twenty-one"),
        (100, ["say-1", "say-hundred"], "one hundred"),
        (101, ["say-1", "say-hundred", "say-1"], "one hundred one"),
        (1000, ["say-1", "say-thousand"], "one thousand"),
        (2020, ["say-2", "say-thousand", "say-20"], "two thousand twenty"),
        (
            1_234_567,
            [
                *("say-1", "say-million", "say-2", "say-hundred", "say-34", "say-thousand"),
                *("say-5", "say-hundred", "say-67"),
            ],
            "one million two hundred thirty-four thousand five hundred sixty-seven",
        ),
        (2_000_000, ["say-2", "say-million"], "two million"),
    ],
)
def test_english_numbers(n: int, fragments: list[str], text: str) -> None:
    assert say_number(n, "en") == fragments
    assert words(fragments, "en") == text
    assert say_number(n, "en", feminine=True, before_noun=True) == fragments


@pytest.mark.parametrize(
    ("n", "options", "text"),
    [
        (1, {}, "uno"),
        (1, {"feminine": True}, "una"),
        (1, {"before_noun": True}, "un"),
        (21, {}, "veintiuno"),
        (21, {"feminine": True}, "veintiuna"),
        (21, {"before_noun": True}, "veintiún"),
        (31, {}, "treinta y uno"),
        (31, {"feminine": True}, "treinta y una"),
        (16, {}, "dieciséis"),
        (100, {}, "cien"),
        (101, {}, "ciento uno"),
        (110, {}, "ciento diez"),
        (200, {}, "doscientos"),
        (200, {"feminine": True}, "doscientas"),
        (555, {"feminine": True}, "quinientas cincuenta y cinco"),
        (1000, {}, "mil"),
        (1001, {}, "mil uno"),
        (2000, {}, "dos mil"),
        (21_000, {}, "veintiún mil"),
        (100_000, {}, "cien mil"),
        (101_000, {}, "ciento un mil"),
        (200_000, {"feminine": True}, "doscientas mil"),
        (1_000_000, {}, "un millón"),
        (2_000_000, {}, "dos millones"),
        (21_000_000, {"feminine": True}, "veintiún millones"),
        (200_000_000, {"feminine": True}, "doscientos millones"),
        (
            1_234_567,
            {},
            "un millón doscientos treinta y cuatro mil quinientos sesenta y siete",
        ),
    ],
)
def test_spanish_numbers(n: int, options: dict[str, bool], text: str) -> None:
    assert words(say_number(n, "es", **options), "es") == text


def test_spanish_one_and_twenty_one_are_distinct_fragments() -> None:
    assert say_number(21, "es") == ["say-21"]
    assert say_number(21, "es", feminine=True) == ["say-21-f"]
    assert say_number(21, "es", before_noun=True) == ["say-21-a"]
    assert say_number(100, "es") == ["say-100"]
    assert say_number(101, "es") == ["say-100-c", "say-1"]
    assert say_number(11, "es", feminine=True) == ["say-11"]


@pytest.mark.parametrize(
    ("n", "options", "text"),
    [
        (1, {}, "un"),
        (1, {"feminine": True}, "une"),
        (17, {}, "dix-sept"),
        (21, {}, "vingt et un"),
        (21, {"feminine": True}, "vingt et une"),
        (22, {}, "vingt-deux"),
        (70, {}, "soixante-dix"),
        (71, {}, "soixante et onze"),
        (71, {"feminine": True}, "soixante et onze"),
        (77, {}, "soixante-dix-sept"),
        (80, {}, "quatre-vingts"),
        (81, {}, "quatre-vingt-un"),
        (81, {"feminine": True}, "quatre-vingt-une"),
        (91, {}, "quatre-vingt-onze"),
        (99, {}, "quatre-vingt-dix-neuf"),
        (100, {}, "cent"),
        (101, {}, "cent un"),
        (1000, {}, "mille"),
        (1001, {"feminine": True}, "mille une"),
        (21_000, {"feminine": True}, "vingt et un mille"),
        (1_000_000, {}, "un million"),
        (3_000_000, {}, "trois millions"),
    ],
)
def test_french_numbers(n: int, options: dict[str, bool], text: str) -> None:
    assert words(say_number(n, "fr", **options), "fr") == text


def test_french_hundreds_are_counted() -> None:
    # "deux cents" and "deux cent un" sound alike: one fragment for "cent".
    assert say_number(200, "fr") == ["say-2", "say-hundred"]
    assert say_number(201, "fr") == ["say-2", "say-hundred", "say-1"]
    assert say_number(100, "fr") == ["say-hundred"]
    assert say_number(80_000, "fr") == ["say-80", "say-thousand"]


@pytest.mark.parametrize(
    ("n", "options", "text"),
    [
        (1, {}, "eins"),
        (1, {"feminine": True}, "eine"),
        (1, {"before_noun": True}, "ein"),
        (21, {}, "einundzwanzig"),
        (21, {"feminine": True}, "einundzwanzig"),
        (30, {}, "dreißig"),
        (99, {}, "neunundneunzig"),
        (100, {}, "hundert"),
        (101, {}, "hundert eins"),
        (101, {"feminine": True}, "hundert eine"),
        (200, {}, "zwei hundert"),
        (1000, {}, "tausend"),
        (2001, {}, "zwei tausend eins"),
        (101_000, {}, "hundert ein tausend"),
        (1_000_000, {}, "eine Million"),
        (2_000_000, {}, "zwei Millionen"),
    ],
)
def test_german_numbers(n: int, options: dict[str, bool], text: str) -> None:
    assert words(say_number(n, "de", **options), "de") == text


def test_german_twenty_one_is_one_word_with_the_units_first() -> None:
    assert say_number(21, "de") == ["say-21"]
    assert SAY_TEXTS["de"]["say-21"] == "einundzwanzig"
    assert say_number(121, "de") == ["say-hundred", "say-21"]


@pytest.mark.parametrize("language", ["en", "es", "fr", "de"])
def test_numbers_out_of_range_are_refused(language: str) -> None:
    with pytest.raises(ValueError):
        say_number(-1, language)
    with pytest.raises(ValueError):
        say_number(MAX_NUMBER + 1, language)
    assert say_number(MAX_NUMBER, language)


def test_languages_fall_back_like_the_prompts() -> None:
    assert language_of("es-MX") == "es"
    assert language_of("de_AT") == "de"
    assert language_of("pt-BR") == "en"
    assert say_number(21, "es-MX", before_noun=True) == ["say-21-a"]
    assert say_number(21, "pt") == say_number(21, "en")


# --- digits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "es", "fr", "de"])
def test_digits_one_by_one(language: str) -> None:
    assert say_digits("+33 (1) 20-07", language) == [
        "say-plus",
        "say-3",
        "say-3",
        "say-1",
        "say-2",
        "say-0",
        "say-0",
        "say-7",
    ]
    assert say_digits("*98#", language) == ["say-star", "say-9", "say-8", "say-pound"]


def test_digits_in_each_language() -> None:
    assert words(say_digits("+1", "en"), "en") == "plus one"
    assert words(say_digits("+1", "es"), "es") == "más uno"
    assert words(say_digits("+1", "fr"), "fr") == "plus un"
    assert words(say_digits("+1", "de"), "de") == "plus eins"


@pytest.mark.parametrize("bad", ["12a", "sip:1", "١٢"])
def test_digits_refuse_what_is_not_a_phone_number(bad: str) -> None:
    with pytest.raises(ValueError):
        say_digits(bad, "en")


# --- counts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "n", "noun", "text"),
    [
        ("en", 0, "new-message", "no new messages"),
        ("en", 1, "saved-message", "one saved message"),
        ("en", 2, "new-message", "two new messages"),
        ("es", 0, "new-message", "ningún mensaje nuevo"),
        ("es", 1, "new-message", "un mensaje nuevo"),
        ("es", 2, "saved-message", "dos mensajes guardados"),
        ("es", 21, "new-message", "veintiún mensajes nuevos"),
        ("es", 1_000_000, "message", "un millón de mensajes"),
        ("fr", 0, "saved-message", "aucun message sauvegardé"),
        ("fr", 1, "new-message", "un nouveau message"),
        ("fr", 2, "new-message", "deux nouveaux messages"),
        ("fr", 21, "saved-message", "vingt et un messages sauvegardés"),
        ("fr", 2_000_000, "message", "deux millions de messages"),
        ("de", 0, "new-message", "keine neuen Nachrichten"),
        ("de", 1, "new-message", "eine neue Nachricht"),
        ("de", 1, "saved-message", "eine gespeicherte Nachricht"),
        ("de", 3, "urgent-message", "drei dringende Nachrichten"),
        ("de", 101, "message", "hundert eine Nachrichten"),
    ],
)
def test_counts(language: str, n: int, noun: str, text: str) -> None:
    assert words(say_count(n, noun, language), language) == text


def test_count_fragments_are_singular_or_plural() -> None:
    assert say_count(1, "new-message", "en") == ["say-1", "say-new-message"]
    assert say_count(2, "new-message", "en") == ["say-2", "say-new-messages"]
    assert say_count(0, "saved-message", "en") == ["say-no-saved-messages"]
    assert say_count(1, "new-message", "es") == ["say-1-a", "say-new-message"]
    assert say_count(1, "new-message", "de") == ["say-1-f", "say-new-message"]
    with pytest.raises(ValueError):
        say_count(2, "fax", "en")
    assert set(NOUNS) == {"message", "new-message", "saved-message", "urgent-message"}


def test_counts_joined_with_and() -> None:
    counts = [(2, "new-message"), (1, "saved-message")]
    assert say_counts(counts, "en") == [
        "say-2",
        "say-new-messages",
        "say-and",
        "say-1",
        "say-saved-message",
    ]
    assert words(say_counts(counts, "fr"), "fr") == (
        "deux nouveaux messages et un message sauvegardé"
    )
    assert words(say_counts(counts, "de"), "de") == (
        "zwei neue Nachrichten und eine gespeicherte Nachricht"
    )
    assert words(say_counts([(0, "new-message")], "es"), "es") == "ningún mensaje nuevo"
    assert say_counts([], "en") == []


# --- dates and times -------------------------------------------------------------------------


def _at(tz: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


NOW = _at(BERLIN, 2026, 12, 7, 16, 0)  # a Monday


@pytest.mark.parametrize(
    ("language", "when", "text"),
    [
        ("en", _at(BERLIN, 2026, 12, 7, 15, 42), "today at three forty-two P M"),
        ("en", _at(BERLIN, 2026, 12, 7, 0, 5), "today at twelve oh five A M"),
        ("en", _at(BERLIN, 2026, 12, 7, 12, 0), "today at twelve P M"),
        ("en", _at(BERLIN, 2026, 12, 6, 9, 30), "yesterday at nine thirty A M"),
        ("en", _at(BERLIN, 2026, 12, 1, 21, 1), "Tuesday December first at nine oh one P M"),
        (
            "en",
            _at(BERLIN, 2025, 3, 21, 10, 15),
            "Friday March twenty-first twenty twenty-five at ten fifteen A M",
        ),
        (
            "en",
            _at(BERLIN, 2005, 3, 22, 10, 15),
            "Tuesday March twenty-second two thousand five at ten fifteen A M",
        ),
        ("es", _at(BERLIN, 2026, 12, 7, 15, 42), "hoy a las quince horas y cuarenta y dos minutos"),
        ("es", _at(BERLIN, 2026, 12, 6, 1, 1), "ayer a la una y un minuto"),
        (
            "es",
            _at(BERLIN, 2026, 12, 5, 21, 0),
            "el sábado cinco de diciembre a las veintiuna horas",
        ),
        ("es", _at(BERLIN, 2026, 12, 7, 0, 21), "hoy a las cero horas y veintiún minutos"),
        (
            "es",
            _at(BERLIN, 2025, 12, 31, 23, 59),
            "el miércoles treinta y uno de diciembre de dos mil veinticinco"
            " a las veintitrés horas y cincuenta y nueve minutos",
        ),
        ("fr", _at(BERLIN, 2026, 12, 7, 15, 42), "aujourd'hui à quinze heures quarante-deux"),
        ("fr", _at(BERLIN, 2026, 12, 6, 1, 1), "hier à une heure une"),
        ("fr", _at(BERLIN, 2026, 12, 7, 0, 0), "aujourd'hui à zéro heure"),
        (
            "fr",
            _at(BERLIN, 2026, 12, 1, 21, 30),
            "mardi premier décembre à vingt et une heures trente",
        ),
        ("fr", _at(BERLIN, 2026, 11, 30, 8, 5), "lundi trente novembre à huit heures cinq"),
        ("de", _at(BERLIN, 2026, 12, 7, 15, 42), "heute um fünfzehn Uhr zweiundvierzig"),
        ("de", _at(BERLIN, 2026, 12, 6, 1, 1), "gestern um ein Uhr eins"),
        ("de", _at(BERLIN, 2026, 12, 1, 0, 10), "am Dienstag dem ersten Dezember um null Uhr zehn"),
        (
            "de",
            _at(BERLIN, 2025, 3, 21, 21, 0),
            "am Freitag dem einundzwanzigsten März zwei tausend fünfundzwanzig um einundzwanzig Uhr",
        ),
    ],
)
def test_dates_and_times(language: str, when: datetime, text: str) -> None:
    assert words(say_datetime(when, language, now=NOW), language) == text


def test_date_fragments() -> None:
    assert say_datetime(_at(BERLIN, 2026, 12, 7, 15, 42), "de", now=NOW) == [
        "say-today",
        "say-at",
        "say-15",
        "say-hours",
        "say-42",
    ]
    assert say_datetime(_at(BERLIN, 2026, 12, 3, 15, 0), "en", now=NOW) == [
        "say-thursday",
        "say-december",
        "say-ord-3",
        "say-at",
        "say-3",
        "say-pm",
    ]


def test_spring_forward_in_berlin() -> None:
    now = datetime(2026, 3, 29, 8, 0, tzinfo=UTC).astimezone(BERLIN)  # 10:00 CEST
    # 23:30 UTC on the 28th is 00:30 CET on the 29th: today, though UTC says yesterday.
    late = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    assert words(say_datetime(late, "de", now=now), "de") == "heute um null Uhr dreißig"
    # Just after the change: 01:30 UTC is 03:30 CEST.
    after = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert words(say_datetime(after, "fr", now=now), "fr") == "aujourd'hui à trois heures trente"
    # 24 hours before 10:00 CEST is 09:00 CET the day before (wall-clock arithmetic would say 10).
    day_before = now.astimezone(UTC) - timedelta(hours=24)
    assert words(say_datetime(day_before, "en", now=now), "en") == "yesterday at nine A M"
    assert words(say_datetime(now - timedelta(days=1), "en", now=now), "en") == (
        "yesterday at ten A M"
    )
    two_days = now.replace(day=27)
    assert words(say_datetime(two_days, "en", now=now), "en") == (
        "Friday March twenty-seventh at ten A M"
    )


def test_fall_back_in_new_york() -> None:
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC).astimezone(NEW_YORK)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC).astimezone(NEW_YORK)  # 01:30 EST
    same_day = datetime(2026, 11, 1, 20, 0, tzinfo=UTC).astimezone(NEW_YORK)
    next_day = datetime(2026, 11, 2, 5, 30, tzinfo=UTC).astimezone(NEW_YORK)  # 00:30 EST
    for when in (first, second):
        assert words(say_datetime(when, "en", now=same_day), "en") == "today at one thirty A M"
        assert words(say_datetime(when, "en", now=next_day), "en") == (
            "yesterday at one thirty A M"
        )
        assert words(say_datetime(when, "es", now=next_day), "es") == (
            "ayer a la una y treinta minutos"
        )


def test_dates_need_aware_datetimes() -> None:
    with pytest.raises(ValueError):
        say_datetime(datetime(2026, 12, 7, 15, 42), "en", now=NOW)
    with pytest.raises(ValueError):
        say_datetime(NOW, "en", now=datetime(2026, 12, 7, 16, 0))
