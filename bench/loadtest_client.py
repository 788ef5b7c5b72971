"""The load test's clients, in a process of their own: `python -m bench.loadtest_client CONFIG.json RESULT.json`.

`clients` concurrent clients for `duration` seconds, each a loop of reads (half the time) and, on a deployment picked
at random among all, what an operator or an orchestrator would do next in its state: add and deploy a revision,
report the green routes healthy (sometimes failed), promote (with the expected revision) or roll back, report
stopped routes TERMINATED. Many clients act on the same deployments at once, and so does the scheduler. Every
mutation's outcome is recorded so that the bench can check it against the history afterwards.
"""

import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from bench.http import Connection

STATE = """query($id: ID!) { deployment(id: $id) { id lifecycle subStep replicas
  deployingRevision { id number } currentRevision { id number } routes { id status revision { id } } } }"""
READS = [
    """query($id: ID!) { deployment(id: $id) { id name lifecycle subStep currentRevision { number image }
       routes { id status trafficStatus trafficRatio } history(first: 5) { edges { node { phase message } } } } }""",
    """query { deployments(first: 20) { edges { node { id name lifecycle routes { id status trafficStatus } } } } }""",
]
ADD = """mutation($id: ID!, $image: String!) { addRevision(input: {deploymentId: $id, image: $image}) {
  revision { id number } } }"""
DEPLOY = """mutation($id: ID!, $revision: ID!) { deployRevision(input: {deploymentId: $id, revisionId: $revision}) {
  deployment { lifecycle deployingRevision { number } } } }"""
PROMOTE = """mutation($id: ID!, $expected: ID) {
  promoteDeployment(input: {deploymentId: $id, expectedRevisionId: $expected}) {
  deployment { lifecycle currentRevision { number } } promotedRoutes { id } } }"""
ROLLBACK = """mutation($id: ID!) { rollbackDeployment(input: {deploymentId: $id, reason: "load test"}) {
  deployment { subStep deployingRevision { number } } } }"""
REPORT = """mutation($route: ID!, $status: RouteStatus!) {
  reportRouteHealth(input: {routeId: $route, status: $status}) { route { id status } } }"""


class Client:
    def __init__(self, config: dict[str, Any], seed: int, out: dict[str, Any]) -> None:
        self.connection = Connection(config["host"], config["port"])
        self.rng = random.Random(seed)
        self.ids: list[str] = config["deployments"]
        self.out = out

    async def call(self, kind: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            status, payload = await self.connection.request(
                "POST", "/graphql", json.dumps({"query": query, "variables": variables}).encode()
            )
        except (OSError, asyncio.IncompleteReadError) as exc:
            status, payload = 599, json.dumps({"transport": str(exc)}).encode()
        self.out["latency"][kind].append(time.perf_counter() - started)
        self.out["status"][str(status)] += 1
        try:
            body = json.loads(payload)
        except ValueError:
            body = {"unparsable": payload[:200].decode("utf-8", "replace")}
        for error in body.get("errors") or []:
            self.out["codes"][f"{kind}:{error.get('extensions', {}).get('code')}"] += 1
        if status >= 500 and len(self.out["server_errors"]) < 20:
            self.out["server_errors"].append({"kind": kind, "status": status, "body": str(body)[:300]})
        if status != 200 or body.get("errors"):
            return None
        return body.get("data")

    def record(self, op: str, deployment_id: str, data: dict[str, Any] | None, **facts: Any) -> None:
        self.out["ops"].append({"op": op, "deployment": deployment_id, "ok": data is not None, **facts})

    async def read(self, deployment_id: str) -> None:
        query = self.rng.choice(READS)
        await self.call("read", query, {"id": deployment_id} if "$id" in query else {})

    async def act(self, deployment_id: str) -> None:
        state = await self.call("state", STATE, {"id": deployment_id})
        if state is None or state["deployment"] is None:
            return
        d = state["deployment"]
        deploying = d["deployingRevision"]
        if d["lifecycle"] in ("READY", "PENDING"):
            added = await self.call(
                "addRevision", ADD, {"id": deployment_id, "image": f"model:{self.rng.random():.6f}"}
            )
            self.record("addRevision", deployment_id, added,
                        revision=added and added["addRevision"]["revision"]["number"])  # fmt: skip
            if added is not None:
                revision = added["addRevision"]["revision"]
                deployed = await self.call("deployRevision", DEPLOY, {"id": deployment_id, "revision": revision["id"]})
                self.record("deployRevision", deployment_id, deployed, revision=revision["number"])
        elif d["subStep"] == "DEPLOYING_PROVISIONING":
            if self.rng.random() < 0.08:
                await self.rollback(deployment_id)
            else:
                for route in d["routes"]:
                    if route["status"] == "PROVISIONING" and route["revision"]["id"] == deploying["id"]:
                        status = "FAILED_TO_START" if self.rng.random() < 0.05 else "HEALTHY"
                        await self.report(deployment_id, route["id"], status)
        elif d["subStep"] == "DEPLOYING_AWAITING_PROMOTION":
            if self.rng.random() < 0.75:
                promoted = await self.call("promote", PROMOTE, {"id": deployment_id, "expected": deploying["id"]})
                now = promoted and promoted["promoteDeployment"]["deployment"]["currentRevision"]["number"]
                self.record("promote", deployment_id, promoted, revision=deploying["number"], now=now)
            else:
                await self.rollback(deployment_id)
        for route in d["routes"]:
            if route["status"] == "TERMINATING" and self.rng.random() < 0.5:
                await self.report(deployment_id, route["id"], "TERMINATED")

    async def rollback(self, deployment_id: str) -> None:
        rolled = await self.call("rollback", ROLLBACK, {"id": deployment_id})
        number = rolled and rolled["rollbackDeployment"]["deployment"]["deployingRevision"]["number"]
        self.record("rollback", deployment_id, rolled, revision=number)

    async def report(self, deployment_id: str, route_id: str, status: str) -> None:
        reported = await self.call("reportRouteHealth", REPORT, {"route": route_id, "status": status})
        self.record("reportRouteHealth", deployment_id, reported, route=route_id, status=status)

    async def run(self, stop: float) -> None:
        try:
            while time.perf_counter() < stop:
                deployment_id = self.rng.choice(self.ids)
                if self.rng.random() < 0.5:
                    await self.read(deployment_id)
                else:
                    await self.act(deployment_id)
        finally:
            await self.connection.close()


async def main(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "latency": defaultdict(list),
        "status": Counter(),
        "codes": Counter(),
        "ops": [],
        "server_errors": [],
    }
    started = time.perf_counter()
    stop = started + config["duration"]
    await asyncio.gather(*(Client(config, seed, out).run(stop) for seed in range(config["clients"])))
    elapsed = time.perf_counter() - started
    latencies = {k: sorted(v) for k, v in out["latency"].items()}
    return {
        "seconds": elapsed,
        "requests": sum(len(v) for v in latencies.values()),
        "status": dict(out["status"]),
        "codes": dict(out["codes"]),
        "ops": out["ops"],
        "server_errors": out["server_errors"],
        "latency_ms": {
            k: {"n": len(v), "median": v[len(v) // 2] * 1000, "p99": v[min(len(v) - 1, int(len(v) * 0.99))] * 1000}
            for k, v in latencies.items()
        },
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        configuration = json.load(f)
    result = asyncio.run(main(configuration))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
