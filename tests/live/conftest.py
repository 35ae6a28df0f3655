"""The ``airflow_live`` fixture: one real Airflow deployment for the whole test session.

Started on first use (about 20-40 s: ``airflow db migrate``, then the api-server, the
scheduler and the dag-processor with the LocalExecutor and SQLite, on a free port of
127.0.0.1, in a temporary ``AIRFLOW_HOME`` with a dags folder outside the repository) and
stopped at the end of the session whatever happens, every process by pid. Its API is
:class:`tests.live.airflow_live.AirflowLive` (see that module's docstring): put files into
``airflow_live.dags``, ``wait_parsed``, ``trigger``, ``wait_runs``, then read
``task_instances``, ``xcom`` and ``task_log``. The deployment is shared by every test of
the session: use dag_ids and a sub-folder of the dags folder of your own.

Every test in this folder is marked ``live`` (``-m "not live"`` leaves them out) and, for
``make test``'s ``pytest -n 2 --dist loadgroup``, put in one xdist group, so that one worker
starts the deployment and runs them all while the other runs the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .airflow_live import AirflowLive

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.live)
            item.add_marker(pytest.mark.airflow)
            # One xdist worker runs them all: the session's one deployment serves them.
            item.add_marker(pytest.mark.xdist_group("airflow_live"))


@pytest.fixture(scope="session")
def airflow_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowLive]:
    """A running Airflow deployment (api-server, scheduler, dag-processor), for the session."""
    live = AirflowLive(tmp_path_factory.mktemp("airflow-live"))
    try:
        live.start()
        yield live
    finally:
        live.stop()
        left = live.stray_pids()
        assert not left, f"processes of the Airflow deployment left after stop: {left}"
