"""Dependency layers: what the units' code imports, as one Lambda layer zip per architecture.

A unit's zip holds our runtime and the user's code (:mod:`.packaging`); everything else it
imports comes from a layer, laid out as Lambda expects (``python/...``, which Lambda puts
on ``sys.path`` as ``/opt/python``). What goes in is *resolved* against the user's
environment rather than listed by hand:

1. the roots: our runtime's requirements (:func:`.packaging.runtime_requirements`) and the
   top-level names the user's files import (read with :mod:`ast`, imports inside functions
   too), mapped to installed distributions with ``importlib.metadata``;
2. their dependencies, with markers evaluated for Lambda (Linux, CPython, the runtime's
   Python), pinned at the installed versions;
3. minus Airflow and Prefect (a unit imports a DAG or flow file with stand-ins for them;
   they would not fit in 250 MB anyway) and minus the SDK the Lambda runtime ships (AWS:
   "the Lambda Python runtimes include the AWS SDK for Python (Boto3) and its
   dependencies", i.e. boto3, botocore, s3transfer, jmespath, python-dateutil, six and
   urllib3) unless our runtime requires them: it does require ``boto3>=1.35`` (the store's
   conditional PUT), whose version in the runtime varies by runtime and region, so the SDK
   ships in the layer, as AWS recommends for production code.

Two ways to build: ``host`` copies the installed files (each distribution's RECORD) for
this machine's architecture: offline and fast, what the local service runs; ``pip``
downloads the pinned wheels for any architecture (``pip install --platform manylinux...
--only-binary=:all: --target``). ``auto`` copies when every installed wheel's tags fit the
target (architecture, Python, the runtime's glibc) and downloads otherwise. Layers are
cached under ``$WISEFUSE_HOME/layers`` by a hash of what went in: the same requirement set
gives the same file, built once.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wisefuse_plugins.errors import WiseFuseError

LAYER_ROOT = "python"
#: Distribution names (canonical) never put in a layer: the frameworks a unit does without.
FRAMEWORK_PREFIXES = ("apache-airflow", "prefect")
#: What the Lambda Python runtimes ship besides the standard library (boto3 and its deps).
LAMBDA_SDK = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
#: glibc minor version of each runtime's OS (Amazon Linux 2: 2.26; Amazon Linux 2023: 2.34).
RUNTIME_GLIBC = {"python3.11": 26, "python3.12": 34, "python3.13": 34}
#: Lambda's architecture names -> the machine names of wheel tags.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
#: Never copied into a layer: compiled caches and the RECORD's paths outside site-packages.
_SKIP_SUFFIXES = (".pyc", ".pyo")
_FORMAT = 1  # bump when the layout changes, so cached layers are rebuilt
Method = Literal["auto", "host", "pip"]


class LayerError(WiseFuseError):
    """A dependency layer could not be resolved or built."""


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def host_arch() -> str:
    """This machine's architecture in Lambda's words (``x86_64`` or ``arm64``)."""
    machine = platform.machine().lower()
    return {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64"}.get(machine, machine)


# --- what the code imports -----------------------------------------------------------


def imported_names(path: Path) -> tuple[dict[str, list[str]], list[Path]]:
    """What ``path`` imports: absolute module names -> ``file:line`` places, and the files
    its relative imports (``from . import x``) name. Imports inside functions count too."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as err:
        raise LayerError(
            f"cannot read the imports of {path}: {err}", hint="fix the file's syntax"
        ) from None
    found: dict[str, list[str]] = {}
    relative: list[Path] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from pkg import mod`` may import a submodule: both names, for the lookup
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names if a.name != "*")]
        elif isinstance(node, ast.ImportFrom):
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            mod = base.joinpath(*(node.module or "").split(".")) if node.module else base
            for sub in [mod, *(mod / a.name for a in node.names if a.name != "*")]:
                relative += [
                    c for c in (sub / "__init__.py", sub.with_suffix(".py")) if c.is_file()
                ]
        for name in names:
            found.setdefault(name, []).append(f"{path}:{node.lineno}")
    return found, relative


def _site_dirs() -> list[Path]:
    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    with contextlib.suppress(AttributeError):
        import site

        paths.update(site.getsitepackages())
    return [Path(p).resolve() for p in paths]


