"""Names that AWS accepts: stage and unit ids double as Lambda function names.

Lambda function names are 1-64 characters of ``[A-Za-z0-9_-]``. Framework ids are not
(Airflow task groups put dots in ids, Prefect task names have spaces), so adapters derive
safe ids with :func:`safe_name` and keep the original as ``Stage.name``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_NAME_LENGTH = 64
_VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def is_safe_name(name: str) -> bool:
    """True when ``name`` is usable as a Lambda function name as it is."""
    return bool(_VALID.fullmatch(name))  # not match: "$" would accept a trailing newline


def safe_name(raw: str, taken: Iterable[str] = (), max_length: int = MAX_NAME_LENGTH) -> str:
    """Derive a Lambda-safe name from any string, distinct from every name in ``taken``.

    Invalid characters become ``-``; a name that is too long keeps its head and gets a
    short hash of the whole raw name, so two long names that share a prefix stay apart.
    Never raises.

    Examples
    --------
    >>> safe_name("etl.extract data")
    'etl-extract-data'
    >>> safe_name("a", taken={"a"})
    'a-2'
    """
    taken = set(taken)
    base = _INVALID_RUN.sub("-", raw).strip("-") or "stage"
    if len(base) > max_length:
        digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        base = f"{base[: max_length - 9].rstrip('-')}-{digest}"
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"-{n}"
        name = base[: max_length - len(suffix)] + suffix
    return name
