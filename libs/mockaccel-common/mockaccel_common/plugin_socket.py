"""Where the node agent serves kubelet: the one naming rule the agent and the controller share.

The agent serves its DRA socket in the plugin directory as ``dra.sock``, or
``dra-<pod UID>.sock`` when it knows its pod UID (two instances overlap during
a rolling update, and kubelet ≥ 1.33 tells them apart by socket name). The
controller publishes slices only while the agent serves, so it needs the same
directory (one setting, ``MOCKACCEL_PLUGIN_DIR``, in both) and this rule to
find whichever instance is serving; docs/architecture.md, "The node-side
contract".
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DRIVER = "mock-accel.example.com"
DEFAULT_PLUGIN_DIR = Path("/var/lib/kubelet/plugins") / DEFAULT_DRIVER


def dra_socket(plugin_dir: Path, pod_uid: str = "") -> Path:
    """The DRA socket one agent instance serves."""
    return plugin_dir / (f"dra-{pod_uid}.sock" if pod_uid else "dra.sock")


def dra_sockets(plugin_dir: Path) -> list[Path]:
    """Every DRA socket present in ``plugin_dir`` (any instance's), sorted; none if it is missing."""
    try:
        names = os.listdir(plugin_dir)
    except OSError:
        return []
    return sorted(plugin_dir / n for n in names if n.startswith("dra") and n.endswith(".sock"))
