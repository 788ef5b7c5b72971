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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from databases import Database

from store.errors import BadUserInput
from store.models import ShadowSample, ShadowStats
from store.queries import QUERIES
from store.validation import canonical_id, check_range

# Upper bounds (ms) of the duration buckets: model-serving answers, from a cached few milliseconds to a slow
# generation of tens of seconds.
BUCKET_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)

# (deployment id, revision id, rollout epoch): shadow counts belong to one rollout of the revision (SPEC §6: "a new
# deploy starts from zero"); proxy_traffic rows do not care about the epoch.
RevisionKey = tuple[str, str, int]


def empty_buckets() -> list[int]:
    return [0] * (len(BUCKET_BOUNDS_MS) + 1)


def bucket_of(milliseconds: float) -> int:
    """Index of the bucket a duration falls in: the first bound at or above it, or the last bucket."""
    return bisect_left(BUCKET_BOUNDS_MS, milliseconds)


SAMPLES_KEPT = 10  # disagreeing samples per revision, newest kept (SPEC §6)
SAMPLE_BYTES = 4096


def truncated(text: str, limit: int = SAMPLE_BYTES) -> str:
    """At most `limit` bytes of UTF-8, cut on a character boundary."""
    return text.encode()[:limit].decode(errors="ignore")


@dataclass
class ShadowCounts:
    """Mirrored requests of one revision (the one being deployed): each ended as exactly one of the three."""

    agreed: int = 0
    disagreed: int = 0
    green_errors: int = 0
    samples: list[ShadowSample] = field(default_factory=list)  # oldest first, at most SAMPLES_KEPT

    @property
    def requests(self) -> int:
        return self.agreed + self.disagreed + self.green_errors

    def add(self, other: "ShadowCounts") -> None:
        self.agreed += other.agreed
        self.disagreed += other.disagreed
        self.green_errors += other.green_errors
        self.samples = (other.samples + self.samples)[-SAMPLES_KEPT:]  # `other` is the older (a failed flush)

    def keep(self, sample: ShadowSample) -> None:
        self.samples = [*self.samples, sample][-SAMPLES_KEPT:]


@dataclass
class Counts:
    """What a proxy saw of one revision since its last flush: the requests it forwarded to it, and those it mirrored
    to it (shadow traffic)."""

    requests: int = 0
    errors: int = 0  # answers with a 5xx status
    buckets: list[int] = field(default_factory=empty_buckets)
    shadow: ShadowCounts = field(default_factory=ShadowCounts)

    def count(self, *, error: bool, milliseconds: float) -> None:
        self.requests += 1
        self.errors += error
        self.buckets[bucket_of(milliseconds)] += 1

    def add(self, other: "Counts") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.shadow.add(other.shadow)


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
            for (deployment_id, revision_id, rollout_epoch), counts in batch.items():
                if counts.requests or not counts.shadow.requests:
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
                if counts.shadow.requests:
                    await record_shadow(
                        db, deployment_id, revision_id, rollout_epoch, proxy_id=proxy_id, counts=counts.shadow
                    )
    except Exception as exc:
        if xid is None:
            raise
        raise CommitUnknown(xid) from exc
    assert xid is not None
    return xid


async def record_shadow(
    db: Database, deployment_id: str, revision_id: str, rollout_epoch: int, *, proxy_id: str, counts: ShadowCounts
) -> None:
    """Inside `record`'s transaction: add mirrored counts and samples of one rollout; only the newest SAMPLES_KEPT
    samples of that rollout stay (and none of the revision's earlier ones)."""
    keys = {"deployment_id": deployment_id, "revision_id": revision_id, "rollout_epoch": rollout_epoch}
    await db.execute(
        QUERIES["add_shadow_traffic"],
        {**keys, "proxy_id": proxy_id, "agreed": counts.agreed, "disagreed": counts.disagreed,
         "green_errors": counts.green_errors},
    )  # fmt: skip
    for sample in counts.samples:
        await db.execute(
            QUERIES["add_shadow_sample"],
            {**keys, "request": truncated(sample.request), "blue_answer": truncated(sample.blue_answer),
             "green_answer": truncated(sample.green_answer)},
        )  # fmt: skip
    if counts.samples:
        await db.execute(QUERIES["trim_shadow_samples"], {**keys, "keep": SAMPLES_KEPT})


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


async def shadow_figures(
    db: Database, deployment_id: str, revision_id: str, *, seconds: int | None = None, rollout_epoch: int | None = None
) -> ShadowCounts:
    """One rollout's mirrored requests to a revision summed over proxies: over the one-second intervals that ended
    within the last `seconds` (and the one still open), or all of them (None); without samples. `rollout_epoch`
    None: the deployment's current rollout."""
    row = await db.fetch_one(
        QUERIES["shadow_figures"],
        {"deployment_id": deployment_id, "revision_id": revision_id, "rollout_epoch": rollout_epoch,
         "seconds": None if seconds is None else float(seconds)},
    )  # fmt: skip
    assert row is not None
    return ShadowCounts(agreed=row["agreed"], disagreed=row["disagreed"], green_errors=row["green_errors"])


