"""How values travel between units: small ones by value, in the invocation's response
and the next one's event, the rest through the store.

A store PUT costs $5 per million on S3 (25 times a Lambda request) and tens of ms; the
outputs of most tasks of a data pipeline are small (a count, a path, a few rows, a model's
score). Step Functions, Airflow (XCom) and Prefect pass such values themselves; a unit's
invocation does the same when its orchestrator asks for it:

- the event says ``"by_value": N``: each exported output whose pickle is at most ``N``
  bytes (and :data:`RESPONSE_BYTES` in all) comes back in the response, base64, as the
  record's ``"pickle"``, and is **not** written to the store (nor its scattered elements);
- the orchestrator keeps them by store key (:class:`Values`) and puts those a unit reads
  into its events: ``"values": {key: pickle}``; the handler takes a value from there
  before the store. What does not fit an event (:data:`EVENT_BYTES`) the orchestrator
  writes to the store itself, so nothing is lost and every read still finds its value.

A value passed by value is the same pickle the store would hold, so what a task receives
does not depend on the path. An orchestrator that passes values must also pass ``counts``
(how many instances each upstream stage had): the store no longer holds them all to list.
Without ``by_value`` every output goes to the store, as before.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any

from wisefuse_plugins.ir.nodes import Collect, Item, Output
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.spec import UnitSpec

BY_VALUE_BYTES = 256 * 1024
"""Largest pickle passed by value: Step Functions' state limit; Lambda takes 6 MB."""

RESPONSE_BYTES = 2 * 1024 * 1024
"""Pickle bytes one response carries by value at most (base64 adds a third: well under
Lambda's 6 MB response); the outputs beyond go to the store."""

EVENT_BYTES = 3 * 1024 * 1024
"""Pickle bytes one event carries at most (under Lambda's 6 MB request once base64);
an orchestrator stores the values beyond and the unit reads them from there."""


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def keys_read(
    spec: UnitSpec, run_id: str, instances: list[int] | None, counts: Mapping[str, int]
) -> list[str]:
    """The store keys of the outside values one invocation of ``spec`` may read.

    ``instances``: those of a bundled unit's invocation (None: an unbundled unit, whose
    mapped stages run every instance). A scattered list is read whole: its elements are
    not stored when it went by value.
    """
    inside = {s.id for s in spec.stages}
    keys: dict[str, None] = {}
    for stage in spec.stages:
        for b in stage.bindings.values():
            if not isinstance(b, Output | Item | Collect) or b.stage in inside:
                continue
            mapped_src = b.stage in spec.mapped_upstream
            if isinstance(b, Collect) or (isinstance(b, Item) and mapped_src):
                which = (
                    instances
                    if isinstance(b, Item) and instances is not None
                    else range(counts.get(b.stage, 0))
                )
                for i in which:
                    keys[st.output_key(run_id, b.stage, i)] = None
            else:
                keys[st.output_key(run_id, b.stage)] = None
    return list(keys)


class Values:
    """An orchestrator's values passed by value in one run, by store key (thread-safe)."""

    def __init__(self, event_bytes: int = EVENT_BYTES) -> None:
        self._pickles: dict[str, str] = {}
        self._lock = threading.Lock()
        self.event_bytes = event_bytes

    def take(self, payload: Mapping[str, Any]) -> None:
        """Keep the values a unit's response passed by value."""
        with self._lock:
            for rec in payload.get("outputs") or []:
                if "pickle" in rec:
                    self._pickles[rec["key"]] = rec["pickle"]

    def for_event(
        self,
        spec: UnitSpec,
        run_id: str,
        instances: list[int] | None,
        counts: Mapping[str, int],
        store: st.Store,
    ) -> tuple[dict[str, str], int]:
        """The values an invocation reads, for its event, and how many this call wrote to
        the store instead because the event would have been too large (PUTs to bill)."""
        chosen: dict[str, str] = {}
        size = stored = 0
        for key in keys_read(spec, run_id, instances, counts):
            with self._lock:
                text = self._pickles.get(key)
            if text is None:
                continue  # it went through the store
            pickled = len(text) * 3 // 4  # base64 carries 3 bytes in 4 characters
            if size + pickled <= self.event_bytes:
                chosen[key] = text
                size += pickled
            elif store.put_bytes(key, decode(text)):
                stored += 1
        return chosen, stored

    def get(self, store: st.Store, key: str) -> Any:
        """The value at ``key``: passed by value, else from the store."""
        with self._lock:
            text = self._pickles.get(key)
        if text is None:
            return st.get(store, key)
        return st.loads(decode(text))

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._pickles
