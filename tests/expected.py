"""Input/expected pairs kept as files: compare with the expected file, or rewrite it.

``WISEFUSE_UPDATE_EXPECTED=1`` rewrites an expected file that differs and fails the
test, so that the change is reviewed (``git diff``) and the test run again before
anything passes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

UPDATE = os.environ.get("WISEFUSE_UPDATE_EXPECTED") == "1"


def check_expected(got: Any, path: Path, what: str, *, sort_keys: bool = False) -> None:
    """``got`` equals the JSON in ``path`` (``what``: what it is the expected form of)."""
    if UPDATE:
        text = json.dumps(got, indent=2, sort_keys=sort_keys) + "\n"
        changed = not path.exists() or path.read_text() != text
        if changed:
            path.write_text(text)
        pytest.fail(f"{'rewrote' if changed else 'kept'} {path.name}: review it, then run again")
    assert path.exists(), f"no expected IR for {what}: run with WISEFUSE_UPDATE_EXPECTED=1"
    assert got == json.loads(path.read_text())
