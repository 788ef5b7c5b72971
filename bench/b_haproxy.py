"""§12 HAProxy as the data plane: how long after a promotion's commit HAProxy has the new weights (target: p99 within
50 ms), what a full re-sync of a converged HAProxy costs, and the built-in proxy's throughput against HAProxy's in
front of the same replicas (target: ≥ 0.6×).

Real HAProxy (Debian's, started as the tests start it: tests/haproxy_helpers.py) with a backend pair per deployment;
`switchover haproxy`'s loop (`follow`, re-syncing only every minute, so that NOTIFY is what wakes it) runs in this
process, so that its clock is the bench's: each sample is from `promote` returning (the commit is acknowledged) to
the runtime API acknowledging the last of the deployment's `set weight` commands. Routes get endpoints nobody listens
on: HAProxy does not check them, and weights are all that is measured.

Throughput: two replica processes (switchover/replica.py) are the HEALTHY routes of one deployment; in front of them
stand HAProxy (filled by one sync; its `nbthread` is left at its default, one thread per core, and read back from
`show info`), a `switchover proxy` process with one worker (its default) and one with SWITCHOVER_PROXY_WORKERS = the
number of cores (like for like with HAProxy's threads). Load generator processes (bench/loadgen.py, closed loop,
`THROUGHPUT_CLIENTS` connections between them, all measuring the same window) post small JSON to one data plane at a
time, in rounds whose order rotates so that drift of a shared machine hits all alike; every plane is measured with
one generator process and with `GENERATORS`, and the figures judged are those of the setup in which HAProxy reached
more (the generator limits it least; the other setup's are kept too). Every answer must be a 200. The
CPU seconds per request of each data plane (all its processes), of the replicas and of the generators are recorded:
on a small machine they all share the cores, so a data plane's own cost shows in what the replicas have left.

Standalone: `.venv/bin/python -m bench.b_haproxy [--deployments N]` prints the figures as JSON; `run(sampler, args)`
is the section's entry point for bench/__main__.py.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from bench import common, fleet
from bench.b_analysis import start_replica
from store import reads, replicas, rollouts, route_health
from store.database import open_database
from store.models import RouteStatus
from switchover.haproxy import Follower, RuntimeApi, Synced, follow
from tests.haproxy_helpers import running_haproxy

TARGET_P99_MS = 50.0
TARGET_THROUGHPUT_RATIO = 0.6  # the built-in proxy's throughput over HAProxy's, same replicas, same load
THROUGHPUT_CLIENTS = 32
GENERATORS = 2  # the second setup: generator processes sharing THROUGHPUT_CLIENTS (can one cap HAProxy?)
CORES = os.cpu_count() or 1
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


def tree(pid: int) -> list[int]:
    """A process and its descendants (a proxy with workers)."""
    with contextlib.suppress(psutil.Error):
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return [pid]


def generate(port: int, *, processes: int, clients: int, warmup: float, duration: float) -> dict[str, Any]:
    """`clients` closed-loop connections to `port` from `processes` load generator processes measuring the same
    `duration`-s window, which opens `warmup` s after they are all started."""
    start_at = time.time() + 1.0 + warmup  # a generator process takes well under a second to start
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    configs = [
        {"host": "127.0.0.1", "port": port, "concurrency": n, "warmup": warmup, "duration": duration,
         "requests": SMALL_JSON, "start_at": start_at}
        for n in share
    ]  # fmt: skip
    with ThreadPoolExecutor(processes) as pool:
        loads = list(pool.map(lambda c: common.run_module("bench.loadgen", f"loadgen-{port}-{id(c)}", c), configs))
    assert all(load["warmup_seconds"] >= 0.5 for load in loads), [load["warmup_seconds"] for load in loads]
    status: dict[str, int] = {}
    for load in loads:
        for code, n in load["status"].items():
            status[code] = status.get(code, 0) + n
    return {
        "requests": sum(load["requests"] for load in loads),
        "rps": sum(load["rps"] for load in loads),
        "status": status,
        "failed": {k: v for load in loads for k, v in load["failed"].items()},
        "failure_samples": [x for load in loads for x in load["failure_samples"]],
        # the median of the generators' medians (each saw its own share of the connections)
        "median_latency_ms": statistics.median(load["all_latency_ms"]["median"] for load in loads),
        "generator_cpu_seconds": sum(load["loadgen_cpu_seconds"] for load in loads),
        # each generator's CPU over its run: near 1 (a whole core), a generator is what limits the figure
        "generator_core_share": [load["loadgen_cpu_seconds"] / load["wall_seconds"] for load in loads],
    }


async def throughput(url: str, db: Any, *, rounds: int, seconds: float) -> dict[str, Any]:
    """Requests per second through HAProxy and through `switchover proxy` (one worker, and one per core), in front of
    the same two replicas."""
    [deployment] = await fleet.rollout(db, 1, replicas=2, awaiting=False, prefix="throughput")
    name = (await reads.deployments_by_ids(db, [deployment]))[deployment].name
    started = []
    proxies: dict[str, common.Process] = {}
    workers = {"proxy": 1, "proxy_workers": CORES}
    try:
        for route in (await reads.routes_of_deployments(db, [deployment]))[deployment]:
            replica, endpoint = start_replica(route.id)
            started.append(replica)
            await route_health.report_route_health(db, route.id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                                   actor="orchestrator")  # fmt: skip
        for plane, count in workers.items():
            port = common.free_port()
            proxies[plane] = common.start(f"{plane}-throughput", ["-m", "switchover", "proxy", "--port", str(port)],
                                          {"DATABASE_URL": url, "SWITCHOVER_PROXY_WORKERS": str(count)},
                                          port=port)  # fmt: skip
        for process in proxies.values():
            common.wait_http(process, "/health")
        replica_pids = [replica.pid for replica in started]
        async with running_haproxy([name]) as haproxy:
            synced = await Follower(db, haproxy.api).sync([deployment])  # not the bench deployments before it
            assert len(synced.sent) >= 2 and not synced.refused, synced
            assert haproxy.process is not None
            info = await haproxy.api.ask("show info")
            nbthread = int(next(line.split(":", 1)[1] for line in info.splitlines() if line.startswith("Nbthread:")))
            planes = {"haproxy": haproxy.port, **{plane: process.port or 0 for plane, process in proxies.items()}}
            pids = {"haproxy": lambda: [haproxy.process.pid], **{plane: (lambda p=p: tree(p.pid))
                                                                 for plane, p in proxies.items()}}  # fmt: skip
            for plane, process in proxies.items():
                assert len(tree(process.pid)) >= workers[plane], (plane, tree(process.pid))
            # Every plane under each generator setup: one process, and GENERATORS processes.
            setups = (1, GENERATORS)
            runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {plane: [] for plane in planes} for n in setups}

            def load_of(port: int, processes: int) -> dict[str, Any]:
                return generate(port, processes=processes, clients=THROUGHPUT_CLIENTS, warmup=1.0, duration=seconds)

            turns = [(plane, n) for n in setups for plane in planes]
            for i in range(2 * rounds):
                shift = (i * 2 + 1) % len(turns)  # the order rotates from round to round
                for plane, n in turns[shift:] + turns[:shift]:
                    measured = pids[plane]()
                    cpu, replicas_cpu = common.cpu_of(measured), common.cpu_of(replica_pids)
                    load = await asyncio.to_thread(load_of, planes[plane], n)
                    load["plane_cpu_seconds"] = common.cpu_of(measured) - cpu
                    load["replicas_cpu_seconds"] = common.cpu_of(replica_pids) - replicas_cpu
                    assert not load["failed"], (plane, n, load["status"], load["failure_samples"])
                    runs[n][plane].append(load)
                    print(f"  throughput {plane}, {n} generator(s), round {i + 1}: {load['rps']:.0f} req/s", flush=True)

        def figures(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
            rps = {plane: statistics.median(r["rps"] for r in rounds_) for plane, rounds_ in results.items()}

            def per_request(key: str) -> dict[str, float]:
                return {plane: 1000 * sum(r[key] for r in rs) / sum(r["requests"] for r in rs)
                        for plane, rs in results.items()}  # fmt: skip

            return {
                "rps": rps,
                "rps_rounds": {plane: [r["rps"] for r in rs] for plane, rs in results.items()},
                "ratio_proxy_to_haproxy": rps["proxy"] / rps["haproxy"],
                "ratio_proxy_workers_to_haproxy": rps["proxy_workers"] / rps["haproxy"],
                "generator_core_share": {
                    plane: [r["generator_core_share"] for r in rs] for plane, rs in results.items()
                },
                "median_latency_ms": {
                    plane: statistics.median(r["median_latency_ms"] for r in rs) for plane, rs in results.items()
                },
                "plane_cpu_ms_per_request": per_request("plane_cpu_seconds"),
                "replicas_cpu_ms_per_request": per_request("replicas_cpu_seconds"),
                "generator_cpu_ms_per_request": per_request("generator_cpu_seconds"),
            }

        by_setup = {str(n): figures(runs[n]) for n in setups}
        # Judged where HAProxy reached its highest figure: the load generator then limits HAProxy least.
        judged = max(by_setup, key=lambda n: by_setup[n]["rps"]["haproxy"])
        chosen = by_setup[judged]
        return {
            "clients": THROUGHPUT_CLIENTS,
            "generators": int(judged),
            "generator_setups": by_setup,
            "cores": CORES,
            "haproxy_nbthread": nbthread,
            "proxy_workers": workers,
            "seconds_per_round": seconds,
            "rounds_each": 2 * rounds,
            **chosen,
            "target_ratio": TARGET_THROUGHPUT_RATIO,
            # like for like: as many proxy workers as HAProxy has threads (both = the cores)
            "met": chosen["ratio_proxy_workers_to_haproxy"] >= TARGET_THROUGHPUT_RATIO,
        }
    finally:
        for process in proxies.values():
            process.stop()
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
        compared = await throughput(url, db, rounds=1 if quick else 2, seconds=3.0 if quick else 8.0)
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
