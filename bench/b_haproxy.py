"""§9 HAProxy as the data plane: how long after a promotion's commit HAProxy has the new weights (target: p99 within
50 ms), and what a full re-sync of a converged HAProxy costs.

Real HAProxy (Debian's, started as the tests start it: tests/haproxy_helpers.py) with a backend pair per deployment;
`switchover haproxy`'s loop (`follow`, re-syncing only every minute, so that NOTIFY is what wakes it) runs in this
process, so that its clock is the bench's: each sample is from `promote` returning (the commit is acknowledged) to
the runtime API acknowledging the last of the deployment's `set weight` commands. Routes get endpoints nobody listens
on: HAProxy does not check them, and weights are all that is measured.

Standalone: `.venv/bin/python -m bench.b_haproxy [--deployments N]` prints the figures as JSON; `run(sampler, args)`
is the section's entry point for bench/__main__.py.
"""

import argparse
import asyncio
import contextlib
import json
import random
import time
from typing import Any

from bench import common, fleet
from store import reads, replicas, rollouts
from store.database import open_database
from switchover.haproxy import Follower, RuntimeApi, Synced, follow
from tests.haproxy_helpers import running_haproxy

TARGET_P99_MS = 50.0


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
        promotion = common.summary(latencies)
        return {
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
