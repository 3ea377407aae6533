// SPDX-License-Identifier: GPL-2.0
/*
 * mock-accel: PCI driver for the emulated mock-accel accelerator.
 *
 * Binds the PF (1de5:0001), checks the device's magic and ABI revision,
 * and turns the PF and the VFs modelled in its BAR0 SR-IOV block into the
 * class devices /sys/class/mock-accel/mockN[vM] and the character devices
 * /dev/mockN[vM] (docs/abi.md section 5). QEMU hides the SR-IOV capability
 * of vfio devices, so VFs are enabled through SRIOV_NUM_VFS in BAR0 and
 * appear as class devices whose parent is the PF's PCI function.
 *
 * The register map and the ioctl ABI come from the generated
 * mockaccel_regs.h only.
 */

#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/wait_bit.h>

#include "mock-accel.h"

#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX PCI_IRQ_LEGACY
#endif

#ifndef MOCK_ACCEL_VERSION
#define MOCK_ACCEL_VERSION "0.0.0-dev"
#endif

/*
 * QEMU does not route INTx of devices behind a pxb-pcie expander (the NUMA
 * topology of docs/abi.md section 6.1), so health is also polled.
 */
static unsigned int health_poll_ms = 500;
module_param(health_poll_ms, uint, 0444);
MODULE_PARM_DESC(health_poll_ms, "Health poll period in ms as a backstop for INTx (0: off)");

struct mock_accel_driver mock_accel = {
	.minors = XARRAY_INIT(mock_accel.minors, 0),
	.pf_ida = IDA_INIT(mock_accel.pf_ida),
	.devices = ATOMIC_INIT(0),
};

static void mock_accel_read_uuid(struct mock_accel_pf *pf, u32 reg, uuid_t *uuid)
{
	u32 word;
	int i;

	/* Byte i of the canonical form is at reg + i; registers are little-endian. */
	for (i = 0; i < UUID_SIZE; i++) {
		if (i % 4 == 0)
			word = mock_accel_read(pf, reg + i);
		uuid->b[i] = word >> (8 * (i % 4));
	}
}

static u64 mock_accel_read64(struct mock_accel_pf *pf, u32 lo_reg, u32 hi_reg)
{
	return (u64)mock_accel_read(pf, hi_reg) << 32 | mock_accel_read(pf, lo_reg);
}

/*
 * The function number of VF @m: PF function + VF_OFFSET + m * VF_STRIDE, in
 * checked u32 arithmetic (both come from the device). False if it overflows
 * or is past function 7 (one slot, no ARI).
 */
static bool mock_accel_vf_fn(struct mock_accel_pf *pf, u32 m, u32 *fnum)
{
	u32 step;

	if (check_mul_overflow(m, pf->vf_stride, &step) ||
	    check_add_overflow(step, pf->vf_offset, fnum) ||
	    check_add_overflow(*fnum, (u32)PCI_FUNC(pf->pdev->devfn), fnum))
		return false;
	return *fnum <= 7;
}

static void mock_accel_fn_release(struct kref *ref)
{
	struct mock_accel_fn *fn = container_of(ref, struct mock_accel_fn, ref);

	mutex_destroy(&fn->lock);
	kfree(fn);
}

void mock_accel_fn_put(struct mock_accel_fn *fn)
{
	kref_put(&fn->ref, mock_accel_fn_release);
}

/* The last reference to a class device is gone: module exit may be waiting for it. */
static void mock_accel_dev_release(struct device *dev)
{
	kfree(dev);
	if (atomic_dec_and_test(&mock_accel.devices))
		wake_up_var(&mock_accel.devices);
}

/* Create the class device, its /dev node and (for a VF) the physfn link. */
static struct mock_accel_fn *mock_accel_fn_create(struct mock_accel_pf *pf, u32 vf_index)
{
	struct pci_dev *pdev = pf->pdev;
	struct mock_accel_fn *fn;
	struct device *dev;
	u32 fnum;
	int ret;

	fn = kzalloc(sizeof(*fn), GFP_KERNEL);
	if (!fn)
		return ERR_PTR(-ENOMEM);
	kref_init(&fn->ref);
	mutex_init(&fn->lock);
	fn->alive = true;
	fn->pf = pf;
	fn->vf_index = vf_index;
	fn->minor = pf->index * MOCK_ACCEL_MINORS_PER_PF;

