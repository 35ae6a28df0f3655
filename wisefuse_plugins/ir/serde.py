"""Versioned JSON for the IR (and, through :func:`load_document`, for plans).

A document is an envelope ``{"format": ..., "version": N, <payload key>: {...}}``. Loading
never raises anything but :class:`IRError`, whose problems name the JSON path and the
reason: not JSON, the wrong format or version, a missing or mistyped field, a graph rule.
Round trips are lossless: ``from_json(to_json(wf)) == wf``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from wisefuse_plugins.ir.errors import IRError
from wisefuse_plugins.ir.workflow import Workflow

IR_FORMAT = "wisefuse-ir"
_KINDS = {IR_FORMAT: "an IR file", "wisefuse-plan": "a plan file"}  # for hints
IR_VERSION = 1

M = TypeVar("M", bound=BaseModel)

_BINDING_TAGS = {"const", "const_item", "output", "item", "collect"}


def _json_path(loc: tuple[Any, ...], root: str) -> str:
    out = root
    parts = list(loc)
    for k, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _BINDING_TAGS and k >= 2 and parts[k - 2] == "bindings":
            continue  # pydantic adds the union tag to the location; users never wrote it
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _pydantic_problems(err: ValidationError, root: str) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors(include_url=False):
        reason = e["msg"]
        if e["type"] == "missing":
            reason = "required field is missing"
        elif e["type"] == "extra_forbidden":
            reason = "unknown field"
        problems.append((_json_path(tuple(e["loc"]), root), reason))
    return problems


def dump_document(fmt: str, version: int, key: str, model: BaseModel) -> str:
    """Serialise ``model`` inside a versioned envelope, as stable, readable JSON."""
    payload = model.model_dump(mode="json", exclude_defaults=False)
    return json.dumps({"format": fmt, "version": version, key: payload}, indent=2) + "\n"


def load_document(
    text: str | bytes, fmt: str, versions: set[int], key: str, model: type[M], what: str
) -> M:
    """Parse and validate an envelope written by :func:`dump_document`."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise IRError(
            [("$", f"not valid JSON ({err})")],
            what=what,
            hint="is the file complete? re-create it with wisefuse",
        ) from None
    if not isinstance(doc, dict):
        raise IRError([("$", f"expected a JSON object, got {type(doc).__name__}")], what=what)
    if doc.get("format") != fmt:
        got = doc.get("format")
        expected = _KINDS.get(fmt, f"a {fmt!r} document")
        raise IRError(
            [("$.format", f"expected {fmt!r}, got {got!r}")],
            what=what,
            hint=f"this is {_KINDS[got]}, not {expected}: check which file goes where"
            if isinstance(got, str) and got in _KINDS
            else f"pass {expected} written by wisefuse",
        )
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
        raise IRError(
            [
                (
                    "$.version",
                    f"unsupported version {version!r} (this release reads {sorted(versions)})",
                )
            ],
            what=what,
            hint="upgrade wisefuse-plugins or re-create the file with this release",
        )
    if key not in doc:
        raise IRError([(f"$.{key}", "required field is missing")], what=what)
    unknown = set(doc) - {"format", "version", key}
    if unknown:
        raise IRError([(f"$.{sorted(unknown)[0]}", "unknown field")], what=what)
    try:
        return model.model_validate(doc[key])
    except ValidationError as err:
        raise IRError(_pydantic_problems(err, f"$.{key}"), what=what) from None
    except IRError as err:
        raise IRError(err.prefixed(f"$.{key}").problems, what=what, hint=err.hint) from None
    except RecursionError:
        raise IRError([(f"$.{key}", "nested too deeply")], what=what) from None


def to_json(workflow: Workflow) -> str:
    """The workflow as a versioned JSON document."""
    return dump_document(IR_FORMAT, IR_VERSION, "workflow", workflow)


def from_json(text: str | bytes, *, what: str = "IR") -> Workflow:
    """Parse a document written by :func:`to_json`; raises :class:`IRError` on any problem."""
    return load_document(text, IR_FORMAT, {IR_VERSION}, "workflow", Workflow, what)


def dump(workflow: Workflow, path: str | Path) -> Path:
    """Write the workflow to ``path`` (atomically: a reader never sees half a file)."""
    return write_atomic(Path(path), to_json(workflow))


def load(path: str | Path) -> Workflow:
    """Read a workflow file; a missing or unreadable file is an :class:`IRError` too."""
    what = f"IR file {str(path)!r}"
    return from_json(read_text(Path(path), what), what=what)


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IRError([("$", "the file does not exist")], what=what) from None
    except (OSError, UnicodeDecodeError) as err:
        raise IRError([("$", f"cannot read it: {err}")], what=what) from None


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file of this call's own (concurrent
    writers of the same path do not collide; a failed write leaves no file behind).

    A missing parent folder is created: ``--out $WISEFUSE_HOME/plans/x.plan.json`` must not
    fail, after the work that produced ``text``, because ``plans/`` was never made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
