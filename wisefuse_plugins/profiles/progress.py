"""The profiler's progress bar (Rich), or nothing."""

from __future__ import annotations

from typing import Any


class Progress:
    """A Rich progress bar, or nothing (tests, ``progress=False``)."""

    def __init__(self, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def status(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=0, description="profiling")

    def describe(self, text: str) -> None:
        self.status(text)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
