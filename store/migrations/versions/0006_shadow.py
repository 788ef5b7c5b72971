"""Shadow traffic: a blue-green deployment's shadow spec, and what every proxy mirrored and compared.

Revision ID: 0006
Revises: 0005
"""

from store.migrations.sql import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
