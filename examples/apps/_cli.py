"""The ``python -m examples.apps.<name>`` entry the three apps share."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def main(
    name: str,
    sizes: Mapping[str, Mapping[str, Any]],
    run: Callable[..., Any],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
) -> int:
    """Run one pipeline at a named size, print its result as JSON and the wall time.

    ``run`` is the app's plain ``run`` or a Prefect flow taking the same keyword arguments.
    """
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m examples.apps.{name}",
        description=f"Run the {name} example pipeline.",
    )
    parser.add_argument("--size", choices=sorted(sizes), default="default")
    parser.add_argument("--seed", type=int, default=None, help="override the size's seed")
    args = parser.parse_args(argv)
    size = dict(sizes[args.size])
    if args.seed is not None:
        size["seed"] = args.seed
    start = time.perf_counter()
    result = run(**size)
    elapsed = time.perf_counter() - start
    print(json.dumps(result, indent=1))
    print(f"{name} size={args.size} {size}: {elapsed:.3f} s")
    return 0
