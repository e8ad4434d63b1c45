"""The database tables (SQLModel), one module per domain area. Rules that change them
live in the sibling modules of `models`; `models.tables.schema` imports every table
module, so that `SQLModel.metadata` holds the whole schema (the migrations' target).

Conventions: money is `Money` (Decimal yuan, integer cents in the database);
datetimes are `UTCDateTime` (aware, stored in UTC); calendar dates that belong
to the brand's day (a lot's expiry, a join date) are plain `date`s reckoned in
the brand's timezone. History tables (`points_ledger`, `consent_events`,
`card_events`, `tier_changes`, `assignments`) are append-only.
"""
