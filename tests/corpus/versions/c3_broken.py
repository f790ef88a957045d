"""broken step

Revision ID: c3
Revises: b2
Create Date: 2024-01-03 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "c3"
down_revision = "b2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("sidekick", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT no_such_column FROM hero")


def downgrade():
    op.drop_table("sidekick")
