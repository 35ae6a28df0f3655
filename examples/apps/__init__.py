"""Three workloads from the WiseFuse paper, as plain top-level functions.

- ``video``: video analytics (split -> per-chunk features -> per-chunk classify -> aggregate),
  a scatter/gather with skewed per-chunk durations.
- ``ml_pipeline``: load -> PCA -> K hyper-parameter trials (reduced data broadcast) -> best.
- ``svd``: approximate (randomized) SVD over row blocks, one parallel sketch stage.

Every value passed between two stages is JSON data: dicts with ``str`` keys, lists, ``str``,
``int``, finite ``float``, ``bool`` and ``None``. Airflow 3.3's XCom rejects numpy arrays,
bytes and NaN/inf, and turns ``int`` dict keys into ``str``; JSON data survives XCom, Prefect
results and any store unchanged (floats round-trip exactly), so the plain run, the Airflow DAG
and the Prefect flow give identical results. Arrays live only inside a stage.
"""
