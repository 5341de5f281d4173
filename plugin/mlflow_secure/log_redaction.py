"""Keep credentials out of the HTTP server's own access log.

uvicorn logs every request line with its query string; a user who pastes an API key into a
URL (or a presigned artefact URL) would otherwise leave it in the log. We keep the path and
drop the query, which our own audit trail records in a structured, scrubbed form.
"""

from __future__ import annotations

import logging

REDACTED_QUERY = "?[query redacted]"


class QueryStringRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client_addr, method, full_path, http_version, status_code)
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            if sep:
                record.args = (*args[:2], path + REDACTED_QUERY, *args[3:])
        return True


def install_access_log_redaction() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryStringRedactor) for f in logger.filters):
        logger.addFilter(QueryStringRedactor())
