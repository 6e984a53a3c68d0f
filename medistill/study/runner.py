"""Running a study: each cell claimed once, computed, appended to the table as soon as it finishes.

Several processes (same host or not, sharing the output folder) may run the same study: a cell is
computed by the process that claims it (:mod:`.claims`), its row appended under the study lock
(:mod:`.table`). Re-running skips finished cells; a process killed mid-cell loses only that cell,
which the next run (or another process, once the claim is seen to be stale) redoes.
``rank``/``world_size`` pre-partition the cells round-robin (torchrun's RANK/WORLD_SIZE); claims
still guard each cell, so overlapping or restarted shards never compute a cell twice. With
``steal=True`` a process that has finished its share goes on with the other shares' cells that are
neither finished nor claimed, so shards of unequal cost end together.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cells import Cell, shard
from .claims import ClaimBoard
from .table import ResultsTable


class CellUnavailable(Exception):
    """Raised by a compute function that will not compute this cell now (e.g. import-only runs)."""


@dataclass
class StudyOutcome:
    """Cell ids by what this process did with them."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the table
    busy: list[str] = field(default_factory=list)  # claimed by another live process
    failed: dict[str, str] = field(default_factory=dict)  # cell id → error
    unavailable: list[str] = field(default_factory=list)  # compute declined (CellUnavailable)

    def line(self) -> str:
        return (f"{len(self.computed)} computed, {len(self.skipped)} already done, "
                f"{len(self.busy)} busy in another process, {len(self.unavailable)} not available, "
                f"{len(self.failed)} failed")


def run_study(cells: list[Cell], out, compute: Callable[[Cell], dict], *, rank: int = 0, world_size: int = 1,
              log: Callable[[str], None] = print, steal: bool = False) -> StudyOutcome:
    """Compute this process's share of ``cells`` into the table in ``out``; returns what happened.

    ``compute(cell)`` returns the row (a dict of table columns). An exception in it fails that cell
    only: its claim is released, the error logged, and the study goes on with the next cell.
    ``steal``: after this process's share, the other shares' unfinished, unclaimed cells too (in order).
    """
    out = Path(out)
    table = ResultsTable(out)
    board = ClaimBoard(out / "claims", table.locked)
    outcome = StudyOutcome()
    mine = shard(cells, rank, world_size)
    if steal:
        own = {c.id for c in mine}
        mine = mine + [c for c in cells if c.id not in own]
    for i, cell in enumerate(mine, 1):
        if cell.id in table.finished_ids():
            outcome.skipped.append(cell.id)
            continue
        if not board.claim(cell.id):
            if cell.id in table.finished_ids():  # finished by its owner meanwhile
                outcome.skipped.append(cell.id)
                continue
            owner = board.owner(cell.id) or {}
            log(f"[{i}/{len(mine)}] {cell.id}: claimed by pid {owner.get('pid')} on {owner.get('host')}, skipped")
            outcome.busy.append(cell.id)
            continue
        try:
            if cell.id in table.finished_ids():  # finished by another process between the check and the claim
                outcome.skipped.append(cell.id)
                continue
            log(f"[{i}/{len(mine)}] {cell.id}: computing")
            row = compute(cell)
            if row.get("cell_id") != cell.id:
                raise ValueError(f"compute returned a row for {row.get('cell_id')!r}, expected {cell.id!r}")
            table.append(row)
            outcome.computed.append(cell.id)
            log(f"[{i}/{len(mine)}] {cell.id}: done"
                + (f", accuracy {row['accuracy_mean']:.3f}" if row.get("accuracy_mean") is not None else ""))
        except CellUnavailable as exc:
            outcome.unavailable.append(cell.id)
            log(f"[{i}/{len(mine)}] {cell.id}: not available ({exc})")
        except Exception as exc:  # one failed cell must not stop the study
            outcome.failed[cell.id] = f"{type(exc).__name__}: {exc}"
            log(f"[{i}/{len(mine)}] {cell.id}: FAILED {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        finally:
            board.release(cell.id)
    return outcome