	if (vf_index == MOCK_ACCEL_NO_VF) {
		snprintf(fn->name, sizeof(fn->name), "mock%d", pf->index);
		strscpy(fn->pci_address, pci_name(pdev), sizeof(fn->pci_address));
		mock_accel_read_uuid(pf, MOCK_ACCEL_REG_UUID, &fn->uuid);
		fn->memory_size = mock_accel_read64(pf, MOCK_ACCEL_REG_MEMORY_SIZE_LO,
						    MOCK_ACCEL_REG_MEMORY_SIZE_HI);
		fn->capabilities = mock_accel_read(pf, MOCK_ACCEL_REG_CAPABILITIES);
		fn->status_reg = MOCK_ACCEL_REG_STATUS;
	} else {
		fn->minor += 1 + vf_index;
		snprintf(fn->name, sizeof(fn->name), "mock%dv%u", pf->index, vf_index);
		/* Checked at probe for the last VF (mock_accel_read_sriov()). */
		if (WARN_ON(!mock_accel_vf_fn(pf, vf_index, &fnum))) {
			mock_accel_fn_put(fn);
			return ERR_PTR(-EINVAL);
		}
		snprintf(fn->pci_address, sizeof(fn->pci_address), "%04x:%02x:%02x.%x",
			 pci_domain_nr(pdev->bus), pdev->bus->number,
			 PCI_SLOT(pdev->devfn), fnum);
		mock_accel_read_uuid(pf, MOCK_ACCEL_REG_VF_UUID(vf_index), &fn->uuid);
		fn->memory_size = pf->vf_memory;
		fn->capabilities = pf->fn->capabilities & ~MOCK_ACCEL_CAP_SRIOV;
		fn->status_reg = MOCK_ACCEL_REG_VF_STATUS(vf_index);
	}
	fn->unhealthy = mock_accel_read(pf, fn->status_reg) & MOCK_ACCEL_STATUS_UNHEALTHY;

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev) {
		ret = -ENOMEM;
		goto err_free;
	}
	atomic_inc(&mock_accel.devices);
	device_initialize(dev);
	dev->class = mock_accel.class;
	dev->parent = &pdev->dev;
	dev->devt = MKDEV(MAJOR(mock_accel.devt), fn->minor);
	dev->groups = mock_accel_fn_groups;
	dev->release = mock_accel_dev_release;
	dev_set_drvdata(dev, fn);
	/* The "add" uevent waits until the device is whole: physfn link, open() finds it. */
	dev_set_uevent_suppress(dev, true);
	ret = dev_set_name(dev, "%s", fn->name);
	if (!ret)
		ret = device_add(dev);
	if (ret) {
		dev_err(&pdev->dev, "cannot create class device %s: %d\n", fn->name, ret);
		put_device(dev);
		goto err_free;
	}
	fn->dev = dev;
	if (vf_index != MOCK_ACCEL_NO_VF) {
		ret = sysfs_create_link(&fn->dev->kobj, &pf->fn->dev->kobj, "physfn");
		if (ret) {
			dev_err(&pdev->dev, "cannot link %s to its PF: %d\n", fn->name, ret);
			goto err_unregister;
		}
	}
	ret = xa_insert(&mock_accel.minors, fn->minor, fn, GFP_KERNEL);
	if (ret) {
		dev_err(&pdev->dev, "minor %u of %s is taken: %d\n", fn->minor, fn->name, ret);
		goto err_unlink;
	}
	dev_set_uevent_suppress(dev, false);
	kobject_uevent(&dev->kobj, KOBJ_ADD);
	return fn;

err_unlink:
	if (vf_index != MOCK_ACCEL_NO_VF)
		sysfs_remove_link(&fn->dev->kobj, "physfn");
err_unregister:
	device_unregister(fn->dev);
err_free:
	mock_accel_fn_put(fn);
	return ERR_PTR(ret);
}

/* The mirror of mock_accel_fn_create(); open files keep @fn until released. */
static void mock_accel_fn_destroy(struct mock_accel_fn *fn)
{
	xa_erase(&mock_accel.minors, fn->minor);
	if (mock_accel_is_vf(fn))
		sysfs_remove_link(&fn->dev->kobj, "physfn");
	/* Removes the sysfs files and waits for running callbacks. */
	device_unregister(fn->dev);

	mutex_lock(&fn->lock);
	fn->alive = false;
	fn->pf = NULL;
	mutex_unlock(&fn->lock);
	mock_accel_fn_put(fn);
}

