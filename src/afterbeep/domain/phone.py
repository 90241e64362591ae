"""Phone numbers: parsed and validated with phonenumbers, stored in E.164, masked in logs."""

from __future__ import annotations

import phonenumbers

from afterbeep.domain.errors import InvalidPhoneNumber


def to_e164(raw: str, default_region: str = "US", field: str = "e164") -> str:
    """Normalise national, international or `+` forms to E.164; refuse invalid numbers."""
    text = raw.strip()
    if not text or len(text) > 32:
        raise InvalidPhoneNumber(field, "is not a phone number")
    candidate = text
    if text.isdigit() and len(text) > 10 and not text.startswith("0"):
        candidate = "+" + text
    try:
        parsed = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(field, "is not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(field, "is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask(number: str | None) -> str:
    """Keep the last four digits: personal data never goes to logs in full."""
    if not number:
        return ""
    tail = number[-4:]
    return "*" * max(len(number) - 4, 0) + tail
