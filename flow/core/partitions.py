"""Partitions: which partition a workflow belongs to, and what its queue is called.

A workflow's partition is a stable hash of its id (CRC-32, the same in every
process and language) modulo the partition count fixed in the database. Every
message for the engine about that workflow goes to its partition's queue, which
only the engine holding the partition's lease consumes.
"""

from __future__ import annotations

import zlib


def partition_of(workflow_id: str, partitions: int) -> int:
    """The partition of ``workflow_id`` among ``partitions``."""
    return zlib.crc32(workflow_id.encode("utf-8", "surrogatepass")) % partitions


def partition_queue(prefix: str, partition: int) -> str:
    """The queue of one partition: ``<prefix>.engine.<n>``."""
    return f"{prefix}.engine.{partition}"


def queue_partition(prefix: str, queue_name: str) -> int | None:
    """The partition whose queue is ``queue_name`` (its delay queue included), or None."""
    head = f"{prefix}.engine."
    if not queue_name.startswith(head):
        return None
    number = queue_name[len(head) :].removesuffix(".DQ")
    return int(number) if number.isdigit() else None
