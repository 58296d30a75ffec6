"""The service's state in SQLAlchemy 2: datasets, runs, jobs, studies, predictions, reads, sessions and an
audit log. SQLite at ``DATA_DIR/medlens.db`` by default; any SQLAlchemy URL (``postgresql+psycopg://...``)
works unchanged. The schema is created and upgraded by Alembic (``serving/migrations``) at start-up.

Files never live in the database: rows hold server-chosen paths under the data folder, and a user's own
file name is kept only as text (``original_name``) to show back.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, TypeDecorator, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
JOB_KINDS = ("audit", "train", "evaluate", "calibrate", "triage")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A time zone-aware timestamp on every backend (SQLite keeps none: its values are read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # shown only; never a path
    path: Mapped[str] = mapped_column(Text)  # server-chosen folder under DATA_DIR, or a registered folder
    source: Mapped[str] = mapped_column(String(20))  # "upload" | "path"
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    audit_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)  # folder name under DATA_DIR/runs
    path: Mapped[str] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(String(40), nullable=True)
    model: Mapped[str | None] = mapped_column(String(80), nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)  # worker process while running
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    started: Mapped[datetime | None] = mapped_column(nullable=True)
    finished: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(nullable=True)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    path: Mapped[str] = mapped_column(Text)  # server-chosen file under DATA_DIR/studies
    original_name: Mapped[str] = mapped_column(String(300))  # shown only
    patient_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    referral_priority: Mapped[str | None] = mapped_column(String(40), nullable=True)
    study_time: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    prediction: Mapped[str | None] = mapped_column(String(200), nullable=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # the explanation record (explain.json case)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Read(Base):
    __tablename__ = "reads"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    reader: Mapped[str] = mapped_column(String(120))
    finding: Mapped[str] = mapped_column(String(200))  # "agree" | "disagree" | a class name
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the reader's class, when known
    agreement: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1 agree, 0 disagree
    created: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


def database_url(data_dir: Path, url: str | None) -> str:
    """``url`` (a plain ``postgresql://`` is given the psycopg 3 driver), else SQLite in the data folder."""
    if not url:
        return f"sqlite:///{(Path(data_dir) / 'medlens.db').resolve()}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the server and the worker processes share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # pragma: no cover - exercised by every SQLite test
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL's durable-enough setting: no fsync per commit
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(url: str) -> None:
    """Create or upgrade the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")
