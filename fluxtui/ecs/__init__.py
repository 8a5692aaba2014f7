"""All mapping to the Elastic Common Schema, in one place: the headless stream, the journal and
recordings for `fluxtui replay` take their documents from here. fluxtui's own fields are under
`fluxtui.*`; values a collector could not measure are null or absent, never guessed.

`event_documents(event)` maps what the bus carries (alerts, process exits, kernel events,
connection events, guard prompts and decisions); the per-tick documents are built by
`fluxtui.headless.StreamWriter` from the snapshot (host metrics with statuses and drops, the
processes, the socket listing)."""

from __future__ import annotations

import time
from typing import Any

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.connection_views import ConnectionEvent
from fluxtui.ecs.changes import file_change_document, narration_document
from fluxtui.ecs.common import ECS_VERSION, STREAM_VERSION, envelope, host_fields, iso_time
from fluxtui.ecs.host import DropLedger, drop_documents, metrics_document
from fluxtui.ecs.network import connection_document, listing_document
from fluxtui.ecs.processes import (
    kernel_event_document,
    process_exit_document,
    process_state_documents,
    processes_document,
)
from fluxtui.ecs.security import alert_document, decision_document, prompt_document
from fluxtui.events import Alert, DemoNarration, FileChange, ProcessExit
from fluxtui.guard.events import GuardDecision, PromptView

__all__ = [
    "ECS_VERSION",
    "STREAM_VERSION",
    "DropLedger",
    "document",
    "drop_documents",
    "envelope",
    "event_documents",
    "host_fields",
    "iso_time",
    "listing_document",
    "metrics_document",
    "process_state_documents",
    "processes_document",
]


def event_documents(event: object) -> list[dict[str, Any]]:
    """The documents of one bus event; [] for what the stream does not carry (UI-only events,
    snapshots: those go through the writer's snapshot path)."""
    if isinstance(event, Alert):
        return [alert_document(event)]
    if isinstance(event, ProcessExit):
        return [process_exit_document(event)]
    if isinstance(event, KernelEvent):
        return [kernel_event_document(event)]
    if isinstance(event, ConnectionEvent):
        return [connection_document(event)]
    if isinstance(event, GuardDecision):
        return [decision_document(event)]
    if isinstance(event, PromptView):
        return [prompt_document(event)]
    if isinstance(event, FileChange):
        return [file_change_document(event)]
    if isinstance(event, DemoNarration):  # carries no time of its own: said as it is written
        return [narration_document(event, time.time())]
    return []


def document(event: object) -> dict[str, Any]:
    """The one document of a bus event that the stream carries (ValueError otherwise)."""
    docs = event_documents(event)
    if len(docs) != 1:
        raise ValueError(f"no stream document for {type(event).__name__}")
    return docs[0]
