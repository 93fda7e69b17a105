"""Notifications by webhook: what happened in a session (finalized, waiting for review, a
task waiting for approval or failed for good, a checkpoint passed or failed, an agent kind
lost, a budget warning) POSTed, signed, to the URLs that subscribed to it.

- which timeline entries are events, their names, the `json` and `slack` bodies →
  `events.py`
- the signature (`X-Swarm-Signature`), and how a receiver checks it → `signing.py`
- which URLs and addresses a webhook may reach (SSRF) → `targets.py`
- subscriptions (per tenant or session) and their deliveries, as the API sees them →
  `subscriptions.py`
- timeline entries → one delivery per subscription and entry (the outbox) → `fanout.py`
- sending due deliveries: leases, bounded concurrency per process and per receiver,
  back-off, results → `sender.py`

The loops run in every orchestrator (`runtime.background`); advisory locks keep two from
fanning out or claiming the same delivery at once.
"""
