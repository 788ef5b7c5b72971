"""The floors: what the same work costs written by hand against asyncpg, without GraphQL, `databases` or the store.

Reads are single round trips in which PostgreSQL builds the very JSON the GraphQL query answers (the bench checks
that both are equal); the promotion is the minimal transaction that does what `store.rollouts.promote` does.
"""

import uuid

import asyncpg

# --- Reads -------------------------------------------------------------------------------------------------------

CURRENT_REVISION = """(SELECT json_build_object('number', r.number, 'image', r.image)
    FROM revisions r WHERE r.id = d.current_revision_id)"""
ROUTE_FIELDS = {
    "page": "'id', x.id, 'status', x.status, 'trafficStatus', x.traffic_status",
    "list": "'id', x.id, 'status', x.status, 'trafficStatus', x.traffic_status, 'trafficRatio', x.traffic_ratio",
}


def routes_of_d(kind: str) -> str:
    return f"""COALESCE((SELECT json_agg(json_build_object({ROUTE_FIELDS[kind]}) ORDER BY x.seq)
    FROM routes x WHERE x.deployment_id = d.id), '[]')"""


HISTORY_5 = """json_build_object('edges', COALESCE((
    SELECT json_agg(json_build_object('node', json_build_object('phase', h.phase, 'message', h.message))
                    ORDER BY h.seq DESC)
    FROM (SELECT seq, phase, message FROM deployment_history
          WHERE deployment_id = d.id ORDER BY seq DESC LIMIT 5) h), '[]'))"""

# deployments(first: $1) { edges { node { id name currentRevision { number image } routes { id status trafficStatus }
#   history(first: 5) { edges { node { phase message } } } } } }
PAGE = f"""
SELECT json_build_object('deployments', json_build_object('edges', COALESCE(json_agg(json_build_object('node',
    json_build_object('id', d.id, 'name', d.name, 'currentRevision', {CURRENT_REVISION},
                      'routes', {routes_of_d("page")}, 'history', {HISTORY_5})) ORDER BY d.seq), '[]')))
FROM (SELECT * FROM deployments WHERE seq > $2 ORDER BY seq LIMIT $1) d
"""

# deployments(first: $1, after: $2) { edges { node { id name lifecycle currentRevision { number image }
#   routes { id status trafficStatus trafficRatio } } } }
LIST = f"""
SELECT json_build_object('deployments', json_build_object('edges', COALESCE(json_agg(json_build_object('node',
    json_build_object('id', d.id, 'name', d.name, 'lifecycle', d.lifecycle, 'currentRevision', {CURRENT_REVISION},
                      'routes', {routes_of_d("list")})) ORDER BY d.seq), '[]')))
FROM (SELECT * FROM deployments WHERE seq > $2 ORDER BY seq LIMIT $1) d
"""

# deployment(id: $1) { id name lifecycle subStep replicas currentRevision { number image }
#   routes { id status trafficStatus } history(first: 5) { edges { node { phase message } } } }
ONE = f"""
SELECT json_build_object('deployment', (
    SELECT json_build_object('id', d.id, 'name', d.name, 'lifecycle', d.lifecycle, 'subStep', d.sub_step,
                             'replicas', d.replicas, 'currentRevision', {CURRENT_REVISION},
                             'routes', {routes_of_d("page")}, 'history', {HISTORY_5})
    FROM deployments d WHERE d.id = $1))
"""

# route(id: $1) { id status trafficStatus trafficRatio revision { number image } deployment { id name } }
ROUTE = """
SELECT json_build_object('route', (
    SELECT json_build_object('id', x.id, 'status', x.status, 'trafficStatus', x.traffic_status,
                             'trafficRatio', x.traffic_ratio,
                             'revision', json_build_object('number', r.number, 'image', r.image),
                             'deployment', json_build_object('id', d.id, 'name', d.name))
    FROM routes x JOIN revisions r ON r.id = x.revision_id JOIN deployments d ON d.id = x.deployment_id
    WHERE x.id = $1))
"""

