"""CAP chain stored as issued (number, event, expiry, headline); station cap_radius_km (default 5 km)

The first release generated CAP on every request and never wrote ``cap_messages``, so the
table is empty in every database of that release; the explicit delete below makes that
assumption safe before the new NOT NULL columns are added. Messages of alerts still active at
the upgrade are issued by the first CAP pass after it (service/cap.py). Existing stations get
``cap_radius_km`` 5, the radius every CAP area had until now.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:14:30.929059
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM cap_messages")  # never written by the first release (see above)
    with op.batch_alter_table('cap_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False))
        batch_op.add_column(sa.Column('expires', service.db.schema.UTCDateTime(timezone=True), nullable=False))
        batch_op.add_column(sa.Column('headline', sa.Text(), nullable=False))
        batch_op.create_unique_constraint('uq_cap_messages_alert_number', ['alert_id', 'number'])
        batch_op.create_foreign_key(batch_op.f('fk_cap_messages_event_id_alert_events'), 'alert_events', ['event_id'], ['id'])

    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cap_radius_km', sa.Float(), server_default='5', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.drop_column('cap_radius_km')

    with op.batch_alter_table('cap_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_cap_messages_event_id_alert_events'), type_='foreignkey')
        batch_op.drop_constraint('uq_cap_messages_alert_number', type_='unique')
        batch_op.drop_column('headline')
        batch_op.drop_column('expires')
        batch_op.drop_column('event_id')
        batch_op.drop_column('number')
