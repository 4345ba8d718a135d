"""sms_budget: one SMS rate for the whole deployment

Issue 15. One row (``sms``) holds the next free request slot, in seconds of the database's
clock; every dispatching instance of a PostgreSQL deployment reserves its slots from it
(service/dispatch/shared_budget.py). A new table only: nothing existing is rewritten. The row
starts free.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 17:21:19.715057
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    budget = op.create_table('sms_budget',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('next_slot', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sms_budget'))
    )
    op.bulk_insert(budget, [{"name": "sms", "next_slot": 0.0}])


def downgrade() -> None:
    op.drop_table('sms_budget')
