// SPDX-License-Identifier: GPL-2.0
/*
 * mock-accel: sysfs attributes of the class devices and of the PF's PCI
 * function (docs/abi.md section 5.4). Names, modes, formats and errno are
 * the ABI; the simulator in libs/mockaccel-common implements the same table
 * and tests/conformance checks both against each other.
 *
 * These callbacks run only while their device exists: teardown unregisters
 * the device, which waits for them, before it frees anything they use.
 */

#include <linux/kernel.h>
#include <linux/pci.h>
#include <linux/sysfs.h>

#include "mock-accel.h"

static const char * const mock_accel_passphrase_states[] = {
	[MOCK_ACCEL_PASSPHRASE_IDLE] = "idle",
	[MOCK_ACCEL_PASSPHRASE_BUSY] = "busy",
	[MOCK_ACCEL_PASSPHRASE_READY] = "ready",
	[MOCK_ACCEL_PASSPHRASE_ERROR] = "error",
};

static struct mock_accel_fn *to_fn(struct device *dev)
{
	return dev_get_drvdata(dev);
}

static ssize_t uuid_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%pUb\n", &to_fn(dev)->uuid);
}
static DEVICE_ATTR_RO(uuid);

static ssize_t memory_size_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", to_fn(dev)->memory_size);
}
static DEVICE_ATTR_RO(memory_size);

static ssize_t capabilities_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "0x%08x\n", to_fn(dev)->capabilities);
}
static DEVICE_ATTR_RO(capabilities);

static ssize_t status_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct mock_accel_fn *fn = to_fn(dev);

	return sysfs_emit(buf, "0x%08x\n", mock_accel_read(fn->pf, fn->status_reg));
}

/*
 * The device drops writes it refuses (QEMU fails them silently), so the
 * write is confirmed by reading ALLOCATED back: EIO if the device did not
 * take it (a VF it no longer has, a failing device).
 */
static ssize_t status_store(struct device *dev, struct device_attribute *attr,
			    const char *buf, size_t count)
{
	struct mock_accel_fn *fn = to_fn(dev);
	u32 val, now;
	int ret;

	ret = kstrtou32(buf, 0, &val);
	if (ret)
		return ret;
	if (val & ~MOCK_ACCEL_STATUS_ALLOCATED)
		return -EINVAL;

	mutex_lock(&fn->lock);
	if (fn->alive) {
		mock_accel_write(fn->pf, fn->status_reg, val);
		now = mock_accel_read(fn->pf, fn->status_reg);
		if (now == ~0U || (now & MOCK_ACCEL_STATUS_ALLOCATED) != val) {
			dev_warn(dev, "status write 0x%08x not taken: reads 0x%08x\n", val, now);
			ret = -EIO;
		}
	} else {
		ret = -ENODEV;
	}
	mutex_unlock(&fn->lock);
	if (ret)
		return ret;
	sysfs_notify(&dev->kobj, NULL, "status");
	return count;
}
static DEVICE_ATTR_RW(status);

static ssize_t health_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct mock_accel_fn *fn = to_fn(dev);
	u32 status = mock_accel_read(fn->pf, fn->status_reg);

	return sysfs_emit(buf, "%s\n",
			  status & MOCK_ACCEL_STATUS_UNHEALTHY ? "unhealthy" : "healthy");
}
static DEVICE_ATTR_RO(health);

static ssize_t numa_node_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", dev_to_node(&to_fn(dev)->pf->pdev->dev));
}
static DEVICE_ATTR_RO(numa_node);

static ssize_t pci_address_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", to_fn(dev)->pci_address);
}
static DEVICE_ATTR_RO(pci_address);

static ssize_t device_type_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", mock_accel_is_vf(to_fn(dev)) ? "vf" : "pf");
}
static DEVICE_ATTR_RO(device_type);

static ssize_t fw_version_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	u32 v = to_fn(dev)->pf->fw_version;

	return sysfs_emit(buf, "%u.%u.%u\n", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
}
static DEVICE_ATTR_RO(fw_version);

static ssize_t vf_index_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", to_fn(dev)->vf_index);
}
static DEVICE_ATTR_RO(vf_index);

static ssize_t sriov_totalvfs_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", to_fn(dev)->pf->total_vfs);
}
static DEVICE_ATTR_RO(sriov_totalvfs);

