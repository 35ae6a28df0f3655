"""The one error type of the IR and plan loaders and validators."""

from __future__ import annotations

from wisefuse_plugins.errors import WiseFuseError


class IRError(WiseFuseError):
    """An IR or plan that is malformed or inconsistent.

    ``problems`` lists every ``(path, reason)`` found, path in JSONPath style
    (``$.workflow.stages[2].bindings.x``); the message shows the first few.
    """

    def __init__(
        self,
        problems: list[tuple[str, str]],
        *,
        what: str = "workflow",
        hint: str | None = None,
    ) -> None:
        self.problems = problems
        self.what = what
        shown = "; ".join(f"{p}: {r}" for p, r in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"invalid {what}: {shown}{more}", hint=hint)

    @property
    def path(self) -> str:
        return self.problems[0][0]

    @property
    def reason(self) -> str:
        return self.problems[0][1]

    def prefixed(self, prefix: str) -> IRError:
        """The same problems with paths rooted at ``prefix`` (e.g. ``$.workflow``)."""
        fixed = [(prefix + p[1:] if p.startswith("$") else p, r) for p, r in self.problems]
        return IRError(fixed, what=self.what, hint=self.hint)
