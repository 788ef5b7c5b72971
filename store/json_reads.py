"""Reads answered by PostgreSQL as the JSON of a GraphQL response, in one statement.

The resolvers' loaders answer any query, a few statements per request and a Python object per field; for the plain
read shapes (columns, relations, lists and pages of Deployment, Revision, Route and DeploymentHistory) this module
writes one statement whose result is the response's `data`, already serialised. `resolvers/planner.py` says what
was asked (a tree of the nodes below); this module alone knows the tables. Values are rendered exactly as the
resolvers render them (ids as text, `DateTime` as Python's `isoformat()`, `Float` with a decimal point, cursors as
`store.pagination` writes them); `tests/test_planner.py` checks both paths give the same answer.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from databases import Database

from store.database import on_connection
from store.pagination import cursor_sql

# --- What a query asks for -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """A field with one value per record: a column, or `__typename`."""

    name: str


@dataclass(frozen=True)
class Obj:
    """An object of `type`: its response keys in order."""

    type: str
    fields: tuple[tuple[str, "Node"], ...]


@dataclass(frozen=True)
class One:
    """A relation to at most one record (`currentRevision`, `Route.deployment`, ...)."""

    name: str
    of: Obj


@dataclass(frozen=True)
class Routes:
    """`Deployment.routes(status, trafficStatus)`: every route, oldest first."""

    of: Obj
    statuses: tuple[str, ...] | None = None
    traffic_status: str | None = None


@dataclass(frozen=True)
class Edges:
    """A connection's `edges`: per edge "cursor", "__typename" or the node's Obj, by response key."""

    fields: tuple[tuple[str, "str | Obj"], ...]


@dataclass(frozen=True)
class PageInfo:
    """A connection's `pageInfo`: "hasNextPage", "endCursor" or "__typename", by response key."""

    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Page:
    """A Relay connection: `limit` items after the cursor position `after`; `shape` is what the connection object
    selects ("__typename", Edges or PageInfo, by response key)."""

    name: str
    limit: int
    after: int | None
    shape: tuple[tuple[str, "str | Edges | PageInfo"], ...]
    filters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


Node = Leaf | One | Routes | Page


@dataclass(frozen=True)
class ById:
    """`deployment(id)`, `revision(id)`, `route(id)`: null when there is no such record."""

    type: str
    id: str | None
    of: Obj


@dataclass(frozen=True)
class Typename:
    value: str


Root = ById | Page | Typename

# --- The tables behind the types -----------------------------------------------------------------------------

TABLES = {
    "Deployment": "deployments",
    "Revision": "revisions",
    "Route": "routes",
    "DeploymentHistory": "deployment_history",
}


def _iso(column: str) -> str:
    # datetime.isoformat() in UTC: microseconds only when there are some.
    return (
        f"(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN to_char({column}, 'US') = '000000' THEN '' ELSE to_char({column}, '.US') END || '+00:00')"
    )


def _float(column: str) -> str:
    # Python writes 1.0 where PostgreSQL writes 1.
    return f"(CASE WHEN {column} = trunc({column}) THEN to_json({column}::numeric(20, 1)) ELSE to_json({column}) END)"


def _ts(name: str) -> str:
    return _iso("{t}." + name)


COLUMNS: dict[str, dict[str, str]] = {
    "Deployment": {
        "id": "{t}.id::text",
        "name": "{t}.name",
        "projectId": "{t}.project_id::text",
        "replicas": "{t}.replicas",
        "lifecycle": "{t}.lifecycle",
        "subStep": "{t}.sub_step",
        "phaseStartedAt": _ts("phase_started_at"),
        "createdAt": _ts("created_at"),
        "updatedAt": _ts("updated_at"),
    },
    "Revision": {
        "id": "{t}.id::text",
        "number": "{t}.number",
        "image": "{t}.image",
        "env": "{t}.env",
        "healthCheckPath": "{t}.health_check_path",
        "createdAt": _ts("created_at"),
    },
    "Route": {
        "id": "{t}.id::text",
        "status": "{t}.status",
        "trafficStatus": "{t}.traffic_status",
        "trafficRatio": _float("{t}.traffic_ratio"),
        "endpointUrl": "{t}.endpoint_url",
        "createdAt": _ts("created_at"),
        "updatedAt": _ts("updated_at"),
    },
    "DeploymentHistory": {
        "id": "{t}.id::text",
        "phase": "{t}.phase",
        "fromLifecycle": "{t}.from_lifecycle",
        "toLifecycle": "{t}.to_lifecycle",
        "fromSubStep": "{t}.from_sub_step",
        "toSubStep": "{t}.to_sub_step",
        "result": "{t}.result",
        "message": "{t}.message",
        "errorCode": "{t}.error_code",
        "attempts": "{t}.attempts",
        "actor": "{t}.actor",
        "createdAt": _ts("created_at"),
        "updatedAt": _ts("updated_at"),
    },
}

