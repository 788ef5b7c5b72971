"""The whole store as data, to assert that a refused operation changed nothing."""

from typing import Any

from databases import Database

TABLES = (
    "deployments",
    "revisions",
    "routes",
    "deployment_history",
    # Governance and notifications (0008, 0009): a refused operation approves, freezes and notifies nothing either
    # (deliveries are written by a trigger on history, so they also prove no history row came and went).
    "approvals",
    "freeze_windows",
    "webhooks",
    "webhook_deliveries",
)


async def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    # Test-only reads of every table; the product's SQL stays in store/.
    return {
        table: [dict(row) for row in await db.fetch_all(f"SELECT * FROM {table} ORDER BY id")]
        for table in TABLES
    }
