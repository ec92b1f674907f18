"""Link a wheel's dependencies from this environment into a fresh one (`.ci/wheel-check`).

The README's command has installed them here (torch==2.13.0 first); installing them again
took most of the wheel check. What is linked is decided by the wheel's own Requires-Dist,
followed through each installed distribution's requirements (and the extras asked for), so a
dependency the wheel does not declare is not importable there, as after `pip install WHEEL`.

usage: python link_deps.py WHEEL LINKS_DIR SITE_PACKAGES
"""
from __future__ import annotations

import email
import importlib.metadata as md
import os
import sys
import zipfile
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name


def wheel_requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name)).get_all("Requires-Dist") or []


def needed(requires: list[str]) -> dict[str, md.Distribution]:
    """Installed distributions that the requirements need, transitively (extras included)."""
    todo = [(Requirement(r), "") for r in requires]
    extras: dict[str, set[str]] = {}
    dists: dict[str, md.Distribution] = {}
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(req.name)
        if key not in dists:
            try:
                dists[key] = md.distribution(req.name)
            except md.PackageNotFoundError:
                sys.exit(f"link_deps: {req} is not installed here (run from the README's test environment)")
            if not req.specifier.contains(dists[key].version, prereleases=True):
                sys.exit(f"link_deps: {req} needed, {req.name} {dists[key].version} installed")
            todo += [(Requirement(r), "") for r in dists[key].requires or []]
        new = set(req.extras) - extras.setdefault(key, set())
        extras[key] |= new
        todo += [(Requirement(r), e) for e in new for r in dists[key].requires or []]
    return dists


def link(dists: dict[str, md.Distribution], links: Path) -> None:
    """A link in `links` to each top-level file or folder of each distribution (its RECORD)."""
    links.mkdir()
    for dist in dists.values():
        for top in {f.parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            if not (links / top).exists():   # a namespace folder shared by two distributions
                os.symlink(dist.locate_file(top), links / top)


if __name__ == "__main__":
    wheel, links, site = (Path(a) for a in sys.argv[1:4])
    found = needed(wheel_requires(wheel))
    link(found, links)
    (site / "wheel-check-deps.pth").write_text(f"{links}\n")
    print(f"link_deps: {len(found)} distributions linked for {wheel.name}")