# (type, field) -> (related type, the foreign key column of `type`)
TO_ONE = {
    ("Deployment", "currentRevision"): ("Revision", "current_revision_id"),
    ("Deployment", "deployingRevision"): ("Revision", "deploying_revision_id"),
    ("Revision", "deployment"): ("Deployment", "deployment_id"),
    ("Route", "deployment"): ("Deployment", "deployment_id"),
    ("Route", "revision"): ("Revision", "revision_id"),
}


@dataclass(frozen=True)
class Ordering:
    """How a connection pages: the cursor kind, the position column, the direction, and which side `after` is."""

    node_type: str
    cursor: str
    position: str
    descending: bool = False


PAGES = {
    ("Query", "deployments"): Ordering("Deployment", "deployment", "seq"),
    ("Deployment", "revisions"): Ordering("Revision", "revision", "number"),
    ("Deployment", "history"): Ordering("DeploymentHistory", "history", "seq", descending=True),
}

# --- The statement ---------------------------------------------------------------------------------------------


class _Statement:
    def __init__(self) -> None:
        self.params: list[Any] = []
        self.aliases = 0

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"

    def alias(self) -> str:
        self.aliases += 1
        return f"t{self.aliases}"

    def obj(self, obj: Obj, t: str) -> str:
        return _object((key, self.node(obj.type, node, t)) for key, node in obj.fields)

    def node(self, type_: str, node: Node, t: str) -> str:
        if isinstance(node, Leaf):
            if node.name == "__typename":
                return f"'{type_}'::text"
            return COLUMNS[type_][node.name].format(t=t)
        if isinstance(node, One):
            related, column = TO_ONE[(type_, node.name)]
            r = self.alias()
            return f"(SELECT {self.obj(node.of, r)} FROM {TABLES[related]} {r} WHERE {r}.id = {t}.{column})"
        if isinstance(node, Routes):
            r = self.alias()
            where = [f"{r}.deployment_id = {t}.id"]
            if node.statuses is not None:
                where.append(f"{r}.status = ANY({self.param(list(node.statuses), 'text[]')})")
            if node.traffic_status is not None:
                where.append(f"{r}.traffic_status = {self.param(node.traffic_status, 'text')}")
            return (
                f"COALESCE((SELECT json_agg({self.obj(node.of, r)} ORDER BY {r}.seq) FROM routes {r} "
                f"WHERE {' AND '.join(where)}), '[]'::json)"
            )
        return self.page(PAGES[(type_, node.name)], node, [f"{{r}}.deployment_id = {t}.id"])

    def page(self, ordering: Ordering, page: Page, where: list[str]) -> str:
        r = self.alias()
        table = TABLES[ordering.node_type]
        position = f"{r}.{ordering.position}"
        direction = "DESC" if ordering.descending else ""
        conditions = [w.format(r=r) for w in where]
        if page.after is not None:
            conditions.append(f"{position} {'<' if ordering.descending else '>'} {self.param(page.after, 'bigint')}")
        limit = self.param(page.limit, "int")
        cursor = cursor_sql(ordering.cursor, position)
        in_page = f"FILTER (WHERE {r}.rank <= {limit})"
        pairs = []
        for key, part in page.shape:
            if isinstance(part, PageInfo):
                info = {
                    "hasNextPage": f"count(*) > {limit}",
                    "endCursor": f"(array_agg({cursor} ORDER BY {r}.rank DESC) {in_page})[1]",
                    "__typename": "'PageInfo'::text",
                }
                value = _object((k, info[name]) for k, name in part.fields)
            elif isinstance(part, Edges):
                edge = {"cursor": cursor, "__typename": f"'{ordering.node_type}Edge'::text"}
                node = _object((k, edge[f] if isinstance(f, str) else self.obj(f, r)) for k, f in part.fields)
                value = f"COALESCE(json_agg({node} ORDER BY {r}.rank) {in_page}, '[]'::json)"
            else:
                value = f"'{ordering.node_type}Connection'::text"
            pairs.append((key, value))
        where_sql = " AND ".join(conditions) or "TRUE"
        # GROUP BY (): one row, hence one connection object, whatever the page holds and whether or not the shape
        # has an aggregate (`{ __typename }` alone would otherwise give a row per item: null when there is none).
        return (
            f"(SELECT {_object(pairs)} FROM ("
            f"SELECT {r}.*, row_number() OVER (ORDER BY {position} {direction}) AS rank FROM {table} {r} "
            f"WHERE {where_sql} ORDER BY {position} {direction} LIMIT {limit} + 1) {r} GROUP BY ())"
        )

    def root(self, root: Root) -> str:
        if isinstance(root, Typename):
            return f"'{root.value}'::text"
        if isinstance(root, ById):
            if root.id is None:  # not a UUID: nothing has it
                return "NULL::json"
            t = self.alias()
            where_id = f"{t}.id = {self.param(root.id, 'uuid')}"
            return f"(SELECT {self.obj(root.of, t)} FROM {TABLES[root.type]} {t} WHERE {where_id})"
        where = []
        filters = root.filters
        if filters.get("project_ids") is not None:
            where.append(f"{{r}}.project_id = ANY({self.param(filters['project_ids'], 'uuid[]')})")
        if filters.get("name") is not None:
            where.append(f"{{r}}.name = {self.param(filters['name'], 'text')}")
        if filters.get("lifecycles") is not None:
            where.append(f"{{r}}.lifecycle = ANY({self.param(filters['lifecycles'], 'text[]')})")
        return self.page(PAGES[("Query", "deployments")], root, where)


