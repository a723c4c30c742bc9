"""Where the measurement scripts (bench, scaling, larger_than_memory) write their JSON."""

from __future__ import annotations

import json
import os
import time


def write_results(data: dict, kind: str, out: str | None = None) -> str:
    """Write ``data`` as JSON to ``out``, by default ``bench-results/<kind>-<time>.json``;
    returns the path."""
    out = out or os.path.join("bench-results", f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(data, f, indent=2)
    return out
