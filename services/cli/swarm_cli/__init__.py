"""The `swarm` command: run the services (`up`, `server`, `adapter`, `migrate`) and use a
running Swarm over its REST API (`submit`, `status`, `watch`, `task`, `logs`, `workers`,
control commands; see `main`).

The command line is a layer over the services: it imports the orchestrator and the adapter,
neither of them imports it (`tests/test_layering.py`). `swarm_cli.local` holds `swarm up`,
its embedded servers and its demo; `swarm_cli.render` what the client commands show.
"""
