"""Request bodies are bounded: the key is checked before the body is read, and a body past its
limit is refused with 413 as soon as its declared or streamed size passes it.

Against the real `afterbeep serve` process: 300 MB streamed with chunked transfer encoding
(generated as it is sent), and the service's peak RSS (`VmHWM`) read before and after.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.service import NO_RECORDINGS, Service, running_service

MB = 1024 * 1024
STREAMED_BYTES = 300 * MB
CHUNK = b"\x00" * MB
MAX_GROWTH_KB = 50 * 1024
BOUNDARY = "afterbeep-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FILE_PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
    "Content-Type: audio/wav\r\n\r\n"
).encode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("limits") / "var", NO_RECORDINGS) as svc:
        yield svc


@pytest.fixture(scope="module")
def key(service: Service) -> str:
    return str(json.loads(service.cli("account", "create", "Limits", "--json").stdout)["api_key"])


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, object]
    sent: int  # body bytes written before the service answered or closed


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += got
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        got = sock.recv(65536)
        if not got:
            break
        rest += got
    return int(status_line.split()[1]), headers, rest[:length]


def post_streamed(
    service: Service,
    path: str,
    headers: dict[str, str],
    *,
    total: int = STREAMED_BYTES,
    prefix: bytes = b"",
    declared: int | None = None,
) -> Answer:
    """POST `prefix` then zeros up to `total` bytes, chunked (or with a `declared`
    Content-Length and no body), one MB at a time, stopping as soon as the service answers."""
    url = urlsplit(service.url)
    assert url.hostname is not None and url.port is not None
    head = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked")
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        pending = prefix
        try:
            while declared is None and sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or a close) before the body was all sent
                piece = pending or CHUNK[: min(MB, total - sent)]
                pending = b""
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            else:
                if declared is None:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, answer_headers, body = _read_answer(sock)
    return Answer(status, answer_headers, json.loads(body) if body else {}, sent)


def assert_problem(answer: Answer, status: int, error_id: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["error_id"] == error_id, answer.body
    assert answer.headers.get("connection") == "close"


def test_huge_bodies_are_refused_before_they_are_read(service: Service, key: str) -> None:
    bearer = {"Authorization": f"Bearer {key}"}
    # Warm up both routes (imports, first queries) so only the bodies below count.
    assert httpx.post(service.url + "/v1/mailboxes", json={"name": "warm"}, headers=bearer).status_code == 201
    media = httpx.post(service.url + "/v1/media", files={"file": ("x.wav", b"RIFF")}, headers=bearer)
    assert media.status_code == 422
    pid = service.process.pid
    before = peak_rss_kb(pid)

    json_headers = {"Content-Type": "application/json"}
    form_headers = {"Content-Type": MULTIPART}
    for path, headers, prefix in (
        ("/v1/mailboxes", json_headers, b'{"name": "'),
        ("/v1/media", form_headers, FILE_PART_HEAD),
    ):
        for auth in ({}, {"Authorization": "Bearer abk_not_a_key"}, {"Authorization": "Basic " + key}):
            answer = post_streamed(service, path, {**headers, **auth}, prefix=prefix)
            assert_problem(answer, 401, "unauthorized")
            assert answer.sent < STREAMED_BYTES, answer.sent
        answer = post_streamed(service, path, {**headers, **bearer}, prefix=prefix)
        assert_problem(answer, 413, "payload-too-large")
        assert answer.sent < STREAMED_BYTES, answer.sent
        # A declared size past the limit is refused before any of the body is sent.
        answer = post_streamed(service, path, {**headers, **bearer}, declared=10 * 1024 * MB)
        assert_problem(answer, 413, "payload-too-large")
        answer = post_streamed(service, path, headers, declared=10 * 1024 * MB)
        assert_problem(answer, 401, "unauthorized")

    growth = peak_rss_kb(pid) - before
    print(f"VmHWM before {before} kB, after {before + growth} kB, growth {growth} kB")
    assert growth < MAX_GROWTH_KB, growth
    # The service is still there and the key still works.
    assert httpx.get(service.url + "/v1/mailboxes", headers=bearer).status_code == 200


def test_the_json_limit_is_the_configured_one(tmp_path: Path) -> None:
    with running_service(tmp_path / "var", {**NO_RECORDINGS, "AFTERBEEP_MAX_BODY_KB": "4"}) as svc:
        key = json.loads(svc.cli("account", "create", "Small", "--json").stdout)["api_key"]
        bearer = {"Authorization": f"Bearer {key}"}
        fits = httpx.post(svc.url + "/v1/mailboxes", json={"name": "x" * 50}, headers=bearer)
        assert fits.status_code == 201
        over = httpx.post(svc.url + "/v1/mailboxes", json={"name": "y" * 5000}, headers=bearer)
        assert over.status_code == 413 and "4096" in over.json()["detail"]
