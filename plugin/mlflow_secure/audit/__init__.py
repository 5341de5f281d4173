"""The audit trail: one hash-chained event per request, in the database and as JSON lines.

``events`` builds secret-free events and hashes them, ``log`` writes them off the request path,
``store`` holds and queries them, ``verify`` walks the chain, ``api`` and ``cli`` serve auditors.
"""

from mlflow_secure.audit.events import (
    DECISIONS,
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditEvent,
    client_ip,
    compute_hash,
    parse_trusted_proxies,
    scrub_path,
)
from mlflow_secure.audit.log import AuditLog, AuditStats, open_audit_log
from mlflow_secure.audit.verify import VerifyResult, verify_database, verify_file

__all__ = [
    "DECISIONS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "AuditEvent",
    "AuditLog",
    "AuditStats",
    "VerifyResult",
    "client_ip",
    "compute_hash",
    "open_audit_log",
    "parse_trusted_proxies",
    "scrub_path",
    "verify_database",
    "verify_file",
]
