"""The application a project's env.py imports for its models."""

import sqlalchemy as sa

metadata = sa.MetaData()

hero = sa.Table("hero", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
team = sa.Table("team", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
