"""The `switchover` command as a user runs it: migrate, a refusal on an old schema, and a real server."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest


def run(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "switchover", *args], env=env, capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_an_unmigrated_database_and_says_to_migrate(empty_database_url: str) -> None:
    result = run("serve", "--port", str(free_port()), "--insecure", database_url=empty_database_url)

    assert result.returncode != 0
    assert "switchover migrate" in result.stderr


def test_migrate_is_idempotent(empty_database_url: str) -> None:
    first = run("migrate", database_url=empty_database_url)
    second = run("migrate", database_url=empty_database_url)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "database schema is at version" in second.stdout


@pytest.fixture
def server(database_url: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "switchover", "serve", "--port", str(port), "--insecure"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server not ready in 30 s"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_real_server_answers_graphql_over_http(server: str) -> None:
    response = httpx.post(f"{server}/graphql", json={"query": "{ _service { sdl } }"})

    assert response.status_code == 200
    assert "@key" in response.json()["data"]["_service"]["sdl"]


def test_schema_print_is_the_served_sdl(server: str, database_url: str) -> None:
    served = httpx.post(f"{server}/graphql", json={"query": "{ _service { sdl } }"}).json()["data"]["_service"]["sdl"]
    printed = run("schema", "print", database_url=database_url)

    assert printed.returncode == 0
    assert printed.stdout.strip() == served.strip()
