"""Video analytics: split a video into chunks, extract motion features, classify, aggregate.

The shape of the WiseFuse paper's video workload: one scatter (``split_video`` -> N chunks),
two per-chunk stages in series (``extract_features`` -> ``classify``) and one gather
(``aggregate``). Real video is skewed: a few chunks with lots of motion cost far more than
static ones. Here each chunk gets an *activity* level drawn lognormal; it sets how many
objects move and how fast, and ``extract_features`` (Horn-Schunck optical flow) runs a number
of solver iterations proportional to the motion it measures in the frames. Everything is
deterministic given the seed; values between stages are JSON data (see ``examples.apps``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SIZES: dict[str, dict[str, Any]] = {
    # Tests, DAGs and flows: a full run well under a second.
    "small": {"n_chunks": 4, "frames_per_chunk": 6, "height": 24, "width": 32, "seed": 7},
    # A few seconds on one core; about 1.3 MB of frames on the scatter edge.
    "default": {"n_chunks": 8, "frames_per_chunk": 12, "height": 48, "width": 64, "seed": 7},
}

CLASSES: tuple[str, ...] = ("static", "pan", "walking", "running", "crowd")
ACTIVITY_SIGMA = 0.9  # lognormal sigma of per-chunk activity: max/min work 10-30x over 8 chunks
NOISE_GRAY = 1.5  # sensor noise, gray levels
# Horn-Schunck spreads flow one pixel per iteration, so the iterations it needs grow with the
# frame's width: this many per percent of moving pixels at REFERENCE_WIDTH.
ITERS_PER_MOVING_PERCENT = 100
REFERENCE_WIDTH = 64
MIN_ITERS, MAX_ITERS = 16, 6000
MOVING_THRESHOLD_GRAY = 6.0
HS_ALPHA = 0.05  # Horn-Schunck smoothness weight (intensities in [0, 1])
MAG_MAX = 2.0  # flow magnitude histogram range, pixels per frame
HIDDEN = 16
MODEL_SEED = 3
INPUT_SCALE = 16.0  # features are fractions in [0, 1]: centre at 0.25, spread for tanh


def split_video(
    n_chunks: int, frames_per_chunk: int, height: int, width: int, seed: int
) -> list[dict[str, Any]]:
    """Make a synthetic grayscale video and cut it into ``n_chunks`` chunks.

    Each chunk is ``{"index", "activity", "frames"}`` with frames as nested lists of uint8
    values (``frames[t][y][x]``): compact in JSON and exact through XCom.
    """
    rng = np.random.default_rng(seed)
    activities = rng.lognormal(mean=0.0, sigma=ACTIVITY_SIGMA, size=n_chunks)
    chunks = []
    for index, activity in enumerate(activities):
        frames = _render_chunk(
            np.random.default_rng([seed, index]), float(activity), frames_per_chunk, height, width
        )
        chunks.append({"index": index, "activity": float(activity), "frames": frames.tolist()})
    return chunks


def _render_chunk(
    rng: np.random.Generator, activity: float, n_frames: int, height: int, width: int
) -> np.ndarray:
    """Bright blobs moving over a textured background; more and faster ones when active."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    background = 50.0 + 60.0 * xx / width + 15.0 * np.sin(yy / 3.0) * np.cos(xx / 5.0)
    n_objects = 1 + min(int(activity * 2.0), 7)
    scale = height / 48.0
    pos = rng.uniform([0.0, 0.0], [height, width], size=(n_objects, 2))
    vel = rng.normal(0.0, 1.0, size=(n_objects, 2)) * activity * 1.2 * scale
    radius = rng.uniform(2.0, 5.0, size=n_objects) * scale
    brightness = rng.uniform(60.0, 140.0, size=n_objects)
    t = np.arange(n_frames, dtype=float)[:, None, None]
    frames = np.broadcast_to(background, (n_frames, height, width)).copy()
    for k in range(n_objects):
        cy = (pos[k, 0] + vel[k, 0] * t) % height
        cx = (pos[k, 1] + vel[k, 1] * t) % width
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        frames += brightness[k] * np.exp(-dist2 / (2.0 * radius[k] ** 2))
    frames += rng.normal(0.0, NOISE_GRAY, size=frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def extract_features(chunk: dict[str, Any]) -> dict[str, Any]:
    """Optical-flow features of one chunk; the solver's work grows with the chunk's motion.

    Returns ``{"index", "iterations", "features"}``; ``iterations`` is the work done (a
    duration proxy that does not depend on the machine's load).
    """
    frames = np.asarray(chunk["frames"], dtype=float)
    diff = np.abs(np.diff(frames, axis=0))
    moving_percent = 100.0 * float(np.mean(diff > MOVING_THRESHOLD_GRAY))
    width = frames.shape[2]
    wanted = ITERS_PER_MOVING_PERCENT * moving_percent * width / REFERENCE_WIDTH
    iterations = int(np.clip(round(wanted), MIN_ITERS, MAX_ITERS))
    image = frames / 255.0
    first, second = image[:-1], image[1:]
    ix = 0.5 * (np.gradient(first, axis=2) + np.gradient(second, axis=2))
    iy = 0.5 * (np.gradient(first, axis=1) + np.gradient(second, axis=1))
    it = second - first
    u, v = _horn_schunck(ix, iy, it, iterations)
    magnitude = np.hypot(u, v)
    angle = np.arctan2(v, u)
    mag_hist, _ = np.histogram(
        np.minimum(magnitude, MAG_MAX * 0.999999), bins=8, range=(0, MAG_MAX)
    )
    dir_hist, _ = np.histogram(angle, bins=8, range=(-math.pi, math.pi), weights=magnitude)
    features = [
        *(mag_hist / magnitude.size),
        *(dir_hist / (float(dir_hist.sum()) + 1e-12)),
        float(image.mean()),
        float(image.std()),
        moving_percent / 100.0,
        float(np.hypot(ix, iy).mean()),
        float(np.percentile(magnitude, 95)),
    ]
    return {
        "index": int(chunk["index"]),
        "iterations": iterations,
        "features": [float(f) for f in features],
    }


def _horn_schunck(
    ix: np.ndarray, iy: np.ndarray, it: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense optical flow (Horn & Schunck 1981) for every frame pair at once."""
    u = np.zeros_like(it)
    v = np.zeros_like(it)
    denom = HS_ALPHA**2 + ix**2 + iy**2
    for _ in range(iterations):
        u_avg, v_avg = _neighbour_mean(u), _neighbour_mean(v)
        step = (ix * u_avg + iy * v_avg + it) / denom
        u = u_avg - ix * step
        v = v_avg - iy * step
    return u, v


def _neighbour_mean(field: np.ndarray) -> np.ndarray:
    """Mean of the four neighbours of every pixel (edges replicated)."""
    p = np.pad(field, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return 0.25 * (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:])


def _model(n_inputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed two-layer network (seeded weights): the 'pretrained' classifier."""
    rng = np.random.default_rng(MODEL_SEED)
    w1 = rng.normal(0.0, 1.0 / math.sqrt(n_inputs), size=(n_inputs, HIDDEN))
    b1 = rng.normal(0.0, 0.1, size=HIDDEN)
    w2 = rng.normal(0.0, 1.0 / math.sqrt(HIDDEN), size=(HIDDEN, len(CLASSES)))
    b2 = rng.normal(0.0, 0.1, size=len(CLASSES))
    return w1, b1, w2, b2


def classify(features: dict[str, Any]) -> dict[str, Any]:
    """Label one chunk from its features: ``{"index", "label", "confidence", "probs"}``."""
    x = np.asarray(features["features"], dtype=float)
    x = (x - 0.25) * INPUT_SCALE
    w1, b1, w2, b2 = _model(x.size)
    logits = np.tanh(x @ w1 + b1) @ w2 + b2
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = int(np.argmax(probs))
    return {
        "index": int(features["index"]),
        "label": CLASSES[best],
        "confidence": float(probs[best]),
        "probs": [float(p) for p in probs],
    }


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-chunk labels into a video summary (order of ``results`` does not matter)."""
    ordered = sorted(results, key=lambda r: r["index"])
    labels = [r["label"] for r in ordered]
    counts = {name: labels.count(name) for name in CLASSES}
    dominant = max(CLASSES, key=lambda name: (counts[name], -CLASSES.index(name)))
    return {
        "n_chunks": len(ordered),
        "labels": labels,
        "counts": counts,
        "dominant": dominant,
        "mean_confidence": float(np.mean([r["confidence"] for r in ordered])),
    }


def run(n_chunks: int, frames_per_chunk: int, height: int, width: int, seed: int) -> dict[str, Any]:
    """The whole pipeline in plain Python, stage by stage as the DAG and the flow run it."""
    chunks = split_video(n_chunks, frames_per_chunk, height, width, seed)
    features = [extract_features(chunk) for chunk in chunks]
    results = [classify(f) for f in features]
    return aggregate(results)


if __name__ == "__main__":
    from examples.apps._cli import main

    raise SystemExit(main("video", SIZES, run))
