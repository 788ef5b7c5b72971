"""Bodies stream through `switchover proxy` (SPEC §7): server-sent events arrive as they are sent, large bodies pass
without the proxy holding them, and an answer cut off midway is an error for the caller, never a short 200."""

import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest

from tests.dataplanes import BuiltinPlane, builtin_proxy
from tests.runtime_helpers import Machine
from tests.scenario import Scenario

MIB = 1024 * 1024


@pytest.fixture
async def plane(scenario: Scenario, machine: Machine, database_url: str) -> AsyncIterator[tuple[BuiltinPlane, str]]:
    """One replica of revision 1 serving behind a real `switchover proxy`; the deployment's base URL."""
    await scenario.given_deployment(replicas=1)
    await scenario.deploy()
    await machine.until_state("READY")
    name = (await scenario.deployment()).name
    async with builtin_proxy(database_url) as p:
        assert isinstance(p, BuiltinPlane)
        yield p, p.url_for(name)


async def test_each_server_sent_event_reaches_the_caller_before_the_next_is_sent(
    plane: tuple[BuiltinPlane, str],
) -> None:
    _, url = plane
    arrivals: list[tuple[float, dict]] = []
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{url}/v1/stream", params={"events": 3, "interval": 0.5}) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.time(), json.loads(line[6:])))

    assert [event["n"] for _, event in arrivals] == [0, 1, 2]
    for (arrived, event), (_, following) in itertools.pairwise(arrivals):
        assert arrived < following["sent"], "an event waited for the next one"
        assert arrived - event["sent"] < 0.1, f"event {event['n']} took {arrived - event['sent']:.3f} s"


async def test_an_answer_cut_off_midway_is_an_error_for_the_caller(
    scenario: Scenario, plane: tuple[BuiltinPlane, str]
) -> None:
    _, url = plane
    [route] = await scenario.live_routes(revision=1)
    assert route.runtime_ref is not None
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ends: "incomplete chunked read"
            async with client.stream("GET", f"{url}/v1/stream", params={"events": 100, "interval": 0.2}) as answer:
                assert answer.status_code == 200
                async for line in answer.aiter_lines():
                    if line.startswith("data: "):
                        os.kill(int(route.runtime_ref.removeprefix("pid:")), signal.SIGKILL)


async def test_a_large_answer_and_a_large_upload_stream_without_the_proxy_holding_them(
    plane: tuple[BuiltinPlane, str],
) -> None:
    p, url = plane
    proxy = psutil.Process(p.process.pid)
    size = 100 * MIB
    async with httpx.AsyncClient(timeout=60) as client:
        await client.get(f"{url}/v1/bytes", params={"size": 1})  # pools and buffers warmed up
        before = proxy.memory_info().rss
        received = 0
        async with client.stream("GET", f"{url}/v1/bytes", params={"size": size}) as answer:
            assert answer.status_code == 200 and int(answer.headers["content-length"]) == size
            async for chunk in answer.aiter_raw():
                received += len(chunk)
        download_growth = proxy.memory_info().rss - before

        async def upload() -> AsyncIterator[bytes]:
            piece = b"y" * MIB
            for _ in range(50):
                yield piece

        uploaded = await client.post(f"{url}/v1/predict", content=upload())  # chunked: no Content-Length
        upload_growth = proxy.memory_info().rss - before

    assert received == size
    assert uploaded.status_code == 200 and uploaded.json()["score"] == 50 * MIB / 10
    assert download_growth < 20 * MIB, f"proxy RSS grew {download_growth / MIB:.1f} MiB passing 100 MiB"
    assert upload_growth < 20 * MIB, f"proxy RSS grew {upload_growth / MIB:.1f} MiB passing a 50 MiB upload"


async def test_a_replica_slower_than_the_timeouts_gets_a_504_before_its_answer_and_an_error_midway(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.deploy(await scenario.add_revision({"REPLICA_ANSWER_DELAY_SECONDS": "5"}))
    await machine.until_state("READY")
    name = (await scenario.deployment()).name
    timeouts = {"SWITCHOVER_PROXY_FIRST_BYTE_TIMEOUT": "0.5", "SWITCHOVER_PROXY_IDLE_TIMEOUT": "0.5"}
    async with builtin_proxy(database_url, env=timeouts) as p, httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        slow = await client.post(f"{p.url_for(name)}/v1/predict", content=b"x")
        waited = time.monotonic() - started
        events = []
        with pytest.raises(httpx.RemoteProtocolError):  # an event every 2 s: idle past 0.5 s after the first
            async with client.stream("GET", f"{p.url_for(name)}/v1/stream", params={"events": 3, "interval": 2}) as a:
                async for line in a.aiter_lines():
                    events.append(line)

    assert slow.status_code == 504 and 0.5 <= waited < 2, (slow.status_code, waited)
    assert [e for e in events if e.startswith("data: ")] and not any('"n": 1' in e for e in events)
