"""The command-line options the latent benchmarks share: which corpus, weights and crops."""
from __future__ import annotations

import argparse


def crop_parser(doc: str, limit: int) -> argparse.ArgumentParser:
    """A parser with --src, --weights, --crop and --limit (crops of the shared corpus)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--src", default="../shared/corpus/ai-png")
    p.add_argument("--weights", default="../shared/models/taef2")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--limit", type=int, default=limit)
    return p
