"""`make run`: a live blue-green rollout on one machine, narrated.

Starts the embedded PostgreSQL (or uses DATABASE_URL), migrates it, starts the subgraph, the scheduler (process
runtime: every route is a real local replica process, health-checked over HTTP) and the traffic proxy, then rolls a
deployment out at revision 1, sends it requests, rolls revision 2 out beside it, promotes it under load, and shows that
every request was answered: first by revision 1, then by revision 2. Every process it started is stopped at the end,
also on Ctrl-C.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import psutil

from store.database import migrate
from switchover import cli
from switchover.settings import Settings, from_environment

PROJECT = "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10"
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Services:
    """The subgraph, scheduler and proxy as child processes of this one."""

    def __init__(self, database_url: str, api_port: int, proxy_port: int) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SWITCHOVER_RUNTIME": "process",
            "SWITCHOVER_POLL_INTERVAL": "0.2",
            "SWITCHOVER_HEALTH_INTERVAL": "0.3",
            "SWITCHOVER_STOP_GRACE": "2",
            "SWITCHOVER_INTROSPECTION": "true",  # GraphiQL needs it
        }
        self.api = f"http://127.0.0.1:{api_port}"
        self.proxy = f"http://127.0.0.1:{proxy_port}"
        self.commands = {
            # A demo on one machine: no tokens. Production sets SWITCHOVER_JWT_SECRET instead of --insecure.
            "subgraph": ["serve", "--port", str(api_port), "--insecure"],
            "scheduler": ["scheduler"],
            "proxy": ["proxy", "--port", str(proxy_port)],
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, log_dir: str) -> None:
        for name, args in self.commands.items():
            with open(os.path.join(log_dir, f"{name}.log"), "ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "switchover", *args],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"the {name} exited (code {process.returncode}); see its log in .switchover/logs")


class Demo:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.http = httpx.AsyncClient(timeout=10)
        self.deployment_id: str | None = None
        self.route_ids: set[str] = set()

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(f"{self.services.api}/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if body.get("errors"):
            raise SystemExit(f"GraphQL error: {body['errors'][0]['message']}")
        return body["data"]

    async def wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        for url in (f"{self.services.api}/ready", f"{self.services.proxy}/health"):
            while True:
                self.services.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await self.http.get(url)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{url} did not come up within 60 s")
                await asyncio.sleep(0.1)

    async def snapshot(self) -> dict[str, Any]:
        data = await self.gql(
            """query($id: ID!) { deployment(id: $id) {
                 lifecycle subStep currentRevision { number } deployingRevision { number }
                 routes { id status trafficStatus trafficRatio revision { number } }
               } }""",
            id=self.deployment_id,
        )
        deployment = data["deployment"]
        self.route_ids |= {r["id"] for r in deployment["routes"]}
        return deployment

    async def follow(self, until: str, *, within: float = 90) -> None:
        """Print every change of state and of routes until the deployment reaches `until`."""
        deadline, last = time.monotonic() + within, ""
        while True:
            self.services.check_alive()
            d = await self.snapshot()
            state = d["lifecycle"] + (f"/{d['subStep']}" if d["subStep"] else "")
            live = [r for r in d["routes"] if r["status"] not in ("TERMINATED",)]
            routes = ", ".join(
                f"r{r['revision']['number']}:{r['status'].lower()}" + ("*" if r["trafficStatus"] == "ACTIVE" else "")
                for r in live
            )
            line = f"{state:40} routes [{routes}]"
            if line != last:
                say(line)
                last = line
            if state == until:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the deployment did not reach {until} within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def requests(self, count: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[await self.predict()] += 1
        return seen

    async def predict(self) -> str:
        try:
            response = await self.http.post(f"{self.services.proxy}/sentiment-demo/v1/predict", content=b"great!")
        except httpx.HTTPError as exc:
            return f"failed ({type(exc).__name__})"
        if response.status_code != 200:
            return f"failed ({response.status_code})"
        return f"revision {response.json()['revision']}"

    async def load(self, stop: asyncio.Event, seen: Counter[str]) -> None:
        while not stop.is_set():
            seen[await self.predict()] += 1

    async def run(self) -> Counter[str]:
        await self.wait_until_up()
        say(f"subgraph {self.services.api}/graphql, proxy {self.services.proxy}, scheduler with the process runtime")
        old = await self.gql(
            "query($p: ID!) { deployments(projectId: $p, lifecycle: [PENDING, READY]) { edges { node { id name } } } }",
            p=PROJECT,
        )
        for edge in old["deployments"]["edges"]:
            if edge["node"]["name"] == "sentiment-demo":  # left over from an interrupted run
                await self.destroy(edge["node"]["id"])
        created = await self.gql(
            """mutation($p: ID!) { createDeployment(input: {projectId: $p, name: "sentiment-demo", replicas: 2,
                 strategy: {type: BLUE_GREEN, blueGreen: {scaleDownDelaySeconds: 5}}}) { deployment { id } } }""",
            p=PROJECT,
        )
        self.deployment_id = created["createDeployment"]["deployment"]["id"]
        say(f"created blue-green deployment sentiment-demo ({self.deployment_id}), 2 replicas")

        v1 = await self.add_revision("registry.local/sentiment:1.0", {})
        say("deploying revision 1 (first deploy: promoted as soon as both replicas are healthy)")
        await self.deploy(v1)
        await self.follow("READY")
        say(f"10 requests through the proxy: {dict(await self.requests(10))}")

        v2 = await self.add_revision("registry.local/sentiment:2.0", {"REPLICA_START_DELAY_SECONDS": "1"})
        say("deploying revision 2 beside it: green replicas start without traffic")
        await self.deploy(v2)
        await self.follow("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        say("green is healthy and idle; revision 1 still answers everything. Sending requests continuously…")
        seen: Counter[str] = Counter()
        stop = asyncio.Event()
        load = asyncio.create_task(self.load(stop, seen))
        await asyncio.sleep(2)
        promoted = await self.gql(
            """mutation($d: ID!, $r: ID!) { promoteDeployment(input: {deploymentId: $d, expectedRevisionId: $r}) {
                 promotedRoutes { id } drainedRoutes { id } } }""",
            d=self.deployment_id,
            r=v2,
        )
        result = promoted["promoteDeployment"]
        say(f"PROMOTED revision 2: {len(result['promotedRoutes'])} routes active, "
            f"{len(result['drainedRoutes'])} blue routes kept warm for 5 s")  # fmt: skip
        await asyncio.sleep(2)
        stop.set()
        await load
        await self.follow("READY")
        await asyncio.sleep(6)  # past the scale-down delay: the blue replicas are stopped
        await self.follow("READY")
        return seen

    async def add_revision(self, image: str, env: dict[str, str]) -> str:
        data = await self.gql(
            "mutation($d: ID!, $i: String!, $e: JSON) { addRevision(input: {deploymentId: $d, image: $i, env: $e}) "
            "{ revision { id } } }",
            d=self.deployment_id,
            i=image,
            e=env,
        )
        return data["addRevision"]["revision"]["id"]

    async def deploy(self, revision_id: str) -> None:
        await self.gql(
            "mutation($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) "
            "{ deployment { id } } }",
            d=self.deployment_id,
            r=revision_id,
        )

    async def destroy(self, deployment_id: str) -> None:
        await self.gql(
            "mutation($d: ID!) { destroyDeployment(input: {deploymentId: $d}) { deployment { id } } }", d=deployment_id
        )

    async def clean_up(self) -> None:
        """Destroy the demo deployment so the scheduler stops its replicas, then make sure none is left."""
        if self.deployment_id is None:
            return
        with contextlib.suppress(Exception):
            await self.snapshot()
            await self.destroy(self.deployment_id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                d = await self.snapshot()
                if all(r["status"] == "TERMINATED" for r in d["routes"]):
                    break
                await asyncio.sleep(0.2)

    def kill_leftover_replicas(self) -> None:
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if "scheduler.replica" in cmdline and self.route_ids.intersection(cmdline):
                with contextlib.suppress(psutil.Error):
                    process.kill()


EXPLORE = """
Explore further while it keeps running (Ctrl-C stops everything):
  GraphiQL:      open {api}/graphql in a browser
  A query:       curl -s {api}/graphql -H 'content-type: application/json' \\
                   -d '{{"query":"{{ deployments {{ edges {{ node {{ name lifecycle currentRevision {{ number }} }} }} }} }}"}}'
  History:       curl -s {api}/graphql -H 'content-type: application/json' \\
                   -d '{{"query":"{{ deployment(id: \\"{id}\\") {{ history {{ edges {{ node {{ phase message actor }} }} }} }} }}"}}'
  Traffic:       curl -s -X POST {proxy}/sentiment-demo/v1/predict
