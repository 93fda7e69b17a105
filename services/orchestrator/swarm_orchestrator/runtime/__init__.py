"""The orchestrator's background runtime: the loops every replica runs (outbox relay, event
consumer, reaper, merge queue, checkpoints, sweep, pruning), the system mode, and how their
failures are told apart."""
