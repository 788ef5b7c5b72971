"""A small fluent helper for lifecycle stories: given a deployment, when things happen, then the history says so.

Time moves by shifting the stored timestamps back, never by sleeping.
"""

import uuid
from typing import Any

from databases import Database

from scheduler.providers import Providers
from scheduler.runner import run_once
from store import deployments, reads, rollouts, route_health
from store.models import (
    AnalysisSpec,
    BlueGreenSpec,
    CanarySpec,
    CanaryStep,
    Deployment,
    DeploymentStrategyType,
    IntOrPercent,
    RollingUpdateSpec,
    Route,
    RouteStatus,
    RouteTrafficStatus,
    Strategy,
)

# Test-only SQL: moves a deployment's clock back by :seconds.
SHIFT_TIME = [
    """UPDATE deployments SET phase_started_at = phase_started_at - make_interval(secs => :seconds),
       next_check_at = LEAST(next_check_at - make_interval(secs => :seconds), now())
       WHERE id = :id""",
    """UPDATE routes SET terminate_after = terminate_after - make_interval(secs => :seconds)
       WHERE deployment_id = :id AND terminate_after IS NOT NULL""",
    """UPDATE analysis_runs SET next_check_at = LEAST(next_check_at - make_interval(secs => :seconds), now()),
       started_at = started_at - make_interval(secs => :seconds)
       WHERE deployment_id = :id AND next_check_at IS NOT NULL""",
]


def blue_green(**spec: Any) -> Strategy:
    limits = {k: spec.pop(k) for k in ("provisioning_timeout_seconds", "max_retries") if k in spec}
    return Strategy(type=DeploymentStrategyType.BLUE_GREEN, blue_green_spec=BlueGreenSpec(**spec), **limits)


def rolling(surge: IntOrPercent, unavailable: IntOrPercent, **limits: Any) -> Strategy:
    return Strategy(
        type=DeploymentStrategyType.ROLLING,
        rolling_update_spec=RollingUpdateSpec(max_surge=surge, max_unavailable=unavailable),
        **limits,
    )


def canary(
    *steps: CanaryStep, analysis: AnalysisSpec | None = None, scale_down_delay_seconds: int = 30, **limits: Any
) -> Strategy:
    return Strategy(
        type=DeploymentStrategyType.CANARY,
        canary_spec=CanarySpec(steps, analysis, scale_down_delay_seconds),
        **limits,
    )


class Scenario:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.id = ""
        self.project_id = ""
        self.revisions: list[str] = []

    async def given_deployment(self, *, replicas: int = 2, strategy: Strategy | None = None) -> "Scenario":
        created = await deployments.create_deployment(
            self.db,
            project_id=str(uuid.uuid4()),
            name=f"model-{uuid.uuid4().hex[:8]}",
            replicas=replicas,
            strategy=strategy or blue_green(),
            actor="alice",
        )
        self.id, self.project_id = created.id, created.project_id
        return self

    async def add_revision(self, env: dict[str, str] | None = None) -> str:
        revision = await deployments.add_revision(
            self.db,
            deployment_id=self.id,
            image=f"model:{len(self.revisions) + 1}",
            env=env,
            health_check_path=None,
            actor="alice",
        )
        self.revisions.append(revision.id)
        return revision.id

    async def deploy(self, revision_id: str | None = None) -> Deployment:
        revision_id = revision_id or await self.add_revision()
        return await rollouts.deploy_revision(self.db, self.id, revision_id, actor="alice")

    async def tick(self, providers: Providers | None = None) -> int:
        return await run_once(self.db, providers=providers)

    async def report(
        self,
        status: RouteStatus,
        *,
        revision: int | None = None,
        count: int | None = None,
        among: RouteStatus | None = None,
    ) -> int:
        """Report `status` for the live routes (of revision number `revision`, 1-based; only those in `among`),
        at most `count` of them."""
        targets = [
            r
            for r in await self.routes(revision=revision)
            if r.status not in (RouteStatus.TERMINATING, RouteStatus.TERMINATED, status)
            and (among is None or r.status is among)
        ]
        for route in targets[:count]:
            await route_health.report_route_health(self.db, route.id, status, actor="orchestrator")
        return len(targets[:count])

    async def finish_stopping(self) -> None:
        """The orchestrator reports every TERMINATING route as stopped."""
        for route in await self.routes():
            if route.status is RouteStatus.TERMINATING:
                await route_health.report_route_health(self.db, route.id, RouteStatus.TERMINATED, actor="orchestrator")

    async def healthy(self, *, revision: int | None = None, count: int | None = None) -> None:
        await self.report(RouteStatus.HEALTHY, revision=revision, count=count)

    async def deployment(self) -> Deployment:
        return (await reads.deployments_by_ids(self.db, [self.id]))[self.id]

    async def routes(self, *, revision: int | None = None, traffic: RouteTrafficStatus | None = None) -> list[Route]:
        found = (await reads.routes_of_deployments(self.db, [self.id], traffic_status=traffic))[self.id]
        if revision is not None:
            found = [r for r in found if r.revision_id == self.revisions[revision - 1]]
        return found

    async def live_routes(self, *, revision: int | None = None) -> list[Route]:
        stopped = (RouteStatus.TERMINATING, RouteStatus.TERMINATED, RouteStatus.FAILED_TO_START)
        return [r for r in await self.routes(revision=revision) if r.status not in stopped]

    async def active_revisions(self) -> list[int]:
        """Revision number of each ACTIVE route, oldest route first."""
        active = await self.routes(traffic=RouteTrafficStatus.ACTIVE)
        return [self.revisions.index(r.revision_id) + 1 for r in active]

    async def state(self) -> str:
        d = await self.deployment()
        return d.lifecycle.value + (f"/{d.sub_step.value}" if d.sub_step else "")

    async def shift_time(self, seconds: float) -> None:
        for sql in SHIFT_TIME:
            await self.db.execute(sql, {"id": self.id, "seconds": float(seconds)})

    async def history(self) -> list[str]:
        """Oldest first, one line per row: 'phase RESULT from -> to'."""
        page = (await reads.history_pages(self.db, [self.id], first=100))[self.id]
        lines = []
        for _, h in reversed(page.items):
            before = (h.from_sub_step or h.from_lifecycle or "-").removeprefix("DEPLOYING_")
            after = (h.to_sub_step or h.to_lifecycle or "-").removeprefix("DEPLOYING_")
            change = f" {before} -> {after}" if before != after else ""
            lines.append(f"{h.phase} {h.result}{change}")
        return lines

    async def ready_on_first_revision(self) -> "Scenario":
        """Deploy revision 1 and bring it to READY."""
        await self.deploy()
        await self.tick()
        await self.healthy(revision=1)
        await self.tick()
        assert await self.state() == "READY", await self.history()
        return self

    async def awaiting_promotion_of_revision_2(self) -> "Scenario":
        """Revision 1 serving, revision 2's green routes all HEALTHY, waiting for promotion."""
        await self.ready_on_first_revision()
        await self.deploy()
        await self.tick()
        await self.healthy(revision=2)
        await self.tick()
        assert await self.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION", await self.history()
        return self
