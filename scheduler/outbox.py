"""The outbox: states of an outgoing message, every change recorded, and claims for sending.

MESSAGING.md "States of an outgoing message":

    planned → queued → sending → sent → delivered
                         │  ↑
                         ↓  │ (retry, when next_attempt_at comes)
                        failed            undeliverable, suppressed, delivered: final

- `failed` is retryable: it carries `attempts` and `next_attempt_at`; after
  `outbox.max_attempts` it stays `failed` with no next try and reason "gave up".
- `undeliverable`: the provider refused for good (Twilio 21610 stop, 21211/21614 bad
  number, any other refusal). `suppressed`: decided before sending (stopped, no channel,
  a broken rule, capped, a greeting whose day has passed).
- `sending → queued` is the one move "back": the message is released without anything
  having left (deferred to the next allowed moment, re-routed to another channel, or
  held while a provider is failing). Nothing else ever moves backwards; a late `sent`
  callback after `delivered` changes nothing.

Every change is one conditional UPDATE (`… WHERE status = <from>`) plus an
`outbox_events` row, so two writers racing for one message (a sender and a status
callback, two replicas) cannot both move it. A new message's first event is
`planned → <status>`.

Claims (`claim`): due messages are `queued` with `send_after <= now`, `failed` with
`next_attempt_at <= now` (attempts left), or `sending` with a claim older than
`claim_timeout` (the process died mid-send). On PostgreSQL they are selected
`FOR UPDATE SKIP LOCKED`, so concurrent claimers get disjoint rows; on SQLite every
transaction is `BEGIN IMMEDIATE` (models/db.py), which serialises claimers.

Delivery guarantee (claim → send → record, each its own transaction; no transaction is
held across the network call): a message is sent exactly once, except at one boundary —
the provider accepted it but we never learnt so. That happens when the process dies
(or loses its database) between the provider's acceptance and our record: the claim
expires after `claim_timeout` and the message is sent again; and when the provider's
answer does not arrive in time (a timeout is retried, but the provider may have
accepted it). The send calls used here carry no idempotency key that could close that
gap, so the outbox is at-least-once there and exactly once everywhere else. A stale claim counts
as an attempt, so a message that kills the process every time gives up after
`max_attempts`.

The code: `scheduler.outbox_states` (states, `transition`, `enqueue`, `events`),
`scheduler.outbox_claims` (`claim`, `record_sent`), `scheduler.outbox_receipts`
(`record_refusal`, `apply_receipt`); this module re-exports their public names.
"""

from __future__ import annotations

from scheduler.outbox_claims import Accepted, claim, record_sent
from scheduler.outbox_receipts import (
    BAD_ADDRESS,
    RECEIPT_REFUSALS,
    STOPPED,
    apply_receipt,
    mark_address_bad,
    record_refusal,
)
from scheduler.outbox_states import (
    ALLOWED,
    CLAIM_EXPIRED,
    DELIVERED,
    FAILED,
    FINAL,
    GAVE_UP,
    PLANNED,
    QUEUED,
    SENDING,
    SENT,
    STATUSES,
    SUPPRESSED,
    UNDELIVERABLE,
    can_transition,
    enqueue,
    events,
    transition,
)

__all__ = [
    "ALLOWED", "BAD_ADDRESS", "CLAIM_EXPIRED", "DELIVERED", "FAILED", "FINAL", "GAVE_UP",
    "PLANNED", "QUEUED", "RECEIPT_REFUSALS", "SENDING", "SENT", "STATUSES", "STOPPED",
    "SUPPRESSED", "UNDELIVERABLE", "Accepted", "apply_receipt", "can_transition", "claim",
    "enqueue", "events", "mark_address_bad", "record_refusal", "record_sent", "transition",
]  # fmt: skip
