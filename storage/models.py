"""SQLAlchemy 2 typed ORM models. Internal to `storage/`: callers get `storage.records` instead."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (portable across SQLite and PostgreSQL), returned timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Every table uses AUTOINCREMENT on SQLite: ids are never reused (caches and histories rely on it)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON, bytes: LargeBinary}


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelClass(Base):
    __tablename__ = "label_classes"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_label_classes_project_name"),
        UniqueConstraint("project_id", "index", name="uq_label_classes_project_index"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    colour: Mapped[str] = mapped_column(String(7))
    index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash", name="uq_images_project_hash"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    pixel_hash: Mapped[str] = mapped_column(String(64), default="")
    file_path: Mapped[str] = mapped_column(String(255))  # relative to <data_dir>/images
    format: Mapped[str] = mapped_column(String(16), default="")
    file_size: Mapped[int] = mapped_column(Integer, default=0)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(16), default="unassigned")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # label cache, maintained in the same transaction as every edit
    label_version: Mapped[int] = mapped_column(Integer, default=0)
    history_seq: Mapped[int] = mapped_column(Integer, default=0)
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {str(class_id): pixels}
    labelled_pixels: Mapped[int] = mapped_column(Integer, default=0)
    # added by revision 0002
    uncertainty: Mapped[float | None] = mapped_column(Float, nullable=True)
    has_prediction: Mapped[bool] = mapped_column(Boolean, default=False)
    stats_updated_at: Mapped[datetime | None] = mapped_column(nullable=True)


Index("ix_images_project_uncertainty", Image.project_id, Image.uncertainty)


class Annotation(Base):
    """One append-only version row of an image's annotation history."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("image_id", "seq", name="uq_annotations_image_seq"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    class_id: Mapped[int | None] = mapped_column(
        ForeignKey("label_classes.id", ondelete="SET NULL"), nullable=True, index=True
    )
    x: Mapped[float | None] = mapped_column(Float, nullable=True)
    y: Mapped[float | None] = mapped_column(Float, nullable=True)
    radius: Mapped[float | None] = mapped_column(Float, nullable=True)
    raster: Mapped[bytes | None] = mapped_column(
        LargeBinary, nullable=True, deferred=True
    )  # class-indexed PNG
    class_map: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {str(raster value): class_id}
    target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    author: Mapped[str] = mapped_column(String(100), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # added by revision 0003: the client's id of the operation (retries are recognised by it) and the
    # polyline [[x, y], ...] of a stroke or erase stroke, in image pixels
    op_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    path: Mapped[list[Any] | None] = mapped_column(nullable=True)
    # added by revision 0004: who within `author` made the edit (a browser tab's id, sent with its ops);
    # undo and redo act on the edits of the same author and client only
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)


Index("uq_annotations_image_op", Annotation.image_id, Annotation.op_id, unique=True)


class GroundTruth(Base):
    __tablename__ = "ground_truths"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    raster: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    class_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Head(Base):
    __tablename__ = "heads"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    backbone: Mapped[str] = mapped_column(String(200), default="")
    backbone_weights: Mapped[str] = mapped_column(String(200), default="")
    weights_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    weights: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    classes: Mapped[list[Any]] = mapped_column(default=list)  # [{id, name, colour, index}]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    head_id: Mapped[int | None] = mapped_column(ForeignKey("heads.id", ondelete="SET NULL"), nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pixel_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labelled_pixels: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