# The GraphQL documents the floors answer, field for field.
GQL_PAGE = """query($first: Int!) { deployments(first: $first) { edges { node {
  id name currentRevision { number image } routes { id status trafficStatus }
  history(first: 5) { edges { node { phase message } } } } } } }"""
GQL_LIST = """query($first: Int!, $after: String) { deployments(first: $first, after: $after) { edges { node {
  id name lifecycle currentRevision { number image } routes { id status trafficStatus trafficRatio } } } } }"""
GQL_ONE = """query($id: ID!) { deployment(id: $id) {
  id name lifecycle subStep replicas currentRevision { number image } routes { id status trafficStatus }
  history(first: 5) { edges { node { phase message } } } } }"""
GQL_ROUTE = """query($id: ID!) { route(id: $id) {
  id status trafficStatus trafficRatio revision { number image } deployment { id name } } }"""

# --- The promotion ----------------------------------------------------------------------------------------------

LOCK_DEPLOYMENT = "SELECT * FROM deployments WHERE id = $1 FOR UPDATE"
LOCK_ROUTES = "SELECT * FROM routes WHERE deployment_id = $1 AND status <> 'TERMINATED' ORDER BY seq FOR UPDATE"
GREEN_ACTIVE = """UPDATE routes SET traffic_status = 'ACTIVE', traffic_ratio = $2, terminate_after = NULL,
    updated_at = now() WHERE id = ANY($1::uuid[])"""
BLUE_INACTIVE = """UPDATE routes SET traffic_status = 'INACTIVE', traffic_ratio = 0,
    terminate_after = now() + make_interval(secs => $2), updated_at = now()
    WHERE id = ANY($1::uuid[]) RETURNING terminate_after"""
MOVE = """UPDATE deployments SET lifecycle = 'READY', sub_step = NULL, current_revision_id = deploying_revision_id,
    deploying_revision_id = NULL, phase_started_at = now(), attempts = 0, next_check_at = $2, updated_at = now()
    WHERE id = $1"""
HISTORY = """INSERT INTO deployment_history
    (deployment_id, phase, from_lifecycle, to_lifecycle, from_sub_step, to_sub_step, result, message, actor)
    VALUES ($1, 'promote', 'DEPLOYING', 'READY', 'DEPLOYING_AWAITING_PROMOTION', NULL, 'SUCCESS', $2, $3)"""
LIVE = ("PROVISIONING", "HEALTHY", "UNHEALTHY", "DEGRADED")


class NotPromotable(Exception):
    pass


async def promote(connection: asyncpg.Connection, deployment_id: uuid.UUID, *, actor: str = "bench-floor") -> int:
    """Switch all traffic to the green routes in one transaction: lock the deployment, lock its routes, green
    ACTIVE, blue INACTIVE (kept warm), the deployment READY, a history row. Returns the routes promoted."""
    async with connection.transaction():
        d = await connection.fetchrow(LOCK_DEPLOYMENT, deployment_id)
        if d is None or (d["lifecycle"], d["sub_step"]) != ("DEPLOYING", "DEPLOYING_AWAITING_PROMOTION"):
            raise NotPromotable(str(deployment_id))
        routes = await connection.fetch(LOCK_ROUTES, deployment_id)
        green = [r for r in routes if r["revision_id"] == d["deploying_revision_id"] and r["status"] == "HEALTHY"]
        green = green[: d["replicas"]]
        if len(green) < d["replicas"]:
            raise NotPromotable(str(deployment_id))
        blue = [
            r["id"]
            for r in routes
            if r["revision_id"] != d["deploying_revision_id"]
            and (r["status"] in LIVE or r["traffic_status"] == "ACTIVE")
        ]
        await connection.execute(GREEN_ACTIVE, [r["id"] for r in green], 1.0 / len(green))
        drained = await connection.fetch(BLUE_INACTIVE, blue, float(d["scale_down_delay_seconds"]))
        await connection.execute(MOVE, deployment_id, min((r[0] for r in drained), default=None))
        message = f"promoted revision: {len(green)} routes active, {len(blue)} draining"
        await connection.execute(HISTORY, deployment_id, message, actor)
    return len(green)
