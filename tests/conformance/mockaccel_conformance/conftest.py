"""Fixtures of the conformance suite: one target per session, and state restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mockaccel_conformance.target import GuestTarget, Target, target_from_env


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    return target_from_env(lambda: tmp_path_factory.mktemp("conformance"))


@pytest.fixture
def kernel(target: Target) -> GuestTarget:
    """The target of the *_kernel_test.py checks, which only the guest run collects.

    The simulator has no character devices, poll() or module (docs/abi.md §6),
    so its run leaves those files out (see BUILD) rather than skipping them.
    """
    if not isinstance(target, GuestTarget):
        pytest.fail("a kernel-only check was collected against the simulator; see this folder's BUILD")
    return target


@pytest.fixture(autouse=True)
def _clean_state(target: Target) -> Iterator[None]:
    """Every test starts and ends with no VF enabled, nothing allocated and the firmware present."""
    yield
    target.restore_firmware()
    for pf in target.node.pfs:
        if not target.dev_dir(pf.name).exists():
            continue
        for name in target.devices():
            if name.startswith(pf.name + "v") or name == pf.name:
                target.write(name, "status", "0")
        target.write(pf.name, "sriov_numvfs", "0")
        target.write(pf.name, "passphrase_length", "6")
