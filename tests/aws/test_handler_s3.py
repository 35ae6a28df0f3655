"""The handler for real, with Lambda-shaped events and contexts, on the S3 store (moto).

moto's ``invoke`` cannot run our code without Docker, so the data path of a deployed plan
is exercised here: each unit's handler is called directly with the environment its
function gets, in the order a state machine would call them, reading and writing S3.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from wisefuse_plugins.plan.lower import chunk_slot
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.executor import prepare
from wisefuse_plugins.runtime.handler import handler
from wisefuse_plugins.runtime.packaging import CODE_DIR, UNITS_DIR, Packager

from ..runtime.toyflows import PLANS, ROOT, expected_total, plan, toy_workflow
from .awsflows import FakeContext


def test_units_run_in_order_on_s3_like_a_state_machine(bucket, tmp_path, monkeypatch):
    wf = toy_workflow(n=5)
    p = plan(wf, *PLANS["bundles-of-2"])
    specs = prepare(wf, p, tmp_path / "units")
    url = f"s3://{bucket}/wf"
    monkeypatch.setenv("WISEFUSE_CODE_ROOT", str(ROOT))
    monkeypatch.setenv("WISEFUSE_STORE", url)

    def call(unit: str, event: dict) -> dict:
        monkeypatch.setenv("WISEFUSE_UNIT_SPEC", str(specs[unit]))
        answer = handler(json.loads(json.dumps(event)), FakeContext(1769, unit))
        json.dumps(answer)  # a Lambda response must be JSON
        assert answer["ok"], answer.get("error")
        return answer

    made = call("make", {"run_id": "r1", "raise_errors": True})
    chunks = made["chunks"][chunk_slot("square-middle")]
    assert chunks == [[0, 1], [2, 3], [4]]
    for chunk in chunks:  # the Map's iterations: only run_id and instances
        call("square-middle", {"run_id": "r1", "instances": chunk, "raise_errors": True})
    call("config", {"run_id": "r1", "raise_errors": True})
    total = call("total", {"run_id": "r1", "raise_errors": True})  # counts middle's keys in S3
    assert total["outputs"][0]["value"] == expected_total(5)
    store = st.open_store(url)
    assert st.get(store, "runs/r1/total/out.pkl") == expected_total(5)
    assert store.list("runs/r1/middle") == [f"runs/r1/middle/i{i}.pkl" for i in range(5)]
    # a retried invocation rewrites nothing
    again = call("square-middle", {"run_id": "r1", "instances": [2, 3]})
    assert not any(o["written"] for o in again["outputs"])


def test_the_zip_alone_runs_a_unit(bucket, tmp_path):
    """Unpack a unit's zip as /var/task and import the handler from it, in a fresh process."""
    wf = toy_workflow(n=3)
    p = plan(wf, *PLANS["bundles-of-2"])
    specs = prepare(wf, p, tmp_path / "units")
    package = Packager(ROOT).build({"make": specs["make"].read_bytes()})
    task = tmp_path / "var-task"
    with zipfile.ZipFile(io.BytesIO(package.data)) as zf:
        zf.extractall(task)
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(task)!r})\n"
        "from wisefuse_plugins.runtime import handler as h\n"
        f"assert h.__file__.startswith({str(task)!r}), h.__file__\n"
        "class Ctx: memory_limit_in_mb = 512\n"
        "print(json.dumps(h.handler({'run_id': 'z1'}, Ctx())))\n"
    )
    env = {
        **os.environ,
        "WISEFUSE_UNIT_SPEC": str(task / UNITS_DIR / "make.unit.json"),
        "WISEFUSE_CODE_ROOT": str(task / CODE_DIR),
        "WISEFUSE_STORE": f"s3://{bucket}/zip",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["ok"] and answer["outputs"][0]["value"] == [0, 1, 2]
    assert st.get(st.open_store(f"s3://{bucket}/zip"), "runs/z1/make/e2.pkl") == 2
    assert Path(task / CODE_DIR / "toy_app.py").is_file()