def _object(pairs: Iterable[tuple[str, str]]) -> str:
    return "json_build_object(" + ", ".join(f"'{_key(key)}', {value}" for key, value in pairs) + ")"


def _key(key: str) -> str:
    # Response keys are GraphQL names ([_A-Za-z][_0-9A-Za-z]*): nothing to escape, but refuse anything else.
    if not key.replace("_", "a").isalnum() or not key.isascii():
        raise ValueError(f"not a GraphQL name: {key!r}")
    return key


# Project of each root record, for the caller's read permission (checked in Python, like the resolvers do).
_PROJECT_OF = {
    "Deployment": "SELECT project_id::text FROM deployments WHERE id = {id}",
    "Revision": "SELECT d.project_id::text FROM revisions x JOIN deployments d ON d.id = x.deployment_id "
    "WHERE x.id = {id}",
    "Route": "SELECT d.project_id::text FROM routes x JOIN deployments d ON d.id = x.deployment_id WHERE x.id = {id}",
}


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...]


def statement(roots: Sequence[tuple[str, Root]], *, check_projects: bool) -> Statement:
    """One statement returning the response's `data` as JSON text and, with `check_projects`, the project ids of
    the records asked for by id (NULL where there is none)."""
    s = _Statement()
    columns = [f"{_object((key, s.root(root)) for key, root in roots)}::text"]
    if check_projects:
        by_id = [root for _, root in roots if isinstance(root, ById) and root.id is not None]
        projects = [f"({_PROJECT_OF[r.type].format(id=s.param(r.id, 'uuid'))})" for r in by_id]
        columns.append(f"ARRAY[{', '.join(projects)}]::text[]" if projects else "ARRAY[]::text[]")
    return Statement(f"SELECT {', '.join(columns)}", tuple(s.params))


async def answer(db: Database, stmt: Statement) -> tuple[str, list[str | None]]:
    """Run the statement: the `data` JSON text, and the project ids when they were asked for."""
    row = await on_connection(db, "fetchrow", stmt.sql, *stmt.params)
    return row[0], list(row[1]) if len(row) > 1 else []
