"""Deployment zips for Lambda: our runtime, the user's source files and one unit spec.

A zip holds::

    wisefuse_plugins/...              the runtime (the handler is wisefuse_plugins.runtime.handler.handler)
    wisefuse_code/...                 the user's code root (WISEFUSE_CODE_ROOT), *.py and small data files
    <extra root>/...                  extra importable folders (e.g. ``examples`` for ``import examples.apps``)
    wisefuse_units/<unit>.unit.json   the unit spec (WISEFUSE_UNIT_SPEC)

The zip is deterministic (sorted entries, fixed timestamps and permissions), so its
SHA-256 is Lambda's ``CodeSha256`` of the same content and a redeploy with unchanged code
is detected and skipped. Third-party dependencies are not in the zip: they go into one
dependency layer per architecture, resolved from what the code imports
(:mod:`.layers`); :func:`.artifacts.package_plan` builds both for a plan
(``wisefuse package``).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import wisefuse_plugins
from wisefuse_plugins.errors import WiseFuseError

RUNTIME = "python3.11"
HANDLER = "wisefuse_plugins.runtime.handler.handler"
TASK_ROOT = "/var/task"
CODE_DIR = "wisefuse_code"
UNITS_DIR = "wisefuse_units"

#: Lambda's limits for a .zip deployment package uploaded directly (ZipFile).
MAX_ZIPPED_BYTES = 50 * 1024 * 1024
#: Unzipped size of the function and all its layers together.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
#: Non-Python files larger than this stay out of the zip (data belongs in the store or S3).
MAX_DATA_FILE_BYTES = 1024 * 1024

SKIP_DIRS = frozenset(
    {
        ".venv",
        "venv",
        "env",
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        "tests",
        "test",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "build",
        "dist",
    }
)
#: Test modules, compiled files and things that look like secrets never go into a zip.
SKIP_FILES = (
    "test_*.py",
    "*_test.py",
    "conftest.py",
    "*.pyc",
    "*.pyo",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.env",
    "credentials",
    "credentials.*",
)

#: The fixed timestamp of every entry (the earliest a zip can record).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackageTooLarge(WiseFuseError):
    """The deployment zip exceeds what Lambda accepts."""


@dataclass(frozen=True)
class Package:
    """A built zip and what went into it."""

    data: bytes
    files: tuple[str, ...]
    unzipped_bytes: int
    skipped: tuple[str, ...] = field(default=())

    @property
    def sha256(self) -> str:
        """Base64 SHA-256 of the zip: what Lambda reports as ``CodeSha256``."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")


def spec_task_path(unit_id: str) -> str:
    """Where a unit's spec lands in the function (``WISEFUSE_UNIT_SPEC``)."""
    return f"{TASK_ROOT}/{UNITS_DIR}/{unit_id}.unit.json"


def code_task_root() -> str:
    """Where the user's code root lands in the function (``WISEFUSE_CODE_ROOT``)."""
    return f"{TASK_ROOT}/{CODE_DIR}"


def runtime_requirements() -> list[str]:
    """What the handler imports beyond the standard library: build these into a layer.

    boto3 is listed although the Lambda runtime ships one, because the store's
    conditional PUT (``IfNoneMatch``) needs botocore 1.35 or later.
    """
    return ["pydantic>=2.7,<3", "networkx>=3.2", "boto3>=1.35"]


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in SKIP_FILES)


def source_files(
    root: Path, *, max_data_bytes: int = MAX_DATA_FILE_BYTES
) -> tuple[dict[str, Path], list[str]]:
    """The files of ``root`` worth shipping (relative POSIX name -> path), and those left out.

    ``*.py`` files always; other files up to ``max_data_bytes``; never virtualenvs,
    caches, VCS folders, tests, hidden files or key/credential files.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise WiseFuseError(
            f"code root {str(root)!r} is not a directory",
            hint="pass the DAG folder / flow root that the IR's callable paths are relative to",
        )
    chosen: dict[str, Path] = {}
    skipped: list[str] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            rel = entry.relative_to(root).as_posix()
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                skipped.append(rel)  # a link out of the code root: never follow it
            elif entry.is_dir():
                if (
                    entry.name in SKIP_DIRS
                    or entry.name.startswith(".")
                    or entry.name.endswith(".egg-info")
                ):
                    continue
                walk(entry)
            elif entry.is_file():
                if _skipped_name(entry.name):
                    continue
                if entry.suffix != ".py" and entry.stat().st_size > max_data_bytes:
                    skipped.append(rel)
                    continue
                chosen[rel] = entry

    walk(root)
    return chosen, skipped


def runtime_root() -> Path:
    """The ``wisefuse_plugins`` package folder that goes into every zip (this installation)."""
    return Path(wisefuse_plugins.__file__).resolve().parent


def _runtime_files() -> dict[str, Path]:
    pkg = runtime_root()
    files = {}
    for path in sorted(pkg.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        files[f"wisefuse_plugins/{path.relative_to(pkg).as_posix()}"] = path
    return files


def build_zip(entries: Mapping[str, bytes]) -> bytes:
    """A zip of ``entries`` (name -> content), byte-for-byte the same for the same input."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # unix, so the permission bits below are honoured
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name], compresslevel=6)
    return buf.getvalue()


