"""Real PostgreSQL for every test: a fresh database per test, copied from a template migrated once per session."""

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from store.database import migrate, open_database
from switchover.app import create_app
from switchover.settings import Settings
from tests.tokens import SECRET

# The machine's PostgreSQL; tests create and drop their own databases on it.
SERVER_URL = os.environ.get("SWITCHOVER_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    # Replicas run in sessions of their own (they outlive a scheduler), so a run killed by SIGTERM (a CI timeout, a
    # job stopped) left the current test's replicas serving: SIGTERM now stops the run as Ctrl-C does, through the
    # fixtures' teardown (the `machine` fixture kills the replicas it started).
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def url_of(database: str) -> str:
    parts = urlsplit(SERVER_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(sql: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(SERVER_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def create_database(template: str | None = None) -> str:
    name = f"switchover_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    name = create_database()
    try:
        migrate(url_of(name))
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    name = create_database(template=template_database)
    try:
        yield url_of(name)
    finally:
        drop_database(name)


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    name = create_database()
    try:
        yield url_of(name)
    finally:
        drop_database(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    database = open_database(database_url, max_size=30)
    await database.connect()
    try:
        yield database
    finally:
        await database.disconnect()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, insecure=True, introspection=True)


@pytest.fixture
async def client(settings: Settings, db: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        yield c


@pytest.fixture
async def secure(db: Any, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app checking JWTs signed with tests/tokens.py's SECRET (modules with other limits define their own)."""
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET), db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        yield c


@pytest.fixture
async def scenario(db: Any) -> AsyncIterator[Any]:
    """A lifecycle story on a fresh database; the invariants must hold when it ends."""
    from tests import invariants
    from tests.scenario import Scenario

    yield Scenario(db)
    await invariants.check(db)


@pytest.fixture
async def machine(scenario: Any) -> AsyncIterator[Any]:
    """The scheduler, the process runtime and the health checker, driven by hand; replicas are killed at the end."""
    from tests.runtime_helpers import Machine

    m = Machine(scenario)
    try:
        yield m
    finally:
        m.runtime.stop_all_started_here()
        await m.checker.aclose()


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Any, str]]:
    """A metrics endpoint (tests/analysis_helpers.py `Stub`) served on loopback, and its base URL."""
    from tests.analysis_helpers import Stub
    from tests.live_server import serving

    s = Stub()
    async with serving(s.app()) as url:
        yield s, url


@pytest.fixture
async def providers() -> AsyncIterator[Any]:
    """What the scheduler measures checks with in tests: loopback allowed (the stub listens there)."""
    from scheduler.providers import Providers

    p = Providers(allow_loopback=True)
    yield p
    await p.aclose()
