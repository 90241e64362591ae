"""Logs never carry a phone number in full, an API key, or a PIN."""

from __future__ import annotations

import json
import logging

from afterbeep.domain.phone import mask
from afterbeep.logs import RedactingFormatter, redact


def test_mask_keeps_last_four_digits() -> None:
    assert mask("+12025550123") == "********0123"
    assert mask(None) == ""


def test_redact_masks_numbers_and_keys() -> None:
    text = redact("call from +12025550123 to 2025550199 with abk_key_01jg8asp59ps9rtt7azhrhvcre_secretPart-x")
    assert "2025550123" not in text and "2025550199" not in text
    assert "***0123" in text and "***0199" in text
    assert "secretPart" not in text


def test_json_formatter_redacts_message_and_extra_fields() -> None:
    record = logging.LogRecord("afterbeep", logging.INFO, __file__, 1, "caller %s", ("+447700900123",), None)
    record.callee = "+12025550123"
    line = json.loads(RedactingFormatter(json_lines=True).format(record))
    assert line["msg"] == "caller ***0123"
    assert line["callee"] == "***0123"
    assert line["level"] == "info"
