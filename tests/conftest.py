"""Test rig: every API test runs on two backends built from real peers on 127.0.0.1.

- `sqlite-local`: SQLite file + local object store (the embedded defaults);
- `postgres-s3`: a throwaway PostgreSQL cluster + a SeaweedFS S3 server, both started here.
"""

from __future__ import annotations

import asyncio
import compileall
import os
import secrets as pysecrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import afterbeep
from afterbeep.app import Runtime
from afterbeep.config import Settings
from afterbeep.db.engine import Database
from tests.fixtures.postgres import postgres_cluster
from tests.fixtures.seaweed import SeaweedS3, seaweed_s3  # noqa: F401  (session fixture)

pytest_plugins = ["tests.file_durations"]

# Answering machine detection by words loads a speech model: only its own tests turn it on
# (they pass words on explicitly); everything else, services started here included, runs without.
os.environ.setdefault("AFTERBEEP_AMD_WORDS", "off")


def pytest_configure(config: pytest.Config) -> None:
    # With PYTHONDONTWRITEBYTECODE set, every `afterbeep` process a test starts (serve, each
    # CLI command) compiled the package from source again, about a CPU second each: compiled
    # once here, before the workers start, they all read the bytecode.
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(afterbeep.__file__).parent, quiet=1)

    # Admission by health refuses calls when this machine is slow, not when the code is wrong:
    # off for every service a test starts (read from the environment by Settings, inherited by
    # `afterbeep serve`). The admission tests give their own policy; AFTERBEEP_MAX_CALLS stays.
    for name in HEALTH_ADMISSION_OFF:
        os.environ.setdefault(name, "0")


HEALTH_ADMISSION_OFF = (
    "AFTERBEEP_ADMISSION_LAG_MS",
    "AFTERBEEP_ADMISSION_PROMPT_LATE_MS",
    "AFTERBEEP_ADMISSION_LOOP_BUSY_PERCENT",
    "AFTERBEEP_ADMISSION_ANSWERS_PER_100MS",
    "AFTERBEEP_ADMISSION_CPU_PERCENT",
    "AFTERBEEP_ADMISSION_CPU_WAIT_PERCENT",
)

BACKENDS = ["sqlite-local", "postgres-s3"]
ADMIN_KEY = "test-admin-" + "a" * 32  # AFTERBEEP_ADMIN_KEY of the test services
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on a loop of its own (a session fixture may be set up while a test's loop runs)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _migrated(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.close()


# Migrating a new database costs a second or more: each test starts from a copy of one database
# migrated once per test process (a file copy for SQLite, CREATE DATABASE ... TEMPLATE for
# PostgreSQL). The migrations themselves are tested from empty in tests/test_migration_*.py.
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "afterbeep.db"
    _run(_migrated(f"sqlite+aiosqlite:///{path}"))
    return path


def copy_sqlite_template(template: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for part in template.parent.glob(template.name + "*"):
        shutil.copyfile(part, data_dir / part.name)


@pytest.fixture(scope="session")
def pg_template(pg_url: str) -> str:
    name = "tmpl_" + pysecrets.token_hex(6)
    _run(_create_pg_database(pg_url, name, None))
    _run(_migrated(pg_url.rsplit("/", 1)[0] + "/" + name))
    return name


async def _create_pg_database(pg_url: str, name: str, template: str | None) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()


async def fresh_pg_database(pg_url: str, template: str | None = None) -> str:
    """A new database; with `template`, a copy of it (already migrated)."""
    name = "t_" + pysecrets.token_hex(6)
    await _create_pg_database(pg_url, name, template)
    return pg_url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Backend:
    name: str
    env: dict[str, Any]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    env: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "secret_key": "test-secret-" + "x" * 32,
        "allow_private_networks": "127.0.0.0/8",  # test peers listen on loopback
        "admin_key": ADMIN_KEY,
        # Transcription loads a speech model (hundreds of MB) in every runtime that runs its
        # worker: only the tests of transcription turn it on.
        "transcribe": False,
    }
    if request.param == "sqlite-local":
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), tmp_path / "var")
    if request.param == "postgres-s3":
        pg_url: str = request.getfixturevalue("pg_url")
        s3: SeaweedS3 = request.getfixturevalue("seaweed_s3")
        bucket = "t-" + pysecrets.token_hex(6)
        env.update(
            database_url=await fresh_pg_database(pg_url, request.getfixturevalue("pg_template")),
            storage_url=f"s3://{bucket}",
            s3_endpoint=s3.endpoint_url,
            s3_region=s3.region,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
        )
    return Backend(request.param, env)


def on_backends(
    argnames: str | tuple[str, ...], cases: Sequence[Any], *, postgres: Sequence[int]
) -> pytest.MarkDecorator:
    """Parametrize by `argnames` over every case of `cases` on SQLite, and over the cases at
    the indexes `postgres` on PostgreSQL + S3 as well.

    For inputs refused or parsed before the backend does anything of its own: the backend's
    part (its look-ups, that nothing is stored) is the same for all of them, so PostgreSQL + S3
    runs the cases that reach furthest into it (a look-up in another account, the audio
    checked after the look-up of its hash); the rest would only repeat them there."""
    names = (argnames,) if isinstance(argnames, str) else argnames
    assert postgres and all(0 <= index < len(cases) for index in postgres)
    params = [
        pytest.param(name, *(case if len(names) > 1 else (case,)))
        for name in BACKENDS
        for index, case in enumerate(cases)
        if name == "sqlite-local" or index in postgres
    ]
    return pytest.mark.parametrize(("backend", *names), params, indirect=["backend"])


def make_settings(backend: Backend, **overrides: Any) -> Settings:
    return Settings(**{**backend.env, **overrides})


@pytest.fixture
async def runtime(backend: Backend) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(backend))
    await rt.start(workers=False)
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://afterbeep.test") as c:
        yield c


@dataclass
class TestAccount:
    __test__ = False
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def account(runtime: Runtime) -> TestAccount:
    issued = await runtime.accounts.create_account("Acme Clinic")
    return TestAccount(issued.account_id, issued.secret)


@pytest.fixture
async def other_account(runtime: Runtime) -> TestAccount:
    issued = await runtime.accounts.create_account("Other Co")
    return TestAccount(issued.account_id, issued.secret)


SLOWEST_FILES = Path(__file__).with_name("slowest_files.txt")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of tests/slowest_files.txt first, longest first; the others after them in
    collection order, each file's tests in their own order. `make test` hands whole files to
    the two workers in this order (`--dist loadfile --no-loadscope-reorder`): a long file
    started last kept one worker busy for minutes after the other had finished."""
    ranks: dict[str, int] = {}
    for line in SLOWEST_FILES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            ranks.setdefault(line.split()[-1], len(ranks))
    items.sort(key=lambda item: ranks.get(item.nodeid.split("::", 1)[0], len(ranks)))
