"""Shadow statistics per rollout: the rollout epoch a mirrored count or sample belongs to.

Revision ID: 0007
Revises: 0006
"""

from store.migrations.sql import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
