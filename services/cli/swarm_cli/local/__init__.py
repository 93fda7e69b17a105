"""Swarm on one machine: `swarm up` with its embedded PostgreSQL and Valkey servers, and the
demo it runs."""
