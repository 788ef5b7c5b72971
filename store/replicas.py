"""What replica runtimes, health checks and the traffic proxy ask of the store: routes to start and watch, to probe,
and to send traffic to."""

from dataclasses import dataclass
from typing import Any

from databases import Database

from store import records
from store.models import Route, ShadowSpec
from store.queries import QUERIES


@dataclass
class RouteToStart:
    route: Route
    image: str
    revision_number: int
    env: dict[str, Any]
    health_check_path: str


@dataclass
class WatchedRoute:
    route: Route
    health_check_path: str


async def claim_routes_to_start(db: Database, *, limit: int = 20) -> list[RouteToStart]:
    """PROVISIONING routes nobody has started yet, locked until the caller's transaction ends."""
    rows = await db.fetch_all(QUERIES["claim_routes_to_start"], {"limit": limit})
    return [
        RouteToStart(records.route(r), r["image"], r["revision_number"], r["env"], r["health_check_path"]) for r in rows
    ]


async def attach_runtime(db: Database, route_id: str, *, runtime_ref: str, endpoint_url: str) -> Route:
    row = await db.fetch_one(
        QUERIES["attach_runtime"], {"id": route_id, "runtime_ref": runtime_ref, "endpoint_url": endpoint_url}
    )
    assert row is not None
    return records.route(row)


async def detach_runtime(db: Database, route_id: str) -> None:
    """Forget a route's dead process, so that the runtime starts a new one."""
    await db.execute(QUERIES["detach_runtime"], {"id": route_id})


async def routes_with_runtime(db: Database) -> list[WatchedRoute]:
    rows = await db.fetch_all(QUERIES["routes_with_runtime"])
    return [WatchedRoute(records.route(r), r["health_check_path"]) for r in rows]


async def routes_to_probe(db: Database) -> list[WatchedRoute]:
    rows = await db.fetch_all(QUERIES["routes_to_probe"])
    return [WatchedRoute(records.route(r), r["health_check_path"]) for r in rows]


@dataclass(frozen=True)
class Destination:
    route_id: str
    endpoint_url: str
    traffic_ratio: float
    # Whose traffic it is, for the proxy's per-revision counts.
    deployment_id: str
    revision_id: str
    revision_number: int
    # The deployment's rollout when the table was read: mirrored requests count for that rollout only (SPEC §6).
    rollout_epoch: int = 0


@dataclass(frozen=True)
class RoutingTable:
    """Deployment name to the ACTIVE routes that share its traffic, and to the HEALTHY routes of the revision it is
    deploying, which requests asking for a preview go to (in equal shares)."""

    traffic: dict[str, list[Destination]]
    preview: dict[str, list[Destination]]
    # Deployments whose preview routes also take a mirror of the traffic (SPEC §6, Shadow traffic), by name.
    shadow: dict[str, ShadowSpec]


async def traffic_table(db: Database) -> RoutingTable:
    table = RoutingTable({}, {}, {})
    owners: dict[str, Any] = {}
    for row in await db.fetch_all(QUERIES["traffic_table"]):
        # Names are unique per project only: the oldest live deployment of a name owns the path.
        if owners.setdefault(row["name"], row["deployment_id"]) != row["deployment_id"]:
            continue
        destination = Destination(
            route_id=str(row["route_id"]),
            endpoint_url=row["endpoint_url"],
            traffic_ratio=row["traffic_ratio"],
            deployment_id=str(row["deployment_id"]),
            revision_id=str(row["revision_id"]),
            revision_number=row["revision_number"],
            rollout_epoch=row["rollout_epoch"],
        )
        (table.preview if row["preview"] else table.traffic).setdefault(row["name"], []).append(destination)
        shadow = records.shadow_spec(row["shadow"])
        if shadow is not None:
            table.shadow[row["name"]] = shadow
    return table


@dataclass(frozen=True)
class BackendServer:
    """A route HAProxy should have as a server (`switchover haproxy`, SPEC §7): in its deployment's backend, or, when
    `preview`, in its preview backend."""

    deployment_name: str
    deployment_id: str
    route_id: str
    endpoint_url: str
    active: bool  # takes traffic: weight from `traffic_ratio`; otherwise weight 0 until the route stops
    traffic_ratio: float
    preview: bool


async def haproxy_servers(db: Database, deployment_ids: list[str] | None = None) -> list[BackendServer]:
    """Every backend's servers, or (`deployment_ids`) those of the backends named like these deployments."""
    servers: list[BackendServer] = []
    owners: dict[str, Any] = {}
    for row in await db.fetch_all(QUERIES["haproxy_servers"], {"deployment_ids": deployment_ids}):
        # Names are unique per project only: the oldest live deployment of a name owns its backend.
        if owners.setdefault(row["name"], row["deployment_id"]) != row["deployment_id"]:
            continue
        servers.append(
            BackendServer(
                deployment_name=row["name"],
                deployment_id=str(row["deployment_id"]),
                route_id=str(row["route_id"]),
                endpoint_url=row["endpoint_url"],
                active=row["active"],
                traffic_ratio=row["traffic_ratio"],
                preview=row["preview"],
            )
        )
    return servers
