"""What `switchover proxy` counts of the requests it forwards, per deployment and revision: Prometheus metrics on its
own `/metrics` (SPEC §7 names), and the per-second aggregates it flushes to PostgreSQL for the BUILTIN provider
(store/traffic.py).

Both count the same requests: every answer a caller got to a request the proxy sent to a route, with the status
the caller got. That includes the proxy's own 502 (or 503) when the routes it tried did not answer, under the
revision of the last route tried: that revision failed the caller. A 503 for a deployment with no route taking
traffic tried no revision and is counted in neither.
"""

import asyncio
import logging
import uuid

from databases import Database
from prometheus_client import CollectorRegistry, Counter, Histogram

from store import traffic
from store.replicas import Destination

log = logging.getLogger("switchover.proxy")

Batch = dict[traffic.RevisionKey, traffic.Counts]


class TrafficCounts:
    def __init__(self, proxy_id: str | None = None) -> None:
        # A proxy process writes its own rows: two proxies never add to the same one.
        self.proxy_id = proxy_id or uuid.uuid4().hex
        self.flushing = asyncio.Lock()  # one flush at a time: each settles what the one before left unsettled
        # The app's own registry, not the global one: several proxies in one process (tests) keep separate counts.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "switchover_proxy_requests_total",
            "Requests forwarded to a deployment's routes, by revision and the HTTP status the caller got.",
            ["deployment", "revision", "code"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "switchover_proxy_request_duration_seconds",
            "Time from a request's arrival to its answer, retries included, by revision.",
            ["deployment", "revision"],
            # The stored buckets' bounds: PROMETHEUS and BUILTIN checks see the same histogram.
            buckets=[bound / 1000 for bound in traffic.BUCKET_BOUNDS_MS],
            registry=self.registry,
        )
        self.mirrored = Counter(
            "switchover_proxy_shadow_requests_total",
            "Requests mirrored to the revision being deployed, by how its answer compared with blue's "
            "(agreed, disagreed, green_error).",
            ["deployment", "revision", "outcome"],
            registry=self.registry,
        )
        self.not_mirrored = Counter(
            "switchover_proxy_shadow_skipped_total",
            "Requests picked for mirroring but not mirrored, by reason (body_too_large, too_many_in_flight).",
            ["deployment", "revision", "reason"],
            registry=self.registry,
        )
        self.pending: Batch = {}  # counted since the last flush began, or kept from a flush that failed
        self.unsettled: list[tuple[str, Batch]] = []  # flushes whose COMMIT failed: transaction id, counts

    def count(self, deployment: str, destination: Destination, status: int, seconds: float) -> None:
        revision = str(destination.revision_number)
        self.requests.labels(deployment, revision, str(status)).inc()
        self.durations.labels(deployment, revision).observe(seconds)
        key = (destination.deployment_id, destination.revision_id, destination.rollout_epoch)
        counts = self.pending.get(key)
        if counts is None:
            counts = self.pending[key] = traffic.Counts()
        counts.count(error=status >= 500, milliseconds=seconds * 1000)

    def shadow(
        self, deployment: str, green: Destination, outcome: str, sample: traffic.ShadowSample | None = None
    ) -> None:
        """One mirrored request ended: `outcome` is agreed, disagreed or green_error; a disagreement's sample."""
        self.mirrored.labels(deployment, str(green.revision_number), outcome).inc()
        # Keyed by rollout too: the same revision deployed again starts from zero (SPEC §6).
        key = (green.deployment_id, green.revision_id, green.rollout_epoch)
        counts = self.pending.setdefault(key, traffic.Counts()).shadow
        if outcome == "agreed":
            counts.agreed += 1
        elif outcome == "disagreed":
            counts.disagreed += 1
        else:
            counts.green_errors += 1
        if sample is not None:
            counts.keep(sample)

    def skipped(self, deployment: str, green: Destination, reason: str) -> None:
        self.not_mirrored.labels(deployment, str(green.revision_number), reason).inc()

    async def flush(self, db: Database) -> None:
        """Write what was counted since the last flush. Counts of a flush that fails stay for the next one; never
        raises (the proxy keeps serving while the database is away)."""
        async with self.flushing:
            await self._flush(db)

    async def _flush(self, db: Database) -> None:
        try:
            await self._settle(db)
        except Exception as exc:
            log.warning("traffic counts not flushed, kept for the next flush: %s", exc)
            return
        batch, self.pending = self.pending, {}
        if not batch:
            return
        try:
            await traffic.record(db, proxy_id=self.proxy_id, batch=batch)
        except traffic.CommitUnknown as exc:
            log.warning("traffic flush failed: %s (%s); its outcome is checked at the next flush", exc, exc.__cause__)
            self.unsettled.append((exc.xid, batch))
        except Exception as exc:
            log.warning("traffic counts not flushed, kept for the next flush: %s", exc)
            self._keep(batch)

    async def _settle(self, db: Database) -> None:
        """Ask PostgreSQL what became of each flush whose COMMIT failed: a committed one is done (adding it again
        would double it), an aborted one goes back into the pending counts. One at a time, so that an error
        half-way neither forgets nor repeats one."""
        waiting: list[tuple[str, Batch]] = []
        try:
            while self.unsettled:
                xid, batch = self.unsettled[0]
                status = await traffic.outcome(db, xid)
                self.unsettled.pop(0)
                if status == "in progress":
                    waiting.append((xid, batch))
                elif status == "aborted":
                    self._keep(batch)
                elif status is None:  # too old for PostgreSQL to remember: dropped rather than maybe doubled
                    log.warning("outcome of traffic flush %s unknown: its counts are dropped", xid)
        finally:
            self.unsettled = waiting + self.unsettled

    def _keep(self, batch: Batch) -> None:
        for key, counts in batch.items():
            self.pending.setdefault(key, traffic.Counts()).add(counts)