@dataclass
class Packager:
    """Builds one zip per unit; the shared files are read once.

    ``extra_roots``: folders added at the top of the zip under their own names, so code
    that imports a package living beside the code root (``import examples.apps``) works.
    """

    code_root: Path
    extra_roots: tuple[Path, ...] = ()
    max_data_bytes: int = MAX_DATA_FILE_BYTES
    _shared: dict[str, bytes] | None = None
    skipped: list[str] = field(default_factory=list)

    def shared(self) -> dict[str, bytes]:
        if self._shared is None:
            entries = {name: p.read_bytes() for name, p in _runtime_files().items()}
            files, skipped = source_files(self.code_root, max_data_bytes=self.max_data_bytes)
            entries.update({f"{CODE_DIR}/{n}": p.read_bytes() for n, p in files.items()})
            self.skipped.extend(f"{CODE_DIR}/{s}" for s in skipped)
            for extra in self.extra_roots:
                extra = Path(extra).resolve()
                if extra.name in {"wisefuse_plugins", CODE_DIR, UNITS_DIR}:
                    raise WiseFuseError(f"extra root {str(extra)!r} would shadow {extra.name}/")
                files, skipped = source_files(extra, max_data_bytes=self.max_data_bytes)
                entries.update({f"{extra.name}/{n}": p.read_bytes() for n, p in files.items()})
                self.skipped.extend(f"{extra.name}/{s}" for s in skipped)
            self._shared = entries
        return self._shared

    def build(
        self, specs: Mapping[str, bytes], *, layer_bytes: int = 0, largest: str = ""
    ) -> Package:
        """The zip for units whose specs (unit id -> spec JSON) it carries; size-checked."""
        entries = dict(self.shared())
        entries.update({f"{UNITS_DIR}/{u}.unit.json": data for u, data in specs.items()})
        return check_size(
            Package(
                data=build_zip(entries),
                files=tuple(sorted(entries)),
                unzipped_bytes=sum(len(v) for v in entries.values()),
                skipped=tuple(self.skipped),
            ),
            layer_bytes=layer_bytes,
            largest=largest,
        )


def check_size(package: Package, *, layer_bytes: int = 0, largest: str = "") -> Package:
    """Raise :class:`PackageTooLarge` beyond Lambda's 50 MB zipped / 250 MB unzipped limits
    (``largest``: the layers' largest packages, named in the error)."""
    mb = 1024 * 1024
    if len(package.data) > MAX_ZIPPED_BYTES:
        raise PackageTooLarge(
            f"the deployment zip is {len(package.data) / mb:.1f} MB zipped; Lambda accepts at most "
            f"{MAX_ZIPPED_BYTES // mb} MB for a direct upload",
            hint="move dependencies and large files out of the code root (into a layer, or the store), "
            "or deploy a container image (docs/aws.md)",
        )
    total = package.unzipped_bytes + layer_bytes
    if total > MAX_UNZIPPED_BYTES:
        raise PackageTooLarge(
            f"the function unzips to {total / mb:.1f} MB (code {package.unzipped_bytes / mb:.1f} MB"
            f" + layers {layer_bytes / mb:.1f} MB); Lambda allows {MAX_UNZIPPED_BYTES // mb} MB"
            + (f"; largest packages: {largest}" if largest else ""),
            hint="import less in the units' code (each import of a package puts it and its "
            "dependencies in the layer), or deploy a container image (up to 10 GB; docs/aws.md)",
        )
    return package


def zip_names(data: bytes) -> list[str]:
    """Entry names of a zip, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()
