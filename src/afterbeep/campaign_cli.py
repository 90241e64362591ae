"""`afterbeep campaigns create|show|list|pause|resume|cancel`: campaigns over the HTTP API.

Like `afterbeep voicemails`, the commands are API clients (`--url`, `--api-key` or
AFTERBEEP_API_KEY). `create` uploads the MP3 once when given `--audio` (`POST /v1/media`), then
sends the recipients file as it is (multipart, streamed): the server parses and validates it
and creates every send in one go, so a file of 100,000 numbers is one request. With `--wait` it
follows the campaign's progress with a bar until it completes or is canceled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from afterbeep.voicemail_cli import KeyOpt, UrlOpt, upload

campaigns_cli = typer.Typer(no_args_is_help=True, help="Campaigns: one recording, many recipients")

ENDED = frozenset({"completed", "canceled"})


class ApiProblem(Exception):
    """The API refused a request; the message is the problem's detail."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.body: dict[str, Any] = response.json()
        except ValueError:
            self.body = {}
        detail = self.body.get("detail") or self.body.get("title") or ""
        super().__init__(f"HTTP {self.status}: {detail}".rstrip(": "))

    def rows(self) -> list[str]:
        """The invalid rows of an `invalid-recipients` problem, one line each."""
        return [f"row {e['row']}: {e['reason']}" for e in self.body.get("invalid_recipients", [])]


def _json(response: httpx.Response, *ok: int) -> dict[str, Any]:
    if response.status_code not in ok:
        raise ApiProblem(response)
    data: dict[str, Any] = response.json()
    return data


async def create_campaign(
    client: httpx.AsyncClient, fields: dict[str, str], to_file: Path
) -> dict[str, Any]:
    """POST the recipients file with the campaign's fields (None values left out)."""
    with to_file.open("rb") as handle:
        response = await client.post(
            "/v1/campaigns",
            files={"recipients": (to_file.name, handle, "text/csv")},
            data=fields,
        )
    return _json(response, 201)


async def get_campaign(client: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    return _json(await client.get(f"/v1/campaigns/{campaign_id}"), 200)


async def act(client: httpx.AsyncClient, campaign_id: str, action: str) -> dict[str, Any]:
    return _json(await client.post(f"/v1/campaigns/{campaign_id}/{action}"), 200)


async def follow(
    client: httpx.AsyncClient,
    campaign_id: str,
    on_progress: Callable[[dict[str, Any]], None],
    interval: float = 2.0,
) -> dict[str, Any]:
    """Poll the campaign until it completes or is canceled with nothing left in flight."""
    while True:
        campaign = await get_campaign(client, campaign_id)
        on_progress(campaign)
        finished = campaign["recipients_finished"] == campaign["recipients_total"]
        if campaign["status"] == "completed" or (campaign["status"] == "canceled" and finished):
            return campaign
        await asyncio.sleep(interval)


def summary(campaign: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in campaign["progress"].items() if n)
    return (
        f"{campaign['id']}  {campaign['status']}  "
        f"{campaign['recipients_finished']}/{campaign['recipients_total']} finished"
        + (f"  ({counts})" if counts else "")
    )


def _client(url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=300.0
    )


def _fail(problem: ApiProblem) -> typer.Exit:
    typer.echo(str(problem), err=True)
    for line in problem.rows():
        typer.echo(f"  {line}", err=True)
    return typer.Exit(1)


@campaigns_cli.command("create")
def create(
    use_case: Annotated[str, typer.Option("--use-case", help="use case id")],
    to_file: Annotated[
        Path,
        typer.Option(
            "--to-file", exists=True, dir_okay=False, help="CSV: a `to`/`number` column or one column"
        ),
    ],
    api_key: KeyOpt,
    media: Annotated[str | None, typer.Option("--media", help="a stored MP3's media id")] = None,
    audio: Annotated[
        Path | None, typer.Option("--audio", exists=True, dir_okay=False, help="an MP3 file")
    ] = None,
    method: Annotated[
        str | None, typer.Option("--method", help="ringless or drop (default: the use case's)")
    ] = None,
    technique: Annotated[
        str | None, typer.Option("--technique", help="drops: two_call or single")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    start_at: Annotated[
        str | None, typer.Option("--start-at", help="ISO 8601 with an offset")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="leave invalid numbers out instead of failing")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="follow the progress until the end")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between polls")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the campaign as JSON")] = False,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """Create a campaign to every number of a CSV file (and optionally wait for it to end)."""
    from afterbeep.cli import run

    if (media is None) == (audio is None):
        raise typer.BadParameter("give exactly one of --media and --audio")
    given = {
        "use_case_id": use_case,
        "method": method,
        "technique": technique,
        "name": name,
        "start_at": start_at,
        "skip_invalid": "true" if skip_invalid else None,
    }

    async def main() -> dict[str, Any]:
        async with _client(url, api_key) as client:
            media_id = media
            if audio is not None:
                media_id = await upload(client, audio.name, audio.read_bytes())
            fields = {k: v for k, v in {**given, "media_id": media_id}.items() if v is not None}
            campaign = await create_campaign(client, fields, to_file)
            if not as_json:
                typer.echo(summary(campaign))
                if campaign["invalid_count"] or campaign["duplicates_removed"]:
                    typer.echo(
                        f"{campaign['invalid_count']} invalid left out, "
                        f"{campaign['duplicates_removed']} duplicates removed",
                        err=True,
                    )
            if not wait:
                return campaign
            with typer.progressbar(length=campaign["recipients_total"], label="delivering") as bar:
                shown = 0

                def advance(current: dict[str, Any]) -> None:
                    nonlocal shown
                    bar.update(current["recipients_finished"] - shown)
                    shown = current["recipients_finished"]

                return await follow(client, campaign["id"], advance, interval)

    try:
        final = run(main)
    except ApiProblem as problem:
        raise _fail(problem) from problem
    typer.echo(json.dumps(final) if as_json else summary(final) if wait else final["id"])


