from __future__ import annotations

from pathlib import Path

import pytest

from mockaccel_common.kube import ApiOutcome, KubeconfigError, api_client, classify_status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (404, ApiOutcome.NOT_FOUND),
        (409, ApiOutcome.CONFLICT),
        (410, ApiOutcome.EXPIRED),
        (401, ApiOutcome.REFUSED),
        (403, ApiOutcome.REFUSED),
        (429, ApiOutcome.RETRY),
        (500, ApiOutcome.RETRY),
        (503, ApiOutcome.RETRY),
        (0, ApiOutcome.RETRY),
        (400, ApiOutcome.PERMANENT),
        (422, ApiOutcome.PERMANENT),
    ],
)
def test_one_status_policy(status: int, outcome: ApiOutcome) -> None:
    assert classify_status(status) is outcome


@pytest.mark.asyncio
async def test_a_broken_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(KubeconfigError, match="cannot configure the Kubernetes client"):
        async with api_client(broken, user_agent="test"):
            pass
    with pytest.raises(KubeconfigError):
        async with api_client(tmp_path / "absent", user_agent="test"):
            pass
