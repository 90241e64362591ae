"""Signed links: HMAC-SHA256 over path, expiry and subject; at most 15 minutes of life."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from afterbeep.signing import MAX_TTL_SECONDS, make_signed_url, sign_link, verify_link

SECRET = b"k" * 32
PATH = "/v1/messages/msg_01jd7x6v3q9z8y7w6v5t4s3r2q/audio"
NOW = 1_800_000_000


def test_valid_link_verifies_until_it_expires() -> None:
    params = sign_link(SECRET, PATH, NOW + 600)
    assert params["exp"] == str(NOW + 600)
    assert verify_link(SECRET, PATH, params["exp"], params["sig"], NOW)
    assert verify_link(SECRET, PATH, params["exp"], params["sig"], NOW + 599.9)
    assert not verify_link(SECRET, PATH, params["exp"], params["sig"], NOW + 600)
    assert not verify_link(SECRET, PATH, params["exp"], params["sig"], NOW + 3600)


def test_str_and_bytes_keys_agree() -> None:
    params = sign_link("k" * 32, PATH, NOW + 60)
    assert verify_link(SECRET, PATH, int(params["exp"]), params["sig"], NOW)


def test_tampering_is_refused() -> None:
    params = sign_link(SECRET, PATH, NOW + 600, subject="acc_1")
    exp, sig = params["exp"], params["sig"]
    assert verify_link(SECRET, PATH, exp, sig, NOW, subject="acc_1")

    assert not verify_link(SECRET, PATH.replace("msg_01", "msg_02"), exp, sig, NOW, "acc_1")
    assert not verify_link(SECRET, PATH + "/", exp, sig, NOW, "acc_1")
    assert not verify_link(SECRET, PATH, str(NOW + 601), sig, NOW, "acc_1")
    assert not verify_link(SECRET, PATH, exp, sig, NOW, subject="acc_2")
    assert not verify_link(SECRET, PATH, exp, sig, NOW)
    assert not verify_link(b"other-secret", PATH, exp, sig, NOW, "acc_1")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert not verify_link(SECRET, PATH, exp, flipped, NOW, "acc_1")
    assert not verify_link(SECRET, PATH, exp, sig[:-1], NOW, "acc_1")
    assert not verify_link(SECRET, PATH, exp, "", NOW, "acc_1")


@pytest.mark.parametrize(
    "exp", ["", "abc", "-5", "1e9", " 1800000600", "\uff11\uff18\uff10\uff10", "9" * 40]
)
def test_malformed_expiry_is_refused_without_raising(exp: str) -> None:
    sig = sign_link(SECRET, PATH, NOW + 600)["sig"]
    assert not verify_link(SECRET, PATH, exp, sig, NOW)


def test_non_ascii_signature_is_refused_without_raising() -> None:
    assert not verify_link(SECRET, PATH, str(NOW + 60), "é\ud800" * 10, NOW)


def test_link_living_longer_than_fifteen_minutes_is_refused_even_if_signed() -> None:
    params = sign_link(SECRET, PATH, NOW + MAX_TTL_SECONDS + 1)
    assert not verify_link(SECRET, PATH, params["exp"], params["sig"], NOW)
    # The same link becomes acceptable only once it is within 15 minutes of expiring.
    assert verify_link(SECRET, PATH, params["exp"], params["sig"], NOW + 1)


def test_make_signed_url_round_trip() -> None:
    url = make_signed_url("https://vm.example.com/", PATH, SECRET, MAX_TTL_SECONDS, NOW + 0.5)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://vm.example.com"
    assert parts.path == PATH
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert set(query) == {"exp", "sig"}
    assert int(query["exp"]) == NOW + MAX_TTL_SECONDS
    assert verify_link(SECRET, parts.path, query["exp"], query["sig"], NOW + 1)
    assert not verify_link(SECRET, parts.path, query["exp"], query["sig"], NOW + MAX_TTL_SECONDS)


@pytest.mark.parametrize("ttl", [MAX_TTL_SECONDS + 1, 3600, 0, -1])
def test_make_signed_url_refuses_bad_ttl(ttl: int) -> None:
    with pytest.raises(ValueError):
        make_signed_url("https://vm.example.com", PATH, SECRET, ttl, NOW)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        sign_link(b"", PATH, NOW + 60)
    with pytest.raises(ValueError):
        verify_link("", PATH, str(NOW + 60), "x", NOW)
    for path in ["relative/path", "/a?b=c", "/a#frag"]:
        with pytest.raises(ValueError):
            sign_link(SECRET, path, NOW + 60)
