"""Compile and load the cffi extension module that calls libvfio-user.

Why API mode (``set_source``) rather than ``dlopen``: the C compiler sees the
real ``libvfio-user.h``, so every constant, enum value and function signature
declared below is checked against the installed library at build time instead
of being trusted from a hand-copied header. A mismatch fails the build, not the
emulator at run time.

Why compiled on first use: libvfio-user is not a Python package; it is built by
``tools/provision/libvfio-user.sh`` into a prefix that differs per machine. The
extension is therefore built against the prefix it is given and cached in a
folder keyed by a hash of (cdef text, our C, prefix path, header text, Python
ABI), so it is rebuilt exactly when one of those changes. The build takes about a second.

Why a little C of our own (``mockaccel_vfu.c``): a guest register read is one
vfio-user message, and a Python callback per message costs more CPU than the
rest of the message (docs/performance.md). So BAR0's access callback is C: a
plain read (1, 2, 4 or 8 bytes, naturally aligned, inside the region; the rule
of docs/abi.md §2) is copied out of the device's register image, a buffer
Python hands over once. Everything else (writes, any read the rule does not
clearly allow, reads while a fault is injected) goes to the Python handler,
which applies the device's rules, logs and replies as before. The C side never
refuses anything: it only serves, or defers. And the loop that waits for a
client's messages and handles them (``mockaccel_serve``) is C too, run in a
thread of its own with the GIL released, so that a plain read costs no Python
and no event-loop wake-up (``server.py`` says how that thread is kept safe).

Nothing here reads the environment: callers pass the prefix and the cache
folder in (the service's Settings own ``MOCKACCEL_LIBVFIO_USER_PREFIX``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.resources
import importlib.util
import os
import sys
import sysconfig
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODULE_NAME = "_mockaccel_vfu"

# The subset of libvfio-user.h the server uses. `...` lets the compiler supply
# values and layouts; declared values are verified against the header.
CDEF = """
typedef struct vfu_ctx vfu_ctx_t;
typedef int... loff_t;

#define LIBVFIO_USER_FLAG_ATTACH_NB ...

typedef enum { VFU_TRANS_SOCK, ... } vfu_trans_t;
typedef enum { VFU_DEV_TYPE_PCI, ... } vfu_dev_type_t;
typedef enum { VFU_PCI_TYPE_CONVENTIONAL, VFU_PCI_TYPE_EXPRESS, ... } vfu_pci_type_t;
typedef enum vfu_reset_type {
    VFU_RESET_DEVICE, VFU_RESET_LOST_CONN, VFU_RESET_PCI_FLR, ...
} vfu_reset_type_t;
enum vfu_dev_irq_type {
    VFU_DEV_INTX_IRQ, VFU_DEV_MSI_IRQ, VFU_DEV_MSIX_IRQ, VFU_DEV_ERR_IRQ, VFU_DEV_REQ_IRQ, ...
};

static const int VFU_PCI_DEV_BAR0_REGION_IDX;
static const int VFU_PCI_DEV_BAR1_REGION_IDX;
static const int VFU_PCI_DEV_BAR2_REGION_IDX;
static const int VFU_PCI_DEV_BAR3_REGION_IDX;
static const int VFU_PCI_DEV_BAR4_REGION_IDX;
static const int VFU_PCI_DEV_BAR5_REGION_IDX;
static const int VFU_PCI_DEV_ROM_REGION_IDX;
static const int VFU_PCI_DEV_CFG_REGION_IDX;
static const int VFU_PCI_DEV_NUM_REGIONS;

#define VFU_REGION_FLAG_READ ...
#define VFU_REGION_FLAG_WRITE ...
#define VFU_REGION_FLAG_RW ...
#define VFU_REGION_FLAG_MEM ...
#define VFU_REGION_FLAG_ALWAYS_CB ...

#define VFU_CAP_FLAG_EXTENDED ...
#define VFU_CAP_FLAG_CALLBACK ...
#define VFU_CAP_FLAG_READONLY ...
#define PCI_HEADER_TYPE_NORMAL ...
#define PCI_CAP_ID_EXP ...
#define VFIO_USER_PCI_CAP_EXP_SIZEOF ...
#define PCI_CFG_SPACE_SIZE ...
#define PCI_CFG_SPACE_EXP_SIZE ...

typedef struct { ...; } vfu_pci_config_space_t;

typedef void (vfu_log_fn_t)(vfu_ctx_t *vfu_ctx, int level, const char *msg);
typedef ssize_t (vfu_region_access_cb_t)(vfu_ctx_t *vfu_ctx, char *buf,
                                         size_t count, loff_t offset,
                                         bool is_write);
typedef int (vfu_reset_cb_t)(vfu_ctx_t *vfu_ctx, vfu_reset_type_t type);
typedef void (vfu_dev_irq_state_cb_t)(vfu_ctx_t *vfu_ctx, uint32_t start,
                                      uint32_t count, bool mask);

vfu_ctx_t *vfu_create_ctx(vfu_trans_t trans, const char *path, int flags,
                          void *pvt, vfu_dev_type_t dev_type);
void vfu_destroy_ctx(vfu_ctx_t *vfu_ctx);
int vfu_realize_ctx(vfu_ctx_t *vfu_ctx);
int vfu_attach_ctx(vfu_ctx_t *vfu_ctx);
int vfu_run_ctx(vfu_ctx_t *vfu_ctx);
int vfu_get_poll_fd(vfu_ctx_t *vfu_ctx);
void *vfu_get_private(vfu_ctx_t *vfu_ctx);
int vfu_setup_log(vfu_ctx_t *vfu_ctx, vfu_log_fn_t *log, int level);

