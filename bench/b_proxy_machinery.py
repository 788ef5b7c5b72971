"""§11 the proxy's HTTP machinery (issue 18): candidates measured side by side in front of the same replica process,
then `switchover proxy` itself (uvicorn + httptools + uvloop in front, an aiohttp pool behind) with its routing
table, counting and all.

- small JSON: `POST /v1/predict` one at a time, the variants interleaved request by request; added median latency
  over calling the replica directly (target ≤ 1 ms);
- time to first byte of a server-sent event stream (`GET /v1/stream`), interleaved the same way (target: within
  2 ms of direct);
- a 100 MiB answer (`GET /v1/bytes`) through each: the proxy's RSS growth, sampled every 5 ms (target < 20 MiB),
  and the rate.

Candidates (bench/proxy_candidates.py): aiohttp or httpx as the client, uvicorn with httptools + uvloop or h11 +
asyncio as the server. Raw asyncio streams with a hand-written HTTP/1.1 client were not built: the aiohttp client is
already that (a C parser on asyncio transports) and would have to be rewritten with less care.
"""

import asyncio
import statistics
import threading
import time
from typing import Any

import psutil

from bench import common
from bench.b_analysis import start_replica
from bench.http import Connection
from store import route_health
from store.database import open_database
from store.models import RouteStatus

CANDIDATES = {
    "aiohttp+httptools": ("aiohttp", "httptools"),
    "httpx+httptools": ("httpx", "httptools"),
    "aiohttp+h11": ("aiohttp", "h11"),
}
MIB = 1024 * 1024


async def first_event(port: int, path: str) -> float:
    """Seconds from writing the request to reading the first event's bytes. The stream is read to its end, as an
    event-stream client does (a proxy then keeps its connection to the replica for the next request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        seen = b""
        while b"data:" not in seen:
            chunk = await reader.read(65536)
            assert chunk, f"connection closed before the first event: {seen[:300]!r}"
            seen += chunk
        elapsed = time.perf_counter() - started
        while not seen.endswith(b"0\r\n\r\n"):  # the chunked body's end
            chunk = await reader.read(65536)
            assert chunk, f"connection closed before the stream ended: {seen[-300:]!r}"
            seen += chunk
        return elapsed
    finally:
        writer.close()


async def download(port: int, path: str, size: int, pid: int) -> dict[str, float]:
    """Read a `size`-byte answer as fast as possible while sampling the RSS of process `pid`."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4 * MIB)
    try:
        started = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        left = size
        while left:
            chunk = await reader.read(min(left, MIB))
            assert chunk, f"answer ended {left} bytes early"
            left -= len(chunk)
        seconds = time.perf_counter() - started
    finally:
        writer.close()
        done.set()
        sampler.join()
    return {"rss_growth_mib": (peak - before) / MIB, "mib_per_second": size / MIB / seconds}


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    url = await common.create_database("proxy_machinery")
    db = open_database(url, max_size=4)
    await db.connect()
    processes: dict[str, common.Process] = {}
    replica = None
    try:
        from bench import fleet

        [deployment] = await fleet.rollout(db, 1, replicas=1, awaiting=False, prefix="machinery")
        [route_id] = [str(r["id"]) for r in await db.fetch_all("SELECT id FROM routes WHERE deployment_id = :d",
                                                                {"d": deployment})]  # fmt: skip
        replica, endpoint = start_replica(route_id)
        await route_health.report_route_health(db, route_id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                               actor="orchestrator")  # fmt: skip
        ports = {"direct": int(endpoint.rsplit(":", 1)[1])}
        for name, (client, http) in CANDIDATES.items():
            port = common.free_port()
            args = ["-m", "bench.proxy_candidates", "--client", client, "--http", http, "--port", str(port),
                    "--upstream", endpoint]  # fmt: skip
            processes[name] = common.start(f"candidate-{name}", args, {}, port=port)
        port = common.free_port()
        processes["switchover proxy"] = common.start("proxy-machinery", ["-m", "switchover", "proxy", "--port",
                                                     str(port)], {"DATABASE_URL": url}, port=port)  # fmt: skip
        for name, process in processes.items():
            common.wait_http(process, "/health" if name == "switchover proxy" else "/x/health")
            ports[name] = process.port or 0
        prefix = {name: "" if name == "direct" else "/machinery-0" for name in ports}
        for _ in range(100):  # the proxy's table has the route once it loaded it
            connection = Connection("127.0.0.1", ports["switchover proxy"])
            status, _ = await connection.request("POST", "/machinery-0/v1/predict", b"{}")
            await connection.close()
            if status == 200:
                break
            await asyncio.sleep(0.1)

        # Small JSON, interleaved.
        requests = 300 if options.quick else 3000
        connections = {name: Connection("127.0.0.1", port) for name, port in ports.items()}
        times: dict[str, list[float]] = {name: [] for name in ports}
        names = sorted(ports)
        body = b'{"features": [1, 2, 3]}'
        for i in range(200 + requests):
            for name in names if i % 2 else reversed(names):
                started = time.perf_counter()
                status, payload = await connections[name].request("POST", f"{prefix[name]}/v1/predict", body)
                elapsed = time.perf_counter() - started
                assert status == 200 and b'"revision":1' in payload, (name, status, payload[:200])
                if i >= 200:
                    times[name].append(elapsed)
        for connection in connections.values():
            await connection.close()
        small = {name: common.summary(values) for name, values in times.items()}

        # Time to the first server-sent event, interleaved.
        samples = 20 if options.quick else 100
        ttfb: dict[str, list[float]] = {name: [] for name in ports}
        for i in range(samples):
            for name in names if i % 2 else reversed(names):
                path = f"{prefix[name]}/v1/stream?events=2&interval=0.05"
                ttfb[name].append(await first_event(ports[name], path))
        first_byte = {name: common.summary(values) for name, values in ttfb.items()}

        # 100 MiB through each proxy.
        size = (20 if options.quick else 100) * MIB
        large = {}
        for name in names:
            pid = replica.pid if name == "direct" else processes[name].target_pid()
            large[name] = await download(ports[name], f"{prefix[name]}/v1/bytes?size={size}", size, pid)

        direct_median = small["direct"]["median"]
        direct_ttfb = first_byte["direct"]["median"]
        return {
            "small_json_ms": small,
            "added_median_ms": {n: s["median"] - direct_median for n, s in small.items() if n != "direct"},
            "first_event_ms": first_byte,
            "added_first_event_ms": {n: s["median"] - direct_ttfb for n, s in first_byte.items() if n != "direct"},
            "large_answer": {"mib": size / MIB, **large},
            "requests_each": requests,
            "first_event_samples": samples,
            "spread_ms": {n: statistics.pstdev(v) * 1000 for n, v in times.items()},
        }
    finally:
        for process in processes.values():
            process.stop()
        if replica is not None:
            replica.terminate()
            replica.wait(timeout=10)
        await db.disconnect()
        await common.drop_database(url)
