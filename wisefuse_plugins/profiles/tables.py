"""The archive's tables (SQLAlchemy Core), and the schema version they make.

``samples`` holds one row per measured stage instance, keyed by (workflow, stage,
code_hash, memory_mb, arch, bundle_size, backend); ``failures`` the settings that could not
run; ``corrections`` unit factors measured by a plan's runs; ``platforms`` calibrated
constants; ``meta`` the schema version. See ``docs/profiles.md``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

#: Bumped on every incompatible change of the tables; an archive with a newer version is
#: refused rather than misread.
SCHEMA_VERSION = 1

metadata = MetaData()

samples_table = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(256), nullable=False),
    Column("stage", String(256), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("arch", String(16), nullable=False),
    Column("bundle_size", Integer, nullable=False),
    Column("backend", String(32), nullable=False),
    Column("instance", Integer, nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("init_ms", Float, nullable=True),
    Column("cold", Boolean, nullable=False),
    Column("input_bytes", BigInteger, nullable=True),
    Column("output_bytes", BigInteger, nullable=True),
    Column("peak_memory_mb", Float, nullable=True),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),
    Column("ref", String(512), nullable=True),
    Index(
        "ix_samples_key",
        "workflow",
        "stage",
        "code_hash",
        "backend",
        "arch",
        "memory_mb",
        "bundle_size",
    ),
    Index("ux_samples_ref", "ref", unique=True),
)

failures_table = Table(
    "failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(256), nullable=False),
    Column("stage", String(256), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("arch", String(16), nullable=False),
    Column("bundle_size", Integer, nullable=False),
    Column("backend", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Index("ix_failures_key", "workflow", "stage", "code_hash", "backend", "arch"),
)

platforms_table = Table(
    "platforms",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("measured_at", DateTime(timezone=True), nullable=False),
)

corrections_table = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(256), nullable=False),
    Column("backend", String(32), nullable=False),
    Column("stages", Text, nullable=False),  # JSON list of stage ids, in the unit's order
    Column("code_hashes", Text, nullable=False),  # JSON list, the stages' code when measured
    Column("bundle_size", Integer, nullable=False),
    Column("arch", String(16), nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("factor", Float, nullable=False),
    # the newest sample of the workflow then: a stage sampled since has new profiles, and a
    # factor relative to the old ones says nothing of them
    Column("last_sample", Integer, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Index("ix_corrections_key", "workflow", "backend"),
)

meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
