"""Git integration: each session's bare mirror, the merge queue into its integration branch,
checkpoints and rollback, and pruning of worktrees and artifacts."""
