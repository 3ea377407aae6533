// SPDX-License-Identifier: GPL-2.0
/*
 * mock-accel: /dev/mockN and /dev/mockNvM (docs/abi.md section 5.5).
 *
 * One cdev covers every minor; open() finds the function in an xarray and
 * takes a reference on it, so an open file outlives the function's removal
 * (VF disable, unbind, module unload attempts) without a use-after-free:
 * every later call sees fn->alive cleared and fails with -ENODEV.
 */

#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "mock-accel.h"

#define MOCK_ACCEL_BLOCK_SIZE	512

/**
 * struct mock_accel_file - one open file
 * @fn: the function, referenced until release
 * @lock: serialises building and reading @block
 * @block: the text read() returns, built at the first read
 * @len: length of @block
 */
struct mock_accel_file {
	struct mock_accel_fn *fn;
	struct mutex lock; /* protects block and len */
	char *block;
	size_t len;
};

static int mock_accel_open(struct inode *inode, struct file *file)
{
	struct mock_accel_file *mf;
	struct mock_accel_fn *fn;

	mf = kzalloc(sizeof(*mf), GFP_KERNEL);
	if (!mf)
		return -ENOMEM;
	xa_lock(&mock_accel.minors);
	fn = xa_load(&mock_accel.minors, iminor(inode));
	if (fn)
		kref_get(&fn->ref);
	xa_unlock(&mock_accel.minors);
	if (!fn) {
		kfree(mf);
		return -ENODEV;
	}
	mf->fn = fn;
	mutex_init(&mf->lock);
	file->private_data = mf;
	return 0;
}

static int mock_accel_release(struct inode *inode, struct file *file)
{
	struct mock_accel_file *mf = file->private_data;

	mock_accel_fn_put(mf->fn);
	mutex_destroy(&mf->lock);
	kfree(mf->block);
	kfree(mf);
	return 0;
}

/* Called with fn->lock held and fn->alive set. */
static int mock_accel_sample(struct mock_accel_fn *fn, char *phrase, size_t size)
{
	struct mock_accel_wordlist *wl = mock_accel_wordlist_get();
	int ret;

	if (!wl)
		return -ENOENT;
	ret = mock_accel_wordlist_phrase(wl, MOCK_ACCEL_PASSPHRASE_DEFAULT_WORDS, '-',
					 phrase, size);
	mock_accel_wordlist_put(wl);
	return ret < 0 ? ret : 0;
}

/* Called with mf->lock and fn->lock held and fn->alive set. */
static int mock_accel_build_block(struct mock_accel_file *mf)
{
	struct mock_accel_fn *fn = mf->fn;
	char phrase[MOCK_ACCEL_PASSPHRASE_BUFFER_SIZE];
	u32 status = mock_accel_read(fn->pf, fn->status_reg);
	int ret;

	mf->block = kmalloc(MOCK_ACCEL_BLOCK_SIZE, GFP_KERNEL);
	if (!mf->block)
		return -ENOMEM;
	ret = mock_accel_sample(fn, phrase, sizeof(phrase));
	if (ret)
		strscpy(phrase, "(firmware not loaded)", sizeof(phrase));
	mf->len = scnprintf(mf->block, MOCK_ACCEL_BLOCK_SIZE,
			    "Mock Accelerator Device %s (%s)\nUUID: %pUb\nMemory: %llu bytes\n"
			    "Status: 0x%08x\nNUMA Node: %d\nWordlist: %u words loaded\n"
			    "Sample Passphrase (%d words): %s\n",
			    fn->name, mock_accel_is_vf(fn) ? "vf" : "pf", &fn->uuid,
			    fn->memory_size, status, dev_to_node(&fn->pf->pdev->dev),
			    mock_accel_wordlist_words(), MOCK_ACCEL_PASSPHRASE_DEFAULT_WORDS,
			    phrase);
	return 0;
}

static ssize_t mock_accel_read_file(struct file *file, char __user *buf, size_t count,
				    loff_t *ppos)
{
	struct mock_accel_file *mf = file->private_data;
	struct mock_accel_fn *fn = mf->fn;
	ssize_t ret = 0;

	mutex_lock(&mf->lock);
	mutex_lock(&fn->lock);
	if (!fn->alive)
		ret = -ENODEV;
	else if (!mf->block)
		ret = mock_accel_build_block(mf);
	mutex_unlock(&fn->lock);
	if (!ret)
		ret = simple_read_from_buffer(buf, count, ppos, mf->block, mf->len);
	mutex_unlock(&mf->lock);
	return ret;
}

