"""The planner: what is due on a day, composed, checked and saved to the outbox
(`scheduler.plan.planner.plan_day` is the entry)."""