static ssize_t sriov_numvfs_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(to_fn(dev)->pf->num_vfs));
}

static ssize_t sriov_numvfs_store(struct device *dev, struct device_attribute *attr,
				  const char *buf, size_t count)
{
	int ret = mock_accel_sriov_store(to_fn(dev)->pf, buf);

	return ret ? ret : count;
}
static DEVICE_ATTR_RW(sriov_numvfs);

static ssize_t wordlist_loaded_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", mock_accel_wordlist_words() ? 1 : 0);
}
static DEVICE_ATTR_RO(wordlist_loaded);

static ssize_t wordlist_words_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", mock_accel_wordlist_words());
}
static DEVICE_ATTR_RO(wordlist_words);

/* Trigger attributes accept exactly the number 1. */
static int mock_accel_parse_trigger(const char *buf)
{
	u32 val;
	int ret;

	ret = kstrtou32(buf, 0, &val);
	if (ret)
		return ret;
	return val == 1 ? 0 : -EINVAL;
}

static ssize_t load_wordlist_store(struct device *dev, struct device_attribute *attr,
				   const char *buf, size_t count)
{
	int ret = mock_accel_parse_trigger(buf);

	if (!ret)
		ret = mock_accel_fw_reload(&to_fn(dev)->pf->pdev->dev);
	return ret ? ret : count;
}
static DEVICE_ATTR_WO(load_wordlist);

static ssize_t passphrase_length_show(struct device *dev, struct device_attribute *attr,
				      char *buf)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;

	return sysfs_emit(buf, "%u\n", mock_accel_read(pf, MOCK_ACCEL_REG_PASSPHRASE_LENGTH));
}

static ssize_t passphrase_length_store(struct device *dev, struct device_attribute *attr,
				       const char *buf, size_t count)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;
	u32 val;
	int ret;

	ret = kstrtou32(buf, 0, &val);
	if (ret)
		return ret;
	if (val < MOCK_ACCEL_PASSPHRASE_MIN_WORDS || val > MOCK_ACCEL_PASSPHRASE_MAX_WORDS)
		return -EINVAL;
	mutex_lock(&pf->engine_lock);
	mock_accel_write(pf, MOCK_ACCEL_REG_PASSPHRASE_LENGTH, val);
	mutex_unlock(&pf->engine_lock);
	return count;
}
static DEVICE_ATTR_RW(passphrase_length);

static ssize_t passphrase_generate_store(struct device *dev, struct device_attribute *attr,
					 const char *buf, size_t count)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;
	int ret = mock_accel_parse_trigger(buf);

	if (ret)
		return ret;
	/* The engine is synchronous: STATUS is ready or error once the write lands. */
	mutex_lock(&pf->engine_lock);
	mock_accel_write(pf, MOCK_ACCEL_REG_PASSPHRASE_CMD, MOCK_ACCEL_PASSPHRASE_CMD_GENERATE);
	mutex_unlock(&pf->engine_lock);
	return count;
}
static DEVICE_ATTR_WO(passphrase_generate);

static ssize_t passphrase_status_show(struct device *dev, struct device_attribute *attr,
				      char *buf)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;
	u32 state = mock_accel_read(pf, MOCK_ACCEL_REG_PASSPHRASE_STATUS);

	if (state >= ARRAY_SIZE(mock_accel_passphrase_states)) {
		dev_err(dev, "PASSPHRASE_STATUS reads %u\n", state);
		return -EIO;
	}
	return sysfs_emit(buf, "%s\n", mock_accel_passphrase_states[state]);
}
static DEVICE_ATTR_RO(passphrase_status);

static ssize_t passphrase_count_show(struct device *dev, struct device_attribute *attr,
				     char *buf)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;

	return sysfs_emit(buf, "%u\n", mock_accel_read(pf, MOCK_ACCEL_REG_PASSPHRASE_COUNT));
}
static DEVICE_ATTR_RO(passphrase_count);

