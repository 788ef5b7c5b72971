"""The whole store as data, to assert that a refused operation changed nothing."""

from typing import Any

from databases import Database

TABLES = ("deployments", "revisions", "routes", "deployment_history")


async def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    # Test-only reads of every table; the product's SQL stays in store/.
    return {
        table: [dict(row) for row in await db.fetch_all(f"SELECT * FROM {table} ORDER BY id")]
        for table in TABLES
    }
