"""Profiles: the archive of measured samples, the profiler, calibration and importers.

Every name loads its module on first use: the archive pulls in SQLAlchemy, the profiler
the runtime, the importers Airflow or Prefect, and :mod:`.coldstart` (the profiler's
Lambda handler) must stay cheap to import, because a cold start pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wisefuse_plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from wisefuse_plugins.profiles.archive import Archive, Stats, open_archive, profiles_for
    from wisefuse_plugins.profiles.calibrate import calibrate_local, load_platform
    from wisefuse_plugins.profiles.connection import ENV_DB_URL, ArchiveError, default_url
    from wisefuse_plugins.profiles.importers import (
        HistoryError,
        ImportResult,
        ReportLine,
        import_airflow,
        import_lambda_reports,
        import_prefect,
        parse_report,
        parse_reports,
    )
    from wisefuse_plugins.profiles.profiler import (
        Failure,
        ProfileBench,
        ProfileGrid,
        ProfilerError,
        ProfileSummary,
        Setting,
        profile_workflow,
    )
    from wisefuse_plugins.profiles.records import SOURCES, FailureRecord, Sample
    from wisefuse_plugins.profiles.tables import SCHEMA_VERSION

_LAZY = {
    "ENV_DB_URL": "connection",
    "SCHEMA_VERSION": "tables",
    "SOURCES": "records",
    "Archive": "archive",
    "ArchiveError": "connection",
    "FailureRecord": "records",
    "Sample": "records",
    "Stats": "archive",
    "default_url": "connection",
    "open_archive": "archive",
    "profiles_for": "archive",
    "profile_workflow": "profiler",
    "ProfileGrid": "profiler",
    "ProfileBench": "profiler",
    "ProfileSummary": "profiler",
    "ProfilerError": "profiler",
    "Setting": "profiler",
    "Failure": "profiler",
    "calibrate_local": "calibrate",
    "load_platform": "calibrate",
    "ReportLine": "importers",
    "parse_report": "importers",
    "parse_reports": "importers",
    "import_lambda_reports": "importers",
    "import_airflow": "importers",
    "import_prefect": "importers",
    "ImportResult": "importers",
    "HistoryError": "importers",
}

__all__ = [
    "ENV_DB_URL",
    "SCHEMA_VERSION",
    "SOURCES",
    "Archive",
    "ArchiveError",
    "Failure",
    "FailureRecord",
    "HistoryError",
    "ImportResult",
    "ProfileBench",
    "ProfileGrid",
    "ProfileSummary",
    "ProfilerError",
    "ReportLine",
    "Sample",
    "Setting",
    "Stats",
    "calibrate_local",
    "default_url",
    "import_airflow",
    "import_lambda_reports",
    "import_prefect",
    "load_platform",
    "open_archive",
    "parse_report",
    "parse_reports",
    "profile_workflow",
    "profiles_for",
]


__getattr__, __dir__ = lazy_exports(__name__, {n: f".{m}" for n, m in _LAZY.items()})