/* One register read per 4 bytes, up to the terminating NUL, under the engine lock. */
static ssize_t passphrase_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct mock_accel_pf *pf = to_fn(dev)->pf;
	char phrase[MOCK_ACCEL_PASSPHRASE_BUFFER_SIZE];
	size_t i, len;
	__le32 word;

	mutex_lock(&pf->engine_lock);
	for (i = 0; i < sizeof(phrase); i += 4) {
		/* Byte i of the buffer is byte i of the register file: little-endian. */
		word = cpu_to_le32(mock_accel_read(pf, MOCK_ACCEL_REG_PASSPHRASE_BUFFER + i));
		memcpy(&phrase[i], &word, 4);
		if (memchr(&phrase[i], '\0', 4))
			break;
	}
	mutex_unlock(&pf->engine_lock);
	phrase[sizeof(phrase) - 1] = '\0';
	len = strnlen(phrase, min(i + 4, sizeof(phrase)));
	return sysfs_emit(buf, "%.*s\n", (int)len, phrase);
}
static DEVICE_ATTR_RO(passphrase);

static struct attribute *mock_accel_fn_attrs[] = {
	&dev_attr_uuid.attr,
	&dev_attr_memory_size.attr,
	&dev_attr_capabilities.attr,
	&dev_attr_status.attr,
	&dev_attr_health.attr,
	&dev_attr_numa_node.attr,
	&dev_attr_pci_address.attr,
	&dev_attr_device_type.attr,
	&dev_attr_fw_version.attr,
	&dev_attr_vf_index.attr,
	&dev_attr_sriov_totalvfs.attr,
	&dev_attr_sriov_numvfs.attr,
	&dev_attr_wordlist_loaded.attr,
	&dev_attr_wordlist_words.attr,
	&dev_attr_load_wordlist.attr,
	&dev_attr_passphrase_length.attr,
	&dev_attr_passphrase_generate.attr,
	&dev_attr_passphrase_status.attr,
	&dev_attr_passphrase_count.attr,
	&dev_attr_passphrase.attr,
	NULL
};

static umode_t mock_accel_fn_visible(struct kobject *kobj, struct attribute *attr, int n)
{
	struct mock_accel_fn *fn = to_fn(kobj_to_dev(kobj));
	bool vf = mock_accel_is_vf(fn);

	if (attr == &dev_attr_vf_index.attr)
		return vf ? attr->mode : 0;
	if (attr == &dev_attr_sriov_totalvfs.attr || attr == &dev_attr_sriov_numvfs.attr)
		return vf ? 0 : attr->mode;
	return attr->mode;
}

static const struct attribute_group mock_accel_fn_group = {
	.attrs = mock_accel_fn_attrs,
	.is_visible = mock_accel_fn_visible,
};

const struct attribute_group *mock_accel_fn_groups[] = {
	&mock_accel_fn_group,
	NULL
};

/*
 * The PCI core adds sriov_* to a function only when it has an SR-IOV
 * capability, which QEMU hides from vfio devices. The driver provides the
 * same two files on the PF's PCI function, backed by BAR0's SR-IOV block.
 */
static struct mock_accel_pf *to_pf(struct device *dev)
{
	return pci_get_drvdata(to_pci_dev(dev));
}

static ssize_t pci_sriov_totalvfs_show(struct device *dev, struct device_attribute *attr,
				       char *buf)
{
	return sysfs_emit(buf, "%u\n", to_pf(dev)->total_vfs);
}

static ssize_t pci_sriov_numvfs_show(struct device *dev, struct device_attribute *attr,
				     char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(to_pf(dev)->num_vfs));
}

static ssize_t pci_sriov_numvfs_store(struct device *dev, struct device_attribute *attr,
				      const char *buf, size_t count)
{
	int ret = mock_accel_sriov_store(to_pf(dev), buf);

	return ret ? ret : count;
}

static struct device_attribute dev_attr_pci_sriov_totalvfs =
	__ATTR(sriov_totalvfs, 0444, pci_sriov_totalvfs_show, NULL);
static struct device_attribute dev_attr_pci_sriov_numvfs =
	__ATTR(sriov_numvfs, 0644, pci_sriov_numvfs_show, pci_sriov_numvfs_store);

static struct attribute *mock_accel_pci_attrs[] = {
	&dev_attr_pci_sriov_totalvfs.attr,
	&dev_attr_pci_sriov_numvfs.attr,
	NULL
};

static const struct attribute_group mock_accel_pci_group = {
	.attrs = mock_accel_pci_attrs,
};

const struct attribute_group *mock_accel_pci_groups[] = {
	&mock_accel_pci_group,
	NULL
};
