"""notification validity and claim order

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:05:50.552670

Adds ``notifications.valid_until`` (a warning or reminder not handed to the provider by then
is ``expired``; rows of the previous release keep None, no limit) and the index the claim
walks (status, priority, created_at, id): most urgent first, then oldest.
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('valid_until', service.db.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_notifications_claim', ['status', 'priority', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_claim')
        batch_op.drop_column('valid_until')

