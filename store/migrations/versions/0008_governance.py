"""Governance (SPEC §8): approvals bound to a revision, and freeze windows.

Revision ID: 0008
Revises: 0007
"""

from store.migrations.sql import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
