"""``make bench``: run every benchmark module in ``bench/`` and print its table.

Each module exposes ``main() -> None``. Benchmarks are never part of the test suite's pass/fail.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    wanted = set(sys.argv[1:])
    if not names:
        print("no benchmarks yet")
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== bench/{name}.py")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
