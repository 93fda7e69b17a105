"""From a goal to a task graph: planners (`heuristic.py`: the goal document's own structure,
offline)."""