/* Called with pf->sriov_lock held and no VF enabled. */
static int mock_accel_vfs_enable(struct mock_accel_pf *pf, u16 count)
{
	struct mock_accel_fn *fn;
	u32 enabled;
	u16 m;

	mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, count);
	enabled = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS);
	if (enabled != count) {
		dev_err(&pf->pdev->dev, "device refused %u VFs: SRIOV_NUM_VFS reads %u\n",
			count, enabled);
		mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, 0);
		return -EIO;
	}
	for (m = 0; m < count; m++) {
		fn = mock_accel_fn_create(pf, m);
		if (IS_ERR(fn))
			goto err_unwind;
		pf->vfs[m] = fn;
		pf->num_vfs = m + 1;
	}
	dev_info(&pf->pdev->dev, "%s: enabled %u VFs\n", pf->name, count);
	return 0;

err_unwind:
	while (pf->num_vfs) {
		pf->num_vfs--;
		mock_accel_fn_destroy(pf->vfs[pf->num_vfs]);
		pf->vfs[pf->num_vfs] = NULL;
	}
	mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, 0);
	return PTR_ERR(fn);
}

/*
 * Called with pf->sriov_lock held. Unless @force, refuse with -EBUSY while
 * any VF is allocated. Each VF is marked dead under its own lock right after
 * its check, so a racing status write cannot allocate it behind our back.
 */
static int mock_accel_vfs_disable(struct mock_accel_pf *pf, bool force)
{
	struct mock_accel_fn *fn;
	u32 status;
	u16 m;

	for (m = 0; m < pf->num_vfs && !force; m++) {
		fn = pf->vfs[m];
		mutex_lock(&fn->lock);
		status = mock_accel_read(pf, fn->status_reg);
		if (status & MOCK_ACCEL_STATUS_ALLOCATED) {
			mutex_unlock(&fn->lock);
			dev_info(&pf->pdev->dev, "%s is allocated (status 0x%08x): VFs stay enabled\n",
				 fn->name, status);
			while (m--) {
				mutex_lock(&pf->vfs[m]->lock);
				pf->vfs[m]->alive = true;
				mutex_unlock(&pf->vfs[m]->lock);
			}
			return -EBUSY;
		}
		fn->alive = false;
		mutex_unlock(&fn->lock);
	}
	while (pf->num_vfs) {
		pf->num_vfs--;
		mock_accel_fn_destroy(pf->vfs[pf->num_vfs]);
		pf->vfs[pf->num_vfs] = NULL;
	}
	mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, 0);
	dev_info(&pf->pdev->dev, "%s: VFs disabled\n", pf->name);
	return 0;
}

/* sriov_numvfs writes, on the class device and on the PCI function. */
int mock_accel_sriov_store(struct mock_accel_pf *pf, const char *buf)
{
	u16 count;
	int ret;

	ret = kstrtou16(buf, 0, &count);
	if (ret)
		return ret;
	if (count > pf->total_vfs)
		return -ERANGE;

	mutex_lock(&pf->sriov_lock);
	/* No PF function (not yet published, or torn down): VFs have nothing to hang from. */
	if (pf->removing || !pf->fn)
		ret = -ENODEV;
	else if (pf->resetting)
		ret = -EBUSY;
	else if (count == pf->num_vfs)
		ret = 0;
	else if (count && pf->num_vfs)
		ret = -EBUSY;
	else if (count)
		ret = mock_accel_vfs_enable(pf, count);
	else
		ret = mock_accel_vfs_disable(pf, false);
	mutex_unlock(&pf->sriov_lock);
	return ret;
}

static void mock_accel_health_check(struct mock_accel_fn *fn)
{
	u32 status = mock_accel_read(fn->pf, fn->status_reg);
	bool unhealthy = status & MOCK_ACCEL_STATUS_UNHEALTHY;

	if (unhealthy == fn->unhealthy)
		return;
	fn->unhealthy = unhealthy;
	dev_info(fn->dev, "health: %s (status 0x%08x)\n",
		 unhealthy ? "unhealthy" : "healthy", status);
	sysfs_notify(&fn->dev->kobj, NULL, "status");
	sysfs_notify(&fn->dev->kobj, NULL, "health");
}

