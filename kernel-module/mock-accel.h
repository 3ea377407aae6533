/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mock-accel: definitions shared by the driver's source files.
 *
 * Lifetime and locking (docs/kernel-module.md has the long form):
 *
 * - struct mock_accel_pf lives from probe to the end of remove (devm memory).
 * - struct mock_accel_fn (one per PF and per enabled VF) is reference
 *   counted: its owner (probe for a PF, the VF enable for a VF) and every
 *   open file of /dev/mockN hold a reference. Teardown first removes the
 *   class device (which drains running sysfs callbacks), then clears @alive
 *   under @lock, so calls on files that are still open fail with -ENODEV and
 *   never touch the PF or BAR0 again.
 * - Lock order: file lock -> fn->lock -> pf->engine_lock -> wordlist lock.
 *   pf->sriov_lock is taken before fn->lock of the VFs. Class-device sysfs
 *   callbacks never take pf->sriov_lock, because VF teardown holds it while
 *   it waits for their callbacks to drain.
 */
#ifndef MOCK_ACCEL_H
#define MOCK_ACCEL_H

#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/types.h>
#include <linux/uuid.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "mockaccel_regs.h"

#define MOCK_ACCEL_NAME			"mock-accel"
#define MOCK_ACCEL_MINORS_PER_PF	(MOCK_ACCEL_MAX_VFS + 1)
#define MOCK_ACCEL_MAX_PFS		32
#define MOCK_ACCEL_MINORS		(MOCK_ACCEL_MAX_PFS * MOCK_ACCEL_MINORS_PER_PF)
#define MOCK_ACCEL_NO_VF		0xffffffffU
#define MOCK_ACCEL_REVISION_MAJOR(rev)	(((rev) >> 16) & 0xff)

struct mock_accel_pf;

/**
 * struct mock_accel_fn - one function (PF or VF) as user space sees it
 * @ref: held by the owner and by each open file
 * @lock: serialises register writes and checks of @alive
 * @alive: cleared at teardown; open files then get -ENODEV
 * @pf: the PF implementing this function (itself for a PF); valid while @alive
 * @dev: the class device mockN or mockNvM
 * @vf_index: VF number, or MOCK_ACCEL_NO_VF for a PF
 * @minor: char device minor (8N for PF N, 8N + 1 + m for its VF m)
 * @status_reg: BAR0 offset of this function's STATUS register
 * @unhealthy: the health last signalled to user space (interrupt thread)
 * @uuid: the function's UUID
 * @memory_size: device memory in bytes
 * @capabilities: CAPABILITIES as reported for this function
 * @name: mockN or mockNvM
 * @pci_address: dddd:bb:dd.f (the routing ID for a VF)
 */
struct mock_accel_fn {
	struct kref ref;
	struct mutex lock; /* protects alive and pf; serialises register writes */
	bool alive;
	struct mock_accel_pf *pf;
	struct device *dev;
	u32 vf_index;
	unsigned int minor;
	u32 status_reg;
	bool unhealthy;
	uuid_t uuid;
	u64 memory_size;
	u32 capabilities;
	char name[16];
	char pci_address[16];
};

/**
 * struct mock_accel_pf - a bound PF and the VFs it models
 * @pdev: the PCI function
 * @bar: BAR0
 * @index: N of mockN
 * @name: mockN, also the name of the interrupt
 * @fw_version: FW_VERSION register
 * @fn: the PF's own function
 * @engine_lock: serialises the passphrase engine's register sequence
 * @sriov_lock: serialises VF enable/disable; protects @vfs and @num_vfs
 * @vfs: enabled VFs
 * @num_vfs: number of enabled VFs
 * @removing: set by remove under @sriov_lock: no VF may be enabled any more
 * @resetting: set under @sriov_lock from reset_prepare to reset_done
 * @total_vfs: SRIOV_TOTAL_VFS
 * @vf_offset: SRIOV_VF_OFFSET
 * @vf_stride: SRIOV_VF_STRIDE
 * @vf_memory: SRIOV_VF_MEMORY
 * @irq: the health interrupt (MSI or INTx), 0 if none was requested
 * @health_poll: periodic health check, the backstop for a lost interrupt
 */
struct mock_accel_pf {
	struct pci_dev *pdev;
	void __iomem *bar;
	int index;
	char name[16];
	u32 fw_version;
	struct mock_accel_fn *fn;
	struct mutex engine_lock; /* the passphrase engine's register sequence */
	struct mutex sriov_lock; /* VF enable/disable, vfs[] and num_vfs */
	struct mock_accel_fn *vfs[MOCK_ACCEL_MAX_VFS];
	u16 num_vfs;
	bool removing;
	bool resetting;
	u16 total_vfs;
	u32 vf_offset;
	u32 vf_stride;
	u64 vf_memory;
	int irq;
	struct delayed_work health_poll;
};

/**
 * struct mock_accel_driver - state shared by every bound function
 * @class: the mock-accel class
 * @devt: first device number of the char region
 * @cdev: one cdev for every minor; open() looks the function up in @minors
 * @pf_ida: PF numbers N
 * @minors: minor -> struct mock_accel_fn, for open()
 * @devices: class devices not yet released; module exit waits for none
 *
 * The class and the cdev are allocated by the driver core, which frees them
 * with its own code: their last reference may go after this module is gone
 * (CONFIG_DEBUG_KOBJECT_RELEASE delays every release by seconds to prove it).
 * A class device's release is ours, so exit waits for @devices to drop to 0.
 */
struct mock_accel_driver {
	struct class *class;
	dev_t devt;
	struct cdev *cdev;
	struct ida pf_ida;
	struct xarray minors;
	atomic_t devices;
};

extern struct mock_accel_driver mock_accel;

static inline u32 mock_accel_read(struct mock_accel_pf *pf, u32 reg)
{
	return ioread32(pf->bar + reg);
}

static inline void mock_accel_write(struct mock_accel_pf *pf, u32 reg, u32 val)
{
	iowrite32(val, pf->bar + reg);
}

static inline bool mock_accel_is_vf(const struct mock_accel_fn *fn)
{
	return fn->vf_index != MOCK_ACCEL_NO_VF;
}

/* mock-accel-core.c */
void mock_accel_fn_put(struct mock_accel_fn *fn);
int mock_accel_sriov_store(struct mock_accel_pf *pf, const char *buf);

/* mock-accel-sysfs.c */
extern const struct attribute_group *mock_accel_fn_groups[];
extern const struct attribute_group *mock_accel_pci_groups[];

/* mock-accel-cdev.c */
extern const struct file_operations mock_accel_fops;

/* mock-accel-fw.c: the firmware wordlist, loaded once and shared */
struct mock_accel_wordlist;
void mock_accel_fw_request_once(struct device *dev);
int mock_accel_fw_reload(struct device *dev);
struct mock_accel_wordlist *mock_accel_wordlist_get(void);
void mock_accel_wordlist_put(struct mock_accel_wordlist *wl);
u32 mock_accel_wordlist_words(void);
int mock_accel_wordlist_phrase(struct mock_accel_wordlist *wl, unsigned int words,
			       char sep, char *buf, size_t size);
void mock_accel_fw_exit(void);

#endif /* MOCK_ACCEL_H */
