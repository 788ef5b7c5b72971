"""Proxy traffic for the BUILTIN metrics (SPEC §6): what every `switchover proxy` forwarded to each revision, written
as small per-second aggregates (table `proxy_traffic`) and read back summed over proxies.

A row holds one proxy's requests, 5xx answers and request durations for one revision in one second of the
database's clock: the second in which the proxy's flush committed (the counts were seen during the flush period
before it). Durations are counted into fixed buckets: `duration_buckets[i]` counts durations above
`BUCKET_BOUNDS_MS[i - 1]` and at most `BUCKET_BOUNDS_MS[i]` (as Prometheus' `le`), and one last count holds those
above the largest bound. The bounds are part of the stored format: changing them needs a migration of the rows.

Only the proxy that owns a row (its `proxy_id`) adds to it, one flush at a time. A flush whose COMMIT failed keeps
its counts in the proxy; since a COMMIT can also succeed with its answer lost, the proxy asks PostgreSQL which it
was (`outcome`) before adding those counts again, so that a retried flush neither loses nor doubles them.
"""

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

from databases import Database

from store.queries import QUERIES

# Upper bounds (ms) of the duration buckets: model-serving answers, from a cached few milliseconds to a slow
# generation of tens of seconds.
BUCKET_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)

RevisionKey = tuple[str, str]  # (deployment id, revision id)


def empty_buckets() -> list[int]:
    return [0] * (len(BUCKET_BOUNDS_MS) + 1)


def bucket_of(milliseconds: float) -> int:
    """Index of the bucket a duration falls in: the first bound at or above it, or the last bucket."""
    return bisect_left(BUCKET_BOUNDS_MS, milliseconds)


@dataclass
class Counts:
    """What a proxy saw of one revision since its last flush."""

    requests: int = 0
    errors: int = 0  # answers with a 5xx status
    buckets: list[int] = field(default_factory=empty_buckets)

    def count(self, *, error: bool, milliseconds: float) -> None:
        self.requests += 1
        self.errors += error
        self.buckets[bucket_of(milliseconds)] += 1

    def add(self, other: "Counts") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


class CommitUnknown(Exception):
    """`record` failed after its transaction began: whether it committed is for `outcome(db, xid)` to say."""

    def __init__(self, xid: str) -> None:
        super().__init__(f"the flush in transaction {xid} may or may not have committed")
        self.xid = xid


async def record(db: Database, *, proxy_id: str, batch: Mapping[RevisionKey, Counts]) -> str:
    """Add `batch` to this proxy's rows of the current second, in one transaction; returns the transaction's id.

    Raises `CommitUnknown` when it fails once the transaction has an id (a failed COMMIT included: its answer may
    be what was lost); any other error means nothing was written."""
    xid: str | None = None
    try:
        async with db.transaction():
            xid = await db.fetch_val(QUERIES["current_transaction_id"])
            for (deployment_id, revision_id), counts in batch.items():
                await db.execute(
                    QUERIES["add_proxy_traffic"],
                    {
                        "deployment_id": deployment_id,
                        "revision_id": revision_id,
                        "proxy_id": proxy_id,
                        "requests": counts.requests,
                        "errors": counts.errors,
                        "duration_buckets": counts.buckets,
                    },
                )
    except Exception as exc:
        if xid is None:
            raise
        raise CommitUnknown(xid) from exc
    assert xid is not None
    return xid


async def outcome(db: Database, xid: str) -> str | None:
    """'committed', 'aborted' or 'in progress'; None when PostgreSQL no longer remembers the transaction."""
    return await db.fetch_val(QUERIES["transaction_outcome"], {"xid": xid})


@dataclass(frozen=True)
class Figures:
    """A revision's traffic over a window, summed over proxies."""

    requests: int
    errors: int
    buckets: tuple[int, ...]  # per bucket of BUCKET_BOUNDS_MS, the last one above the largest bound


async def revision_figures(db: Database, deployment_id: str, revision_id: str, *, seconds: int) -> Figures:
    """The revision's traffic in the one-second intervals that ended within the last `seconds` (and the one still
    open), by the database's clock."""
    row = await db.fetch_one(
        QUERIES["revision_figures"],
        {"deployment_id": deployment_id, "revision_id": revision_id, "seconds": float(seconds)},
    )
    buckets = tuple(row["duration_buckets"]) or tuple(empty_buckets())
    return Figures(requests=row["requests"], errors=row["errors"], buckets=buckets)
