"""HTTP health checks of every live route that has an endpoint, for both runtimes.

A route becomes HEALTHY after `healthy_after` consecutive successes and UNHEALTHY after `unhealthy_after`
consecutive failures. While a route is still PROVISIONING, a refused or timed-out connection is a replica still
starting, not a failure: only an answer that is not 2xx counts against it (the provisioning timeout covers the rest).
Changes go through the same store function as `reportRouteHealth`.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import httpx
from databases import Database

from store import replicas, route_health
from store.errors import InvalidState, NotFound
from store.models import RouteStatus

log = logging.getLogger("switchover.health")
ACTOR = "health-check"


@dataclass
class Counts:
    successes: int = 0
    failures: int = 0


@dataclass
class HealthChecker:
    db: Database
    timeout_seconds: float = 1.0
    healthy_after: int = 2
    unhealthy_after: int = 3
    counts: dict[str, Counts] = field(default_factory=dict)
    client: httpx.AsyncClient | None = None

    async def run_once(self) -> None:
        routes = await replicas.routes_to_probe(self.db)
        self.counts = {w.route.id: self.counts.get(w.route.id, Counts()) for w in routes}
        if not routes:
            return
        if self.client is None:  # one client for the process: building one costs ~20 ms (an SSL context)
            self.client = httpx.AsyncClient(timeout=self.timeout_seconds)
        results = await asyncio.gather(*(self._probe(self.client, w) for w in routes))
        for watched, verdict in zip(routes, results, strict=True):
            await self._judge(watched.route.id, watched.route.status, verdict)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _probe(self, client: httpx.AsyncClient, watched: replicas.WatchedRoute) -> bool | None:
        """True: healthy answer; False: a failing answer; None: no answer at all."""
        url = watched.route.endpoint_url.rstrip("/") + watched.health_check_path  # type: ignore[union-attr]
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            return None
        return response.is_success

    async def _judge(self, route_id: str, status: RouteStatus, verdict: bool | None) -> None:
        counts = self.counts[route_id]
        if verdict is True:
            counts.successes, counts.failures = counts.successes + 1, 0
        elif verdict is False or status is not RouteStatus.PROVISIONING:
            counts.successes, counts.failures = 0, counts.failures + 1
        if counts.successes >= self.healthy_after and status in (RouteStatus.PROVISIONING, RouteStatus.UNHEALTHY):
            await self._report(route_id, RouteStatus.HEALTHY)
        elif counts.failures >= self.unhealthy_after and status is not RouteStatus.UNHEALTHY:
            await self._report(route_id, RouteStatus.UNHEALTHY)

    async def _report(self, route_id: str, status: RouteStatus) -> None:
        with contextlib.suppress(InvalidState, NotFound):  # stopped meanwhile: nothing to report
            await route_health.report_route_health(self.db, route_id, status, actor=ACTOR)
            log.info("route %s is %s", route_id, status)
