"""The sender: drains the outbox through the channel transports, with the send-time
checks, rate limits, retries and records (`scheduler.send.sender` is the entry)."""
