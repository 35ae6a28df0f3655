"""The error types users see.

Every error we raise on purpose derives from :class:`WiseFuseError`: it names the thing,
the reason and, where we know one, the fix (``hint``). The CLI prints ``str(error)`` and
the hint on one line each and exits with code 2; ``--debug`` adds the traceback. Outside
the CLI (Airflow task logs, Prefect flow runs, your own code) the hint is a note of the
exception: a traceback ends with the ``Error: message`` line and a ``hint: ...`` line
(``str(error)`` stays the message alone). docs/troubleshooting.md lists the messages.
"""

from __future__ import annotations


class WiseFuseError(Exception):
    """Base class of the errors this package raises deliberately."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if hint:  # shown under the message in tracebacks and logged exceptions
            self.add_note(f"hint: {hint}")


class MissingExtraError(WiseFuseError):
    """An optional dependency is needed for this feature but is not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed",
            hint=f"pip install 'wisefuse-plugins[{extra}]'",
        )
        self.package = package
        self.extra = extra
