"""``wisefuse report``: a plan, its predicted figures and its measured runs, as one page.

The page (Markdown or HTML, by the output's suffix) holds the plan unit by unit, the
predicted and measured P50 / P95 / cost per run side by side with their errors, and two
PNG plots beside it: the predicted and measured latency distributions, and each unit's
predicted and measured invocation time.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.predict import Prediction
from wisefuse_plugins.plan.schema import Plan
from wisefuse_plugins.runtime.measure import Measured


@dataclass
class Report:
    workflow: Workflow
    plan: Plan
    prediction: Prediction
    measured: Measured
    unit_ms: dict[str, list[float]]  # measured invocation durations per unit


def _error(pred: float, meas: float) -> str:
    return "-" if not meas else f"{(pred - meas) / meas * 100:+.1f}%"


def tables(r: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the page."""
    p, m = r.prediction, r.measured
    summary = [
        ["P50 latency (s)", f"{p.p50_s:.3f}", f"{m.p50_s:.3f}", _error(p.p50_s, m.p50_s)],
        ["P95 latency (s)", f"{p.p95_s:.3f}", f"{m.p95_s:.3f}", _error(p.p95_s, m.p95_s)],
        [
            "cost per 1,000 runs (USD)",
            f"{p.cost_usd * 1000:.4f}",
            f"{m.mean_cost_usd * 1000:.4f}",
            _error(p.cost_usd, m.mean_cost_usd),
        ],
    ]
    by_unit = {u.unit: u for u in p.units}
    units = []
    for u in r.plan.units:
        up = by_unit[u.id]
        seen = r.unit_ms.get(u.id, [])
        mean = float(np.mean(seen)) if seen else 0.0
        units.append(
            [
                u.id,
                " > ".join(u.stages),
                str(u.bundle_size),
                str(up.invocations),
                f"{u.memory_mb} MB {u.arch}",
                f"{up.mean_invocation_ms:.1f}",
                f"{mean:.1f}" if seen else "-",
                _error(up.mean_invocation_ms, mean),
            ]
        )
    return [
        (
            f"predicted vs measured ({m.runs} runs after a warm-up)",
            ["figure", "predicted", "measured", "error"],
            summary,
        ),
        (
            "units",
            [
                "unit",
                "stages",
                "bundle",
                "invocations",
                "memory",
                "pred. ms / invocation",
                "meas. ms",
                "error",
            ],
            units,
        ),
    ]


def plots(r: Report, folder: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    pred = np.sort(r.prediction.samples_s) if r.prediction.samples_s is not None else np.array([])
    meas = np.sort(np.array(r.measured.e2e_s))
    if pred.size:
        ax.plot(pred, np.linspace(0, 1, pred.size), label="predicted")
    ax.step(meas, np.linspace(1 / max(meas.size, 1), 1, meas.size), where="post", label="measured")
    ax.axvline(r.prediction.p95_s, color="tab:blue", linestyle=":", linewidth=1)
    ax.set_xlabel("end-to-end latency (s)")
    ax.set_ylabel("share of runs")
    ax.set_title("latency distribution")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out.append(folder / f"{stem}-latency.png")
    fig.savefig(out[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    ids = [u.id for u in r.plan.units]
    by_unit = {u.unit: u for u in r.prediction.units}
    x = np.arange(len(ids))
    ax.bar(x - 0.2, [by_unit[i].mean_invocation_ms for i in ids], 0.4, label="predicted")
    ax.bar(x + 0.2, [float(np.mean(r.unit_ms.get(i) or [0])) for i in ids], 0.4, label="measured")
    ax.set_xticks(x, ids, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean ms per invocation")
    ax.set_title("units")
    ax.legend()
    fig.tight_layout()
    out.append(folder / f"{stem}-units.png")
    fig.savefig(out[-1])
    plt.close(fig)
    return out


def write(r: Report, path: str | Path) -> Path:
    """Write the page (``.md`` or ``.html``) and its PNGs beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = plots(r, path.parent, path.stem)
    title = f"{r.workflow.name}: plan report"
    meta = ", ".join(
        f"{k}: {v}" for k, v in sorted(r.plan.meta.items()) if not isinstance(v, dict | list)
    )
    if path.suffix == ".html":
        parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(meta)}</p>"]
        for name, header, rows in tables(r):
            parts.append(f"<h2>{html.escape(name)}</h2><table border='1' cellpadding='4'>")
            parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += [
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in rows
            ]
            parts.append("</table>")
        parts += [f"<p><img src='{img.name}' alt='{img.stem}'></p>" for img in images]
        path.write_text("<!doctype html><html><body>\n" + "\n".join(parts) + "\n</body></html>\n")
        return path
    lines = [f"# {title}", "", meta, ""]
    for name, header, rows in tables(r):
        lines += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += [f"![{img.stem}]({img.name})" for img in images]
    path.write_text("\n".join(lines) + "\n")
    return path