def _local_root(top: str, inside: Sequence[Path]) -> Path | None:
    """The folder of an importable top-level package that no distribution installed
    (``examples`` beside a DAG folder), or None (stdlib, installed, or not found)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations or spec.origin in (None, "built-in", "frozen"):
        return None  # a module file or builtin: stdlib or installed, not a source tree
    folder = Path(locations[0]).resolve()
    sites = _site_dirs()
    if any(folder.is_relative_to(s) for s in sites) or any(
        folder.is_relative_to(r) for r in inside
    ):
        return None
    return folder


@dataclass(frozen=True)
class Pin:
    """One distribution of a layer: canonical name, installed version, why it is there."""

    name: str
    version: str | None
    why: str


@dataclass
class Resolution:
    """What a set of units imports, resolved against this environment."""

    pins: dict[str, Pin]  # canonical name -> pin
    excluded: dict[str, str] = field(default_factory=dict)  # canonical name -> reason
    unresolved: dict[str, list[str]] = field(default_factory=dict)  # module -> places
    local_roots: list[Path] = field(default_factory=list)  # source packages to ship in the zip

    def requirements(self) -> list[str]:
        """``name==version`` (or the bare name where nothing is installed), sorted."""
        return sorted(f"{p.name}=={p.version}" if p.version else p.name for p in self.pins.values())


def _distribution(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def _dists_for_module(dotted: str, mapping: Mapping[str, list[str]]) -> list[str]:
    """Distributions providing ``dotted`` (``google.protobuf`` -> protobuf, not every google.*)."""
    top = dotted.split(".")[0]
    names = list(dict.fromkeys(mapping.get(top, [])))
    if len(names) <= 1:
        return names
    parts = dotted.split(".")
    prefix = "/".join(parts[:2])
    exact = []
    for name in names:
        dist = _distribution(name)
        files = [str(f) for f in (dist.files or [])] if dist else []
        if any(f.startswith((prefix + "/", prefix + ".")) for f in files):
            exact.append(name)
    return exact or names


def _excluded(name: str, required_by_runtime: set[str]) -> str | None:
    if name.startswith(FRAMEWORK_PREFIXES):
        return "a workflow framework: units import DAG and flow files without it"
    if name in LAMBDA_SDK and name not in required_by_runtime:
        return "shipped by the Lambda runtime"
    return None


def resolve(
    roots: Sequence[Path],
    *,
    entries: Iterable[Path] | None = None,
    requirements: Iterable[str] | None = None,
    runtime: str = "python3.11",
    arch: str | None = None,
) -> Resolution:
    """The distributions a layer needs for code under ``roots`` (the zip's source folders).

    The imports are followed from ``entries`` (a DAG or flow file and its stages' files;
    default: every ``*.py`` file of ``roots``) through the modules they import from
    ``roots``. ``requirements``: our runtime's (default
    :func:`.packaging.runtime_requirements`). The standard library and our own package are
    not dependencies; a source package found on ``sys.path`` outside site-packages
    (``examples`` beside a DAG folder) goes to :attr:`Resolution.local_roots` (the zip must
    carry it) and its imported modules are followed too; a name nothing provides goes to
    :attr:`Resolution.unresolved` (code may guard an optional import: not an error).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    from wisefuse_plugins.runtime.packaging import runtime_requirements, source_files

    env = _marker_env(runtime, arch or host_arch())
    reqs = list(runtime_requirements() if requirements is None else requirements)
    mapping = md.packages_distributions()
    ours = {"wisefuse_plugins", "wisefuse_code", "wisefuse_units", "__future__"}
    search: list[tuple[Path, str | None]] = [(Path(r).resolve(), None) for r in roots]
    res = Resolution(pins={})
    queue: list[tuple[Requirement, str]] = []
    for text in reqs:
        try:
            queue.append((Requirement(text), "wisefuse runtime"))
        except InvalidRequirement as err:
            raise LayerError(f"invalid requirement {text!r}: {err}") from None
    runtime_roots = {canonical(r.name) for r, _ in queue}
    if entries is None:
        todo = [
            p for root, _ in search for p in source_files(root)[0].values() if p.suffix == ".py"
        ]
    else:
        todo = [Path(e).resolve() for e in entries]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        names, relative = imported_names(path)
        todo.extend(relative)
        for dotted, places in sorted(names.items()):
            top = dotted.split(".")[0]
            if top in ours or top in sys.stdlib_module_names:
                continue
            found = _module_files(dotted, search)
            if found is not None:
                todo.extend(found)
                continue
            dists = _dists_for_module(dotted, mapping)
            if dists:
                queue.extend((Requirement(canonical(d)), f"imported at {places[0]}") for d in dists)
                continue
            folder = _local_root(top, [r for r, _ in search])
            if folder is not None:
                res.local_roots.append(folder)
                search.append((folder.parent, top))
                todo.extend(_module_files(dotted, search) or [])
                continue
            where = res.unresolved.setdefault(top, [])
            where.extend(p for p in places if p not in where)
    # what the runtime's own requirements reach keeps the SDK in the layer (see above)
    runtime_closure = _closure(
        [(r, w) for r, w in queue if canonical(r.name) in runtime_roots], env, Resolution({})
    ).pins.keys()
    res.pins = _closure(queue, env, res, exclude_from=set(runtime_closure)).pins
    return res


