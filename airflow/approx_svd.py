"""Approximate SVD as an Airflow DAG: matrix -> row blocks -> sketch per block -> combine.

``block_product`` is mapped over the row blocks ``split_blocks`` returns (scatter) with the
sketch size and seed fixed by ``.partial()``; ``combine`` gathers the sketches into the top-k
singular values. The task functions are thin wrappers of ``examples.apps.svd``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import dag, task

from examples.apps import svd

# Small enough for tests (`wisefuse demo` sets WISEFUSE_EXAMPLE_SIZE=default); ``svd.run(**SIZE)``
# gives the same result.
SIZE: dict[str, Any] = dict(svd.SIZES[os.environ.get("WISEFUSE_EXAMPLE_SIZE", "small")])


@task(multiple_outputs=False)
def make_matrix(n_rows: int, n_cols: int, rank: int, seed: int) -> dict[str, Any]:
    """The matrix (as a spec its blocks are materialised from)."""
    return svd.make_matrix(n_rows, n_cols, rank, seed)


@task
def split_blocks(matrix: dict[str, Any], n_blocks: int) -> list[dict[str, Any]]:
    """Cut the matrix into row blocks (the list the next stage maps over)."""
    return svd.split_blocks(matrix, n_blocks)


@task(multiple_outputs=False)
def block_product(block: dict[str, Any], sketch_size: int, sketch_seed: int) -> dict[str, Any]:
    """Sketch one row block."""
    return svd.block_product(block, sketch_size, sketch_seed)


@task(multiple_outputs=False)
def combine(products: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
    """Merge every block's sketch into the top-k singular values."""
    return svd.combine(list(products), k)


@dag(dag_id="approx_svd", schedule=None, catchup=False, tags=["wisefuse-example"], doc_md=__doc__)
def approx_svd() -> None:
    matrix = make_matrix(
        n_rows=SIZE["n_rows"], n_cols=SIZE["n_cols"], rank=SIZE["rank"], seed=SIZE["seed"]
    )
    blocks = split_blocks(matrix, n_blocks=SIZE["n_blocks"])
    products = block_product.partial(
        sketch_size=SIZE["k"] + SIZE["oversample"], sketch_seed=SIZE["seed"] + 1
    ).expand(block=blocks)
    combine(products, k=SIZE["k"])


approx_svd()