/*
 * INTx may be shared: claim it only if the device has a cause pending. An
 * all-ones read (a failed read, or a device that is gone) still acknowledges
 * every cause the driver knows: with level-triggered INTx a cause left
 * pending would fire again at each unmask and never let the line go.
 */
static irqreturn_t mock_accel_irq(int irq, void *data)
{
	struct mock_accel_pf *pf = data;
	u32 pending = mock_accel_read(pf, MOCK_ACCEL_REG_IRQ_STATUS);

	if (!pending)
		return IRQ_NONE;
	if (pending == ~0U)
		pending = MOCK_ACCEL_IRQ_HEALTH;
	/* RW1C: writing the causes back deasserts the line. */
	mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_STATUS, pending);
	return IRQ_WAKE_THREAD;
}

/* Called with pf->sriov_lock held; pf->fn is NULL until probe has created it. */
static void mock_accel_health_scan_locked(struct mock_accel_pf *pf)
{
	u16 m;

	if (!pf->fn)
		return;
	mock_accel_health_check(pf->fn);
	for (m = 0; m < pf->num_vfs; m++)
		mock_accel_health_check(pf->vfs[m]);
}

static void mock_accel_health_scan(struct mock_accel_pf *pf)
{
	mutex_lock(&pf->sriov_lock);
	mock_accel_health_scan_locked(pf);
	mutex_unlock(&pf->sriov_lock);
}

static irqreturn_t mock_accel_irq_thread(int irq, void *data)
{
	mock_accel_health_scan(data);
	return IRQ_HANDLED;
}

/*
 * The backstop for a lost interrupt: acknowledge whatever is pending (so the
 * next cause makes a new MSI edge) and look at every function's health.
 */
static void mock_accel_health_poll(struct work_struct *work)
{
	struct mock_accel_pf *pf = container_of(to_delayed_work(work), struct mock_accel_pf,
						health_poll);
	u32 pending = mock_accel_read(pf, MOCK_ACCEL_REG_IRQ_STATUS);

	if (pending)
		mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_STATUS,
				 pending == ~0U ? MOCK_ACCEL_IRQ_HEALTH : pending);
	mock_accel_health_scan(pf);
	schedule_delayed_work(&pf->health_poll, msecs_to_jiffies(health_poll_ms));
}

/*
 * MSI where the platform routes it (a PF behind a pxb-pcie expander gets no
 * INTx from QEMU), shared INTx otherwise. Neither is fatal: the health poll
 * still sees every change.
 */
static int mock_accel_irq_setup(struct mock_accel_pf *pf)
{
	struct pci_dev *pdev = pf->pdev;
	unsigned long flags = 0;
	int ret, irq;

	/* An MSI is a memory write by the device: without bus mastering it is dropped. */
	pci_set_master(pdev);
	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI | PCI_IRQ_INTX);
	if (ret < 0) {
		dev_warn(&pdev->dev,
			 "no MSI and no INTx (%d): health changes are only polled\n", ret);
		return 0;
	}
	irq = pci_irq_vector(pdev, 0);
	if (!pdev->msi_enabled)
		flags |= IRQF_SHARED;
	ret = request_threaded_irq(irq, mock_accel_irq, mock_accel_irq_thread, flags,
				   pf->name, pf);
	if (ret) {
		dev_err(&pdev->dev, "cannot request IRQ %d: %d\n", irq, ret);
		pci_free_irq_vectors(pdev);
		return ret;
	}
	pf->irq = irq;
	dev_info(&pdev->dev, "%s: health interrupt %s, IRQ %d\n", pf->name,
		 pdev->msi_enabled ? "MSI" : "INTx", irq);
	return 0;
}

static void mock_accel_irq_teardown(struct mock_accel_pf *pf)
{
	if (!pf->irq)
		return;
	mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_ENABLE, 0);
	free_irq(pf->irq, pf);
	pci_free_irq_vectors(pf->pdev);
	pf->irq = 0;
}

