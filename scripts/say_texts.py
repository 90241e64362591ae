"""The texts of the `say-...` fragments (numbers, dates, times, counts) per language.

`afterbeep.domain.say` decides which fragments a number or a date is said with; this module only
spells each fragment. A language has only the fragments its grammar uses.
"""

from __future__ import annotations

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

_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_EN_ORDINAL_ONES = [
    "_",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]
_EN_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}

_ES_TO_29 = [
    "cero",
    "uno",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
    "trece",
    "catorce",
    "quince",
    "dieciséis",
    "diecisiete",
    "dieciocho",
    "diecinueve",
    "veinte",
    "veintiuno",
    "veintidós",
    "veintitrés",
    "veinticuatro",
    "veinticinco",
    "veintiséis",
    "veintisiete",
    "veintiocho",
    "veintinueve",
]
_ES_TENS = [
    "_",
    "_",
    "_",
    "treinta",
    "cuarenta",
    "cincuenta",
    "sesenta",
    "setenta",
    "ochenta",
    "noventa",
]
_ES_HUNDREDS = [
    "_",
    "_",
    "doscientos",
    "trescientos",
    "cuatrocientos",
    "quinientos",
    "seiscientos",
    "setecientos",
    "ochocientos",
    "novecientos",
]

_FR_TO_16 = [
    "zéro",
    "un",
    "deux",
    "trois",
    "quatre",
    "cinq",
    "six",
    "sept",
    "huit",
    "neuf",
    "dix",
    "onze",
    "douze",
    "treize",
    "quatorze",
    "quinze",
    "seize",
]
_FR_TENS = ["_", "_", "vingt", "trente", "quarante", "cinquante", "soixante"]

_DE_ONES = [
    "null",
    "eins",
    "zwei",
    "drei",
    "vier",
    "fünf",
    "sechs",
    "sieben",
    "acht",
    "neun",
    "zehn",
    "elf",
    "zwölf",
    "dreizehn",
    "vierzehn",
    "fünfzehn",
    "sechzehn",
    "siebzehn",
    "achtzehn",
    "neunzehn",
]
_DE_TENS = [
    "_",
    "_",
    "zwanzig",
    "dreißig",
    "vierzig",
    "fünfzig",
    "sechzig",
    "siebzig",
    "achtzig",
    "neunzig",
]
_DE_ORDINALS = {1: "ersten", 3: "dritten", 7: "siebten", 8: "achten"}


def en_number(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def en_ordinal(n: int) -> str:
    if n < 20:
        return _EN_ORDINAL_ONES[n]
    if n % 10 == 0:
        return _EN_ORDINAL_TENS[n]
    return f"{_EN_TENS[n // 10]}-{_EN_ORDINAL_ONES[n % 10]}"


def es_number(n: int) -> str:
    if n < 30:
        return _ES_TO_29[n]
    tens, ones = divmod(n, 10)
    return _ES_TENS[tens] + (f" y {_ES_TO_29[ones]}" if ones else "")


def fr_number(n: int) -> str:
    if n <= 16:
        return _FR_TO_16[n]
    if n < 20:
        return f"dix-{_FR_TO_16[n - 10]}"
    if n < 70:
        tens, ones = divmod(n, 10)
        if ones == 0:
            return _FR_TENS[tens]
        return f"{_FR_TENS[tens]} et un" if ones == 1 else f"{_FR_TENS[tens]}-{_FR_TO_16[ones]}"
    if n < 80:
        return "soixante et onze" if n == 71 else f"soixante-{fr_number(n - 60)}"
    return "quatre-vingts" if n == 80 else f"quatre-vingt-{fr_number(n - 80)}"


def de_number(n: int) -> str:
    if n < 20:
        return _DE_ONES[n]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return _DE_TENS[tens]
    return ("ein" if ones == 1 else _DE_ONES[ones]) + "und" + _DE_TENS[tens]


def de_ordinal(n: int) -> str:
    """The dative ordinal said after "dem": "dem siebten", "dem einundzwanzigsten"."""
    if n in _DE_ORDINALS:
        return _DE_ORDINALS[n]
    return de_number(n) + ("ten" if n < 20 else "sten")


def _numbers(spell: dict[int, str]) -> dict[str, str]:
    return {f"say-{n}": text for n, text in spell.items()}


def _en() -> dict[str, str]:
    texts = _numbers({n: en_number(n) for n in range(100)})
    texts |= {f"say-ord-{d}": en_ordinal(d) for d in range(1, 32)}
    texts |= dict(
        zip((f"say-{d}" for d in WEEKDAYS), (d.capitalize() for d in WEEKDAYS), strict=True)
    )
    texts |= dict(zip((f"say-{m}" for m in MONTHS), (m.capitalize() for m in MONTHS), strict=True))
    return texts | {
        "say-hundred": "hundred",
        "say-thousand": "thousand",
        "say-million": "million",
        "say-and": "and",
        "say-today": "today",
        "say-yesterday": "yesterday",
        "say-at": "at",
        "say-oh": "oh",
        "say-am": "A M",
        "say-pm": "P M",
        "say-plus": "plus",
        "say-star": "star",
        "say-pound": "pound",
        "say-message": "message",
        "say-messages": "messages",
        "say-no-messages": "no messages",
        "say-new-message": "new message",
        "say-new-messages": "new messages",
        "say-no-new-messages": "no new messages",
        "say-saved-message": "saved message",
        "say-saved-messages": "saved messages",
        "say-no-saved-messages": "no saved messages",
        "say-urgent-message": "urgent message",
        "say-urgent-messages": "urgent messages",
        "say-no-urgent-messages": "no urgent messages",
    }


def _es() -> dict[str, str]:
    texts = _numbers({n: es_number(n) for n in range(100)})
    for n in (1, 21, 31, 41, 51, 61, 71, 81, 91):
        stem = es_number(n).removesuffix("uno")
        texts[f"say-{n}-a"] = stem + ("ún" if n == 21 else "un")
        texts[f"say-{n}-f"] = stem + "una"
    for hundreds in range(2, 10):
        texts[f"say-{hundreds * 100}"] = _ES_HUNDREDS[hundreds]
        texts[f"say-{hundreds * 100}-f"] = _ES_HUNDREDS[hundreds].removesuffix("os") + "as"
    weekdays = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
    months = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ]
    texts |= dict(zip((f"say-{d}" for d in WEEKDAYS), weekdays, strict=True))
    texts |= dict(zip((f"say-{m}" for m in MONTHS), months, strict=True))
    return texts | {
        "say-100": "cien",
        "say-100-c": "ciento",
        "say-thousand": "mil",
        "say-million": "millón",
        "say-millions": "millones",
        "say-and": "y",
        "say-the": "el",
        "say-of": "de",
        "say-today": "hoy",
        "say-yesterday": "ayer",
        "say-at": "a las",
        "say-at-1": "a la",
        "say-hours": "horas",
        "say-minute": "minuto",
        "say-minutes": "minutos",
        "say-plus": "más",
        "say-star": "asterisco",
        "say-pound": "almohadilla",
        "say-message": "mensaje",
        "say-messages": "mensajes",
        "say-no-messages": "ningún mensaje",
        "say-new-message": "mensaje nuevo",
        "say-new-messages": "mensajes nuevos",
        "say-no-new-messages": "ningún mensaje nuevo",
        "say-saved-message": "mensaje guardado",
        "say-saved-messages": "mensajes guardados",
        "say-no-saved-messages": "ningún mensaje guardado",
        "say-urgent-message": "mensaje urgente",
        "say-urgent-messages": "mensajes urgentes",
        "say-no-urgent-messages": "ningún mensaje urgente",
    }


