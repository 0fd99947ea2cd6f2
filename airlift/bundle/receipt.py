"""The verification receipt: exactly what was checked, when, where, and with what result."""

from __future__ import annotations

import json
import os
from pathlib import Path

from airlift.bundle.verify import VerifyReport
from airlift.util.confine import ConfinedRoot, EscapeError


def receipt_json(report: VerifyReport) -> dict:
    """The receipt as JSON-ready data: the report, `ok`, and the tool's name."""
    data = report.model_dump(mode="json")
    data["ok"] = report.ok
    data["tool"] = "airlift verify"
    return data


def receipt_markdown(report: VerifyReport) -> str:
    """The receipt as Markdown: what was checked, when, where, and each artifact's result."""
    lines = [
        f"# Verification receipt: {'PASSED' if report.ok else 'FAILED'}",
        "",
        f"- bundle: `{report.bundle}`",
        f"- manifest sha256: `{report.manifest_sha256}`",
        f"- signature: {report.signature}",
        f"- manifest matches SHA256SUMS: {report.manifest_matches_sums}",
        f"- checked at: {report.checked_at} on host `{report.host}`",
        f"- blobs rehashed: {report.blobs_checked} ({report.bytes_checked} bytes)"
        + (f", {report.blobs_from_store} lent by --store" if report.blobs_from_store else ""),
        "",
        "| artifact | kind | files | bytes | result |",
        "|---|---|---:|---:|---|",
    ]
    for artifact in report.artifacts:
        lines.append(f"| `{artifact.id}` | {artifact.kind} | {artifact.files} | {artifact.bytes} | {'ok' if artifact.ok else '**BROKEN**'} |")
    if report.problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{p.artifact_id}`: `{p.path}`: {p.reason} (blob `{p.sha256}`)" for p in report.problems]
    return "\n".join(lines) + "\n"


def write_receipt(report: VerifyReport, directory: Path | None = None) -> tuple[Path, Path]:
    """Write `verify-<time>-<host>.{json,md}` into the bundle's receipts/ (or `directory`, or the cwd
    when the bundle is read-only, as on a DVD)."""
    stem = f"verify-{report.checked_at.replace(':', '')}-{report.host}"
    # Through ConfinedRoot: a `receipts` planted in a hostile bundle as a symlink (to /etc/cron.d) is
    # refused, and the receipt goes to the next candidate instead of through the link.
    candidates = [(directory, "")] if directory else [(Path(report.bundle), "receipts/"), (Path.cwd(), "")]
    for base, sub in candidates:
        try:
            confined = ConfinedRoot(base)
            folder = confined.mkdirs(sub.rstrip("/")) if sub else confined.root
            if not os.access(folder, os.W_OK):
                continue
            json_path = confined.write_bytes(f"{sub}{stem}.json", (json.dumps(receipt_json(report), indent=1) + "\n").encode())
            md_path = confined.write_bytes(f"{sub}{stem}.md", receipt_markdown(report).encode())
            return json_path, md_path
        except (OSError, EscapeError):
            continue
    raise OSError("no writable place for the verification receipt")
