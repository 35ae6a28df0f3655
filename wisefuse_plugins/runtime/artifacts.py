"""A plan's Lambda artefacts: each unit's zip (:mod:`.packaging`) and one dependency layer
per architecture (:mod:`.layers`), checked together against Lambda's limits. What
``wisefuse package`` writes and ``wisefuse deploy`` uploads."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.plan.schema import Plan
from wisefuse_plugins.runtime.layers import Layer, Method, Resolution, build_layer, resolve
from wisefuse_plugins.runtime.packaging import (
    MAX_ZIPPED_BYTES,
    RUNTIME,
    Package,
    Packager,
    PackageTooLarge,
)


@dataclass
class PlanPackages:
    """What :func:`package_plan` built: a zip per unit, a layer per architecture."""

    zips: dict[str, Package]  # unit id -> its zip
    layers: dict[str, Layer]  # architecture -> its dependency layer
    resolution: Resolution
    extra_roots: tuple[Path, ...]
    written: dict[str, Path] = field(default_factory=dict)  # file name -> path, with ``out``


def package_plan(
    workflow: Workflow,
    plan: Plan,
    out: Path | None = None,
    *,
    code_root: Path | None = None,
    extra_roots: Sequence[Path] = (),
    method: Method = "auto",
    runtime: str = RUNTIME,
    cache: Path | None = None,
) -> PlanPackages:
    """Every unit's zip and one dependency layer per architecture the plan uses.

    The layer holds what the workflow's file and its stages' files import (followed through
    the code they import), resolved against this environment (:func:`.layers.resolve`); a
    source package they import from outside the code root (``examples``) goes into the
    zips. Each function (zip + its layer) is checked against Lambda's limits. With ``out``,
    writes ``<unit>.zip`` and ``layer-<arch>.zip`` there. ``cache``: where layers are kept
    (default ``$WISEFUSE_HOME/layers``).
    """
    from wisefuse_plugins.runtime.executor import prepare

    root = Path(code_root if code_root is not None else workflow.source.root).resolve()
    paths = [workflow.source.path] if workflow.source and workflow.source.path else []
    paths += [s.callable.path for s in workflow.stages if s.callable is not None]
    entries = {root / p for p in paths if p}
    res = resolve(
        [root, *extra_roots], entries=[e for e in entries if e.suffix == ".py" and e.is_file()],
        runtime=runtime,
    )  # fmt: skip
    extras = tuple(dict.fromkeys([*(Path(p).resolve() for p in extra_roots), *res.local_roots]))
    layers = {
        arch: build_layer(res, arch, runtime=runtime, method=method, cache=cache)
        for arch in sorted({u.arch for u in plan.units})
    }
    packager = Packager(root, extras)
    zips: dict[str, Package] = {}
    with tempfile.TemporaryDirectory(prefix="wisefuse-package-") as tmp:
        specs = prepare(workflow, plan, Path(tmp))
        for unit in plan.units:
            layer = layers[unit.arch]
            zips[unit.id] = packager.build(
                {unit.id: specs[unit.id].read_bytes()},
                layer_bytes=layer.unzipped_bytes,
                largest=layer.largest(),
            )
    result = PlanPackages(zips, layers, res, extras)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for unit_id, pkg in zips.items():
            path = out / f"{unit_id}.zip"
            path.write_bytes(pkg.data)
            result.written[path.name] = path
        for arch, layer in layers.items():
            path = out / f"layer-{arch}.zip"
            shutil.copyfile(layer.path, path)
            result.written[path.name] = path
    return result


def publish_layer(client: Any, name: str, layer: Layer) -> str:
    """The ARN of layer ``name``'s version with ``layer``'s content: an existing one (its
    description names the content hash), else a newly published one. ``client``: boto3's
    Lambda client, for AWS or for the local Lambda service."""
    tag = f"wisefuse deps {layer.key}"
    for page in client.get_paginator("list_layer_versions").paginate(LayerName=name):
        for version in page.get("LayerVersions", []):
            if version.get("Description") == tag:
                return version["LayerVersionArn"]
    if layer.zipped_bytes > MAX_ZIPPED_BYTES:
        raise PackageTooLarge(
            f"the {layer.arch} dependency layer is {layer.zipped_bytes / 2**20:.1f} MB zipped; "
            f"a direct upload takes at most {MAX_ZIPPED_BYTES // 2**20} MB; largest packages: "
            f"{layer.largest()}",
            hint="import less in the units' code, or publish the layer from S3 yourself "
            "(wisefuse package writes it) and pass --layer ARN",
        )
    answer = client.publish_layer_version(
        LayerName=name,
        Description=tag,
        Content={"ZipFile": layer.path.read_bytes()},
        CompatibleArchitectures=[layer.arch],
        CompatibleRuntimes=[layer.runtime],
    )
    return answer["LayerVersionArn"]
