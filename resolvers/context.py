"""What every resolver receives: the database, who is asking, and this request's batching loaders."""

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from aiodataloader import DataLoader
from databases import Database
from graphql import GraphQLResolveInfo

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
        for options, ids in ids_by_options.items():
            for key, value in (await fetch(db, ids, **dict(options))).items():
                found[(key, options)] = value
        return [found.get((canonical_id(id_), options)) for id_, options in keys]

    return DataLoader(load_batch)


@dataclass
class Context:
    db: Database
    actor: str
    loaders: dict[Fetch, DataLoader] = field(default_factory=dict)

    async def load(self, fetch: Fetch, id_: str, **options: Any) -> Any:
        """`fetch`'s answer for one id, batched with every other `load` of this request."""
        loader = self.loaders.get(fetch)
        if loader is None:
            loader = self.loaders[fetch] = batching_loader(self.db, fetch)
        return await loader.load((id_, _options(**options)))


def context(info: GraphQLResolveInfo) -> Context:
    return info.context
