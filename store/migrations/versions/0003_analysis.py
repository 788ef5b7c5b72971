"""Metric analysis: analysis specs of deployments, analysis runs and measurements, and proxy traffic figures.

Revision ID: 0003
Revises: 0002
"""

from store.migrations.sql import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
