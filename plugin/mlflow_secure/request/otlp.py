"""OTLP trace exports (POST /v1/traces), decoded exactly as MLflow's `export_traces` does.

The protobuf body cannot be rebuilt faithfully, so it is read, never rewritten: authorship
refuses an author attribute in it (authorship.py), and resolution decides on every trace it
names, because MLflow appends spans to an existing trace of that id wherever it lives. Trace
ids are computed with MLflow's own conversion (`Span.from_otel_proto`)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

OTLP_TRACES_PATH = "/v1/traces"
TRACE_IDS_PARAM = "otlp:trace_ids"  # where the canonical request lists them (never a client key)


class OtlpError(ValueError):
    """The export cannot be read as MLflow would read it (answered with 400)."""


def decode_export(body: bytes, content_type: str | None, content_encoding: str | None) -> Any:
    """Decode an OTLP export the way `mlflow.server.otel_api.export_traces` does."""
    from mlflow.server.otel_api import _convert_otlp_json_ids_to_base64
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    media_type = content_type.split(";")[0].strip() if content_type else None
    if media_type not in ("application/json", "application/x-protobuf"):
        raise OtlpError("content type")
    encoding = content_encoding.lower() if content_encoding else ""
    if encoding not in ("", "gzip", "deflate"):
        raise OtlpError("content encoding")
    request = ExportTraceServiceRequest()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        if media_type == "application/json":
            body = _convert_otlp_json_ids_to_base64(body)
            json_format.Parse(body, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (
        OSError,
        EOFError,
        zlib.error,
        DecodeError,
        json_format.Error,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:
        raise OtlpError("OTLP payload") from exc
    return request


def trace_ids(request: Any) -> list[str]:
    """The MLflow trace ids of every span in a decoded export, in order, once each."""
    from mlflow.entities.span import Span

    found: dict[str, None] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    found[Span.from_otel_proto(span).trace_id] = None
                except Exception as exc:  # MLflow answers 422 for such a span
                    raise OtlpError("OTLP span") from exc
    return list(found)
