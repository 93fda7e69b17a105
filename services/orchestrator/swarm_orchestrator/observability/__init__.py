"""What the orchestrator tells its operators: Prometheus metrics (`metrics.py`: every series
and the small functions that move the counters; `gauges.py`: the figures read at scrape time
from PostgreSQL and Redis), served by `GET /metrics` (`api/routes/metrics.py`)."""
