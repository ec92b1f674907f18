"""What one catalog handle knows: the latest manifest it found and the rows of the log slots
after it, kept up to date by probing instead of listing.

A view is advanced by reading slots from where it stopped to the first absent one (one GET
that 404s when nothing is new). Slots are never deleted and every compaction, merge and
repair claims a fence slot after the slots it folds (commit_log.py), so a view that reads on
meets the fence of the first generation newer than its own, and is rebuilt from the newer
manifest. See docs/archive-format.md.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lbdask.archive.commit_log import CommitLog, read_slot
from lbdask.archive.manifest import Manifest
from lbdask.archive.rows import CatalogRow
from lbdask.errors import IntegrityError

#: Newer generations one advance follows before it settles for the one it holds (a later
#: lookup goes on; a file removed meanwhile makes the catalog start over).
FOLLOW = 16


@dataclass(frozen=True)
class View:
    """A manifest and the rows announced in log slots [manifest.log_next, end), newest winning."""

    manifest: Manifest
    end: int
    recent: dict[str, CatalogRow] = field(default_factory=dict)
    batches: tuple[str, ...] = ()  # announced batch ids, in slot order
    damage: tuple[str, ...] = ()  # announced batches that could not be read


#: Reads one announced batch's rows by id (the batch object, or its folded copy).
BatchReader = Callable[[str], dict[str, CatalogRow]]
#: Finds the latest manifest given the newest generation known (None: none known yet).
Discover = Callable[[int | None], Manifest]
#: Lists the batch objects (one LIST): their rows and the unreadable ones.
Unannounced = Callable[[], tuple[dict[str, CatalogRow], list[str]]]


@dataclass(frozen=True)
class Tracker:
    """Builds and advances views for one catalog handle."""

    log: CommitLog
    discover: Discover
    read_batch: BatchReader
    unannounced: Unannounced

    def fresh(self, known: int | None, manifest: Manifest | None = None, depth: int = 0) -> View:
        """A view of the latest manifest (or `manifest`) and every slot after it. Before the
        first compaction and on a v1 catalog the batch objects are listed too: writers
        before the commit log did not announce theirs."""
        manifest = self.discover(known) if manifest is None else manifest
        view = View(manifest, manifest.log_next)
        if manifest.version == 1 or manifest.generation == 0:
            rows, damage = self.unannounced()
            view = View(manifest, manifest.log_next, rows, (), tuple(damage))
        return self.advance(view, depth)

    def advance(self, view: View, depth: int = 0) -> View:
        """`view` with the slots announced since; rebuilt when a compaction committed meanwhile."""
        recent, batches, damage, end = None, list(view.batches), list(view.damage), view.end
        while (slot := read_slot(self.log, end)) is not None:
            if slot.fence is not None:
                newer = self._newer(view, depth) if slot.fence > view.manifest.generation else None
                if newer is not None:  # a compaction folded what this view holds (else: one that crashed)
                    return newer
            elif slot.batch is not None:
                recent = dict(view.recent) if recent is None else recent  # readers keep using the old dict
                try:
                    recent.update(self.read_batch(slot.batch))
                    batches.append(slot.batch)
                except IntegrityError as exc:
                    damage.append(str(exc))
            end += 1
        if recent is None and end == view.end and len(damage) == len(view.damage):
            return view
        return View(view.manifest, end, view.recent if recent is None else recent, tuple(batches), tuple(damage))

    def _newer(self, view: View, depth: int) -> View | None:
        """A view of a generation newer than `view`'s, None when there is none (the fence was
        claimed by a compaction that crashed or has not committed yet: `view` stays right).
        Compactions committing all the while make it follow them only so far."""
        newest = self.discover(view.manifest.generation)
        if newest.generation == view.manifest.generation or depth >= FOLLOW:
            return None
        return self.fresh(None, newest, depth + 1)
