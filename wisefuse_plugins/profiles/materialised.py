"""The materialising run's outputs: every stage's real inputs, stored once and copied into
each measuring round's fresh run id; how many instances a mapped stage had, and how many
bytes an instance reads."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

from wisefuse_plugins.ir import Collect, Item, Output, Stage, Workflow
from wisefuse_plugins.plan.lower import agreed_count
from wisefuse_plugins.runtime import store as st


class Inputs:
    """The materialised run's stored outputs, copied into fresh run ids on demand."""

    def __init__(self, store: st.Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._cache: dict[str, list[tuple[str, bytes]]] = {}

    def of(self, stage: str) -> list[tuple[str, bytes]]:
        """(file name, bytes) of everything ``stage`` wrote: out, i<k>, e<k>."""
        if stage not in self._cache:
            prefix = f"runs/{self.run_id}/{stage}"
            self._cache[stage] = [
                (key.rsplit("/", 1)[-1], self.store.get_bytes(key))
                for key in self.store.list(prefix)
            ]
        return self._cache[stage]

    def drop(self, stage: str) -> None:
        self._cache.pop(stage, None)

    def count(self, stage: str) -> int:
        """Instances of a mapped stage, or elements of a scattered list (as the handler counts)."""
        names = [name for name, _ in self.of(stage)]
        per_instance = sum(1 for n in names if n.startswith("i"))
        return per_instance or sum(1 for n in names if n.startswith("e"))

    def value(self, stage: str) -> Any:
        """The unpickled output of an unmapped stage."""
        return pickle.loads(dict(self.of(stage))["out.pkl"])

    def size(self, stage: str, name: str) -> int:
        return sum(len(data) for n, data in self.of(stage) if n == name)

    def copy_into(self, run_id: str, stages: Iterable[str]) -> None:
        for stage in stages:
            for name, data in self.of(stage):
                self.store.put_bytes(f"runs/{run_id}/{stage}/{name}", data)


def instance_count(workflow: Workflow, stage: Stage, inputs: Inputs) -> int:
    """How many instances ``stage`` had in the materialising run (all its inputs agree)."""

    def items(b: Item) -> int:
        if workflow.stage(b.stage).mapped or b.key is None:
            return inputs.count(b.stage)  # instances, or the scattered elements
        return len(inputs.value(b.stage)[b.key])  # a list inside a dict output

    return agreed_count(f"stage {stage.id!r}", stage.bindings, items)


def input_bytes(workflow: Workflow, stage: Stage, instance: int | None, inputs: Inputs) -> int:
    """Bytes the stage instance reads from the store (pickled, as stored)."""
    total = 0
    for b in stage.bindings.values():
        if isinstance(b, Output):
            total += inputs.size(b.stage, "out.pkl")
        elif isinstance(b, Item) and instance is not None:
            if workflow.stage(b.stage).mapped:
                total += inputs.size(b.stage, f"i{instance}.pkl")
            elif b.key is None:
                total += inputs.size(b.stage, f"e{instance}.pkl")  # only its element
            else:
                total += inputs.size(b.stage, "out.pkl")  # the whole dict is read
        elif isinstance(b, Collect):
            total += sum(len(d) for n, d in inputs.of(b.stage) if n.startswith("i"))
    return total
