"""till

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:32:41.014225
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sale_returns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('return_no', sa.String(length=64), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('sale_date', sa.Date(), nullable=False),
    sa.Column('amount', models.types.Money(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('referral_points', sa.Integer(), nullable=False),
    sa.Column('created_at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('return_no')
    )
    with op.batch_alter_table('sale_returns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sale_returns_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sale_returns_purchase_id'), ['purchase_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sale_returns_sale_date'), ['sale_date'], unique=False)

    op.create_table('return_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('return_id', sa.Integer(), nullable=False),
    sa.Column('sku', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('qty', sa.Integer(), nullable=False),
    sa.Column('amount', models.types.Money(), nullable=False),
    sa.ForeignKeyConstraint(['return_id'], ['sale_returns.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('return_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_return_items_return_id'), ['return_id'], unique=False)

    op.create_table('voucher_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('voucher_id', sa.Integer(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('at', models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('receipt_no', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['points_ledger.id'], ),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], ),
    sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('voucher_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_events_voucher_id'), ['voucher_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('voucher_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_events_voucher_id'))

    op.drop_table('voucher_events')
    with op.batch_alter_table('return_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_return_items_return_id'))

    op.drop_table('return_items')
    with op.batch_alter_table('sale_returns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sale_returns_sale_date'))
        batch_op.drop_index(batch_op.f('ix_sale_returns_purchase_id'))
        batch_op.drop_index(batch_op.f('ix_sale_returns_member_id'))

    op.drop_table('sale_returns')