static int mock_accel_check_identity(struct mock_accel_pf *pf)
{
	u32 id = mock_accel_read(pf, MOCK_ACCEL_REG_ID);
	u32 rev = mock_accel_read(pf, MOCK_ACCEL_REG_REVISION);

	if (id != MOCK_ACCEL_DEVICE_MAGIC ||
	    MOCK_ACCEL_REVISION_MAJOR(rev) != MOCK_ACCEL_REVISION_MAJOR(MOCK_ACCEL_ABI_REVISION)) {
		dev_err(&pf->pdev->dev,
			"not a mock-accel ABI %u device: ID 0x%08x (want 0x%08x), REVISION 0x%08x (want 0x%08x)\n",
			MOCK_ACCEL_REVISION_MAJOR(MOCK_ACCEL_ABI_REVISION), id,
			MOCK_ACCEL_DEVICE_MAGIC, rev, MOCK_ACCEL_ABI_REVISION);
		return -ENODEV;
	}
	return 0;
}

static void mock_accel_read_sriov(struct mock_accel_pf *pf)
{
	u32 total = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_TOTAL_VFS);
	u32 leftover, last;

	if (total > MOCK_ACCEL_MAX_VFS) {
		dev_warn(&pf->pdev->dev, "SRIOV_TOTAL_VFS %u > %u: SR-IOV disabled\n",
			 total, MOCK_ACCEL_MAX_VFS);
		total = 0;
	}
	pf->total_vfs = total;
	pf->vf_offset = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_VF_OFFSET);
	pf->vf_stride = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_VF_STRIDE);
	pf->vf_memory = mock_accel_read64(pf, MOCK_ACCEL_REG_SRIOV_VF_MEMORY_LO,
					  MOCK_ACCEL_REG_SRIOV_VF_MEMORY_HI);
	if (total && !mock_accel_vf_fn(pf, total - 1, &last)) {
		dev_warn(&pf->pdev->dev, "VF offset %u stride %u exceed function 7: SR-IOV disabled\n",
			 pf->vf_offset, pf->vf_stride);
		pf->total_vfs = 0;
	}

	/* VFs left enabled by an earlier driver instance have no class devices. */
	leftover = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS);
	if (leftover) {
		dev_info(&pf->pdev->dev, "disabling %u VFs left enabled\n", leftover);
		mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, 0);
	}
}

/*
 * BAR0 through plain devres calls: pcim_iomap_regions() is deprecated and its
 * successor pcim_iomap_region() exists only from 6.11 on.
 */
static void __iomem *mock_accel_map_bar0(struct pci_dev *pdev)
{
	resource_size_t start = pci_resource_start(pdev, 0);
	resource_size_t len = pci_resource_len(pdev, 0);
	void __iomem *bar;

	if (!devm_request_mem_region(&pdev->dev, start, len, MOCK_ACCEL_NAME))
		return IOMEM_ERR_PTR(-EBUSY);
	bar = devm_ioremap(&pdev->dev, start, len);
	return bar ? bar : IOMEM_ERR_PTR(-ENOMEM);
}

/*
 * Remove the PF's class device and every VF. From here on nothing can enable
 * a VF (pf->removing) and the health scan finds no function (pf->fn NULL).
 */
static void mock_accel_fns_teardown(struct mock_accel_pf *pf)
{
	struct mock_accel_fn *fn;

	mutex_lock(&pf->sriov_lock);
	pf->removing = true;
	if (pf->num_vfs)
		mock_accel_vfs_disable(pf, true);
	fn = pf->fn;
	pf->fn = NULL;
	mutex_unlock(&pf->sriov_lock);
	if (fn)
		mock_accel_fn_destroy(fn);
}

/*
 * Probe order: the interrupt first, the class device (with its writable
 * sriov_numvfs and the /dev node) last, so that nothing user space can reach
 * exists before everything it uses is set up, and a failure never leaves a
 * VF behind.
 */
