"""Shared vocabulary of Swarm's services: settings, task specs, messages, streams, git.

Both the orchestrator and the adapters import this package; it must never import either of
them.
"""

__version__ = "0.1.0"