def _module_files(dotted: str, search: Sequence[tuple[Path, str | None]]) -> list[Path] | None:
    """The source files importing ``dotted`` runs from the searched folders (its packages'
    ``__init__.py`` and the module itself), or None if its top-level name is not there."""
    parts = dotted.split(".")
    for folder, only in search:
        if only is not None and parts[0] != only:
            continue
        if not ((folder / parts[0]).is_dir() or (folder / f"{parts[0]}.py").is_file()):
            continue
        files = []
        for i in range(1, len(parts) + 1):
            base = folder.joinpath(*parts[:i])
            for candidate in (base / "__init__.py", base.with_suffix(".py")):
                if candidate.is_file():
                    files.append(candidate.resolve())
        return files
    return None


def _marker_env(runtime: str, arch: str) -> dict[str, str]:
    version = runtime.removeprefix("python")
    return {
        "python_version": version,
        "python_full_version": f"{version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": MACHINES.get(arch, arch),
        "extra": "",
    }


def _closure(
    queue: list[tuple[Any, str]],
    env: dict[str, str],
    res: Resolution,
    exclude_from: set[str] | None = None,
) -> Resolution:
    """Walk requirements and their installed dependencies; ``res`` collects pins/exclusions."""
    keep = exclude_from or set()
    todo = list(queue)
    while todo:
        req, why = todo.pop(0)
        name = canonical(req.name)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if name in res.pins or name in res.excluded:
            continue
        reason = _excluded(name, keep) if exclude_from is not None else None
        if reason:
            res.excluded[name] = reason
            continue
        dist = _distribution(name)
        version = dist.version if dist is not None else None
        if version is not None and req.specifier and not req.specifier.contains(version, True):
            raise LayerError(
                f"{name} {version} is installed, but {why} requires {req}",
                hint=f"install a matching version: pip install '{req}'",
            )
        res.pins[name] = Pin(name, version, why)
        if dist is None:
            continue
        from packaging.requirements import Requirement

        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is not None and not dep.marker.evaluate(env):
                continue  # includes every ``extra == ...`` dependency: extras are not asked for
            todo.append((dep, f"{name} {version}"))
    return res


# --- building ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A built layer zip and what is in it."""

    path: Path
    arch: str
    runtime: str
    key: str
    method: str  # "host" or "pip"
    zipped_bytes: int
    unzipped_bytes: int
    sizes: dict[str, int]  # distribution -> unzipped bytes

    def largest(self, n: int = 3) -> str:
        top = sorted(self.sizes.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {size / 2**20:.1f} MB" for name, size in top)


def layer_key(res: Resolution, arch: str, runtime: str, method: str) -> str:
    text = json.dumps([_FORMAT, method, arch, runtime, res.requirements()])
    if method == "host":
        text += sys.version  # copied files belong to this interpreter's build
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_dir() -> Path:
    from wisefuse_plugins.runtime.store import wisefuse_home

    return wisefuse_home() / "layers"


def build_layer(
    res: Resolution,
    arch: str | None = None,
    *,
    runtime: str = "python3.11",
    method: Method = "auto",
    cache: Path | None = None,
) -> Layer:
    """The layer zip for ``arch`` (default: this machine's), from the cache if built before."""
    arch = arch or host_arch()
    if arch not in MACHINES:
        raise LayerError(f"unknown architecture {arch!r}", hint="use x86_64 or arm64")
    unfit: list[str] = []
    if method == "auto":
        unfit = host_mismatches(res, arch, runtime) if arch == host_arch() else ["other arch"]
        method = "pip" if unfit else "host"
    elif method == "host":
        if arch != host_arch():
            raise LayerError(
                f"cannot copy this machine's {host_arch()} packages into an {arch} layer",
                hint="build it with method='pip' (downloads the wheels for that architecture)",
            )
        missing = sorted(p.name for p in res.pins.values() if p.version is None)
        if missing:
            raise LayerError(
                f"cannot copy {', '.join(missing)} into the layer: not installed here",
                hint=f"pip install {' '.join(missing)}, or build with method='pip'",
            )
    folder = Path(cache) if cache is not None else cache_dir()
    key = layer_key(res, arch, runtime, method)
    path = folder / f"layer-{arch}-{key}.zip"
    manifest = path.with_suffix(".json")
    if path.exists() and manifest.exists():
        meta = json.loads(manifest.read_text())
        return Layer(path, arch, runtime, key, method, path.stat().st_size, **meta)
    folder.mkdir(parents=True, exist_ok=True)
    if method == "host":
        entries, sizes = _host_files(res)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="wisefuse-layer-", dir=folder))
        try:
            entries, sizes = _pip_files(res, arch, runtime, tmp, unfit)
            return _write(path, manifest, entries, sizes, arch, runtime, key, method)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _write(path, manifest, entries, sizes, arch, runtime, key, method)


