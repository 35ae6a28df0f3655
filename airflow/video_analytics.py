"""Video analytics as an Airflow DAG: split -> features per chunk -> label per chunk -> aggregate.

``extract_features`` is mapped over the chunks ``split_video`` returns (scatter), ``classify``
over the mapped features (one instance per chunk), and ``aggregate`` gathers every label. The
task functions are thin wrappers of ``examples.apps.video``: that module is the user's code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import dag, task

from examples.apps import video

# Small enough for tests (dag.test() in a few seconds); the plain run at this size gives
# the same result: ``video.run(**SIZE)``.
SIZE: dict[str, Any] = dict(video.SIZES[os.environ.get("WISEFUSE_EXAMPLE_SIZE", "small")])


@task
def split_video(
    n_chunks: int, frames_per_chunk: int, height: int, width: int, seed: int
) -> list[dict[str, Any]]:
    """Make the video and cut it into chunks (the list the next stage maps over)."""
    return video.split_video(n_chunks, frames_per_chunk, height, width, seed)


@task(multiple_outputs=False)
def extract_features(chunk: dict[str, Any]) -> dict[str, Any]:
    """Optical-flow features of one chunk (skewed durations across chunks)."""
    return video.extract_features(chunk)


@task(multiple_outputs=False)
def classify(features: dict[str, Any]) -> dict[str, Any]:
    """Label one chunk."""
    return video.classify(features)


@task(multiple_outputs=False)
def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gather the labels of every chunk (Airflow hands over a lazy sequence: make it a list)."""
    return video.aggregate(list(results))


@dag(
    dag_id="video_analytics",
    schedule=None,
    catchup=False,
    tags=["wisefuse-example"],
    doc_md=__doc__,
)
def video_analytics() -> None:
    chunks = split_video(**SIZE)
    features = extract_features.expand(chunk=chunks)
    labels = classify.expand(features=features)
    aggregate(labels)


video_analytics()
