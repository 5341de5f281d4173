"""Which artefacts must be encrypted: those of experiments classified at or above
`MLFLOW_SECURE_ENCRYPT_FROM`. One rule for the key service's answer to the client plugin
(keys/api.py) and for the front door's refusal of plaintext uploads (plaintext_guard.py)."""

from __future__ import annotations

CLASSIFICATION_RANK = {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}
UNCLASSIFIED = "internal"  # as the policy reads an experiment without the tag


def encryption_required(classification: str | None, encrypt_from: str) -> bool:
    """At or above `encrypt_from` ("never": nothing); an unknown classification always."""
    if encrypt_from == "never":
        return False
    rank = CLASSIFICATION_RANK.get(classification or UNCLASSIFIED)
    return rank is None or rank >= CLASSIFICATION_RANK[encrypt_from]