def _write(
    path: Path,
    manifest: Path,
    entries: Mapping[str, Path],
    sizes: dict[str, int],
    arch: str,
    runtime: str,
    key: str,
    method: str,
) -> Layer:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    write_zip(tmp, entries)
    unzipped = sum(sizes.values())
    manifest.write_text(json.dumps({"unzipped_bytes": unzipped, "sizes": sizes}))
    tmp.replace(path)
    return Layer(path, arch, runtime, key, method, path.stat().st_size, unzipped, sizes)


def write_zip(path: Path, entries: Mapping[str, Path]) -> None:
    """A deterministic zip of files (name -> path): sorted, fixed times, 644/755 modes."""
    from wisefuse_plugins.runtime.packaging import ZIP_EPOCH

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            src = entries[name]
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(src, "rb") as f_in, zf.open(info, "w") as f_out:
                shutil.copyfileobj(f_in, f_out, 1024 * 1024)


def _host_files(res: Resolution) -> tuple[dict[str, Path], dict[str, int]]:
    """The installed files of every pinned distribution, under ``python/`` (from RECORD)."""
    entries: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for pin in sorted(res.pins.values(), key=lambda p: p.name):
        dist = _distribution(pin.name)
        assert dist is not None
        total = 0
        base = Path(str(dist.locate_file(""))).resolve()
        for f in dist.files or []:
            rel = Path(str(f))
            if ".." in rel.parts or rel.is_absolute() or rel.suffix in _SKIP_SUFFIXES:
                continue  # scripts in bin/, data outside site-packages, compiled caches
            src = base / rel
            if not src.is_file():
                continue
            entries[f"{LAYER_ROOT}/{rel.as_posix()}"] = src
            total += src.stat().st_size
        sizes[pin.name] = total
    return entries, sizes


def target_platforms(arch: str, runtime: str) -> list[str]:
    """Wheel platform tags that run on ``runtime`` for ``arch`` (manylinux up to its glibc)."""
    machine = MACHINES[arch]
    glibc = RUNTIME_GLIBC.get(runtime, 26)
    return [f"manylinux2014_{machine}"] + [
        f"manylinux_2_{minor}_{machine}" for minor in range(17, glibc + 1)
    ]


def host_mismatches(res: Resolution, arch: str, runtime: str) -> list[str]:
    """Pinned distributions whose installed files would not run on ``runtime``/``arch``
    (wrong architecture, Python or glibc; or not installed): empty means copy them."""
    from packaging.tags import compatible_tags, cpython_tags

    version = tuple(int(x) for x in runtime.removeprefix("python").split("."))
    plats = target_platforms(arch, runtime)
    if arch == "x86_64":
        plats += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    ok = {str(t) for t in cpython_tags(version, platforms=plats)}
    ok |= {str(t) for t in compatible_tags(version, f"cp{version[0]}{version[1]}", plats)}
    bad = []
    for pin in res.pins.values():
        dist = _distribution(pin.name)
        if dist is None:
            bad.append(f"{pin.name} (not installed)")
            continue
        wheel = dist.read_text("WHEEL") or ""
        tags = [
            line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")
        ]
        if tags:
            if not any(t in ok for t in tags):
                bad.append(f"{pin.name} {pin.version} ({', '.join(tags)})")
        elif any(str(f).endswith(".so") for f in dist.files or []):
            bad.append(f"{pin.name} {pin.version} (compiled, no wheel tags)")
    return sorted(bad)


