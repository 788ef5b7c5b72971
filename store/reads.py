"""Reading records, batched: each function answers for many ids with one query (the resolvers' loaders call them).

Ids are compared in canonical form (`validation.canonical_id`); a malformed id simply finds nothing.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from databases import Database

from store import records
from store.models import (
    AnalysisRun,
    Deployment,
    DeploymentLifecycle,
    HistoryEntry,
    Measurement,
    Page,
    Revision,
    Route,
    RouteStatus,
    RouteTrafficStatus,
)
from store.pagination import decode_cursor, encode_cursor, page_size
from store.queries import QUERIES
from store.validation import canonical_id, check_name_filter, parse_id

T = TypeVar("T")

HISTORY_START = 2**63 - 1  # history is newest first: a first page starts below this seq


def _valid(ids: Sequence[str]) -> list[str]:
    # Asking PostgreSQL for a malformed uuid would fail the whole batch.
    return [i for i in (canonical_id(i) for i in ids) if i is not None]


def _page(items: list[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    return Page([(cursor_of(item), item) for item in items[:limit]], has_next_page=len(items) > limit)


def _pages(
    items: list[T], owners: list[str], owner_of: Callable[[T], str], limit: int, cursor_of: Callable[[T], str]
) -> dict[str, Page[T]]:
    """One page per owner (a project, a deployment) from rows of all of them; an owner without rows gets an empty
    page. Each owner's rows hold up to `limit + 1` items: the extra one says a next page exists."""
    grouped: dict[str, list[T]] = defaultdict(list)
    for item in items:
        grouped[owner_of(item)].append(item)
    return {owner: _page(grouped[owner], limit, cursor_of) for owner in owners}


def _lifecycle_values(lifecycles: Sequence[DeploymentLifecycle] | None) -> list[str] | None:
    return None if lifecycles is None else [str(lc) for lc in lifecycles]


async def deployments_by_ids(db: Database, ids: Sequence[str]) -> dict[str, Deployment]:
    rows = await db.fetch_all(QUERIES["deployments_by_ids"], {"ids": _valid(ids)})
    return {d.id: d for d in map(records.deployment, rows)}


async def revisions_by_ids(db: Database, ids: Sequence[str]) -> dict[str, Revision]:
    rows = await db.fetch_all(QUERIES["revisions_by_ids"], {"ids": _valid(ids)})
    return {r.id: r for r in map(records.revision, rows)}


async def routes_by_ids(db: Database, ids: Sequence[str]) -> dict[str, Route]:
    rows = await db.fetch_all(QUERIES["routes_by_ids"], {"ids": _valid(ids)})
    return {r.id: r for r in map(records.route, rows)}


def _deployment_cursor(d: Deployment) -> str:
    return encode_cursor("deployment", d.seq)


def _revision_cursor(r: Revision) -> str:
    return encode_cursor("revision", r.number)


