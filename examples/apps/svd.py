"""Approximate SVD: the top-k singular values of a tall matrix from one parallel sketch stage.

Randomized range finder (Halko, Martinsson & Tropp 2011) over row blocks, with a TSQR-style
merge so the parallel stage needs no second pass over the matrix:

- every block i computes ``Y_i = A_i @ Omega`` (the same Gaussian ``Omega`` everywhere, from a
  seed), its thin QR ``Y_i = Q_i R_i`` and ``B_i = Q_i.T @ A_i``;
- ``combine`` stacks the ``R_i``, takes ``[R_1; ...; R_b] = Q' R``, so ``Q = diag(Q_i) Q'`` is an
  orthonormal basis of ``Y = A @ Omega`` and ``Q.T @ A = sum_i Q'_i.T @ B_i``; the singular
  values of that small ``l x n`` matrix approximate the top singular values of ``A``.

The matrix is big (tens of MB at the default size) and XCom is not a place for it, so a row
block travels as a *reference*: ``{"matrix": spec, "index", "row_start", "row_stop"}`` that
``load_block`` materialises, the way a real job reads its block from object storage. The
matrix is low rank (geometric spectrum) plus Gaussian noise and depends only on its spec, not
on how it is split (rows are generated in fixed tiles). What goes back to ``combine`` is real
data: ``R_i`` and ``B_i`` as nested lists (``l * (l + n)`` floats per block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SIZES: dict[str, dict[str, Any]] = {
    # Tests, DAGs and flows: a full run well under a second.
    "small": {
        "n_rows": 2000,
        "n_cols": 120,
        "rank": 8,
        "n_blocks": 4,
        "k": 5,
        "oversample": 6,
        "seed": 5,
    },
    # A few seconds on one core; about 0.6 MB of sketches per block back to combine.
    "default": {
        "n_rows": 120_000,
        "n_cols": 1000,
        "rank": 20,
        "n_blocks": 8,
        "k": 10,
        "oversample": 10,
        "seed": 5,
    },
}

TILE_ROWS = 512  # rows are generated in tiles of this many, each from its own seed
DECAY = 0.8  # singular value j of the low-rank part is TOP * DECAY**j
TOP = 100.0
NOISE = 0.01  # entry-wise noise standard deviation


def make_matrix(n_rows: int, n_cols: int, rank: int, seed: int) -> dict[str, Any]:
    """The spec of an ``n_rows x n_cols`` matrix ``U diag(s) V.T + noise`` (see ``load_rows``)."""
    return {
        "n_rows": n_rows,
        "n_cols": n_cols,
        "rank": rank,
        "singular_values": [TOP * DECAY**j for j in range(rank)],
        "noise": NOISE,
        "seed": seed,
    }


def split_blocks(matrix: dict[str, Any], n_blocks: int) -> list[dict[str, Any]]:
    """Cut the matrix into ``n_blocks`` contiguous row blocks of near-equal height."""
    bounds = np.linspace(0, matrix["n_rows"], n_blocks + 1).round().astype(int)
    return [
        {"matrix": matrix, "index": i, "row_start": int(bounds[i]), "row_stop": int(bounds[i + 1])}
        for i in range(n_blocks)
    ]


def load_rows(matrix: dict[str, Any], row_start: int, row_stop: int) -> np.ndarray:
    """Materialise rows ``[row_start, row_stop)`` of the matrix (same values however split)."""
    n_rows, n_cols, rank = matrix["n_rows"], matrix["n_cols"], matrix["rank"]
    seed = matrix["seed"]
    basis, _ = np.linalg.qr(np.random.default_rng([seed, 0]).normal(size=(n_cols, rank)))
    weights = np.asarray(matrix["singular_values"], dtype=float) / np.sqrt(n_rows)
    out = np.empty((row_stop - row_start, n_cols))
    for tile in range(row_start // TILE_ROWS, (row_stop - 1) // TILE_ROWS + 1):
        tile_start = tile * TILE_ROWS
        rows = min(TILE_ROWS, n_rows - tile_start)
        rng = np.random.default_rng([seed, 1, tile])
        left = rng.normal(size=(rows, rank)) * weights
        values = left @ basis.T + matrix["noise"] * rng.normal(size=(rows, n_cols))
        lo, hi = max(row_start, tile_start), min(row_stop, tile_start + rows)
        out[lo - row_start : hi - row_start] = values[lo - tile_start : hi - tile_start]
    return out


def load_block(block: dict[str, Any]) -> np.ndarray:
    """The dense rows of one block."""
    return load_rows(block["matrix"], block["row_start"], block["row_stop"])


def dense(matrix: dict[str, Any]) -> np.ndarray:
    """The whole matrix as one array (for checks against an exact SVD; small sizes only)."""
    return load_rows(matrix, 0, matrix["n_rows"])


def block_product(block: dict[str, Any], sketch_size: int, sketch_seed: int) -> dict[str, Any]:
    """Sketch one row block: ``{"index", "r": R_i, "b": B_i}`` (see the module docstring)."""
    a = load_block(block)
    omega = np.random.default_rng(sketch_seed).normal(size=(a.shape[1], sketch_size))
    q, r = np.linalg.qr(a @ omega)
    return {"index": int(block["index"]), "r": r.tolist(), "b": (q.T @ a).tolist()}


def combine(products: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
    """Merge the block sketches into the top-``k`` singular values (order of inputs is free)."""
    ordered = sorted(products, key=lambda p: p["index"])
    rs = [np.asarray(p["r"], dtype=float) for p in ordered]
    q_merge, _ = np.linalg.qr(np.vstack(rs))
    projected = np.zeros((q_merge.shape[1], len(ordered[0]["b"][0])))
    start = 0
    for r, p in zip(rs, ordered, strict=True):
        stop = start + r.shape[0]
        projected += q_merge[start:stop].T @ np.asarray(p["b"], dtype=float)
        start = stop
    values = np.linalg.svd(projected, compute_uv=False)[:k]
    return {"k": k, "sketch_size": int(rs[0].shape[1]), "singular_values": values.tolist()}


def run(
    n_rows: int, n_cols: int, rank: int, n_blocks: int, k: int, oversample: int, seed: int
) -> dict[str, Any]:
    """The whole pipeline in plain Python, stage by stage as the DAG and the flow run it."""
    matrix = make_matrix(n_rows, n_cols, rank, seed)
    blocks = split_blocks(matrix, n_blocks)
    products = [block_product(b, k + oversample, seed + 1) for b in blocks]
    return combine(products, k)


if __name__ == "__main__":
    from examples.apps._cli import main

    raise SystemExit(main("svd", SIZES, run))