static ssize_t mock_accel_write_file(struct file *file, const char __user *buf, size_t count,
				     loff_t *ppos)
{
	return -EINVAL;
}

/* Nothing may be set that this driver does not know: the fields are for growth. */
static bool mock_accel_passphrase_req_valid(const struct mock_accel_passphrase *req)
{
	return !(req->flags & ~MOCK_ACCEL_PASSPHRASE_FLAGS_KNOWN) &&
	       !memchr_inv(req->reserved0, 0, sizeof(req->reserved0)) &&
	       !memchr_inv(req->reserved, 0, sizeof(req->reserved));
}

/*
 * User memory is copied without fn->lock held: a user buffer that faults
 * slowly (userfaultfd, FUSE) must never hold up VF disable, remove or the
 * health scan, which take fn->lock under sriov_lock. Only the liveness check
 * runs under the lock; the passphrase comes from the shared wordlist.
 */
static long mock_accel_ioc_passphrase(struct mock_accel_fn *fn, void __user *argp)
{
	struct mock_accel_passphrase *req;
	struct mock_accel_wordlist *wl;
	unsigned int words;
	bool alive;
	long ret;

	req = memdup_user(argp, sizeof(*req));
	if (IS_ERR(req))
		return PTR_ERR(req);
	words = req->word_count ? req->word_count : MOCK_ACCEL_PASSPHRASE_DEFAULT_WORDS;
	if (!mock_accel_passphrase_req_valid(req) ||
	    words < MOCK_ACCEL_PASSPHRASE_MIN_WORDS || words > MOCK_ACCEL_PASSPHRASE_MAX_WORDS) {
		ret = -EINVAL;
		goto out;
	}
	mutex_lock(&fn->lock);
	alive = fn->alive;
	mutex_unlock(&fn->lock);
	if (!alive) {
		ret = -ENODEV;
		goto out;
	}
	wl = mock_accel_wordlist_get();
	if (!wl) {
		ret = -ENOENT;
		goto out;
	}
	memset(req->passphrase, 0, sizeof(req->passphrase));
	ret = mock_accel_wordlist_phrase(wl, words, '-', req->passphrase,
					 sizeof(req->passphrase));
	mock_accel_wordlist_put(wl);
	if (ret < 0)
		goto out;
	ret = copy_to_user(argp, req, sizeof(*req)) ? -EFAULT : 0;
out:
	kfree(req);
	return ret;
}

/* A snapshot under fn->lock, copied out after it is dropped. */
static long mock_accel_ioc_info(struct mock_accel_fn *fn, void __user *argp)
{
	struct mock_accel_info info = { };

	mutex_lock(&fn->lock);
	if (!fn->alive) {
		mutex_unlock(&fn->lock);
		return -ENODEV;
	}
	memcpy(info.uuid, fn->uuid.b, sizeof(info.uuid));
	info.memory_size = fn->memory_size;
	info.capabilities = fn->capabilities;
	info.status = mock_accel_read(fn->pf, fn->status_reg);
	info.numa_node = dev_to_node(&fn->pf->pdev->dev);
	info.vf_index = fn->vf_index;
	mutex_unlock(&fn->lock);
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

static long mock_accel_ioc_status(struct mock_accel_fn *fn, void __user *argp)
{
	u32 status;

	mutex_lock(&fn->lock);
	if (!fn->alive) {
		mutex_unlock(&fn->lock);
		return -ENODEV;
	}
	status = mock_accel_read(fn->pf, fn->status_reg);
	mutex_unlock(&fn->lock);
	return put_user(status, (u32 __user *)argp);
}

static long mock_accel_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct mock_accel_file *mf = file->private_data;
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case MOCK_ACCEL_IOC_STATUS:
		return mock_accel_ioc_status(mf->fn, argp);
	case MOCK_ACCEL_IOC_PASSPHRASE:
		return mock_accel_ioc_passphrase(mf->fn, argp);
	case MOCK_ACCEL_IOC_INFO:
		return mock_accel_ioc_info(mf->fn, argp);
	default:
		return -ENOTTY;
	}
}

const struct file_operations mock_accel_fops = {
	.owner = THIS_MODULE,
	.open = mock_accel_open,
	.release = mock_accel_release,
	.read = mock_accel_read_file,
	.write = mock_accel_write_file,
	.unlocked_ioctl = mock_accel_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = default_llseek,
};
