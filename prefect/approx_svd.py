"""Approximate SVD as a Prefect flow: matrix -> row blocks -> sketch per block -> combine.

``block_product`` is mapped over the row blocks (scatter) with the sketch size and seed
``unmapped``; ``combine`` gathers the sketches into the top-k singular values. The tasks are
thin wrappers of ``examples.apps.svd``. Run it: ``python prefect/approx_svd.py [--size default]``.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task, unmapped

from examples.apps import svd

SMALL = svd.SIZES["small"]


@task
def make_matrix(n_rows: int, n_cols: int, rank: int, seed: int) -> dict[str, Any]:
    """The matrix (as a spec its blocks are materialised from)."""
    return svd.make_matrix(n_rows, n_cols, rank, seed)


@task
def split_blocks(matrix: dict[str, Any], n_blocks: int) -> list[dict[str, Any]]:
    """Cut the matrix into row blocks (the list the next stage maps over)."""
    return svd.split_blocks(matrix, n_blocks)


@task
def block_product(block: dict[str, Any], sketch_size: int, sketch_seed: int) -> dict[str, Any]:
    """Sketch one row block."""
    return svd.block_product(block, sketch_size, sketch_seed)


@task
def combine(products: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Merge every block's sketch into the top-k singular values."""
    return svd.combine(products, k)


@flow(name="approx-svd")
def approx_svd(
    n_rows: int = SMALL["n_rows"],
    n_cols: int = SMALL["n_cols"],
    rank: int = SMALL["rank"],
    n_blocks: int = SMALL["n_blocks"],
    k: int = SMALL["k"],
    oversample: int = SMALL["oversample"],
    seed: int = SMALL["seed"],
) -> dict[str, Any]:
    """The pipeline; defaults are the small size, so ``svd.run(**SMALL)`` matches."""
    matrix = make_matrix(n_rows, n_cols, rank, seed)
    blocks = split_blocks(matrix, n_blocks)
    products = block_product.map(
        blocks, sketch_size=unmapped(k + oversample), sketch_seed=unmapped(seed + 1)
    )
    return combine(products, k)


if __name__ == "__main__":
    from examples.apps._cli import main

    sys.exit(main("svd", svd.SIZES, approx_svd, prog="python prefect/approx_svd.py"))