def installer() -> list[str]:
    """The command that installs wheels: this Python's pip, else uv's, else pip on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    if shutil.which("uv"):
        return [shutil.which("uv") or "uv", "pip"]
    if shutil.which("pip"):
        return [shutil.which("pip") or "pip"]
    raise LayerError(
        "building a layer for another platform needs pip or uv, and neither is installed",
        hint="pip install pip (or uv), or build on a machine of the target architecture",
    )


def pip_command(res: Resolution, arch: str, runtime: str, target: Path) -> list[str]:
    """``pip install`` of the pinned wheels for Lambda's ``arch`` and Python into ``target``."""
    tool = installer()
    version = runtime.removeprefix("python")
    reqs = res.requirements()
    if tool[-1] == "pip" and tool[0].endswith("uv"):
        # uv knows a fixed list of manylinux levels: the highest the runtime's glibc runs
        glibc = RUNTIME_GLIBC.get(runtime, 26)
        level = max(m for m in (17, 28, *range(31, 41)) if m <= max(glibc, 17))
        plat = f"{MACHINES[arch]}-manylinux_2_{level}"
        return [*tool, "install", "--quiet", "--target", str(target), "--python-platform", plat,
                "--python-version", version, "--only-binary", ":all:", "--no-deps", *reqs]  # fmt: skip
    plats = [a for p in target_platforms(arch, runtime) for a in ("--platform", p)]
    return [*tool, "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(target), *plats, "--implementation", "cp",
            "--python-version", version, "--only-binary=:all:", "--no-deps", *reqs]  # fmt: skip


def _pip_files(
    res: Resolution, arch: str, runtime: str, tmp: Path, unfit: Sequence[str] = ()
) -> tuple[dict[str, Path], dict[str, int]]:
    target = tmp / LAYER_ROOT
    cmd = pip_command(res, arch, runtime, target)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        first = next(
            (i for i, ln in enumerate(detail) if "error" in ln.lower()), max(len(detail) - 3, 0)
        )
        errors = [ln.strip() for ln in detail[first : first + 4]]
        glibc = RUNTIME_GLIBC.get(runtime, 26)
        installed = [u for u in unfit if u != "other arch"]
        why = f"; installed here but not for Lambda: {'; '.join(installed)}" if installed else ""
        raise LayerError(
            f"could not download the {arch} wheels for {runtime} (glibc 2.{glibc}): "
            + " ".join(errors)[-800:]
            + why,
            hint="a package with no wheel for Lambda's platform needs another version "
            "(pip install 'name<version' in your environment), or another runtime",
        )
    entries: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    owner: dict[str, str] = {}
    for info in target.glob("*.dist-info"):
        name = canonical(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for line in (
            (info / "RECORD").read_text().splitlines() if (info / "RECORD").exists() else []
        ):
            owner[line.split(",")[0]] = name
    for path in sorted(target.rglob("*")):
        if not path.is_file() or path.suffix in _SKIP_SUFFIXES or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(target).as_posix()
        if rel.startswith("bin/"):
            continue
        entries[f"{LAYER_ROOT}/{rel}"] = path
        key = owner.get(rel, "other")
        sizes[key] = sizes.get(key, 0) + path.stat().st_size
    return entries, sizes


def runtime_sdk_links(folder: Path) -> Path:
    """A folder of links to this host's copy of what the Lambda runtime ships (boto3 and
    its dependencies, :data:`LAMBDA_SDK`): an isolated local function's /var/runtime.

    Links, not copies: made in milliseconds, once per set of installed versions.
    """
    found = sorted(
        (d.metadata["Name"], d.version, d)
        for d in (_distribution(n) for n in LAMBDA_SDK)
        if d is not None
    )
    tag = hashlib.sha256(repr([(n, v) for n, v, _ in found]).encode()).hexdigest()[:12]
    target = folder / f"sdk-{tag}"
    if target.is_dir():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sdk-", dir=folder))
    for _, _, dist in found:
        base = Path(str(dist.locate_file(""))).resolve()
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            link = tmp / top
            if (base / top).exists() and not link.exists():
                link.symlink_to(base / top)
    try:
        tmp.rename(target)
    except OSError:  # another service made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