int vfu_pci_init(vfu_ctx_t *vfu_ctx, vfu_pci_type_t pci_type, int hdr_type,
                 int revision);
void vfu_pci_set_id(vfu_ctx_t *vfu_ctx, uint16_t vid, uint16_t did,
                    uint16_t ssvid, uint16_t ssid);
void vfu_pci_set_class(vfu_ctx_t *vfu_ctx, uint8_t base, uint8_t sub,
                       uint8_t pi);
vfu_pci_config_space_t *vfu_pci_get_config_space(vfu_ctx_t *vfu_ctx);
ssize_t vfu_pci_add_capability(vfu_ctx_t *vfu_ctx, size_t pos, int flags,
                               void *data);

int vfu_setup_region(vfu_ctx_t *vfu_ctx, int region_idx, size_t size,
                     vfu_region_access_cb_t *region_access, int flags,
                     struct iovec *mmap_areas, uint32_t nr_mmap_areas,
                     int fd, uint64_t offset);
int vfu_setup_device_reset_cb(vfu_ctx_t *vfu_ctx, vfu_reset_cb_t *reset);
int vfu_setup_device_nr_irqs(vfu_ctx_t *vfu_ctx, enum vfu_dev_irq_type type,
                             uint32_t count);
int vfu_setup_irq_state_callback(vfu_ctx_t *vfu_ctx, enum vfu_dev_irq_type type,
                                 vfu_dev_irq_state_cb_t *cb);
int vfu_irq_trigger(vfu_ctx_t *vfu_ctx, uint32_t subindex);

struct mockaccel_image {
    const unsigned char *bytes;
    size_t size;
    bool serve_reads;
    uint64_t reads;
    vfu_region_access_cb_t *fallback;
};
struct mockaccel_private {
    void *owner;
    struct mockaccel_image bar0;
};
void *mockaccel_owner(vfu_ctx_t *vfu_ctx);
ssize_t mockaccel_image_read(struct mockaccel_image *image, char *buf,
                             size_t count, loff_t offset);
ssize_t mockaccel_bar0_access(vfu_ctx_t *vfu_ctx, char *buf, size_t count,
                              loff_t offset, bool is_write);
int mockaccel_run(vfu_ctx_t *vfu_ctx, int max, int listen_fd);
enum mockaccel_serve_end {
    MOCKACCEL_WOKEN = 0,
    MOCKACCEL_FAILED = -1,
    MOCKACCEL_STALLED = -2,
    MOCKACCEL_HUNG_UP = -3,
};
int mockaccel_serve(vfu_ctx_t *vfu_ctx, int conn_fd, int wake_fd,
                    int listen_fd, int stall_ms);
"""

# Our C (kernel style, a resource of this package): compiled into the extension.
C_SOURCE = importlib.resources.files("mockaccel_vfio_server.adapters").joinpath("mockaccel_vfu.c").read_text()


@dataclass(frozen=True)
class Binding:
    """The loaded extension: ``ffi`` (types, buffers, handles) and ``lib`` (functions)."""

    ffi: Any
    lib: Any


def _library_dir(prefix: Path) -> Path:
    """Where ``libvfio-user.so`` lives: meson puts it in lib/ or lib/<multiarch>/."""
    for candidate in (prefix / "lib", *sorted((prefix / "lib").glob("*-linux-gnu"))):
        if (candidate / "libvfio-user.so").exists():
            return candidate
    raise FileNotFoundError(f"no libvfio-user.so under {prefix}/lib (run tools/provision/libvfio-user.sh)")


def _cache_key(prefix: Path) -> str:
    """Hash of what the build depends on: declarations, our C, prefix, header text, Python ABI."""
    abi = sysconfig.get_config_var("EXT_SUFFIX") or sys.implementation.cache_tag
    header = prefix / "include" / "vfio-user" / "libvfio-user.h"
    digest = hashlib.sha256("\0".join((CDEF, C_SOURCE, str(prefix), str(abi))).encode())
    digest.update(header.read_bytes())
    return digest.hexdigest()[:16]


def _compile(prefix: Path, target: Path) -> None:
    """Build the extension into a temp folder and move it into place atomically.

    Atomic so that two processes building at once (parallel test workers)
    never import a half-written file.
    """
    import cffi  # a build-time need only; imported here so loading a cached build stays cheap

    libdir = _library_dir(prefix)
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        MODULE_NAME,
        C_SOURCE,
        libraries=["vfio-user"],
        include_dirs=[str(prefix / "include" / "vfio-user")],
        library_dirs=[str(libdir)],
        extra_link_args=[f"-Wl,-rpath,{libdir}"],
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp, warnings.catch_warnings():
        # cffi compiles through distutils, whose modules warn that they are deprecated as they are
        # imported: not ours to act on, and fatal in a process that turns warnings into errors (a test run).
        warnings.simplefilter("ignore", DeprecationWarning)
        built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        os.replace(built, target)


@functools.cache
def load_binding(prefix: Path, cache_dir: Path) -> Binding:
    """Return the extension built against ``prefix``, compiling it on first use.

    Cached per process: an extension module can be initialised only once.
    """
    prefix = prefix.resolve()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    target = cache_dir / _cache_key(prefix) / f"{MODULE_NAME}{suffix}"
    if not target.exists():
        _compile(prefix, target)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, target)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {target}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Binding(ffi=module.ffi, lib=module.lib)
