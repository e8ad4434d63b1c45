"""outbox request id

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:37:43.720816
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('request_id')

