"""Metric providers of analysis runs (SPEC §6): each turns one check into a Reading, a number or why there is none.

A provider never raises for what it was asked: unreachable, timed out (bounded), an answer that is not a number —
each is a Reading without a value, which the run counts as an error, never as a pass.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from store.models import MetricCheck, MetricProvider

if TYPE_CHECKING:
    from databases import Database


@dataclass(frozen=True)
class Target:
    """What a check measures: the revision under analysis of a deployment, over the run's interval."""

    deployment_id: str
    deployment_name: str
    project_id: str
    revision_id: str
    revision_number: int
    interval_seconds: int
    # The rollout the run judges (shadow agreement counts only its mirrored requests); None: the deployment's current.
    rollout_epoch: int | None = None


@dataclass(frozen=True)
class Reading:
    value: float | None  # None: no number; `message` says why
    message: str
    skipped: bool = False  # the check does not apply here (shadow agreement on a first deploy): neither pass nor error

    @staticmethod
    def error(message: str) -> "Reading":
        return Reading(None, message)

    @staticmethod
    def skip(message: str) -> "Reading":
        return Reading(None, message, skipped=True)


class Providers:
    """What measuring needs besides the check: the database (BUILTIN), an HTTP client (PROMETHEUS, WEB, made at the
    first use) and the settings that bound them. The scheduler process keeps one; `run_once` makes its own when given
    none. `aclose` when done."""

    def __init__(self, *, prometheus_url: str | None = None, allow_loopback: bool = False) -> None:
        self.prometheus_url = prometheus_url
        self.allow_loopback = allow_loopback
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            # Each provider bounds its own wait and answer size; this is the outer limit.
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def measure(self, db: "Database", check: MetricCheck, target: Target) -> Reading:
        from scheduler.providers import builtin, prometheus, web  # each pulls in what it needs

        if check.provider is MetricProvider.BUILTIN:
            return await builtin.measure(db, check.query or "", target, min_requests=check.min_requests)
        if check.provider is MetricProvider.PROMETHEUS:
            return await prometheus.measure(self.http, self.prometheus_url, check.query or "", target, db=db)
        return await web.measure(
            self.http, check.url or "", check.json_path, target, allow_loopback=self.allow_loopback
        )