"""


async def main_async(args: argparse.Namespace, settings: Settings, url: str) -> int:
    log_dir = os.path.join(str(settings.data_dir), "logs")
    os.makedirs(log_dir, exist_ok=True)
    services = Services(url, free_port(args.api_port), free_port(args.proxy_port))
    demo = Demo(services)
    services.start(log_dir)
    try:
        seen = await demo.run()
        failed = sum(n for answer, n in seen.items() if answer.startswith("failed"))
        say("summary:")
        for answer, n in sorted(seen.items()):
            print(f"    {n:5d} requests answered by {answer}")
        print(f"    {sum(seen.values()) - failed} passed, {failed} failed during the promotion")
        if failed:
            return 1
        if not args.exit:
            print(EXPLORE.format(api=services.api, proxy=services.proxy, id=demo.deployment_id), flush=True)
            await asyncio.Event().wait()
        return 0
    finally:
        say("cleaning up: destroying the demo deployment and stopping every process")
        await demo.clean_up()
        services.stop()
        demo.kill_leftover_replicas()
        await demo.http.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description="A live blue-green rollout on one machine.")
    parser.add_argument("--exit", action="store_true", help="stop after the summary instead of waiting for Ctrl-C")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--proxy-port", type=int, default=8080)
    args = parser.parse_args()
    cli.exit_cleanly_on_sigterm()
    settings = from_environment()
    url = cli.database_url(settings)  # this process owns the embedded server: it stops when the demo ends
    say(f"database schema at version {migrate(url)}")
    try:
        return asyncio.run(main_async(args, settings, url))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
