"""Deployments to benchmark with: through the store functions (as the API makes them), or bulk-inserted with SQL
(for the 100,000-deployment scheduler runs, where the store functions would take minutes)."""

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
from databases import Database

from scheduler.runner import run_once
from store import deployments, reads, records, rollouts, route_health
from store.models import BlueGreenSpec, DeploymentStrategyType, RouteStatus, Strategy

ACTOR = "bench"


def blue_green(**spec: int | bool) -> Strategy:
    return Strategy(type=DeploymentStrategyType.BLUE_GREEN, blue_green_spec=BlueGreenSpec(**spec))  # type: ignore[arg-type]


async def report_healthy(db: Database, deployment_ids: Sequence[str], *, concurrency: int = 8) -> int:
    """The orchestrator reports every PROVISIONING route of these deployments HEALTHY."""
    routes = await reads.routes_of_deployments(db, deployment_ids, statuses=[RouteStatus.PROVISIONING])
    semaphore = asyncio.Semaphore(concurrency)

    async def report(route_id: str) -> None:
        async with semaphore:
            await route_health.report_route_health(db, route_id, RouteStatus.HEALTHY, actor="orchestrator")

    ids = [r.id for rs in routes.values() for r in rs]
    await asyncio.gather(*(report(i) for i in ids))
    return len(ids)


async def rollout(
    db: Database,
    count: int,
    *,
    replicas: int = 2,
    strategies: Sequence[Strategy] | None = None,
    awaiting: bool = True,
    concurrency: int = 8,
    prefix: str = "bench",
) -> list[str]:
    """`count` deployments serving revision 1 and, with `awaiting`, revision 2 in DEPLOYING_AWAITING_PROMOTION
    (or auto-promotion delay), made the way the API and an orchestrator make them: store functions, scheduler
    passes, health reports."""
    semaphore = asyncio.Semaphore(concurrency)
    project = str(uuid.uuid4())
    revisions = (1, 2) if awaiting else (1,)

    async def create(i: int) -> list[str]:
        async with semaphore:
            strategy = strategies[i % len(strategies)] if strategies else blue_green()
            d = await deployments.create_deployment(
                db, project_id=project, name=f"{prefix}-{i}", replicas=replicas, strategy=strategy, actor=ACTOR
            )
            added = [
                await deployments.add_revision(
                    db,
                    deployment_id=d.id,
                    image=f"registry.local/model:{n}",
                    env=None,
                    health_check_path=None,
                    actor=ACTOR,
                )
                for n in revisions
            ]
            return [d.id, *(r.id for r in added)]

    created = await asyncio.gather(*(create(i) for i in range(count)))
    ids = [c[0] for c in created]

    async def deploy(deployment_id: str, revision_id: str) -> None:
        async with semaphore:
            await rollouts.deploy_revision(db, deployment_id, revision_id, actor=ACTOR)

    for number in revisions:
        await asyncio.gather(*(deploy(c[0], c[number]) for c in created))
        await run_once(db)  # green routes are started
        await report_healthy(db, ids, concurrency=concurrency)
        await run_once(db)  # revision 1: promoted at once (a first deploy); revision 2: awaits promotion
    return ids


