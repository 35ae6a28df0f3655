"""``wisefuse demo``: the whole path on a bundled example (grows with each part that lands)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(console: Console) -> None:
    from wisefuse_plugins.ir import load
    from wisefuse_plugins.render import workflow_view

    ir_file = Path(__file__).resolve().parent.parent / "tests" / "data" / "video_analytics.ir.json"
    console.print(workflow_view(load(ir_file)))
