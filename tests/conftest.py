"""Shared test set-up: throwaway homes for Airflow and Prefect, and paths into the repository.

Airflow reads ``AIRFLOW_HOME`` and Prefect ``PREFECT_HOME`` when they are first imported, so
both are pointed at a temporary folder in ``pytest_configure``, before any test module is
collected; a test run never touches ``~/airflow`` or ``~/.prefect``. Neither framework is
imported here: plain unit tests don't pay for them. The expensive parts are lazy,
session-scoped fixtures: ``airflow_home`` migrates the metadata database once (a few
seconds), and the first Prefect flow run of the session starts one temporary API server
(about 10 s) that every later flow run of the process reuses.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_DAGS = REPO_ROOT / "airflow"
PREFECT_FLOWS = REPO_ROOT / "prefect"

_STATE: dict[str, Path] = {}


def framework_env(state_dir: Path) -> dict[str, str]:
    """The environment that isolates Airflow and Prefect inside ``state_dir``."""
    airflow_home = state_dir / "airflow-home"
    prefect_home = state_dir / "prefect-home"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(AIRFLOW_DAGS),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_MEMO_STORE_PATH": str(prefect_home / "memo_store.toml"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(prefect_home / "storage"),
        # The temporary server needs ~10 s here; leave room on a loaded CI machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def pytest_configure(config: pytest.Config) -> None:
    """Point both frameworks at a fresh temporary folder before anything imports them."""
    state_dir = Path(tempfile.mkdtemp(prefix="wisefuse-tests-"))
    _STATE["dir"] = state_dir
    os.environ.update(framework_env(state_dir))
    # One BLAS thread here, as in the local Lambda's workers at 1769 MB or less. Plain and
    # planned runs may still differ in the last bits (OpenBLAS's kernels depend on the
    # arrays' alignment too): results are compared by wisefuse_plugins.runtime.compare.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    # A developer's own Prefect server or Cloud must not receive test runs.
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(name, None)
    # Local Lambda services started on demand (by hooks, blocks, CLI runs in subprocesses)
    # stop themselves soon after the tests stop using them; those of this process at the end.
    os.environ.setdefault("WISEFUSE_LAMBDA_IDLE_S", "120")
    os.environ.pop("WISEFUSE_LAMBDA_ENDPOINT", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_test_services(config)
    state_dir = _STATE.pop("dir", None)
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)


def stop_test_services(config: pytest.Config) -> None:
    """Stop the local Lambda services whose root is one of this test run's folders."""
    from wisefuse_plugins.runtime.backends.service import ondemand

    ondemand.stop_started()
    factory = getattr(config, "_tmp_path_factory", None)
    folders = [str(p) for p in (_STATE.get("dir"), factory and factory.getbasetemp()) if p]
    for root in ondemand.running_roots():
        if any(str(root).startswith(folder) for folder in folders):
            ondemand.stop(root)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def airflow_dags_folder() -> Path:
    """The repository's DAG folder (``airflow/``, not a package)."""
    return AIRFLOW_DAGS


@pytest.fixture(scope="session")
def prefect_flows_folder() -> Path:
    """The repository's flow folder (``prefect/``, not a package)."""
    return PREFECT_FLOWS


def load_module_from_path(path: Path | str, name: str | None = None) -> ModuleType:
    """Import a file that is not in a package (a DAG or flow file) under a private name."""
    path = Path(path)
    name = name or f"_wisefuse_test_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_module() -> Callable[..., ModuleType]:
    """``load_module(path)`` imports a DAG or flow file by path (see ``load_module_from_path``)."""
    return load_module_from_path


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """A temporary ``AIRFLOW_HOME`` with a migrated metadata database, once per session.

    Needed by ``dag.test()``; parsing DAG files (``airflow_dagbag``) does not need it.
    """
    home = Path(os.environ["AIRFLOW_HOME"])
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    yield home


@pytest.fixture(scope="session")
def airflow_dagbag() -> Any:
    """The repository's DAG folder parsed once by Airflow (no database needed)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(AIRFLOW_DAGS))


@pytest.fixture(scope="session")
def prefect_env() -> Iterator[dict[str, str]]:
    """Prefect for this session: settings in a temporary ``PREFECT_HOME`` and one temporary
    API server that every flow run of the session shares.

    Prefect's own ``prefect_test_harness`` runs the server: started here (about 10 s), and
    at the end of the session it drains Prefect's log and event workers *before* stopping
    the server. Left to Prefect's ``atexit`` hooks instead, shutdown logs to streams pytest
    has closed and the log worker retries a stopped server for more than a minute.
    """
    from prefect.testing.utilities import prefect_test_harness

    names = [name for name in framework_env(Path()) if name.startswith("PREFECT_")]
    timeout = int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
    harness = prefect_test_harness(server_startup_timeout=timeout)
    harness.__enter__()
    try:
        yield {name: os.environ[name] for name in names}
    finally:
        _leave_prefect_harness(harness)


def _leave_prefect_harness(harness: Any, timeout_s: float = 30.0) -> None:
    """Drain Prefect's log and event workers with a bound, then let the harness stop its
    server. Its own drain waits without one, and once in a CI run (Prefect 3.7.7) it never
    returned: the session hung in teardown. When the bounded drain does not finish, the
    server is stopped here (by its process) and the harness is left; the warning says so."""
    import warnings

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    pending = []
    for worker in (APILogWorker, EventsWorker):
        _, not_done = worker.drain_all(timeout=timeout_s)
        pending += [worker.__name__] * len(not_done)
    if not pending:
        harness.__exit__(None, None, None)
        return
    warnings.warn(
        f"Prefect's {', '.join(sorted(set(pending)))} did not drain in {timeout_s:.0f} s: "
        "stopping the test server without the harness",
        stacklevel=1,
    )
    server = SubprocessASGIServer._instances.get(None)
    if server is not None:
        server.stop()


AWS_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real moto server on a loopback port, once per session: no account, no network."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> str:
    """Point boto3 at the moto server with fake credentials, for this test only (no AWS
    config file or profile of the machine leaks in). ``MOTO_PORT`` tells moto's Step
    Functions interpreter where to send the Lambda calls of a state machine it runs."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    monkeypatch.setenv("MOTO_PORT", moto_server.rsplit(":", 1)[1])
    return moto_server
