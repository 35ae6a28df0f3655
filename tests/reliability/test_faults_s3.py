"""Store faults on the AWS path: the S3 store (a moto server) under the real handler.

S3 has no half-written objects (a PUT is stored whole or not at all), so a write that
fails half-way is a connection that drops before S3 answers, either before the object is
stored ("drop") or after ("lost reply": the retry finds the object and must keep it).
Units run in-process through the executor, as a state machine would call them (moto
cannot run our code in Lambda without Docker).
"""

from __future__ import annotations

import threading

import pytest

from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
from wisefuse_plugins.runtime.executor import RunFailed, execute
from wisefuse_plugins.runtime.s3store import S3Store

from .conftest import REGION
from .faulty import faulty_app
from .harness import PLANS, ROOT, expected_values, fault_workflow, plan_of

N = 4


class FlakyS3:
    """A boto3 S3 client whose ``put_object`` fails once (or always) for chosen keys."""

    def __init__(self, inner, faults: dict[str, str], always: bool = False) -> None:
        self.inner = inner
        self.faults = dict(faults)  # key suffix -> "drop" | "lost-reply"
        self.always = always
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def put_object(self, **kw):
        from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

        with self._lock:
            mode = next((m for k, m in self.faults.items() if kw["Key"].endswith(k)), None)
            if mode is not None and not self.always:
                self.faults = {k: m for k, m in self.faults.items() if not kw["Key"].endswith(k)}
        if mode is None:
            return self.inner.put_object(**kw)
        self.failed.append(kw["Key"])
        if mode == "drop":  # the connection broke while sending: nothing stored
            raise ConnectionClosedError(endpoint_url="https://s3.example")
        self.inner.put_object(**kw)  # stored, but the answer never arrives
        raise ReadTimeoutError(endpoint_url="https://s3.example")

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _run(tmp_path, bucket, faults, *, always=False, retries=1, plan_name="bundled"):
    import boto3

    ctl = tmp_path / "ctl"
    ctl.mkdir()
    client = FlakyS3(boto3.client("s3", region_name=REGION), faults, always)
    store = S3Store(bucket, "wf", client=client)
    wf = fault_workflow(ctl, n=N, retries=retries, make_retries=retries)
    plan = plan_of(wf, *PLANS[plan_name])
    backend = InProcessBackend(store, ROOT)
    executions = lambda: {p.name[6:]: len(p.read_text().split()) for p in ctl.glob("calls-*")}  # noqa: E731
    try:
        result = execute(wf, plan, backend, store, workdir=tmp_path / "units", run_id="s3run")
    except RunFailed as failed:
        return None, failed, store, client, executions()
    return result, None, store, client, executions()


def _contents(store: S3Store) -> dict[str, object]:
    return {k.removeprefix("runs/s3run/"): st.get(store, k) for k in store.list("runs/s3run")}


@pytest.mark.parametrize("mode", ["drop", "lost-reply"])
def test_an_s3_write_that_fails_half_way_is_retried_without_loss(tmp_path, bucket, mode):
    result, failed, store, client, executions = _run(
        tmp_path, bucket, {"work/i3.pkl": mode, "make/e1.pkl": mode}
    )
    assert failed is None, failed and failed.error
    assert result.outputs["total"] == faulty_app.expected_total(N)
    assert sorted(client.failed) == ["wf/runs/s3run/make/e1.pkl", "wf/runs/s3run/work/i3.pkl"]
    assert _contents(store) == expected_values(N)  # every key once, every value right
    # a lost reply stored the value: the retry loads it instead of running the task again
    assert executions["3"] == (2 if mode == "drop" else 1)
    assert executions["make"] == 1 and executions["2"] == 1  # resumed, not recomputed
    retried = [c for c in result.calls if c.attempt == 1]
    assert {c.unit for c in retried} == {"make", "work"}
    written = {
        o["key"]: o["written"] for c in retried for o in c.invoked.payload["outputs"]
    }  # the outputs a retry reports: written only when the failed attempt had not
    assert written["runs/s3run/work/i3.pkl"] is (mode == "drop")
    assert written["runs/s3run/work/i2.pkl"] is False


def test_an_s3_store_that_keeps_failing_names_the_instance_and_stores_nothing_partial(
    tmp_path, bucket
):
    result, failed, store, client, _ = _run(
        tmp_path, bucket, {"work/i3.pkl": "drop"}, always=True, retries=2
    )
    assert result is None and failed is not None
    assert failed.error["stage"] == "work" and failed.error["instance"] == 3
    assert failed.error["type"] == "ConnectionClosedError"
    assert "stage 'work' instance 3: ConnectionClosedError" in str(failed)
    assert len(client.failed) == 3  # the stage's retries=2: three attempts
    stored = _contents(store)
    assert "work/i3.pkl" not in stored and "total/out.pkl" not in stored
    assert all(stored[k] == v for k, v in expected_values(N).items() if k in stored)
