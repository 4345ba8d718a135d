"""maintenance windows

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 15:11:04.279388

Adds ``maintenance_windows`` (spec section 10): a station out of service from ``starts_at``
to ``ends_at`` (moved to now when ended early), why and by whom, and when its end was announced.
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('maintenance_windows',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('starts_at', service.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', service.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', service.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_by', sa.String(length=200), nullable=True),
    sa.Column('announced_at', service.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_maintenance_windows_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_windows'))
    )
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.create_index('ix_maintenance_windows_station', ['station_id', 'ends_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('maintenance_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenance_windows_station')

    op.drop_table('maintenance_windows')
