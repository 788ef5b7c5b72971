"""§12 HAProxy as the data plane: how long after a promotion's commit HAProxy has the new weights (target: p99 within
50 ms), what a full re-sync of a converged HAProxy costs, and the built-in proxy's throughput against HAProxy's in
front of the same replicas (target: ≥ 0.6×).

Real HAProxy (Debian's, started as the tests start it: tests/haproxy_helpers.py) with a backend pair per deployment;
`switchover haproxy`'s loop (`follow`, re-syncing only every minute, so that NOTIFY is what wakes it) runs in this
process, so that its clock is the bench's: each sample is from `promote` returning (the commit is acknowledged) to
the runtime API acknowledging the last of the deployment's `set weight` commands. Routes get endpoints nobody listens
on: HAProxy does not check them, and weights are all that is measured.

Throughput: two replica processes (switchover/replica.py) are the HEALTHY routes of one deployment; HAProxy (filled by
one sync) and a `switchover proxy` process stand in front of them, and one load generator process (bench/loadgen.py,
closed loop, `THROUGHPUT_CLIENTS` connections) posts small JSON to one data plane at a time, in alternating rounds
(HAProxy, proxy, proxy, HAProxy, …) so that drift of a shared machine hits both alike. Every answer must be a 200. The
CPU seconds of each data plane's process per request are recorded too: on a small machine the proxy, the replicas
and the load generator share the cores, so a data plane's own cost shows in what the replicas have left.

Standalone: `.venv/bin/python -m bench.b_haproxy [--deployments N]` prints the figures as JSON; `run(sampler, args)`
is the section's entry point for bench/__main__.py.
"""

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
from typing import Any

from bench import common, fleet
from bench.b_analysis import start_replica
from bench.b_api import run_loadgen
from store import reads, replicas, rollouts, route_health
from store.database import open_database
from store.models import RouteStatus
from switchover.haproxy import Follower, RuntimeApi, Synced, follow
from tests.haproxy_helpers import running_haproxy

TARGET_P99_MS = 50.0
TARGET_THROUGHPUT_RATIO = 0.6  # the built-in proxy's throughput over HAProxy's, same replicas, same load
THROUGHPUT_CLIENTS = 32
SMALL_JSON = [{"kind": "predict", "weight": 1, "variants": [{"method": "POST", "path": "/throughput-0/v1/predict",
                                                            "body": '{"features": [1, 2, 3]}'}]}]  # fmt: skip


async def attach_endpoints(db: Any, ids: list[str]) -> None:
    """An endpoint per route, as a runtime would report it: HAProxy only needs an address."""
    routes = await reads.routes_of_deployments(db, ids)
    port = 20000
    for route in (r for rs in routes.values() for r in rs):
        port += 1
        await replicas.attach_runtime(db, route.id, runtime_ref="bench", endpoint_url=f"http://127.0.0.1:{port}")


async def full_sync_cost(api: RuntimeApi, db: Any, repeat: int) -> dict[str, float]:
    """A sync of a converged HAProxy: one query, `show backend`, `show servers state`, no command."""
    follower = Follower(db, api)
    await follower.sync()
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        synced = await follower.sync()
        durations.append(time.perf_counter() - started)
        assert synced.sent == [] and synced.refused == [], synced
    return common.summary(durations)


async def promotion_latencies(
    api: RuntimeApi, url: str, db: Any, ids: list[str], names: list[str]
) -> tuple[list[float], list[float]]:
    """Per promotion, from `promote` returning and from its call to the last weight acknowledged: the commit is
    between the two (a NOTIFY can even be acted on before `promote` returns to the bench)."""
    syncs: list[Synced] = []
    arrived = asyncio.Event()

    def record(synced: Synced) -> None:
        syncs.append(synced)
        arrived.set()

    follower = Follower(open_database(url, max_size=2), api)
    await follower.db.connect()
    task = asyncio.create_task(follow(follower, url, resync_seconds=60, on_sync=record))
    latencies: list[float] = []
    upper: list[float] = []
    try:
        await asyncio.wait_for(arrived.wait(), 30)  # the first, full sync: every server added
        routes = await reads.routes_of_deployments(db, ids)
        revisions = {d.id: d.deploying_revision_id for d in (await reads.deployments_by_ids(db, ids)).values()}
        for deployment_id, name in zip(ids, names, strict=True):
            expected = {
                f"set weight {name}/{r.id} {256 if r.revision_id == revisions[deployment_id] else 0}"
                for r in routes[deployment_id]
            }
            await asyncio.sleep(random.uniform(0.01, 0.05))  # at a random moment, not right after the last sync
            seen = len(syncs)
            called = time.perf_counter()
            await rollouts.promote(db, deployment_id, actor="bench")
            committed = time.perf_counter()
            acknowledged: dict[str, float] = {}
            deadline = time.monotonic() + 5
            while not expected <= acknowledged.keys():
                assert time.monotonic() < deadline, f"{name}: weights not applied within 5 s"
                arrived.clear()
                for synced in syncs[seen:]:
                    acknowledged.update(synced.acknowledged)
                seen = len(syncs)
                if not expected <= acknowledged.keys():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), 0.5)
            applied = max(acknowledged[c] for c in expected)
            latencies.append(applied - committed)
            upper.append(applied - called)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await follower.db.disconnect()
    return latencies, upper