# Bulk fleets, straight into the tables: rows that respect every CHECK and foreign key of the schema and read like
# the store's own (history from `create` to the current state, ratios that add up to 1).
BULK_IDS = """
CREATE TEMP TABLE bulk ON COMMIT DROP AS
SELECT gen_random_uuid() AS did, gen_random_uuid() AS r1, gen_random_uuid() AS r2, g AS i,
       CAST(md5('bench-project-' || (g % 100)) AS uuid) AS project
FROM generate_series(1, {count:d}) g
"""
BULK_DEPLOYMENTS = """
INSERT INTO deployments (
    id, project_id, name, replicas, strategy_type, auto_promote, promote_delay_seconds, promotion_timeout_seconds,
    scale_down_delay_seconds, max_surge_count, max_surge_percent, max_unavailable_count, max_unavailable_percent,
    provisioning_timeout_seconds, max_retries, created_at
)
SELECT did, project, $1::text || '-' || i, 2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now() - interval '2 hours'
FROM bulk
"""
BULK_REVISIONS = """
INSERT INTO revisions (id, deployment_id, number, image, created_at)
SELECT r1, did, 1, 'registry.local/model:1', now() - interval '2 hours' FROM bulk
UNION ALL
SELECT r2, did, 2, 'registry.local/model:2', now() - interval '1 hour' FROM bulk WHERE $1::boolean
"""
BULK_READY = """
UPDATE deployments d
SET lifecycle = 'READY', current_revision_id = b.r1, last_revision_number = 1,
    phase_started_at = now() - interval '2 hours', next_check_at = NULL
FROM bulk b WHERE d.id = b.did
"""
# Due for auto-promotion: in DEPLOYING_AWAITING_PROMOTION since 10 s, promote delay 0, checked 1 s ago.
BULK_AWAITING = """
UPDATE deployments d
SET lifecycle = 'DEPLOYING', sub_step = 'DEPLOYING_AWAITING_PROMOTION', current_revision_id = b.r1,
    deploying_revision_id = b.r2, last_revision_number = 2,
    phase_started_at = now() - interval '10 seconds', next_check_at = now() - interval '1 second'
FROM bulk b WHERE d.id = b.did
"""
BULK_ROUTES = """
INSERT INTO routes (deployment_id, revision_id, status, traffic_status, traffic_ratio, created_at)
SELECT did, r1, 'HEALTHY', 'ACTIVE', 0.5, now() - interval '2 hours' FROM bulk, generate_series(1, 2)
UNION ALL
SELECT did, r2, 'HEALTHY', 'INACTIVE', 0, now() - interval '1 hour' FROM bulk, generate_series(1, 2) WHERE $1::boolean
"""
BULK_HISTORY = """
INSERT INTO deployment_history (
    deployment_id, phase, from_lifecycle, to_lifecycle, from_sub_step, to_sub_step, result, message, actor, created_at
)
SELECT did, 'create', NULL, 'PENDING', NULL, NULL, 'SUCCESS', 'created deployment', 'bench', now() - interval '3 hours'
FROM bulk
UNION ALL
SELECT did, 'promote', 'DEPLOYING', 'READY', 'DEPLOYING_AWAITING_PROMOTION', NULL, 'SUCCESS',
       'promoted revision 1 (first deploy): 2 routes active, 0 draining', 'scheduler', now() - interval '2 hours'
FROM bulk
UNION ALL
SELECT did, 'deploy', 'READY', 'DEPLOYING', NULL, 'DEPLOYING_PROVISIONING', 'SUCCESS',
       'deploying revision 2 over revision 1 with BLUE_GREEN', 'bench', now() - interval '1 hour'
FROM bulk WHERE $1::boolean
UNION ALL
SELECT did, 'provision', 'DEPLOYING', 'DEPLOYING', 'DEPLOYING_PROVISIONING', 'DEPLOYING_AWAITING_PROMOTION', 'SUCCESS',
       'all 2 green routes are healthy', 'scheduler', now() - interval '10 seconds'
FROM bulk WHERE $1::boolean
"""


async def bulk_insert(connection: asyncpg.Connection, count: int, *, label: str, due: bool) -> None:
    """`count` READY deployments serving revision 1 on two routes; or, with `due`, deployments whose revision 2
    (two HEALTHY green routes) is due for auto-promotion now. Blue-green, autoPromote, promoteDelaySeconds 0; a
    scale-down delay of an hour keeps promoted deployments from falling due again during the bench."""
    strategy = records.strategy_values(
        blue_green(auto_promote=True, promote_delay_seconds=0, scale_down_delay_seconds=3600)
    )
    columns = [
        strategy[k]
        for k in (
            "strategy_type", "auto_promote", "promote_delay_seconds", "promotion_timeout_seconds",
            "scale_down_delay_seconds", "max_surge_count", "max_surge_percent", "max_unavailable_count",
            "max_unavailable_percent", "provisioning_timeout_seconds", "max_retries",
        )
    ]  # fmt: skip
    async with connection.transaction():
        await connection.execute(BULK_IDS.format(count=int(count)))
        await connection.execute(BULK_DEPLOYMENTS, label, *columns)
        await connection.execute(BULK_REVISIONS, due)
        await connection.execute(BULK_AWAITING if due else BULK_READY)
        await connection.execute(BULK_ROUTES, due)
        await connection.execute(BULK_HISTORY, due)
    await connection.execute("ANALYZE")
