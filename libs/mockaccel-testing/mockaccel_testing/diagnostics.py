"""What a failing e2e test leaves behind: the cluster's state and the components' logs.

A test that fails against a real control plane usually fails because of
something another object shows (an event, a pending pod's condition, a slice
that never appeared). ``dump_cluster`` collects pods, claims, slices, device
classes, nodes and events with kubectl, and the tail of every component log
the test-bed keeps, so the failure report carries what a person would look at.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from mockaccel_testing.control_plane import ControlPlane

LOG_TAIL_LINES = 60
QUERIES: tuple[tuple[str, ...], ...] = (
    ("get", "nodes", "-o", "wide"),
    ("get", "pods", "-A", "-o", "wide"),
    ("get", "resourceclaims", "-A", "-o", "yaml"),
    ("get", "resourceslices", "-o", "yaml"),
    ("get", "deviceclasses"),
    ("get", "events", "-A", "--sort-by=.lastTimestamp"),
)


def _kubectl(plane: ControlPlane, args: Sequence[str]) -> str:
    command = [str(plane.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig), "--request-timeout=10s", *args]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(kubectl failed: {exc})"
    return run.stdout + (f"\n(stderr) {run.stderr}" if run.returncode else "")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


def dump_cluster(plane: ControlPlane, extra_logs: Sequence[Path] = ()) -> str:
    """Everything a person debugging a failed e2e test would ask for, as one text."""
    parts = []
    for query in QUERIES:
        parts.append(f"===== kubectl {' '.join(query)}\n{_kubectl(plane, query)}")
    for log in [*sorted(plane.log_dir.glob("*.log")), *extra_logs]:
        title = log.name if log.parent == plane.log_dir else str(log)  # pod logs are all N.log
        parts.append(f"===== {title} (last {LOG_TAIL_LINES} lines)\n{_tail(log)}")
    return "\n".join(parts)
