"""History as a stream of events: what `deploymentEvents` subscribers receive."""

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg import Record
from databases import Database

from store import records
from store.errors import BadUserInput
from store.models import HistoryEntry
from store.queries import QUERIES

CHANNEL = "switchover_history"  # announced by a trigger on deployment_history (migration 0002)


@dataclass
class Event:
    id: str
    deployment_id: str
    project_id: str
    history: HistoryEntry


def _event(row: object) -> Event:
    entry = records.history_entry(row)  # type: ignore[arg-type]
    return Event(entry.id, entry.deployment_id, str(row["project_id"]), entry)  # type: ignore[index]


async def position_of(db: Database, event_id: str | None, *, project_ids: Sequence[str] | None) -> int:
    """The history position an event id stands for (0: from the start); an event of a project outside `project_ids`
    is refused as an id that is no event."""
    if event_id is None:
        return 0
    values = {"id": event_id, "project_ids": None if project_ids is None else list(project_ids)}
    seq = await db.fetch_val(QUERIES["history_seq_of"], values)
    if seq is None:
        raise BadUserInput(f"after {event_id!r} is not an event id; pass the id of an event you received")
    return seq


class _Sent:
    """What a subscriber already received: a row goes out again only when its content changed (a retry merged into
    it). A notification also arrives for a row a range read already returned (committed between LISTEN and the read,
    or after a notification of a later row triggered the read), and that must not send it twice."""

    def __init__(self, remembered: int = 10_000) -> None:
        self.versions: OrderedDict[int, tuple[object, ...]] = OrderedDict()
        self.remembered = remembered  # notifications arrive right after commit: recent rows are enough

    def first_time(self, row: Record) -> bool:
        version = tuple(row[c] for c in MUTABLE_COLUMNS)
        if self.versions.get(row["seq"]) == version:
            return False
        self.versions[row["seq"]] = version
        self.versions.move_to_end(row["seq"])
        if len(self.versions) > self.remembered:
            self.versions.popitem(last=False)
        return True


# What merge_retry_into_history may change in a row already written.
MUTABLE_COLUMNS = ("updated_at", "attempts", "message", "error_code")
PAGE = 500


async def events(
    db: Database,
    url: str,
    *,
    deployment_id: str | None,
    project_ids: Sequence[str] | None,
    after_seq: int,
) -> AsyncIterator[Event]:
    """Events after `after_seq` that match, then each new or changed one as it is committed, until the caller
    stops. Each version of a row is sent once."""
    announced: asyncio.Queue[int] = asyncio.Queue()
    listener = await asyncpg.connect(url)
    await listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: announced.put_nowait(int(payload)))
    filters = {"deployment_id": deployment_id, "project_ids": None if project_ids is None else list(project_ids)}
    sent = _Sent()

    async def rows_after(position: int) -> AsyncIterator[Record]:
        while True:
            rows = await db.fetch_all(QUERIES["history_events"], {"after_seq": position, "limit": PAGE, **filters})
            for row in rows:
                yield row
                position = row["seq"]
            if len(rows) < PAGE:
                return

    try:
        # Listening began before this catch-up read: nothing committed in between is missed.
        last = after_seq
        async for row in rows_after(last):
            last = row["seq"]
            if sent.first_time(row):
                yield _event(row)
        while True:
            seq = await announced.get()
            if seq > last:  # new rows: read them all in order (several may have been committed together)
                async for row in rows_after(last):
                    last = row["seq"]
                    if sent.first_time(row):
                        yield _event(row)
                last = max(last, seq)  # rows of other deployments still move the position on
            else:  # a row already read, a row committed after a later one, or a retry merged into a row
                row = await db.fetch_one(QUERIES["history_event_by_seq"], {"seq": seq, **filters})
                if row is not None and sent.first_time(row):
                    yield _event(row)
    finally:
        await listener.close()