async def throughput(url: str, db: Any, *, rounds: int, seconds: float) -> dict[str, Any]:
    """Requests per second through HAProxy and through `switchover proxy`, in front of the same two replicas."""
    [deployment] = await fleet.rollout(db, 1, replicas=2, awaiting=False, prefix="throughput")
    name = (await reads.deployments_by_ids(db, [deployment]))[deployment].name
    started = []
    proxy = None
    try:
        for route in (await reads.routes_of_deployments(db, [deployment]))[deployment]:
            replica, endpoint = start_replica(route.id)
            started.append(replica)
            await route_health.report_route_health(db, route.id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                                   actor="orchestrator")  # fmt: skip
        port = common.free_port()
        proxy = common.start("proxy-throughput", ["-m", "switchover", "proxy", "--port", str(port)],
                             {"DATABASE_URL": url}, port=port)  # fmt: skip
        common.wait_http(proxy, "/health")
        async with running_haproxy([name]) as haproxy:
            synced = await Follower(db, haproxy.api).sync([deployment])  # not the bench deployments before it
            assert len(synced.sent) >= 2 and not synced.refused, synced
            assert haproxy.process is not None
            planes = {"haproxy": (haproxy.port, haproxy.process.pid), "proxy": (port, proxy.target_pid())}
            results: dict[str, list[dict[str, Any]]] = {plane: [] for plane in planes}
            for i in range(2 * rounds):
                order = ["haproxy", "proxy"] if i % 2 == 0 else ["proxy", "haproxy"]
                for plane in order:
                    plane_port, pid = planes[plane]
                    cpu = common.cpu_of([pid])
                    load = await asyncio.to_thread(run_loadgen, plane_port, SMALL_JSON, concurrency=THROUGHPUT_CLIENTS,
                                                   warmup=1.0, duration=seconds)  # fmt: skip
                    load["plane_cpu_seconds"] = common.cpu_of([pid]) - cpu
                    assert not load["failed"], (plane, load["status"], load["failure_samples"])
                    results[plane].append(load)
        rps = {plane: statistics.median(r["rps"] for r in rounds_) for plane, rounds_ in results.items()}
        cpu_ms = {
            plane: 1000 * sum(r["plane_cpu_seconds"] for r in rs) / sum(r["requests"] for r in rs)
            for plane, rs in results.items()
        }
        ratio = rps["proxy"] / rps["haproxy"]
        return {
            "clients": THROUGHPUT_CLIENTS,
            "seconds_per_round": seconds,
            "rounds_each": 2 * rounds,
            "rps": rps,
            "rps_rounds": {plane: [r["rps"] for r in rs] for plane, rs in results.items()},
            "median_latency_ms": {
                plane: statistics.median(r["all_latency_ms"]["median"] for r in rs) for plane, rs in results.items()
            },
            "plane_cpu_ms_per_request": cpu_ms,
            "ratio_proxy_to_haproxy": ratio,
            "target_ratio": TARGET_THROUGHPUT_RATIO,
            "met": ratio >= TARGET_THROUGHPUT_RATIO,
        }
    finally:
        if proxy is not None:
            proxy.stop()
        for replica in started:
            replica.terminate()
            replica.wait(timeout=10)


async def run(sampler: Any, args: argparse.Namespace) -> dict[str, Any]:
    count = getattr(args, "haproxy_deployments", 100)
    url = await common.create_database("haproxy")
    db = open_database(url, max_size=8)
    await db.connect()
    try:
        ids = await fleet.rollout(db, count, replicas=2, prefix="bench")
        names = [(await reads.deployments_by_ids(db, [i]))[i].name for i in ids]
        await attach_endpoints(db, ids)
        async with running_haproxy(names) as haproxy:
            idle = await full_sync_cost(haproxy.api, db, repeat=20)
            latencies, upper = await promotion_latencies(haproxy.api, url, db, ids, names)
        quick = getattr(args, "quick", False)
        compared = await throughput(url, db, rounds=1 if quick else 3, seconds=3.0 if quick else 8.0)
        promotion = common.summary(latencies)
        return {
            "throughput": compared,
            "deployments": count,
            "servers": count * 4,
            "promotion_to_weights_ms": promotion,
            "promotion_call_to_weights_ms": common.summary(upper),
            "target_p99_ms": TARGET_P99_MS,
            "met": promotion["p99"] <= TARGET_P99_MS,
            "converged_full_sync_ms": idle,
        }
    finally:
        await db.disconnect()
        await common.drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.b_haproxy", description=__doc__)
    parser.add_argument("--deployments", dest="haproxy_deployments", type=int, default=100)
    print(json.dumps(asyncio.run(run(None, parser.parse_args())), indent=1))
