"""Walking the hash chain and naming its first break.

Each event must hash to its stored ``hash``, carry the next ``seq`` and point at the previous
event's hash. What breaks tells what happened:

* an event whose content no longer matches its hash was **edited** (if its content matches
  another position's ``seq`` it was **moved**, i.e. events were reordered);
* a missing ``seq`` means events were **deleted** — unless the missing one turns up later in
  the input, which means they were **reordered**;
* an event whose ``prev_hash`` is not its predecessor's hash was replaced or re-chained;
* in the database, a chain head that does not match the last event means events were deleted
  from (or appended behind the back of the writer to) the end of the chain.

A chain is only as trustworthy as its anchor: someone able to rewrite the whole table and the
head can recompute every hash. Keep exports (or the JSON lines file) somewhere the database's
administrators cannot write, and compare heads (see docs/audit.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from mlflow_secure.audit.events import GENESIS_HASH, OPTIONAL_FIELDS, RECORD_FIELDS, compute_hash

REORDER_WINDOW = 8  # how far away a moved event's original seq is looked for


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # events examined before the first break (all of them when ok)
    first_seq: int | None = None
    last_seq: int | None = None
    problem: str | None = None  # edited | deleted | reordered | relinked | malformed | head
    seq: int | None = None  # where the chain breaks
    message: str = ""

    def describe(self) -> str:
        if self.ok:
            if not self.checked:
                return "audit chain intact: no events"
            return (
                f"audit chain intact: {self.checked} events, seq {self.first_seq}..{self.last_seq}"
            )
        where = f" at seq {self.seq}" if self.seq is not None else ""
        return f"audit chain BROKEN{where} ({self.problem}): {self.message}"


class _Broken(Exception):
    def __init__(self, problem: str, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.problem, self.seq, self.message = problem, seq, message


def _check_shape(record: Mapping[str, Any], where: str) -> int:
    if not isinstance(record, Mapping):
        raise _Broken("malformed", None, f"{where} is not a JSON object")
    fields = set(record)
    missing = [name for name in RECORD_FIELDS if name not in fields]
    extra = sorted(fields - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS))
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise _Broken("malformed", None, f"{where} has no valid seq")
    if missing or extra:
        detail = f"missing {missing}" if missing else f"unexpected fields {extra}"
        raise _Broken("malformed", seq, f"event seq {seq} ({where}) has {detail}")
    return seq


def _moved_from(record: Mapping[str, Any], seq: int) -> int | None:
    """The seq whose content `record` holds, if it is a nearby one (a reorder)."""
    for other in range(max(1, seq - REORDER_WINDOW), seq + REORDER_WINDOW + 1):
        if other != seq and compute_hash({**record, "seq": other}) == record["hash"]:
            return other
    return None


def verify_records(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    partial: bool = False,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Walk `records` — (where, record) pairs in stored order — and report the first break.

    `partial`: the input may start anywhere in the chain (an export with --since, a rotated
    file, a pruned table); its first event's ``prev_hash`` is taken on trust. `head`: the
    database's chain head (seq, hash) the walk must end at.
    """
    checked, first_seq, last_seq = 0, None, None
    expected_seq, expected_prev = 1, GENESIS_HASH
    iterator = iter(records)
    try:
        for where, record in iterator:
            seq = _check_shape(record, where)
            if first_seq is None and partial:
                expected_seq, expected_prev = seq, record["prev_hash"]
            if seq != expected_seq:
                raise _sequence_break(seq, expected_seq, where, iterator)
            try:
                intact = compute_hash(record) == record["hash"]
            except (TypeError, ValueError):
                intact = False
            if not intact:
                moved = _moved_from(record, seq)
                if moved is not None:
                    raise _Broken(
                        "reordered",
                        seq,
                        f"event seq {seq} holds the content of event seq {moved} "
                        f"(events were reordered) ({where})",
                    )
                raise _Broken(
                    "edited",
                    seq,
                    f"event seq {seq} was altered: its content does not match its hash ({where})",
                )
            if record["prev_hash"] != expected_prev:
                raise _Broken(
                    "relinked",
                    seq,
                    f"event seq {seq} does not follow event seq {seq - 1} (prev_hash mismatch: "
                    f"an event was replaced or the chain re-linked) ({where})",
                )
            checked += 1
            first_seq = seq if first_seq is None else first_seq
            last_seq, expected_seq, expected_prev = seq, seq + 1, record["hash"]
        if head is not None:
            _check_head(head, last_seq or 0, expected_prev if last_seq else GENESIS_HASH)
    except _Broken as broken:
        return VerifyResult(
            False, checked, first_seq, last_seq, broken.problem, broken.seq, broken.message
        )
    return VerifyResult(True, checked, first_seq, last_seq)


def _sequence_break(
    seq: int, expected: int, where: str, rest: Iterator[tuple[str, Mapping[str, Any]]]
) -> _Broken:
    if seq < expected:
        return _Broken(
            "reordered",
            seq,
            f"event seq {seq} appears after seq {expected - 1} (events reordered or "
            f"duplicated) ({where})",
        )
    # Is the missing event further on (moved), or gone (deleted)?
    for later_where, later in rest:
        if isinstance(later, Mapping) and later.get("seq") == expected:
            return _Broken(
                "reordered",
                expected,
                f"event seq {expected} appears after seq {seq} (events reordered) ({later_where})",
            )
    missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
    return _Broken(
        "deleted", expected, f"events missing before seq {seq}: {missing} deleted ({where})"
    )


def _check_head(head: tuple[int, str], last_seq: int, last_hash: str) -> None:
    head_seq, head_hash = head
    if head_seq > last_seq:
        raise _Broken(
            "deleted",
            last_seq + 1,
            f"the chain head is at seq {head_seq} but the last event is seq {last_seq}: "
            f"events seq {last_seq + 1}..{head_seq} were deleted from the end",
        )
    if head_seq < last_seq:
        raise _Broken(
            "head",
            head_seq + 1,
            f"events seq {head_seq + 1}..{last_seq} lie beyond the chain head (seq {head_seq}): "
            "they were not appended by the audit writer, or the head was edited",
        )
    if head_hash != last_hash:
        raise _Broken(
            "head", head_seq, f"the chain head's hash does not match event seq {head_seq}"
        )


def verify_database(engine: Engine, *, partial: bool = False) -> VerifyResult:
    """Verify the whole chain in the database, and that it ends at the chain head."""
    from mlflow_secure.audit import store

    with store.snapshot(engine) as connection:
        head = store.read_head(connection)
        records = ((f"row seq {r['seq']}", r) for r in store.iter_all(connection))
        return verify_records(records, partial=partial, head=head)


def _file_records(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{path.name} line {number}"
            if not line.strip():
                raise _Broken("malformed", None, f"{where} is empty")
            try:
                yield where, json.loads(line)
            except ValueError:
                raise _Broken("malformed", None, f"{where} is not valid JSON") from None


def verify_file(path: str | Path, *, partial: bool = False) -> VerifyResult:
    """Verify a JSON lines file (``MLFLOW_SECURE_AUDIT_LOG_FILE`` or an export).

    Raises OSError when the file cannot be read.
    """
    return verify_records(_file_records(Path(path)), partial=partial)
