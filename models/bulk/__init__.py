"""Bulk recording for `memberbot import` (issue 14 "Onboard a chain in an hour").

The one-by-one path (`models.purchases.record.record_purchase`, `models.members.
upsert_member`) runs ~50 statements per receipt. The bulk path records a batch of
purchases (or new members) in a handful of statements with the same results:

- `models.bulk.state`: what a batch needs, read once per batch (the members of its
  phones and card numbers with their tier history, open assignments and card
  applications, stores and assistants) and the ids its rows will take (`Ids`);
- `models.bulk.receipts`: the batch replayed in file order in memory with the rule
  functions the one-by-one path calls (`purchase_points`, `purchase_entries`,
  `expiry_date`, `referral_points`, `base_index` / `upgrade_target` / `apply_upgrade`
  with a `Meter` over the loaded history, `cards.replaced_by`, `ownership.establishes`,
  …); it returns the jobs it does not model (see there) for the one-by-one path;
- `models.bulk.members`: new members of a member sheet;
- `models.bulk.write`: the rows written, one executemany per table (PostgreSQL: `COPY`
  where nothing is returned).

Idempotency is the caller's: receipts already recorded and members already stored are
settled before a batch (`bot.csvio`), and an insert that meets a row recorded meanwhile
fails the batch's transaction, which is then re-run one by one.
"""
