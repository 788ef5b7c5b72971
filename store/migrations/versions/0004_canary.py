"""Canary strategy: the canary spec of deployments, the step and weight of a canary rollout, its sub-step and type.

Revision ID: 0004
Revises: 0003
"""

from store.migrations.sql import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