static int mock_accel_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct mock_accel_pf *pf;
	struct mock_accel_fn *fn;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret) {
		dev_err(&pdev->dev, "cannot enable device: %d\n", ret);
		return ret;
	}
	if (!(pci_resource_flags(pdev, 0) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, 0) < MOCK_ACCEL_BAR0_SIZE) {
		dev_err(&pdev->dev, "BAR0 is %llu bytes (flags 0x%lx), want a %u-byte memory BAR\n",
			(u64)pci_resource_len(pdev, 0), pci_resource_flags(pdev, 0),
			MOCK_ACCEL_BAR0_SIZE);
		return -ENODEV;
	}

	pf = devm_kzalloc(&pdev->dev, sizeof(*pf), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	pf->pdev = pdev;
	pf->bar = mock_accel_map_bar0(pdev);
	if (IS_ERR(pf->bar)) {
		ret = PTR_ERR(pf->bar);
		dev_err(&pdev->dev, "cannot map BAR0: %d\n", ret);
		return ret;
	}
	mutex_init(&pf->engine_lock);
	mutex_init(&pf->sriov_lock);
	INIT_DELAYED_WORK(&pf->health_poll, mock_accel_health_poll);
	pci_set_drvdata(pdev, pf);

	ret = mock_accel_check_identity(pf);
	if (ret)
		return ret;
	pf->fw_version = mock_accel_read(pf, MOCK_ACCEL_REG_FW_VERSION);
	mock_accel_read_sriov(pf);

	ret = ida_alloc_max(&mock_accel.pf_ida, MOCK_ACCEL_MAX_PFS - 1, GFP_KERNEL);
	if (ret < 0) {
		dev_err(&pdev->dev, "no PF number left (max %d): %d\n", MOCK_ACCEL_MAX_PFS, ret);
		return ret;
	}
	pf->index = ret;
	snprintf(pf->name, sizeof(pf->name), "mock%d", pf->index);

	mock_accel_fw_request_once(&pdev->dev);

	ret = mock_accel_irq_setup(pf);
	if (ret)
		goto err_ida;

	fn = mock_accel_fn_create(pf, MOCK_ACCEL_NO_VF);
	if (IS_ERR(fn)) {
		ret = PTR_ERR(fn);
		goto err_irq;
	}
	mutex_lock(&pf->sriov_lock);
	pf->fn = fn;
	mutex_unlock(&pf->sriov_lock);

	if (pf->irq)
		mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_ENABLE, MOCK_ACCEL_IRQ_HEALTH);
	if (health_poll_ms)
		schedule_delayed_work(&pf->health_poll, msecs_to_jiffies(health_poll_ms));

	dev_info(&pdev->dev,
		 "%s: uuid %pUb, memory %llu, capabilities 0x%08x, %u VFs, NUMA node %d\n",
		 fn->name, &fn->uuid, fn->memory_size, fn->capabilities, pf->total_vfs,
		 dev_to_node(&pdev->dev));
	return 0;

err_irq:
	mock_accel_fns_teardown(pf);
	mock_accel_irq_teardown(pf);
err_ida:
	ida_free(&mock_accel.pf_ida, pf->index);
	return ret;
}

/* The mirror of probe, after the VFs (created last, at run time) are gone. */
static void mock_accel_remove(struct pci_dev *pdev)
{
	struct mock_accel_pf *pf = pci_get_drvdata(pdev);

	mock_accel_fns_teardown(pf);
	cancel_delayed_work_sync(&pf->health_poll);
	mock_accel_irq_teardown(pf);
	ida_free(&mock_accel.pf_ida, pf->index);
	mutex_destroy(&pf->sriov_lock);
	mutex_destroy(&pf->engine_lock);
}

/*
 * Function-level reset (sysfs "reset", or a hypervisor's): the device drops
 * its VFs, ALLOCATED, IRQ_ENABLE and the passphrase state (docs/abi.md §3.3).
 * Before it, remove the VF class devices and stop touching the registers;
 * after it, enable the health interrupt again and rescan, so what user space
 * sees is what the device holds. sriov_numvfs refuses with EBUSY in between.
 */
static void mock_accel_reset_prepare(struct pci_dev *pdev)
{
	struct mock_accel_pf *pf = pci_get_drvdata(pdev);

	mutex_lock(&pf->sriov_lock);
	pf->resetting = true;
	if (pf->num_vfs)
		mock_accel_vfs_disable(pf, true);
	mutex_unlock(&pf->sriov_lock);
	cancel_delayed_work_sync(&pf->health_poll);
	if (pf->irq) {
		mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_ENABLE, 0);
		synchronize_irq(pf->irq);
	}
	dev_info(&pdev->dev, "%s: reset: VFs removed\n", pf->name);
}