def _fr() -> dict[str, str]:
    texts = _numbers({n: fr_number(n) for n in range(100)})
    for n in (1, 21, 31, 41, 51, 61, 81):
        texts[f"say-{n}-f"] = fr_number(n).removesuffix("un") + "une"
    weekdays = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
    months = [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ]
    texts |= dict(zip((f"say-{d}" for d in WEEKDAYS), weekdays, strict=True))
    texts |= dict(zip((f"say-{m}" for m in MONTHS), months, strict=True))
    return texts | {
        "say-hundred": "cent",
        "say-thousand": "mille",
        "say-million": "million",
        "say-millions": "millions",
        "say-ord-1": "premier",
        "say-and": "et",
        "say-of": "de",
        "say-today": "aujourd'hui",
        "say-yesterday": "hier",
        "say-at": "à",
        "say-hour": "heure",
        "say-hours": "heures",
        "say-plus": "plus",
        "say-star": "étoile",
        "say-pound": "dièse",
        "say-message": "message",
        "say-messages": "messages",
        "say-no-messages": "aucun message",
        "say-new-message": "nouveau message",
        "say-new-messages": "nouveaux messages",
        "say-no-new-messages": "aucun nouveau message",
        "say-saved-message": "message sauvegardé",
        "say-saved-messages": "messages sauvegardés",
        "say-no-saved-messages": "aucun message sauvegardé",
        "say-urgent-message": "message urgent",
        "say-urgent-messages": "messages urgents",
        "say-no-urgent-messages": "aucun message urgent",
    }


def _de() -> dict[str, str]:
    texts = _numbers({n: de_number(n) for n in range(100)})
    texts |= {"say-1-a": "ein", "say-1-f": "eine"}
    texts |= {f"say-ord-{d}": de_ordinal(d) for d in range(1, 32)}
    weekdays = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
    months = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ]
    texts |= dict(zip((f"say-{d}" for d in WEEKDAYS), weekdays, strict=True))
    texts |= dict(zip((f"say-{m}" for m in MONTHS), months, strict=True))
    return texts | {
        "say-hundred": "hundert",
        "say-thousand": "tausend",
        "say-million": "Million",
        "say-millions": "Millionen",
        "say-and": "und",
        "say-on": "am",
        "say-the": "dem",
        "say-today": "heute",
        "say-yesterday": "gestern",
        "say-at": "um",
        "say-hours": "Uhr",
        "say-plus": "plus",
        "say-star": "Stern",
        "say-pound": "Raute",
        "say-message": "Nachricht",
        "say-messages": "Nachrichten",
        "say-no-messages": "keine Nachrichten",
        "say-new-message": "neue Nachricht",
        "say-new-messages": "neue Nachrichten",
        "say-no-new-messages": "keine neuen Nachrichten",
        "say-saved-message": "gespeicherte Nachricht",
        "say-saved-messages": "gespeicherte Nachrichten",
        "say-no-saved-messages": "keine gespeicherten Nachrichten",
        "say-urgent-message": "dringende Nachricht",
        "say-urgent-messages": "dringende Nachrichten",
        "say-no-urgent-messages": "keine dringenden Nachrichten",
    }


SAY_TEXTS: dict[str, dict[str, str]] = {"en": _en(), "es": _es(), "fr": _fr(), "de": _de()}