async def shadow_samples(
    db: Database, deployment_id: str, revision_id: str, *, rollout_epoch: int | None = None
) -> list[ShadowSample]:
    """The rollout's newest disagreements, newest first (`rollout_epoch` None: the deployment's current rollout)."""
    rows = await db.fetch_all(
        QUERIES["shadow_samples_of_revision"],
        {"deployment_id": deployment_id, "revision_id": revision_id, "rollout_epoch": rollout_epoch,
         "keep": SAMPLES_KEPT},
    )  # fmt: skip
    return [ShadowSample(r["request"], r["blue_answer"], r["green_answer"]) for r in rows]


async def has_serving_revision(db: Database, deployment_id: str) -> bool:
    return bool(await db.fetch_val(QUERIES["has_serving_revision"], {"deployment_id": deployment_id}))


async def shadow_stats(
    db: Database, deployment_id: str, revision_id: str, *, rollout_epoch: int | None = None
) -> ShadowStats:
    """Everything mirrored to the revision in one rollout (None: the current one), summed over proxies, and its
    newest disagreements."""
    figures = await shadow_figures(db, deployment_id, revision_id, rollout_epoch=rollout_epoch)
    samples = await shadow_samples(db, deployment_id, revision_id, rollout_epoch=rollout_epoch)
    return ShadowStats(figures.agreed, figures.disagreed, figures.green_errors, samples)


# Reads for the API, batched per request (resolvers/context.py): each deployment's current rollout, if it deploys a
# revision.


@dataclass(frozen=True)
class RolloutShadowStats(ShadowStats):
    """ShadowStats of a deployment's current rollout, knowing whose they are (for `ShadowStats.intervals`)."""

    deployment_id: str = ""


@dataclass(frozen=True)
class ShadowInterval:
    """Mirrored requests of one interval of the database's clock, summed over proxies."""

    start: datetime
    agreed: int
    disagreed: int
    green_errors: int

    @property
    def requests(self) -> int:
        return self.agreed + self.disagreed + self.green_errors


MAX_INTERVALS = 360  # per deployment and request: a dashboard's sparkline, not an export


def interval_slots(seconds: int | None, step: int | None) -> tuple[int, int]:
    """(step, number of intervals) for `ShadowStats.intervals(seconds, step)`; bad bounds are BAD_USER_INPUT."""
    seconds = 300 if seconds is None else seconds
    step = 10 if step is None else step
    check_range(seconds, "seconds", 1, 86_400)
    check_range(step, "step", 1, 3600)
    slots = -(-seconds // step)
    if slots > MAX_INTERVALS:
        raise BadUserInput(f"seconds / step must be at most {MAX_INTERVALS} intervals, got {slots}")
    return step, slots


async def shadow_stats_of_deployments(db: Database, deployment_ids: Sequence[str]) -> dict[str, RolloutShadowStats]:
    """By deployment id: its current rollout's shadow statistics; a deployment deploying nothing is absent."""
    ids = _uuids(deployment_ids)
    figures = await db.fetch_all(QUERIES["shadow_figures_of_deployments"], {"deployment_ids": ids})
    rows = await db.fetch_all(QUERIES["shadow_samples_of_deployments"], {"deployment_ids": ids, "keep": SAMPLES_KEPT})
    samples: dict[str, list[ShadowSample]] = {}
    for r in rows:
        samples.setdefault(str(r["deployment_id"]), []).append(
            ShadowSample(r["request"], r["blue_answer"], r["green_answer"])
        )
    found: dict[str, RolloutShadowStats] = {}
    for f in figures:
        id_ = str(f["deployment_id"])
        found[id_] = RolloutShadowStats(
            f["agreed"], f["disagreed"], f["green_errors"], samples.get(id_, []), deployment_id=id_
        )
    return found


async def shadow_intervals_of_deployments(
    db: Database, deployment_ids: Sequence[str], *, step: int, slots: int
) -> dict[str, list[ShadowInterval]]:
    """By deployment id: its current rollout's mirrored requests in the last `slots` intervals of `step` seconds,
    oldest first (the last one still open); the caller bounds `slots` (MAX_INTERVALS)."""
    rows = await db.fetch_all(
        QUERIES["shadow_intervals_of_deployments"],
        {"deployment_ids": _uuids(deployment_ids), "step": float(step), "slots": slots},
    )
    found: dict[str, list[ShadowInterval]] = {}
    for r in rows:
        found.setdefault(str(r["deployment_id"]), []).append(
            ShadowInterval(r["start"], r["agreed"], r["disagreed"], r["green_errors"])
        )
    return found


def _uuids(ids: Sequence[str]) -> list[str]:
    # A malformed uuid would fail the whole batch in PostgreSQL; it finds nothing instead (as in store/reads.py).
    return [i for i in map(canonical_id, ids) if i is not None]
