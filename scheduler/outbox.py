"""Left only for `bot/channels/twilio_sms.py`, which another change is editing now.

Import from the defining modules: `scheduler.outbox_states` (states, `transition`,
`enqueue`, `events`), `scheduler.outbox_claims` (`claim`, `record_sent`),
`scheduler.outbox_receipts` (`record_refusal`, `apply_receipt`). Delete this module
once twilio_sms.py imports `apply_receipt` from `scheduler.outbox_receipts`.
"""

from __future__ import annotations

from scheduler.outbox_receipts import apply_receipt

__all__ = ["apply_receipt"]
