"""`python -m benchmarks [name ...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import sys

from benchmarks import (
    auth_overhead,
    authz_throughput,
    cpu_per_request,
    encryption,
    listing_scale,
)

BENCHMARKS = {
    "auth_overhead": auth_overhead.main,
    "authz_throughput": authz_throughput.main,
    "cpu_per_request": cpu_per_request.main,
    "encryption": encryption.main,
    "listing_scale": listing_scale.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
