"""The outbox: every outgoing message, its states and moves, claims and receipts.

`states` — the state machine and one message's move (`transition`, `enqueue`);
`claims` — claiming due messages and recording what the providers took;
`receipts` — SMS delivery receipts and what a receipt or a refusal changes.
Import each name from its module: this package re-exports nothing.
"""
