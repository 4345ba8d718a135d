"""local_endpoints: where the embedded MQTT broker of `ews run` listens (spec section 15)

A new, empty table: `ews run` writes its row at start, so nothing moves on upgrade.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:07:40.880353
"""

from alembic import op
import sqlalchemy as sa
import service.db.schema


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('local_endpoints',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=200), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('updated_at', service.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_local_endpoints'))
    )


def downgrade() -> None:
    op.drop_table('local_endpoints')
