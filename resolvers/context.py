"""What every resolver receives: the database, who is asking, and this request's batching loaders."""

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiodataloader import DataLoader
from databases import Database
from graphql import GraphQLResolveInfo

from resolvers.auth import Principal, readable_projects, require_change
from store import reads
from store.errors import StoreError, Unauthenticated
from store.models import Deployment, Revision, Route
from store.validation import canonical_id

Options = tuple[tuple[str, Hashable], ...]
Fetch = Callable[..., Awaitable[dict[str, Any]]]


def _options(**kwargs: Any) -> Options:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def batching_loader(db: Database, fetch: Fetch) -> DataLoader:
    """Loads `(id, options)` keys with one `fetch(db, ids, **options)` call per distinct set of options."""

    async def load_batch(keys: list[tuple[str, Options]]) -> list[Any]:
        ids_by_options: dict[Options, list[str]] = defaultdict(list)
        for id_, options in keys:
            ids_by_options[options].append(id_)
        found: dict[tuple[str | None, Options], Any] = {}
        refused: dict[Options, StoreError] = {}
        for options, ids in ids_by_options.items():
            try:
                answers = await fetch(db, ids, **dict(options))
            except StoreError as error:  # e.g. a bad cursor: only the fields that passed these options fail
                refused[options] = error
                continue
            for key, value in answers.items():
                found[(key, options)] = value
        return [refused.get(options) or found.get((canonical_id(id_), options)) for id_, options in keys]

    return DataLoader(load_batch)


@dataclass
class Context:
    db: Database
    principal: Principal
    # Set when the request's credentials were refused; root fields then answer with it.
    auth_error: Unauthenticated | None = None
    # An HTTP response may carry JSON built by PostgreSQL as is (resolvers/planner.py); a websocket message may not.
    plain_json: bool = False
    # Whether PROMETHEUS metric checks can run (SWITCHOVER_PROMETHEUS_URL is set): refused up front otherwise.
    prometheus: bool = False
    # SWITCHOVER_ALLOW_LOOPBACK_URLS as the server was configured: a URL written with a loopback address or
    # `localhost` is then refused up front when off. None: not told, so loopback is left to the delivery-time check.
    allow_loopback_urls: bool | None = None
    loaders: dict[Fetch, DataLoader] = field(default_factory=dict)
    _now: datetime | None = None

    async def now(self) -> datetime:
        """The database's clock, read once per request."""
        if self._now is None:
            self._now = await reads.database_now(self.db)
        return self._now

    @property
    def actor(self) -> str:
        """Who history records: the token's subject."""
        return self.principal.sub

    async def readable(self, deployment: Deployment | None) -> Deployment | None:
        """The deployment if the caller may read it; None, as for an id that finds nothing, otherwise."""
        if deployment is None or not self.principal.can_read(deployment.project_id):
            return None
        return deployment

    async def readable_via(self, record: Revision | Route | None) -> Any:
        """A revision or route if the caller may read its deployment; None otherwise."""
        if record is None or await self.readable(await self.load(reads.deployments_by_ids, record.deployment_id)):
            return record
        return None

    @property
    def readable_projects(self) -> list[str] | None:
        """For the store's operations: a deployment outside these is not found, exactly as an unknown id."""
        return readable_projects(self.principal)

    async def may_change(self, deployment_id: str) -> None:
        """Refuse (FORBIDDEN) a change of a deployment the caller may read but not change. One it may not even read
        is left to the store, which does not find it (`readable_projects`), as an unknown id."""
        if self.principal.is_admin:  # may change every project's: no need to read which one this is
            return
        deployment = await self.load(reads.deployments_by_ids, deployment_id)
        if deployment is not None and self.principal.can_read(deployment.project_id):
            require_change(self.principal, deployment.project_id)

    async def may_change_route(self, route_id: str) -> None:
        if self.principal.is_admin:
            return
        route = await self.load(reads.routes_by_ids, route_id)
        if route is not None:
            await self.may_change(route.deployment_id)

    async def load(self, fetch: Fetch, id_: str, **options: Any) -> Any:
        """`fetch`'s answer for one id, batched with every other `load` of this request."""
        loader = self.loaders.get(fetch)
        if loader is None:
            loader = self.loaders[fetch] = batching_loader(self.db, fetch)
        # Fields asking for the same key share one future; graphql-core cancels the sibling fields of a field that
        # failed, and a cancelled `await` would cancel that shared future for every other field waiting on it.
        return await asyncio.shield(loader.load((id_, _options(**options))))


def context(info: GraphQLResolveInfo) -> Context:
    return info.context
