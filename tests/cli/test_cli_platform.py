"""Planning without a calibrated platform is allowed, but said on stderr with the fix."""

from __future__ import annotations

from wisefuse_plugins.cli import planning
from wisefuse_plugins.model.profile import Platform


class _Archive:
    def __init__(self, platform: Platform | None) -> None:
        self.platform = platform

    def load_platform(self, name: str = "local") -> Platform | None:
        return self.platform


def test_uncalibrated_backend_warns_and_names_the_command(capsys) -> None:
    platform = planning._platform(_Archive(None), "local")
    assert platform == Platform()
    err = " ".join(capsys.readouterr().err.split())
    assert "local backend was never calibrated" in err
    assert "default platform constants" in err
    assert "wisefuse profile TARGET --backend local --calibrate" in err


def test_calibrated_backend_is_silent(capsys) -> None:
    measured = Platform()
    assert planning._platform(_Archive(measured), "local") is measured
    assert capsys.readouterr().err == ""
