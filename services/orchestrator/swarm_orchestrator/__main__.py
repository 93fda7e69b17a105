"""`python -m swarm_orchestrator` is the `swarm` command."""

from swarm_orchestrator.cli.main import main

main()
