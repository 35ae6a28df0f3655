"""Video analytics as a Prefect flow: split -> features per chunk -> label per chunk -> aggregate.

``extract_features`` is mapped over the chunks (scatter), ``classify`` over the features'
futures (one run per chunk), ``aggregate`` gathers them. The tasks are thin wrappers of
``examples.apps.video``. Run it: ``python prefect/video_analytics.py [--size default]``.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task

from examples.apps import video


@task
def split_video(
    n_chunks: int, frames_per_chunk: int, height: int, width: int, seed: int
) -> list[dict[str, Any]]:
    """Make the video and cut it into chunks (the list the next stage maps over)."""
    return video.split_video(n_chunks, frames_per_chunk, height, width, seed)


@task
def extract_features(chunk: dict[str, Any]) -> dict[str, Any]:
    """Optical-flow features of one chunk (skewed durations across chunks)."""
    return video.extract_features(chunk)


@task
def classify(features: dict[str, Any]) -> dict[str, Any]:
    """Label one chunk."""
    return video.classify(features)


@task
def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Gather the labels of every chunk."""
    return video.aggregate(results)


@flow(name="video-analytics")
def video_analytics(
    n_chunks: int = video.SIZES["small"]["n_chunks"],
    frames_per_chunk: int = video.SIZES["small"]["frames_per_chunk"],
    height: int = video.SIZES["small"]["height"],
    width: int = video.SIZES["small"]["width"],
    seed: int = video.SIZES["small"]["seed"],
) -> dict[str, Any]:
    """The pipeline; defaults are the small size, so ``video.run(**SIZES["small"])`` matches."""
    chunks = split_video(n_chunks, frames_per_chunk, height, width, seed)
    features = extract_features.map(chunks)
    labels = classify.map(features)
    return aggregate(labels)


if __name__ == "__main__":
    from examples.apps._cli import main

    sys.exit(main("video", video.SIZES, video_analytics, prog="python prefect/video_analytics.py"))
