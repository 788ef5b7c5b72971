"""Webhooks (SPEC §8): subscriptions of a project's deployment history, and their outbox of deliveries.

Deliveries are written by a trigger on `deployment_history` (migration 0009), in the transaction of the history
row, so no writer of history has to know about webhooks. The scheduler leases them (`claim_due`), posts them
outside any transaction, and records each attempt (`record_attempt`) under its lease.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from databases import Database

from store.errors import BadUserInput, InvalidState, does_not_exist
from store.models import HISTORY_PHASES, Page, Webhook, WebhookDelivery, WebhookDeliveryStatus
from store.pagination import decode_cursor, encode_cursor, page_size
from store.queries import QUERIES
from store.validation import canonical_id, check_outbound_url, check_text, parse_id

MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 1024
MAX_EVENTS = 64
NEWEST = 2**63 - 1  # deliveries are listed newest first: a first page starts below this seq


def check_events(events: list[str] | None) -> list[str]:
    """The phases asked for, each once; empty means all."""
    chosen = list(dict.fromkeys(events or ()))
    if len(chosen) > MAX_EVENTS:
        raise BadUserInput(f"events may name at most {MAX_EVENTS} phases, got {len(chosen)}")
    unknown = [e for e in chosen if e not in HISTORY_PHASES]
    if unknown:
        raise BadUserInput(
            f"events names unknown history phases {[u[:40] for u in unknown[:5]]}: use some of "
            f"{', '.join(sorted(HISTORY_PHASES))}, or none for all"
        )
    return chosen


def check_secret(secret: str) -> None:
    size = len(secret.encode())
    if not MIN_SECRET_BYTES <= size <= MAX_SECRET_BYTES:
        raise BadUserInput(
            f"secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (it signs every delivery), got {size}"
        )
    check_text(secret, "secret", MAX_SECRET_BYTES)


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=str(row["id"]),
        seq=row["seq"],
        project_id=str(row["project_id"]),
        url=row["url"],
        events=list(row["events"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=str(row["id"]),
        seq=row["seq"],
        webhook_id=str(row["webhook_id"]),
        deployment_id=str(row["deployment_id"]),
        history_id=str(row["history_id"]),
        phase=row["phase"],
        status=WebhookDeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create(
    db: Database, *, project_id: str, url: str, events: list[str] | None, secret: str, actor: str
) -> Webhook:
    """Every check before the one INSERT: a refusal writes nothing."""
    project_id = parse_id(project_id, "projectId")
    check_outbound_url(url, "url")
    chosen = check_events(events)
    check_secret(secret)
    row = await db.fetch_one(
        QUERIES["create_webhook"],
        {"project_id": project_id, "url": url, "events": chosen, "secret": secret, "actor": actor},
    )
    return _webhook(row)


async def webhooks_by_ids(db: Database, ids: list[str]) -> dict[str, Webhook]:
    valid = [i for i in (canonical_id(i) for i in ids) if i is not None]
    rows = await db.fetch_all(QUERIES["webhooks_by_ids"], {"ids": valid})
    return {w.id: w for w in map(_webhook, rows)}


async def webhooks_of_project(db: Database, project_id: str) -> list[Webhook]:
    rows = await db.fetch_all(QUERIES["webhooks_of_project"], {"project_id": parse_id(project_id, "projectId")})
    return [_webhook(row) for row in rows]


async def delete(db: Database, webhook_id: str) -> Webhook:
    """Stop the webhook; what it still had to send is dead-lettered, with the reason, in the same transaction."""
    async with db.transaction():
        row = await db.fetch_one(QUERIES["delete_webhook"], {"id": parse_id(webhook_id, "id")})
        if row is None:
            raise does_not_exist("webhook", webhook_id)
        await db.execute(QUERIES["abandon_webhook_deliveries"], {"webhook_id": row["id"]})
    return _webhook(row)


async def deliveries(
    db: Database, webhook_id: str, *, first: int | None = None, after: str | None = None
) -> Page[WebhookDelivery]:
    limit = page_size(first)
    before = decode_cursor("delivery", after, NEWEST)
    rows = await db.fetch_all(
        QUERIES["list_deliveries_of_webhook"], {"webhook_id": webhook_id, "before_seq": before, "limit": limit + 1}
    )
    found = [_delivery(row) for row in rows]
    return Page([(encode_cursor("delivery", d.seq), d) for d in found[:limit]], has_next_page=len(found) > limit)


async def project_of_delivery(db: Database, delivery_id: str) -> str | None:
    """The project of a delivery of a live webhook; None when there is none (a malformed id included)."""
    parsed = canonical_id(delivery_id)
    if parsed is None:
        return None
    row = await db.fetch_one(QUERIES["project_of_webhook_delivery"], {"id": parsed})
    return None if row is None else str(row["project_id"])


async def redeliver(db: Database, delivery_id: str) -> WebhookDelivery:
    """A dead-lettered delivery back in the queue (same id, attempts from zero); schedulers are woken at commit."""
    async with db.transaction():
        row = await db.fetch_one(QUERIES["lock_webhook_delivery"], {"id": parse_id(delivery_id, "deliveryId")})
        if row is None:
            raise does_not_exist("webhook delivery", delivery_id)
        if row["status"] != WebhookDeliveryStatus.DEAD:
            raise InvalidState(
                f"webhook delivery {delivery_id} is {row['status']}: only a dead-lettered (DEAD) delivery is re-sent"
            )
        updated = await db.fetch_one(QUERIES["redeliver_webhook_delivery"], {"id": row["id"]})
        await db.fetch_val(QUERIES["notify_webhook_delivery"], {"deployment_id": str(row["deployment_id"])})
    return _delivery(updated)


@dataclass(frozen=True)
class Due:
    """A leased delivery: what to send where, and the lease (`lease_until`) its result is recorded under."""

    id: str
    webhook_id: str
    deployment_id: str
    attempts: int  # this one included
    lease_until: datetime
    payload: dict[str, Any]
    url: str
    secret: str


async def claim_due(db: Database, *, lease_seconds: float) -> Due | None:
    """Lease one due delivery (its own short transaction), or None when nothing is due."""
    async with db.transaction():
        row = await db.fetch_one(QUERIES["claim_due_webhook_delivery"], {"lease_seconds": lease_seconds})
    if row is None:
        return None
    return Due(
        id=str(row["id"]),
        webhook_id=str(row["webhook_id"]),
        deployment_id=str(row["deployment_id"]),
        attempts=row["attempts"],
        lease_until=row["next_attempt_at"],
        payload=row["payload"],
        url=row["url"],
        secret=row["secret"],
    )


async def record_attempt(
    db: Database,
    due: Due,
    *,
    status: WebhookDeliveryStatus,
    error: str | None,
    status_code: int | None,
    retry_in_seconds: float = 0.0,
) -> bool:
    """The attempt's result; False when the lease had run out (another scheduler owns the delivery now)."""
    async with db.transaction():
        row = await db.fetch_one(
            QUERIES["record_webhook_attempt"],
            {
                "id": due.id,
                "status": status.value,
                "last_error": None if error is None else error[:1000],
                "status_code": status_code,
                "retry_in_seconds": retry_in_seconds,
                "lease_until": due.lease_until,
            },
        )
    return row is not None
