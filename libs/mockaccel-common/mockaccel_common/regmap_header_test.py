"""The C header and the Python register map must never disagree."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from mockaccel_common import regmap, regmap_header

HEADER = Path("kernel-module/mockaccel_regs.h")


def test_committed_header_is_generated_from_regmap() -> None:
    assert HEADER.read_text() == regmap_header.render(), (
        "kernel-module/mockaccel_regs.h is stale: run "
        "`python -m mockaccel_common.regmap_header > kernel-module/mockaccel_regs.h`"
    )


def test_c_compiler_sees_the_same_values(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is a CI prerequisite (build-essential)"
    names = [f"MOCK_ACCEL_REG_{r.name}" for r in regmap.REGISTERS] + [
        "MOCK_ACCEL_IOC_STATUS",
        "MOCK_ACCEL_IOC_PASSPHRASE",
        "MOCK_ACCEL_IOC_INFO",
        "MOCK_ACCEL_STATUS_ALLOCATED",
        "MOCK_ACCEL_STATUS_READY",
        "MOCK_ACCEL_STATUS_UNHEALTHY",
        "MOCK_ACCEL_REG_VF_STATUS(3)",
        "MOCK_ACCEL_REG_VF_UUID(6)",
        "sizeof(struct mock_accel_info)",
        "sizeof(struct mock_accel_passphrase)",
    ]
    program = tmp_path / "probe.c"
    prints = "\n".join(f'\tprintf("%llu\\n", (unsigned long long)({name}));' for name in names)
    program.write_text(
        f'#include <stdio.h>\n#include "{HEADER.resolve()}"\nint main(void)\n{{\n{prints}\n\treturn 0;\n}}\n'
    )
    binary = tmp_path / "probe"
    subprocess.run([compiler, "-Wall", "-Werror", "-o", str(binary), str(program)], check=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    values = [int(line) for line in output.split()]
    expected = [r.offset for r in regmap.REGISTERS] + [
        regmap.IOC_STATUS,
        regmap.IOC_PASSPHRASE,
        regmap.IOC_INFO,
        int(regmap.Status.ALLOCATED),
        int(regmap.Status.READY),
        int(regmap.Status.UNHEALTHY),
        regmap.vf_status_offset(3),
        regmap.vf_uuid_offset(6),
        regmap.INFO_IOCTL_SIZE,
        regmap.PASSPHRASE_IOCTL_SIZE,
    ]
    assert values == expected


@pytest.mark.parametrize(
    ("ioctl", "number"),
    [(regmap.IOC_STATUS, 0x80044D01), (regmap.IOC_PASSPHRASE, 0xC1184D02)],
    ids=["status", "passphrase"],
)
def test_ioctl_numbers_are_stable(ioctl: int, number: int) -> None:
    assert ioctl == number


def test_registers_do_not_overlap_and_fit_the_bar() -> None:
    ordered = sorted(regmap.REGISTERS, key=lambda r: r.offset)
    for before, after in itertools.pairwise(ordered):
        assert before.end <= after.offset
    assert ordered[-1].end <= regmap.BAR0_SIZE
    assert regmap.register("MEMORY_SIZE_HI").offset == regmap.register("MEMORY_SIZE_LO").offset + 4
