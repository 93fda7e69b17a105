"""Growth (issue 19, benchmark 8): the durable noop throughput of `durable_throughput`
(two noop adapters × 256, one graph, POST → done) at 1,000 tasks and at 10,000 tasks, each
on a fresh stack; the target is that the larger run keeps at least 80% of the smaller's
tasks/s.

- `tasks_per_s_1000`, `tasks_per_s_10000` (under --quick: 200 and 2,000 tasks, same keys).

    .venv/bin/python bench/growth.py [--quick]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from durable_throughput import noop_rate  # noqa: E402

__all__ = ["once"]

SIZES, QUICK_SIZES = (1_000, 10_000), (200, 2_000)


def once(quick: bool = False) -> dict[str, float]:
    small, large = QUICK_SIZES if quick else SIZES
    return {
        "tasks_per_s_1000": noop_rate(small, name="growth")["tasks_per_s"],
        "tasks_per_s_10000": noop_rate(large, name="growth")["tasks_per_s"],
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
