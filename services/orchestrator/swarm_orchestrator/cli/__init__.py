"""The `swarm` command: run the services (`up`, `server`, `adapter`, `migrate`) and use a
running Swarm over its REST API (`submit`, `status`, `watch`, `task`, `logs`, `workers`,
control commands; see `main`)."""
