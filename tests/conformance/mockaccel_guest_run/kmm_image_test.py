"""The KMM module image builds here (podman, local base image, no registry) and has KMM's layout.

KMM's worker runs ``modprobe -d /opt <module>`` against the image's
/opt/lib/modules/<kver>/ and copies ``firmwarePath`` (/firmware) to the
node's /var/lib/firmware first, so those are the paths checked.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mockaccel_node.module import MODULE_SOURCES
from mockaccel_node.settings import Provisioned

BASE_IMAGE = "localhost/mock-accel-base:bookworm"


@pytest.fixture
def image() -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run tools/provision/kmm-base-image.sh")
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE]).returncode != 0:
        pytest.fail(f"no {BASE_IMAGE}: run tools/provision/kmm-base-image.sh")
    tag = f"localhost/mock-accel-kmod-test:{uuid.uuid4().hex[:8]}"
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)


def test_prebuilt_image_has_module_dependencies_and_firmware(image: str) -> None:
    provisioned = Provisioned.from_env()
    kver = provisioned.kdir.name.removeprefix("linux-headers-")
    built = subprocess.run(
        [str(MODULE_SOURCES / "kmm" / "build-image.sh"), str(provisioned.kdir), kver, str(provisioned.wordlist), image],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    script = (
        f"set -e; modinfo -F vermagic /opt/lib/modules/{kver}/extra/mock-accel.ko; "
        f"cat /opt/lib/modules/{kver}/modules.dep; "
        f"modprobe -d /opt -S {kver} --show-depends mock_accel; "
        "sha256sum /firmware/mock-accel-wordlist.txt"
    )
    shown = subprocess.run(["podman", "run", "--rm", image, "sh", "-c", script], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"{kver} "), lines
    assert "extra/mock-accel.ko:" in lines
    assert f"insmod /opt/lib/modules/{kver}/extra/mock-accel.ko " in lines
    firmware_sha = hashlib.sha256(Path(provisioned.wordlist).read_bytes()).hexdigest()
    assert lines[-1].split()[0] == firmware_sha
