"""The figures `catalog_scale.py` measures and their markdown table (growth against the smallest size)."""
from __future__ import annotations

FIGURES = [  # key, label, format
    ("commit_s", "build: commit N rows (batches of --batch-rows, compaction every --compact-every), s", "{:.1f}"),
    ("build_compactions", "  compactions during the build (the final one apart)", "{:.0f}"),
    ("build_written_mb", "  bytes all compactions wrote (runs, folded copies, manifests), MB", "{:.1f}"),
    ("write_amplification", "  written / final index size", "{:.1f}"),
    ("absent_uncompacted_s", "absent id before the final compaction, s", "{:.3f}"),
    ("compact_job_s", "final compaction (child process), s", "{:.1f}"),
    ("compact_job_rss_mb", "  its RSS, MB", "{:.0f}"),
    ("runs", "runs after it", "{:.0f}"),
    ("index_mb", "index size (runs), MB", "{:.1f}"),
    ("footers_kb", "  footers of the runs (read by a cold lookup), KB", "{:.0f}"),
    ("cold_p50_ms", "cold lookup (fresh Catalog) of a random id p50, ms", "{:.2f}"),
    ("cold_p99_ms", "cold lookup p99, ms", "{:.2f}"),
    ("cold_cpu_p50_ms", "  its CPU time (process_time) p50, ms", "{:.2f}"),
    ("cold_cpu_p99_ms", "  its CPU time p99, ms", "{:.2f}"),
    ("open_p50_ms", "lookup of another random id on an open Catalog, cold block cache, p50, ms", "{:.2f}"),
    ("open_p99_ms", "  p99, ms", "{:.2f}"),
    ("open_cpu_p50_ms", "  its CPU time p50, ms", "{:.2f}"),
    ("open_cpu_p99_ms", "  its CPU time p99, ms", "{:.2f}"),
    ("requests_open", "  store requests (p50)", "{:.0f}"),
    ("requests_open_max", "  store requests (max)", "{:.0f}"),
    ("absent_p50_ms", "cold lookup of an absent id p50, ms", "{:.2f}"),
    ("absent_p99_ms", "  absent p99, ms", "{:.2f}"),
    ("warm_p50_ms", "warm lookup (same id, same Catalog) p50, ms", "{:.3f}"),
    ("warm_p99_ms", "warm lookup p99, ms", "{:.3f}"),
    ("warm_cpu_p50_ms", "  its CPU time p50, ms", "{:.3f}"),
    ("warm_cpu_p99_ms", "  its CPU time p99, ms", "{:.3f}"),
    ("requests_per_lookup", "store requests per cold lookup (p50)", "{:.0f}"),
    ("requests_max", "  max", "{:.0f}"),
    ("lists_per_lookup", "  LISTs among them (max)", "{:.0f}"),
    ("requests_warm", "store requests per warm lookup (max)", "{:.0f}"),
    ("requests_per_absent", "store requests per cold absent lookup (max)", "{:.0f}"),
    ("lists_per_absent", "  LISTs among them (max)", "{:.0f}"),
    ("ls_first_s", "`lbdask ls`: first row, s", "{:.2f}"),
    ("ls_total_s", "`lbdask ls`: total, s", "{:.2f}"),
    ("ls_rss_mb", "`lbdask ls`: RSS, MB", "{:.0f}"),
    ("compact64_s", "compaction of 64 new rows (8 batches of 8), s", "{:.2f}"),
    ("compact64_written_kb", "  bytes it wrote, KB", "{:.0f}"),
]


def table(results: dict[int, dict[str, float]], title: str) -> str:
    sizes = sorted(results)
    head = f"\n{title}\n| figure | " + " | ".join(f"{n:,}" for n in sizes) + " |\n|---|" + "---:|" * len(sizes)
    lines = [head]
    for key, label, fmt in FIGURES:
        if not all(key in results[n] for n in sizes):
            continue
        base = results[sizes[0]][key]
        cells = [fmt.format(results[n][key]) + (f" ({results[n][key] / base:.1f}x)" if i and base else "")
                 for i, n in enumerate(sizes)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
