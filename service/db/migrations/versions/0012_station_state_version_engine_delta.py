"""station_state.version and engine_delta: ingest holds engine states in memory and writes deltas (spec section 16)

Two new columns, nothing moves: a stored engine state of the first release (a whole state,
version 1) is read as it is (alerts.engine migrates its names on load) and becomes a
checkpoint at the station's next batch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:57:31.138068
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('station_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engine_delta', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('station_state', schema=None) as batch_op:
        batch_op.drop_column('version')
        batch_op.drop_column('engine_delta')
