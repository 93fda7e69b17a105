"""Swarm on one machine: `swarm up` (`up`) with its embedded PostgreSQL and Valkey servers
(`embedded`), the adapters it starts and the environment each child sees (`plan`), and the
demo it runs (`demo`)."""
