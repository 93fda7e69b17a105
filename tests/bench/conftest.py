"""The benchmark runner's modules live in bench/ and import one another by their own names
(`from stats import percentile`), as `python bench/run.py` runs them: put bench/ on the
path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
