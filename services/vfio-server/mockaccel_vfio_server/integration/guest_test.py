"""A real guest: Debian kernel + busybox under QEMU TCG, talking to our server over vfio-user.

Two boots against one server process (the second proves re-attach after QEMU
exits). The first boot's script reads the PCI identity from sysfs and BAR0
with ``devmem``, writes STATUS, then waits for faults the host injects
through the control API when the script says so, and prints what it sees.
"""

from __future__ import annotations

import re
import uuid

from mockaccel_common import regmap as rm
from mockaccel_common.regmap import Status
from mockaccel_testing.guest import GuestRun
from mockaccel_testing.vfio_server import TEST_UUID, RunningServer, vfio_server

OFF = {r.name: r.offset for r in rm.REGISTERS}
MEMORY = (16 << 30) + 0x2000

FIND_DEVICE = """
dev=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor)" = 0x1de5 ] && dev=$d
done
[ -n "$dev" ] || { echo "NO_DEVICE"; exit 1; }
echo 1 > $dev/enable
bar=$(( $(head -n 1 $dev/resource | cut -d' ' -f1) ))
r() { devmem $((bar + $1)) ${2:-32}; }
"""

FIRST_BOOT = FIND_DEVICE + f"""
echo "PCI vendor=$(cat $dev/vendor) device=$(cat $dev/device) class=$(cat $dev/class) revision=$(cat $dev/revision)"
echo "PCI subsystem=$(cat $dev/subsystem_vendor):$(cat $dev/subsystem_device)"
echo "PCI flags=$(sed -n 1p $dev/resource | cut -d' ' -f3)"
echo "REG ID=$(r {OFF["ID"]}) REVISION=$(r {OFF["REVISION"]})"
echo "REG CAPS=$(r {OFF["CAPABILITIES"]}) FW=$(r {OFF["FW_VERSION"]})"
echo "REG UUID_LO=$(r 8 64) UUID_HI=$(r 16 64) UUID_B0=$(r 8 8) UUID_B15=$(r 23 8) UUID_W1=$(r 10 16)"
echo "REG MEM_LO=$(r {OFF["MEMORY_SIZE_LO"]}) MEM_HI=$(r {OFF["MEMORY_SIZE_HI"]}) MEM64=$(r {OFF["MEMORY_SIZE_LO"]} 64)"
echo "REG STATUS=$(r {OFF["STATUS"]})"
devmem $((bar + {OFF["STATUS"]})) 32 1
echo "REG STATUS_AFTER_WRITE=$(r {OFF["STATUS"]})"
echo "WAIT_HEALTH"
i=0
while [ $(( $(r {OFF["STATUS"]}) & {int(Status.UNHEALTHY)} )) = 0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "SEEN_UNHEALTHY STATUS=$(r {OFF["STATUS"]})"
echo "WAIT_FAIL_READS"
i=0; while [ "$(r 0)" != 0xFFFFFFFF ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "SEEN_FAIL_READS ID=$(r 0)"
"""

SECOND_BOOT = FIND_DEVICE + """
echo "SECOND ID=$(r 0) STATUS=$(r 0x2c)"
"""


def field(text: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", text)
    assert match, f"{name} not in the guest output:\n{text}"
    return match.group(1)


def first_boot(server: RunningServer) -> str:
    with GuestRun(server.folder, [server.socket], FIRST_BOOT) as guest:
        guest.wait_for(r"^WAIT_HEALTH")
        state = server.control("state")["state"]
        assert state["status"] == Status.READY | Status.ALLOCATED, "the guest's STATUS write did not reach the server"
        server.control("health", function="pf", healthy=False)
        guest.wait_for(r"^WAIT_FAIL_READS")
        server.control("fault", kind="fail_reads", enabled=True)
        guest.wait_for(r"^SEEN_FAIL_READS")
        server.control("fault", kind="fail_reads", enabled=False)
        assert guest.finish() == 0, guest.tail()
        return guest.text()


def test_guest_sees_the_device_and_faults_across_two_qemu_runs() -> None:
    with vfio_server(["-m", str(MEMORY)]) as server:
        text = first_boot(server)
        assert field(text, "vendor") == "0x1de5"
        assert field(text, "device") == "0x0001"
        assert field(text, "class") == "0x120000"
        assert field(text, "revision") == "0x01"
        assert field(text, "subsystem") == "0x1de5:0x0001"
        assert int(field(text, "flags"), 16) & 0x200, "BAR0 is not a memory BAR (IORESOURCE_MEM)"
        assert int(field(text, "ID"), 16) == rm.DEVICE_MAGIC
        assert int(field(text, "REVISION"), 16) == rm.ABI_REVISION
        assert int(field(text, "FW"), 16) == rm.FW_VERSION
        assert int(field(text, "CAPS"), 16) == 0xF
        uuid_bytes = uuid.UUID(TEST_UUID).bytes
        assert int(field(text, "UUID_LO"), 16) == int.from_bytes(uuid_bytes[:8], "little")
        assert int(field(text, "UUID_HI"), 16) == int.from_bytes(uuid_bytes[8:], "little")
        assert int(field(text, "UUID_B0"), 16) == uuid_bytes[0]
        assert int(field(text, "UUID_B15"), 16) == uuid_bytes[15]
        assert int(field(text, "UUID_W1"), 16) == int.from_bytes(uuid_bytes[2:4], "little")
        assert int(field(text, "MEM_LO"), 16) == MEMORY & 0xFFFFFFFF
        assert int(field(text, "MEM_HI"), 16) == MEMORY >> 32
        assert int(field(text, "MEM64"), 16) == MEMORY
        assert int(field(text, "STATUS"), 16) == Status.READY
        assert int(field(text, "STATUS_AFTER_WRITE"), 16) == Status.READY | Status.ALLOCATED
        assert int(re.search(r"SEEN_UNHEALTHY STATUS=(\S+)", text).group(1), 16) == 7  # type: ignore[union-attr]
        assert re.search(r"SEEN_FAIL_READS ID=0xFFFFFFFF", text), text

        server.process.wait_for_event("client_detached")
        with GuestRun(server.folder, [server.socket], SECOND_BOOT) as guest:
            assert guest.finish() == 0, guest.tail()
            second = guest.text()
        assert int(field(second, "ID"), 16) == rm.DEVICE_MAGIC
        # QEMU's reset cleared ALLOCATED; the fault is hardware state and stays.
        assert int(re.search(r"SECOND ID=\S+ STATUS=(\S+)", second).group(1), 16) == Status.READY | Status.UNHEALTHY  # type: ignore[union-attr]
        assert server.control("state")["state"]["clients_served"] == 2
