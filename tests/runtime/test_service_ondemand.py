"""The local Lambda service started on demand: once per root, found from any process,
stopping itself when idle, with a clean environment; units survive its restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("boto3")

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.service import ondemand

from .toyflows import PLANS, ROOT, expected_total, plan, toy_workflow

ENSURE = (
    "import json, sys; from wisefuse_plugins.runtime.backends.service import ondemand; "
    "print(ondemand.ensure(json.loads(sys.argv[1])))"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    try:
        yield tmp_path / "home"
    finally:
        for root in ondemand.running_roots():
            if str(root).startswith(str(tmp_path)):
                ondemand.stop(root)


def ensure_elsewhere(options: dict) -> subprocess.Popen[str]:
    """``ensure(options)`` in another process (as another task process would call it)."""
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE, json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def url_of(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip()


def test_started_once_and_found_from_other_processes(home: Path) -> None:
    url = ondemand.ensure({"concurrency_limit": 4})
    assert ondemand.ensure({"concurrency_limit": 4}) == url
    assert url_of(ensure_elsewhere({"concurrency_limit": 4})) == url
    # other engine options: a service of their own, never one built with someone else's
    other = ondemand.ensure({"concurrency_limit": 5})
    assert other != url
    assert len([r for r in ondemand.running_roots() if str(r).startswith(str(home))]) == 2


def test_starters_racing_get_one_service(home: Path) -> None:
    procs = [ensure_elsewhere({"keep_alive_s": 30}) for _ in range(3)]
    urls = {url_of(p) for p in procs}
    assert len(urls) == 1
    assert [r for r in ondemand.running_roots() if str(r).startswith(str(home))] == [
        ondemand.service_root({"keep_alive_s": 30})
    ]


def test_an_idle_service_stops_itself(home: Path) -> None:
    root = ondemand.service_root({"keep_alive_s": 5})
    url = ondemand.ensure({"keep_alive_s": 5}, idle_s=1.0)
    assert ondemand.ping(url)
    deadline = time.monotonic() + 60
    while ondemand.owner(root) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ondemand.owner(root) is None and not ondemand.ping(url, timeout_s=1)
    assert not (root / ondemand.LOCK_NAME).exists()  # it released its root


def test_the_service_gets_a_clean_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WISEFUSE_TEST_CANARY_X", "from the caller")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    ondemand.ensure()
    pid = ondemand.owner(ondemand.service_root())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0].decode() for e in environ if e}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in names
    assert "WISEFUSE_HOME" in names and "PATH" in names


def test_a_missing_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ondemand.ENV_ENDPOINT, "http://127.0.0.1:9")
    with pytest.raises(WiseFuseError, match="no Lambda service answers") as info:
        ondemand.ensure()
    assert "wisefuse lambda serve" in (info.value.hint or "")


def test_units_run_from_their_packages_and_survive_a_restart(home: Path, tmp_path: Path) -> None:
    from wisefuse_plugins.runtime.backends.service.client import ServiceUnits
    from wisefuse_plugins.runtime.executor import execute

    wf = toy_workflow()
    store = st.LocalStore(tmp_path / "store")
    options = {"concurrency_limit": 8}  # room for every unit's environments: none retired
    units = ServiceUnits(code_root=ROOT, store_url=store.url, prefix="toy", options=options)
    groups, bundle = PLANS["bundles-of-2"]
    first = execute(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / "a")
    assert first.outputs == {"total": expected_total()}
    again = execute(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / "b")
    assert not any(c.invoked.cold for c in again.calls)  # warm in the service
    before = units.url
    assert ondemand.stop(ondemand.service_root(options))
    # the service is gone: the next run starts one, deploys its units there and runs
    after = execute(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / "c")
    assert after.outputs == {"total": expected_total()}
    assert units.url != before and ondemand.ping(units.url)
    code = list((ondemand.service_root(options) / "functions").iterdir())
    assert code and all((d / "wisefuse_code").is_dir() for f in code for d in f.iterdir())
    assert os.environ.get("WISEFUSE_TEST_CANARY_X") is None
