"""aliyun: provider error codes up to 32 characters

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 17:21:01.140135
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('error_code',
               existing_type=sa.VARCHAR(length=20),
               type_=sqlmodel.sql.sqltypes.AutoString(length=32),
               existing_nullable=True)

    with op.batch_alter_table('sms_receipts', schema=None) as batch_op:
        batch_op.alter_column('error_code',
               existing_type=sa.VARCHAR(length=10),
               type_=sqlmodel.sql.sqltypes.AutoString(length=32),
               existing_nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('sms_receipts', schema=None) as batch_op:
        batch_op.alter_column('error_code',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
               type_=sa.VARCHAR(length=10),
               existing_nullable=True)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('error_code',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
               type_=sa.VARCHAR(length=20),
               existing_nullable=True)

