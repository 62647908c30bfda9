"""The embedded local trace store: SQLite, written off the caller's thread."""

from appsdk.store.db import SpanRecord, TraceStore, TraceSummary
from appsdk.store.exporter import LocalStoreExporter

__all__ = ["LocalStoreExporter", "SpanRecord", "TraceStore", "TraceSummary"]
