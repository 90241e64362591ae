"""Logs never carry a phone number in full, an API key, or a PIN."""

from __future__ import annotations

import json
import logging

from afterbeep.domain.phone import mask
from afterbeep.logs import RedactingFormatter, mask_url, redact


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


def test_urls_lose_credentials_query_and_fragment() -> None:
    assert mask_url("https://user:pw@hooks.example:8443/a/b?token=x#f") == "https://hooks.example:8443/a/b"
    assert mask_url("http://[::1]:8080/h?k=v") == "http://[::1]:8080/h"
    text = redact('HTTP Request: POST http://u:s3cret@127.0.0.1:9/hook?sig=abc "HTTP/1.1 200 OK"')
    assert text == 'HTTP Request: POST http://127.0.0.1:9/hook "HTTP/1.1 200 OK"'
    assert redact("sip:+12025550123@carrier.example") == "sip:***0123@carrier.example"


def test_no_colour_codes_in_a_line() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started %s", ("\x1b[1mx\x1b[0m",), None)
    record.color_message = "Started \x1b[36m%s\x1b[0m"
    line = RedactingFormatter(json_lines=False).format(record)
    assert "\x1b" not in line and "color_message" not in line and line.endswith("Started x")
