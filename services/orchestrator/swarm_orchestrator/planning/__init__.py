"""From a goal to a task graph: a draft's plan and its revisions (`plans.py`), what a
planning agent is asked and how its answer is checked (`answers.py`), a person's edits
(`edits.py`), the planner without a model (`heuristic.py`), and the repository inventory
the planner is told about (`inventory.py`)."""