async def list_deployments(
    db: Database,
    *,
    project_ids: Sequence[str] | None = None,
    name: str | None = None,
    lifecycles: Sequence[DeploymentLifecycle] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Page[Deployment]:
    """Deployments, oldest first; only those of `project_ids` when given (an empty list finds none)."""
    limit = page_size(first)
    check_name_filter(name)
    rows = await db.fetch_all(
        QUERIES["list_deployments"],
        {
            "project_ids": None if project_ids is None else [parse_id(p, "projectId") for p in project_ids],
            "name": name,
            "lifecycles": _lifecycle_values(lifecycles),
            "after_seq": decode_cursor("deployment", after, 0),
            "limit": limit + 1,
        },
    )
    return _page([records.deployment(r) for r in rows], limit, _deployment_cursor)


async def deployment_pages_of_projects(
    db: Database,
    project_ids: Sequence[str],
    *,
    lifecycles: Sequence[DeploymentLifecycle] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> dict[str, Page[Deployment]]:
    """One page of deployments per project; a project without deployments gets an empty page."""
    limit = page_size(first)
    rows = await db.fetch_all(
        QUERIES["list_deployments_of_projects"],
        {
            "project_ids": _valid(project_ids),
            "lifecycles": _lifecycle_values(lifecycles),
            "after_seq": decode_cursor("deployment", after, 0),
            "limit": limit + 1,
        },
    )
    found = [records.deployment(r) for r in rows]
    return _pages(found, _valid(project_ids), lambda d: d.project_id, limit, _deployment_cursor)


async def revision_pages(
    db: Database, deployment_ids: Sequence[str], *, first: int | None = None, after: str | None = None
) -> dict[str, Page[Revision]]:
    """Revisions, oldest first, one page per deployment."""
    limit = page_size(first)
    rows = await db.fetch_all(
        QUERIES["list_revisions_of_deployments"],
        {
            "deployment_ids": _valid(deployment_ids),
            "after_number": decode_cursor("revision", after, 0),
            "limit": limit + 1,
        },
    )
    found = [records.revision(r) for r in rows]
    return _pages(found, _valid(deployment_ids), lambda r: r.deployment_id, limit, _revision_cursor)


async def routes_of_deployments(
    db: Database,
    deployment_ids: Sequence[str],
    *,
    statuses: Sequence[RouteStatus] | None = None,
    traffic_status: RouteTrafficStatus | None = None,
) -> dict[str, list[Route]]:
    """Routes, oldest first, of each deployment, optionally filtered."""
    rows = await db.fetch_all(
        QUERIES["list_routes_of_deployments"],
        {
            "deployment_ids": _valid(deployment_ids),
            "statuses": None if statuses is None else [str(s) for s in statuses],
            "traffic_status": None if traffic_status is None else str(traffic_status),
        },
    )
    grouped: dict[str, list[Route]] = {did: [] for did in _valid(deployment_ids)}
    for r in map(records.route, rows):
        grouped[r.deployment_id].append(r)
    return grouped


class _Logged(Protocol):
    deployment_id: str
    seq: int


L = TypeVar("L", bound=_Logged)


async def _newest_first_pages(
    db: Database,
    query: str,
    kind: str,
    record: Callable[[Any], L],
    deployment_ids: Sequence[str],
    first: int | None,
    after: str | None,
) -> dict[str, Page[L]]:
    """One page per deployment of rows newest first, by `seq` below the cursor (history, analysis runs)."""
    limit = page_size(first)
    rows = await db.fetch_all(
        QUERIES[query],
        {
            "deployment_ids": _valid(deployment_ids),
            "before_seq": decode_cursor(kind, after, HISTORY_START),
            "limit": limit + 1,
        },
    )
    found = [record(r) for r in rows]
    return _pages(found, _valid(deployment_ids), lambda x: x.deployment_id, limit, lambda x: encode_cursor(kind, x.seq))


async def history_pages(
    db: Database, deployment_ids: Sequence[str], *, first: int | None = None, after: str | None = None
) -> dict[str, Page[HistoryEntry]]:
    """History, newest first, one page per deployment."""
    return await _newest_first_pages(
        db, "list_history_of_deployments", "history", records.history_entry, deployment_ids, first, after
    )


async def analysis_run_pages(
    db: Database, deployment_ids: Sequence[str], *, first: int | None = None, after: str | None = None
) -> dict[str, Page[AnalysisRun]]:
    """Analysis runs, newest first, one page per deployment."""
    return await _newest_first_pages(
        db, "list_analysis_runs_of_deployments", "analysis", records.analysis_run, deployment_ids, first, after
    )


async def measurements_of_runs(db: Database, run_ids: Sequence[str]) -> dict[str, list[Measurement]]:
    """Measurements, oldest first, of each run."""
    rows = await db.fetch_all(QUERIES["measurements_of_runs"], {"run_ids": _valid(run_ids)})
    grouped: dict[str, list[Measurement]] = {rid: [] for rid in _valid(run_ids)}
    for m in map(records.measurement, rows):
        grouped[m.run_id].append(m)
    return grouped


async def latest_analysis_runs(db: Database, deployment_ids: Sequence[str]) -> dict[str, dict[str, AnalysisRun]]:
    """The newest run of each kind of each deployment (for `waitingFor`), by deployment id and kind."""
    rows = await db.fetch_all(
        QUERIES["latest_analysis_runs_of_deployments"], {"deployment_ids": _valid(deployment_ids)}
    )
    grouped: dict[str, dict[str, AnalysisRun]] = {did: {} for did in _valid(deployment_ids)}
    for run in map(records.analysis_run, rows):
        grouped[run.deployment_id][run.kind.value] = run
    return grouped


async def database_now(db: Database) -> datetime:
    return await db.fetch_val(QUERIES["database_now"])
