"""`python -m swarm_cli` is the `swarm` command."""

from swarm_cli.main import main

main()
