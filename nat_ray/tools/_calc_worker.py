"""Worker process of :class:`nat_ray.tools.calculator.Calculator`: JSON lines in, JSON lines out.

Run as ``python -m nat_ray.tools._calc_worker --memory-mb N``. It says ``{"ready": true}`` once SymPy is imported and
warm, then answers each ``{"expression": ...}`` line with ``{"observation": ...}``. The parent kills it on a timeout.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=1024)
    args = parser.parse_args()
    if args.memory_mb > 0:
        # An address-space cap turns a runaway allocation into a MemoryError here instead of swapping the host.
        limit = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    from nat_ray.tools.safe_sympy import evaluate

    # SymPy builds caches on its first symbolic and numeric calls (~0.2 s); paid here, before "ready", so the first
    # question's calculation does not spend that against its timeout.
    evaluate("sqrt(2) * pi / 3 + x**2 - 1.5")
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            expression = json.loads(line)["expression"]
            observation = evaluate(expression)
        except MemoryError:
            observation = "Error: out of memory"
        except Exception as exc:  # a bad request line must not end the worker
            observation = f"Error: {exc}"
        out.write(json.dumps({"observation": observation}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
