"""`afterbeep voicemails send|list`: ringless voicemail from the command line, over the HTTP API.

The commands are API clients (`--url`, `--api-key` or AFTERBEEP_API_KEY), so they act as one
account and go through the same validation as any other client. `send --to-file` uploads the
MP3 once (`POST /v1/media`) and sends one JSON request per recipient with that `media_id`; each
request carries an Idempotency-Key derived from the media, use case and number, so running the
same file again after an interruption creates no second send.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

voicemails_cli = typer.Typer(no_args_is_help=True, help="Ringless voicemail sends")

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="AFTERBEEP_URL", help="the afterbeep HTTP API")
]
KeyOpt = Annotated[
    str, typer.Option("--api-key", envvar="AFTERBEEP_API_KEY", help="an API key of the account")
]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    to: str
    ok: bool
    detail: str  # the send id, or the problem's detail


def read_numbers(path: Path) -> list[str]:
    """The first column of a CSV file; a first row that holds no digit is a header."""
    numbers: list[str] = []
    with path.open(newline="") as handle:
        for index, row in enumerate(csv.reader(handle)):
            if not row or not row[0].strip():
                continue
            value = row[0].strip()
            if index == 0 and not any(ch.isdigit() for ch in value):
                continue
            numbers.append(value)
    return numbers


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {detail}"


async def upload(client: httpx.AsyncClient, name: str, data: bytes) -> str:
    """Store the MP3 as a send's audio (refused before anything is stored when a send would
    refuse it; the account's copy when it already holds the same file)."""
    files = {"file": (name, data, "audio/mpeg")}
    response = await client.post("/v1/media", files=files, data={"purpose": "voicemail"})
    if response.status_code not in (200, 201):
        raise typer.BadParameter(_problem(response), param_hint="--audio")
    return str(response.json()["id"])


async def send_one(
    client: httpx.AsyncClient, use_case_id: str, media_id: str, to: str
) -> SendOutcome:
    """One send; a refusal is an outcome, not an error."""
    key = hashlib.sha256(f"{media_id}|{use_case_id}|{to}".encode()).hexdigest()[:40]
    response = await client.post(
        "/v1/voicemails",
        json={"to": to, "use_case_id": use_case_id, "media_id": media_id},
        headers={"Idempotency-Key": key},
    )
    if response.status_code == 202:
        return SendOutcome(to, True, str(response.json()["id"]))
    return SendOutcome(to, False, _problem(response))


async def list_sends(client: httpx.AsyncClient, params: dict[str, str], limit: int) -> list[Any]:
    """Sends newest first, following cursors up to `limit` items."""
    items: list[Any] = []
    cursor: str | None = None
    while len(items) < limit:
        query = {**params, "limit": str(min(100, limit - len(items)))}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/v1/voicemails", params=query)
        if response.status_code != 200:
            raise typer.BadParameter(_problem(response))
        page = response.json()
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items


def _client(url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=60.0
    )


@voicemails_cli.command("send")
def send(
    use_case: Annotated[str, typer.Option("--use-case", help="use case id")],
    audio: Annotated[Path, typer.Option("--audio", exists=True, dir_okay=False, help="MP3 file")],
    api_key: KeyOpt,
    to: Annotated[str | None, typer.Option("--to", help="recipient number")] = None,
    to_file: Annotated[
        Path | None, typer.Option("--to-file", exists=True, dir_okay=False, help="CSV of numbers")
    ] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """Send a ringless voicemail to one number or to every number of a CSV file."""
    from afterbeep.cli import run

    if (to is None) == (to_file is None):
        raise typer.BadParameter("give exactly one of --to and --to-file")
    numbers = [to] if to is not None else read_numbers(to_file) if to_file is not None else []

    data = audio.read_bytes()

    async def main() -> tuple[int, int]:
        async with _client(url, api_key) as client:
            media_id = await upload(client, audio.name, data)
            sent = failed = 0
            with typer.progressbar(length=len(numbers), label="sending") as bar:
                for number in numbers:
                    outcome = await send_one(client, use_case, media_id, number)
                    if outcome.ok:
                        sent += 1
                        if to is not None:
                            typer.echo(outcome.detail)
                    else:
                        failed += 1
                        typer.echo(f"{outcome.to}: {outcome.detail}", err=True)
                    bar.update(1)
            return sent, failed

    sent, failed = run(main)
    typer.echo(f"{sent} accepted, {failed} refused", err=True)
    if failed:
        raise typer.Exit(1)


@voicemails_cli.command("list")
def list_(
    api_key: KeyOpt,
    use_case: Annotated[str | None, typer.Option("--use-case")] = None,
    setup: Annotated[str | None, typer.Option("--setup")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    to: Annotated[str | None, typer.Option("--to")] = None,
    created_after: Annotated[str | None, typer.Option("--created-after")] = None,
    created_before: Annotated[str | None, typer.Option("--created-before")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """List sends (newest first) with the API's filters."""
    from afterbeep.cli import run

    given = {
        "use_case_id": use_case,
        "setup_id": setup,
        "status": status,
        "to": to,
        "created_after": created_after,
        "created_before": created_before,
    }
    params = {name: value for name, value in given.items() if value is not None}

    async def main() -> list[Any]:
        async with _client(url, api_key) as client:
            return await list_sends(client, params, limit)

    for item in run(main):
        if as_json:
            typer.echo(json.dumps(item))
        else:
            reason = item.get("failure_reason") or item.get("skip_reason") or ""
            typer.echo(f"{item['id']}  {item['status']:<9}  {item['to']}  {reason}".rstrip())
