"""libvfio-user's own sample client (samples/client.c) against our server.

What it proves, exactly: the sample was written for the sample *server*
(vendor 0xdead, a BAR1 with mmap areas, migration). Against our device it
runs, in order, VERSION negotiation; an access to a bogus region, which our
server must fail with EINVAL (else the client exits "expected EINVAL");
DEVICE_GET_INFO, which must report 10 regions (else it exits "bad number of
device regions"); DEVICE_GET_REGION_INFO for every region; a read of the PCI
config space (else "failed to read PCI configuration space"). Then it asserts
the config space's vendor ID is the sample server's 0xdead and aborts. So
the test asserts that exact abort point and the region info it printed, and
that our server keeps serving afterwards. It does not exercise BAR0 accesses,
DMA or interrupts (our own protocol client and the guest test do BAR0).
"""

from __future__ import annotations

import shutil
import signal
import subprocess

from mockaccel_common import regmap as rm
from mockaccel_common.provisioned import require
from mockaccel_testing.vfio_server import vfio_server
from mockaccel_testing.vfio_user_client import BAR0, VfioUserClient


def test_sample_client_gets_to_the_vendor_id_check() -> None:
    client = require("MOCKACCEL_LIBVFIO_USER_PREFIX") / "bin" / "client"
    stdbuf = shutil.which("stdbuf")
    assert stdbuf, "stdbuf (coreutils) is needed to keep the client's output when it aborts"
    with vfio_server() as server:
        # Unbuffered stdout: abort() would drop buffered lines.
        command = [stdbuf, "-o0", str(client), str(server.socket)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert run.returncode == -signal.SIGABRT, (run.returncode, run.stdout, run.stderr)
        assert "Assertion `config_space.id.vid == 0xdead' failed" in run.stderr, run.stderr
        assert "expected EINVAL" not in run.stderr
        assert "client: devinfo: flags 0x3, num_regions 10" in run.stdout
        assert f"region_info[0] offset 0 flags 0x3 size {rm.BAR0_SIZE} " in run.stdout
        # The config space is readable and writable (0x3) since it has a callback for the MSI capability.
        assert "region_info[7] offset 0 flags 0x3 size 4096 " in run.stdout
        with VfioUserClient(server.socket) as ours:
            assert ours.read_int(BAR0, 0, 4) == rm.DEVICE_MAGIC
