"""The proxy's shadow limits are settings (SWITCHOVER_SHADOW_*): read and checked at start, and what a real
`switchover proxy` process mirrors obeys them."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from store.models import ShadowSpec
from switchover.settings import Settings, from_environment
from tests.runtime_helpers import Machine
from tests.scenario import Scenario
from tests.test_shadow import IDENTITY, eventually, green_awaiting_promotion, mirroring, shadow_outcomes

ROOT = Path(__file__).parents[1]


def test_the_shadow_limits_default_to_what_the_readme_says(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIMEOUT_SECONDS", "MAX_BODY_BYTES", "MAX_IN_FLIGHT"):
        monkeypatch.delenv(f"SWITCHOVER_SHADOW_{name}", raising=False)
    settings = from_environment()
    assert (settings.shadow_timeout_seconds, settings.shadow_max_body_bytes, settings.shadow_max_in_flight) == (
        10.0,
        1_000_000,
        100,
    )
    assert settings.shadow_max_in_flight == Settings().shadow_max_in_flight


def test_the_shadow_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHOVER_SHADOW_TIMEOUT_SECONDS", "0.25")
    monkeypatch.setenv("SWITCHOVER_SHADOW_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("SWITCHOVER_SHADOW_MAX_IN_FLIGHT", "7")
    settings = from_environment()
    assert (settings.shadow_timeout_seconds, settings.shadow_max_body_bytes, settings.shadow_max_in_flight) == (
        0.25,
        4096,
        7,
    )


@pytest.mark.parametrize(
    ("variable", "raw", "says"),
    [
        ("SWITCHOVER_SHADOW_TIMEOUT_SECONDS", "0", "must be positive"),
        ("SWITCHOVER_SHADOW_TIMEOUT_SECONDS", "soon", "must be a number"),
        ("SWITCHOVER_SHADOW_MAX_BODY_BYTES", "-1", "must be positive"),
        ("SWITCHOVER_SHADOW_MAX_BODY_BYTES", "1.5", "must be a whole number"),
        ("SWITCHOVER_SHADOW_MAX_IN_FLIGHT", "0.5", "must be a whole number"),  # not rounded down to 0
        ("SWITCHOVER_SHADOW_MAX_IN_FLIGHT", "inf", "must be a whole number"),
        ("SWITCHOVER_SHADOW_MAX_IN_FLIGHT", "ten", "must be a number"),
    ],
)
def test_a_bad_shadow_limit_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, says: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SystemExit, match=f"{variable} {says}"):
        from_environment()


def test_the_proxy_refuses_to_start_with_a_bad_shadow_limit(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_SHADOW_MAX_IN_FLIGHT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "switchover", "proxy", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "SWITCHOVER_SHADOW_MAX_IN_FLIGHT must be positive" in result.stderr


async def test_the_proxy_command_mirrors_within_its_body_limit_setting(
    scenario: Scenario, machine: Machine, database_url: str, unused_tcp_port: int
) -> None:
    name = await green_awaiting_promotion(scenario, machine, ShadowSpec(ignore_fields=IDENTITY), {})
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_SHADOW_MAX_BODY_BYTES": "100"}
    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchover", "proxy", "--port", str(unused_tcp_port),
        env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def up() -> bool:
                try:
                    return (await client.get(f"{base}/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, within=30)
            url = f"{base}/{name}/v1/predict"
            await mirroring(client, url)  # a small body is mirrored
            for _ in range(3):
                big = await client.post(url, content=b"x" * 101)
                assert big.status_code == 200 and big.json()["revision"] == 1
            outcomes = await shadow_outcomes(client, base)
    finally:
        proxy.terminate()
        await asyncio.wait_for(proxy.wait(), timeout=20)

    assert outcomes[("switchover_proxy_shadow_skipped_total", "body_too_large")] == 3
