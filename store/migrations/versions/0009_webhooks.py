"""Webhooks (SPEC §8): subscriptions, and an outbox of deliveries written with each history row.

Revision ID: 0009
Revises: 0008
"""

from store.migrations.sql import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
