"""notification priority

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:02:09.098596

Adds ``notifications.priority`` (``alerts.priority.priority``: 0 = an AWAS warning goes
first, 7 = exercise messages last) and fills it for the rows of the previous release from
their kind, their event's level and their alert's exercise flag, with the ranks as they were
when this migration was written (a migration never imports code that may change later).
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FILL = """
UPDATE notifications SET priority = CASE
    WHEN alert_id IS NOT NULL AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = notifications.alert_id AND a.exercise)
        THEN 7
    WHEN kind = 'warning' THEN CASE (SELECT e.level FROM alert_events e WHERE e.id = notifications.event_id)
        WHEN 'awas' THEN 0 WHEN 'siaga' THEN 1 ELSE 2 END
    WHEN kind IN ('reminder', 'all_clear') THEN 3
    WHEN kind = 'reply' THEN 4
    WHEN kind = 'broadcast' THEN 5
    ELSE 6
END
"""


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default='6', nullable=False))
    op.execute(FILL)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('priority')
