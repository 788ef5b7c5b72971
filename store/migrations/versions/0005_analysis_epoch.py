"""The rollout epoch analysis runs judge: runs of an earlier attempt never decide a later one.

Revision ID: 0005
Revises: 0004
"""

from store.migrations.sql import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
