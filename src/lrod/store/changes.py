"""What one write transaction changed, for the hub and for NOTIFY."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lrod.store.protocol import Transition


@dataclass
class Changes:
    operations: set[str] = field(default_factory=set)
    # Of `operations`, those whose only change was progress (a heartbeat):
    # the hub need not wake WaitOperation for them.
    progressed: set[str] = field(default_factory=set)
    cancels: set[str] = field(default_factory=set)
    work: bool = False
    work_due: datetime | None = None
    # Moves through the seam (endings.py), for its subscribers after commit.
    transitions: list[Transition] = field(default_factory=list)
    # A webhook delivery became due (the outbox got a row).
    deliveries: bool = False

    def work_at(self, due: datetime) -> None:
        """A job became claimable at `due`: work for the claim loops, which
        are told the earliest such time."""
        self.work = True
        self.work_due = due if self.work_due is None else min(self.work_due, due)
