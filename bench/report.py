"""Write docs/benchmarks.md and docs/benchmarks.png from the suite's $BENCH_DIR/results.json.

The table puts each figure beside its baseline and its target; the chart shows every figure as a
fraction of its target (1.0 = exactly on target, more = better than the target). docs/benchmarks-notes.md
(the profiles of what misses its target) is appended as it is. Usage: .venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("BENCH_DIR", "/tmp/airlift-bench"))


def score(row: dict) -> float:
    """Measured vs target as one number, above 1.0 when the target is met."""
    return row["ratio"] / row["target"] if row["better"] == "higher" else row["target"] / row["ratio"]


def shown(row: dict) -> tuple[str, str]:
    """(measured, target) as the table prints them."""
    unit = row.get("unit")
    if row["better"] == "higher":
        return f"{row['ratio']:.2f}x faster", f">= {row['target']:g}x"
    if unit == "s":
        return f"{row['ratio']:.2f} s", f"<= {row['target']:g} s"
    if unit == "x":
        return f"{row['ratio']:.3f}x the file", f"<= {row['target']:g}x"
    if unit == "MiB":
        return f"{row['ratio']:.0f} MiB", f"<= {row['target']:g} MB"
    return f"{row['ratio']:.2f}x the baseline", f"<= {row['target']:g}x"


def table(rows: list[dict]) -> list[str]:
    lines = ["| figure | airlift | baseline | measured | target | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        ours = "" if row["seconds"] is None else f"{row['seconds']:.2f} s"
        base = f"{row['baseline']}: {row['baseline_s']:.2f} s" if row["baseline_s"] is not None else ""
        measured, target = shown(row)
        lines.append(f"| {row['label']} | {ours} | {base} | {measured} | {target} | {'yes' if score(row) >= 1 else '**no**'} |")
    return lines


def chart(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["label"].split(" (")[0] for row in rows]
    scores = [score(row) for row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    colors = ["#2e7d32" if s >= 1 else "#c62828" for s in scores]
    low = 0.1  # a log axis: 2x better and 2x worse than the target sit equally far from the line
    ax.barh(range(len(rows)), [s - low for s in scores], left=low, color=colors)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    for i, (row, value) in enumerate(zip(rows, scores, strict=True)):
        measured, target = shown(row)
        ax.text(value, i, f"  {measured} (target {target})", va="center", fontsize=8)
    ax.set_xlim(low, max(max(scores) * 8, 10))
    ax.set_xlabel("measured / target, log scale (right of the dashed line: target met)")
    ax.set_title("airlift vs baselines, as a fraction of each target")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    data = json.loads((ROOT / "results.json").read_text())
    rows, info = data["figures"], data["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {data['date']} ({data['minutes']} min) by `make bench BENCH_SIZES=\"{' '.join(map(str, data['sizes_gib']))}\"`",
        f"(bench/suite.py, then bench/report.py), on a **shared** {info['cores']}-core machine ({info['cpu']}, {info['memory_gib']} GiB RAM,",
        f"{info['filesystem']}, Linux {info['kernel']}, Python {info['python']}, Prefect {info['prefect']}). Other engineers' test",
        f"runs were using the same 2 cores: load average {info['load_before']:.1f} at the start, {info['load_after']:.1f} at the end, so",
        "every figure is noisy; each baseline ran right beside its figure, on the same data, to share that noise.",
        "",
        "- Data: random (incompressible) bytes in 8 files per size; real weights and image layers do not compress either.",
        "- Every airlift figure is the real CLI, start-up included, with its default: the embedded persistent Prefect",
        "  server under AIRLIFT_HOME, started and warmed (two tiny flow runs) before anything is timed. Each command is",
        "  a process of its own (`AIRLIFT_WARM_RUNNER=0`, so its peak RSS is its own), except the warm-runner figure,",
        "  which runs the default (the warm runner) beside the same command as a process of its own.",
        "- Page cache warm for baseline and airlift alike: the input is read once, untimed, right before each of",
        "  them; `sync` after every writer (tar, rsync, build, transfer) is inside its time. Start-up figures are",
        "  medians of 5, interleaved.",
        "- Peak RSS: the airlift process's own maximum (wait4 ru_maxrss), not the Prefect server's.",
        "- Downloads (bench/download.py): the Hub stand-in (airlift/testing/hubserver.py) in a process of its own, on",
        "  loopback, capping each connection at 4 MB/s as CDNs and proxies cap one connection; baselines",
        "  `huggingface_hub.snapshot_download` and `curl` on the same file in the same run; upstream bytes are the",
        "  stand-in's count of content bytes sent. Small files: uncapped, a few KB each. Cold cache each time.",
        "",
        *table(rows),
        "",
        "![ratios vs targets](benchmarks.png)",
        "",
    ]
    notes = REPO / "docs" / "benchmarks-notes.md"
    if notes.exists():
        lines.append(notes.read_text())
    (REPO / "docs" / "benchmarks.md").write_text("\n".join(lines).rstrip() + "\n")
    chart(rows, REPO / "docs" / "benchmarks.png")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
