"""Swarm's orchestrator: REST API, persistence, scheduler, outbox relay, event consumer."""
