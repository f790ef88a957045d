"""create team

Revision ID: b2
Revises: a1
Create Date: 2024-01-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "b2"
down_revision = "a1"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("team", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))


def downgrade():
    op.drop_table("team")
