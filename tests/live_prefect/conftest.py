"""The ``prefect_live`` fixture: one real Prefect server for the whole test session.

Started on first use (``prefect server start`` on a free port of 127.0.0.1, SQLite in a
temporary ``PREFECT_HOME``; about 10-30 s) and stopped at the end of the session whatever
happens, every process by pid (the server, served flows, workers, and whatever they
started). Its API is :class:`tests.live_prefect.prefect_live.PrefectLive`: spawn the
processes users start beside a server (``flow.serve()`` scripts, ``prefect worker
start``), create flow runs of deployments, and read runs, task runs, logs and persisted
results from the server's REST API. Give deployments and work pools names of your own.

Every test in this folder is marked ``live`` and ``prefect`` (``-m "not live"`` leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .prefect_live import PrefectLive

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.live)
            item.add_marker(pytest.mark.prefect)
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("prefect_live"))  # one server, one worker


@pytest.fixture(scope="session")
def prefect_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectLive]:
    """A running Prefect server (``prefect server start``), for the session."""
    live = PrefectLive(tmp_path_factory.mktemp("prefect-live"))
    try:
        live.start()
        yield live
    finally:
        live.stop()
        timeline = "\n".join(f"{t:7.1f} s  {what}" for what, t in live.timeline)
        (live.root / "timeline.txt").write_text(timeline + "\n")
        left = live.stray_pids()
        assert not left, f"processes of the Prefect server left after stop: {left}"
