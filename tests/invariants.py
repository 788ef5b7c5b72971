"""Invariants over the whole database, checked after every lifecycle test. Each query returns the violations."""

from databases import Database

from scheduler.table import IDLE, TRANSITIONS

VIOLATIONS = {
    "green routes take traffic before promotion": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id
        WHERE d.lifecycle = 'DEPLOYING' AND d.strategy_type = 'BLUE_GREEN'
          AND r.revision_id = d.deploying_revision_id AND r.traffic_status = 'ACTIVE'""",
    "a READY deployment sends traffic to a revision that is not current": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id
        WHERE d.lifecycle = 'READY' AND r.traffic_status = 'ACTIVE' AND r.revision_id <> d.current_revision_id""",
    "more ACTIVE routes than replicas in a READY deployment": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id AND r.traffic_status = 'ACTIVE'
        WHERE d.lifecycle = 'READY' GROUP BY d.id, d.replicas HAVING count(*) > d.replicas""",
    "traffic ratios of a deployment do not add up to 1": """
        SELECT deployment_id FROM routes WHERE traffic_status = 'ACTIVE'
        GROUP BY deployment_id HAVING abs(sum(traffic_ratio) - 1) > 1e-9""",
    "a canary's new revision takes another share than its weight": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id AND r.traffic_status = 'ACTIVE'
        WHERE d.strategy_type = 'CANARY' AND d.sub_step IN ('DEPLOYING_PROGRESSING', 'DEPLOYING_AWAITING_PROMOTION')
        GROUP BY d.id, d.canary_weight
        HAVING abs(coalesce(sum(r.traffic_ratio) FILTER (WHERE r.revision_id = d.deploying_revision_id), 0)
                   - d.canary_weight / 100.0) > 1e-9""",
    "a canary rollout has no step in progress": """
        SELECT id FROM deployments WHERE strategy_type = 'CANARY'
          AND sub_step IN ('DEPLOYING_PROGRESSING', 'DEPLOYING_AWAITING_PROMOTION') AND canary_step_index IS NULL""",
    "a deployment without a serving revision has traffic": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id
        WHERE d.lifecycle IN ('PENDING', 'DESTROYED') AND r.traffic_status = 'ACTIVE'""",
    "a deployment the scheduler must finish is not scheduled": """
        SELECT id FROM deployments WHERE next_check_at IS NULL AND (lifecycle = 'DESTROYING'
          OR sub_step IN ('DEPLOYING_PROVISIONING', 'DEPLOYING_ROLLING_BACK'))""",
    "a DESTROYED deployment has live routes": """
        SELECT d.id FROM deployments d JOIN routes r ON r.deployment_id = d.id
        WHERE d.lifecycle = 'DESTROYED' AND r.status NOT IN ('TERMINATING', 'TERMINATED', 'FAILED_TO_START')""",
    "history does not end in the deployment's state": """
        SELECT d.id FROM deployments d
        JOIN LATERAL (
            SELECT to_lifecycle, to_sub_step FROM deployment_history h
            WHERE h.deployment_id = d.id AND h.to_lifecycle IS NOT NULL ORDER BY seq DESC LIMIT 1
        ) last ON true
        WHERE last.to_lifecycle <> d.lifecycle OR last.to_sub_step IS DISTINCT FROM d.sub_step""",
    "history does not start with the creation": """
        SELECT d.id FROM deployments d
        JOIN LATERAL (SELECT phase FROM deployment_history h WHERE h.deployment_id = d.id ORDER BY seq LIMIT 1) f
          ON true
        WHERE f.phase <> 'create'""",
}


def handled_states() -> set[tuple[str, str | None]]:
    states = {(lc.value, sub.value if sub else None) for lc, sub, _ in TRANSITIONS}
    return states | {(lc.value, sub.value if sub else None) for lc, sub in IDLE}


async def check(db: Database) -> None:
    found = {}
    for name, sql in VIOLATIONS.items():
        rows = await db.fetch_all(sql)
        if rows:
            found[name] = [str(row[0]) for row in rows]
    states = await db.fetch_all("SELECT DISTINCT lifecycle, sub_step FROM deployments")
    unhandled = [tuple(row) for row in states if (row[0], row[1]) not in handled_states()]
    if unhandled:
        found["deployments in a state without a handler"] = unhandled
    assert not found, found