def _action(action: str) -> Callable[..., None]:
    def command(
        campaign_id: Annotated[str, typer.Argument(help="campaign id")],
        api_key: KeyOpt,
        url: UrlOpt = "http://127.0.0.1:8080",
    ) -> None:
        from afterbeep.cli import run

        async def main() -> dict[str, Any]:
            async with _client(url, api_key) as client:
                return await act(client, campaign_id, action)

        try:
            typer.echo(summary(run(main)))
        except ApiProblem as problem:
            raise _fail(problem) from problem

    command.__doc__ = {
        "pause": "Pause: sends not yet attempted wait; calls in progress finish.",
        "resume": "Resume a paused campaign.",
        "cancel": "Cancel: sends not yet attempted are skipped; calls in progress finish.",
    }[action]
    return command


for _name in ("pause", "resume", "cancel"):
    campaigns_cli.command(_name)(_action(_name))


@campaigns_cli.command("show")
def show(
    campaign_id: Annotated[str, typer.Argument(help="campaign id")],
    api_key: KeyOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print the campaign as JSON")] = False,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """A campaign's status and its sends counted per status."""
    from afterbeep.cli import run

    async def main() -> dict[str, Any]:
        async with _client(url, api_key) as client:
            return await get_campaign(client, campaign_id)

    try:
        campaign = run(main)
    except ApiProblem as problem:
        raise _fail(problem) from problem
    typer.echo(json.dumps(campaign) if as_json else summary(campaign))


@campaigns_cli.command("list")
def list_(
    api_key: KeyOpt,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    url: UrlOpt = "http://127.0.0.1:8080",
) -> None:
    """The newest campaigns, one line each."""
    from afterbeep.cli import run

    async def main() -> dict[str, Any]:
        async with _client(url, api_key) as client:
            return _json(await client.get("/v1/campaigns", params={"limit": limit}), 200)

    try:
        page = run(main)
    except ApiProblem as problem:
        raise _fail(problem) from problem
    for campaign in page["items"]:
        typer.echo(summary(campaign))
