"""Record a cluster's alive nodes over time: one JSON line per change, until killed.

python -m tests.cluster.watch_nodes HOST:PORT OUT.jsonl
"""

from __future__ import annotations

import json
import sys
import time

import ray


def main(address: str, out: str) -> None:
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    started, last = time.monotonic(), None
    while True:
        alive = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        if alive != last:
            with open(out, "a") as f:
                f.write(json.dumps({"t": round(time.monotonic() - started, 1), "alive": alive}) + "\n")
            last = alive
        time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