static void mock_accel_reset_done(struct pci_dev *pdev)
{
	struct mock_accel_pf *pf = pci_get_drvdata(pdev);
	u32 leftover = mock_accel_read(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS);

	if (leftover) {
		dev_warn(&pdev->dev, "%s: %u VFs still enabled after reset: disabling\n",
			 pf->name, leftover);
		mock_accel_write(pf, MOCK_ACCEL_REG_SRIOV_NUM_VFS, 0);
	}
	if (pf->irq)
		mock_accel_write(pf, MOCK_ACCEL_REG_IRQ_ENABLE, MOCK_ACCEL_IRQ_HEALTH);
	mutex_lock(&pf->sriov_lock);
	pf->resetting = false;
	mock_accel_health_scan_locked(pf);
	mutex_unlock(&pf->sriov_lock);
	if (pf->fn)
		sysfs_notify(&pf->fn->dev->kobj, NULL, "status");
	if (health_poll_ms)
		schedule_delayed_work(&pf->health_poll, msecs_to_jiffies(health_poll_ms));
}

static const struct pci_error_handlers mock_accel_err_handlers = {
	.reset_prepare = mock_accel_reset_prepare,
	.reset_done = mock_accel_reset_done,
};

static const struct pci_device_id mock_accel_ids[] = {
	{ PCI_DEVICE(MOCK_ACCEL_PCI_VENDOR_ID, MOCK_ACCEL_PCI_DEVICE_ID_PF) },
	{ }
};
MODULE_DEVICE_TABLE(pci, mock_accel_ids);

static struct pci_driver mock_accel_driver = {
	.name = MOCK_ACCEL_NAME,
	.id_table = mock_accel_ids,
	.probe = mock_accel_probe,
	.remove = mock_accel_remove,
	.err_handler = &mock_accel_err_handlers,
	.dev_groups = mock_accel_pci_groups,
};

/* class_create() lost its owner argument in 6.4, when it stopped being a macro. */
static struct class *mock_accel_class_create(void)
{
#ifdef class_create
	return class_create(THIS_MODULE, MOCK_ACCEL_NAME);
#else
	return class_create(MOCK_ACCEL_NAME);
#endif
}

static int __init mock_accel_init(void)
{
	int ret;

	ret = alloc_chrdev_region(&mock_accel.devt, 0, MOCK_ACCEL_MINORS, MOCK_ACCEL_NAME);
	if (ret)
		return ret;
	mock_accel.cdev = cdev_alloc();
	if (!mock_accel.cdev) {
		ret = -ENOMEM;
		goto err_region;
	}
	mock_accel.cdev->ops = &mock_accel_fops;
	mock_accel.cdev->owner = THIS_MODULE;
	ret = cdev_add(mock_accel.cdev, mock_accel.devt, MOCK_ACCEL_MINORS);
	if (ret) {
		kobject_put(&mock_accel.cdev->kobj);
		goto err_region;
	}
	/* devtmpfs gives class nodes mode 0600 by default. */
	mock_accel.class = mock_accel_class_create();
	if (IS_ERR(mock_accel.class)) {
		ret = PTR_ERR(mock_accel.class);
		goto err_cdev;
	}
	ret = pci_register_driver(&mock_accel_driver);
	if (ret)
		goto err_class;
	return 0;

err_class:
	class_destroy(mock_accel.class);
err_cdev:
	cdev_del(mock_accel.cdev);
err_region:
	unregister_chrdev_region(mock_accel.devt, MOCK_ACCEL_MINORS);
	return ret;
}

static void __exit mock_accel_exit(void)
{
	pci_unregister_driver(&mock_accel_driver);
	class_destroy(mock_accel.class);
	cdev_del(mock_accel.cdev);
	unregister_chrdev_region(mock_accel.devt, MOCK_ACCEL_MINORS);
	mock_accel_fw_exit();
	ida_destroy(&mock_accel.pf_ida);
	/* mock_accel_dev_release() is module code: it must not run after the module is gone. */
	wait_var_event(&mock_accel.devices, !atomic_read(&mock_accel.devices));
}

module_init(mock_accel_init);
module_exit(mock_accel_exit);

MODULE_DESCRIPTION("Driver for the emulated mock-accel PCIe accelerator");
MODULE_LICENSE("GPL");
MODULE_VERSION(MOCK_ACCEL_VERSION);
MODULE_FIRMWARE(MOCK_ACCEL_FIRMWARE_WORDLIST);
