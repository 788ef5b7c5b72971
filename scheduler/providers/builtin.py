"""The BUILTIN provider: what `switchover proxy` counted of the revision under analysis, read from the per-second
aggregates every proxy writes to PostgreSQL (store/traffic.py), summed over proxies, over the run's interval.

- `request-success-rate`: percent of the revision's answers that were not 5xx (the proxy's own 502 for a revision
  whose routes did not answer included);
- `shadow-agreement-rate`: percent of the requests mirrored to the revision that agreed with blue's answers
  (SPEC §6, Shadow traffic); on a first deploy there is no blue to mirror from and the check is skipped;
- `request-duration-p99` (ms): the upper bound of the duration bucket that holds the 99th percentile, so it is
  never below the true p99 and at most one bucket above it (bounds: store.traffic.BUCKET_BOUNDS_MS). Above the
  largest bound it is that bound, and the message says so.

Not enough data is an error, never a pass: fewer requests in the interval (mirrored ones for shadow agreement) than
the check's `minRequests` (default 1), so that 1 agreeing request of 1 cannot pass a `min: 99`. An error is a check
without a number: not counted towards `count`, and `maxRetries` of them in a row end the run as ERROR
(scheduler/analysis.py). A database error is not a reading: it propagates, as it fails the scheduler step that
measures.
"""

import math

from databases import Database

from scheduler.providers import Reading, Target
from store import traffic

SUCCESS_RATE = "request-success-rate"
DURATION_P99 = "request-duration-p99"
SHADOW_AGREEMENT = "shadow-agreement-rate"
# Every name a BUILTIN check may give as its `query`; input validation refuses others up front.
METRICS = frozenset({SUCCESS_RATE, DURATION_P99, SHADOW_AGREEMENT})


async def measure(db: Database, metric: str, target: Target, *, min_requests: int | None = None) -> Reading:
    needed = min_requests or 1
    if metric == SHADOW_AGREEMENT:
        return await agreement_rate(db, target, needed)
    if metric not in METRICS:
        return Reading.error(f"unknown BUILTIN metric {metric[:100]!r}; known: {', '.join(sorted(METRICS))}")
    figures = await traffic.revision_figures(
        db, target.deployment_id, target.revision_id, seconds=target.interval_seconds
    )
    if figures.requests < needed:
        return Reading.error(
            f"{not_enough(figures.requests, needed)}requests to revision {target.revision_number} of "
            f"{target.deployment_name} in the last {target.interval_seconds} s"
        )
    if metric == SUCCESS_RATE:
        return success_rate(figures)
    return duration_p99(figures)


def not_enough(seen: int, needed: int) -> str:
    """How a reading without enough data begins: 'no ' or 'not enough data: 3 (minRequests 20) '."""
    return "no " if seen == 0 else f"not enough data: {seen} (minRequests {needed}) "


async def agreement_rate(db: Database, target: Target, needed: int = 1) -> Reading:
    if not await traffic.has_serving_revision(db, target.deployment_id):
        return Reading.skip("skipped: a first deploy has no serving revision to mirror traffic from")
    shadow = await traffic.shadow_figures(
        db,
        target.deployment_id,
        target.revision_id,
        seconds=target.interval_seconds,
        rollout_epoch=target.rollout_epoch,
    )
    if shadow.requests < needed:
        return Reading.error(
            f"{not_enough(shadow.requests, needed)}requests mirrored to revision {target.revision_number} of "
            f"{target.deployment_name} in the last {target.interval_seconds} s"
        )
    rate = 100 * shadow.agreed / shadow.requests
    return Reading(
        rate,
        f"{rate:.2f} % of {shadow.requests} mirrored requests agreed "
        f"({shadow.disagreed} disagreed, {shadow.green_errors} green errors)",
    )


def success_rate(figures: traffic.Figures) -> Reading:
    rate = 100 * (figures.requests - figures.errors) / figures.requests
    return Reading(rate, f"{rate:.2f} % of {figures.requests} requests answered without a 5xx")


def duration_p99(figures: traffic.Figures) -> Reading:
    index = quantile_bucket(figures.buckets, 0.99)
    if index >= len(traffic.BUCKET_BOUNDS_MS):
        largest = traffic.BUCKET_BOUNDS_MS[-1]
        return Reading(float(largest), f"p99 above {largest} ms, the largest bucket, over {figures.requests} requests")
    bound = traffic.BUCKET_BOUNDS_MS[index]
    return Reading(float(bound), f"p99 at most {bound} ms over {figures.requests} requests")


def quantile_bucket(buckets: tuple[int, ...], quantile: float) -> int:
    """Index of the bucket holding the request at rank ceil(quantile · total); `buckets` must not be all zero."""
    rank = math.ceil(quantile * sum(buckets))
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return index
    raise ValueError("no requests counted")
