"""``python -m bench [saga|services|operator|trace|rejoin|chaos|transports] [args...]`` (``make bench``): run one
benchmark, or all with no name."""

from __future__ import annotations

import sys

from bench import rejoin, saga, services, trace, transports
from bench.operator import bench_reaction
from orderflow_dev import chaos

BENCHES = {
    "saga": saga.main,
    "services": services.main,
    "operator": bench_reaction.main,
    "trace": trace.main,
    "rejoin": rejoin.main,
    "chaos": chaos.main,
    "transports": transports.main,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in BENCHES:
        return int(BENCHES[argv[0]](argv[1:]))
    if argv:
        print(f"usage: python -m bench [{'|'.join(BENCHES)}] [args...]", file=sys.stderr)
        return 2
    failed = [name for name, bench in BENCHES.items() if int(bench([])) != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
