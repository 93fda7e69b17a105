"""Swarm adapter: consumes task messages, runs an agent in a worktree, reports events."""
