"""History as a stream of events: what `deploymentEvents` subscribers receive."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
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


async def position_of(db: Database, event_id: str | None) -> int:
    """The history position an event id stands for (0: from the start)."""
    if event_id is None:
        return 0
    seq = await db.fetch_val(QUERIES["history_seq_of"], {"id": event_id})
    if seq is None:
        raise BadUserInput(f"after {event_id!r} is not an event id; pass the id of an event you received")
    return seq


async def events(
    db: Database,
    url: str,
    *,
    deployment_id: str | None,
    project_ids: Sequence[str] | None,
    after_seq: int,
) -> AsyncIterator[Event]:
    """Events after `after_seq` that match, then each new one as it is committed, until the caller stops."""
    announced: asyncio.Queue[int] = asyncio.Queue()
    listener = await asyncpg.connect(url)
    await listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: announced.put_nowait(int(payload)))
    filters = {"deployment_id": deployment_id, "project_ids": None if project_ids is None else list(project_ids)}
    try:
        # Listening began before this catch-up read: nothing committed in between is missed.
        last = after_seq
        while True:
            rows = await db.fetch_all(QUERIES["history_events"], {"after_seq": last, "limit": 500, **filters})
            for row in rows:
                yield _event(row)
                last = row["seq"]
            if len(rows) < 500:
                break
        while True:
            seq = await announced.get()
            if seq > last:  # new rows: read them all in order (several may have been committed together)
                rows = await db.fetch_all(QUERIES["history_events"], {"after_seq": last, "limit": 500, **filters})
                for row in rows:
                    yield _event(row)
                    last = row["seq"]
                # Rows of other deployments still move the position on.
                last = max(last, seq)
            else:  # an update of a row already sent: a retry merged into it
                row = await db.fetch_one(QUERIES["history_event_by_seq"], {"seq": seq})
                event = None if row is None else _event(row)
                if (
                    event is not None
                    and (deployment_id is None or event.deployment_id == deployment_id)
                    and (project_ids is None or event.project_id in project_ids)
                ):
                    yield event
    finally:
        await listener.close()
