// SPDX-License-Identifier: GPL-2.0
/*
 * mock-accel: the firmware wordlist (docs/abi.md section 5.6).
 *
 * One copy per module, not per device: the first probe requests it
 * asynchronously (so a missing file never stalls boot), every function
 * shares it, and load_wordlist replaces it. Users take a reference for as
 * long as they hold word pointers, so a reload never frees a list that an
 * ioctl or read() is still using.
 */

#include <linux/firmware.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/slab.h>

#include "mock-accel.h"

/**
 * struct mock_accel_wordlist - a parsed wordlist
 * @ref: one for being installed, one per user
 * @count: number of words (MOCK_ACCEL_WORDLIST_WORDS)
 * @text: the file's bytes with each '\n' replaced by NUL
 * @words: pointers into @text
 */
struct mock_accel_wordlist {
	struct kref ref;
	u32 count;
	char *text;
	const char *words[];
};

static DEFINE_MUTEX(mock_accel_fw_lock);
static struct mock_accel_wordlist *mock_accel_wl;	/* under mock_accel_fw_lock */
static bool mock_accel_fw_requested;			/* under mock_accel_fw_lock */

static void mock_accel_wordlist_release(struct kref *ref)
{
	struct mock_accel_wordlist *wl = container_of(ref, struct mock_accel_wordlist, ref);

	kvfree(wl->text);
	kvfree(wl);
}

void mock_accel_wordlist_put(struct mock_accel_wordlist *wl)
{
	kref_put(&wl->ref, mock_accel_wordlist_release);
}

struct mock_accel_wordlist *mock_accel_wordlist_get(void)
{
	struct mock_accel_wordlist *wl;

	mutex_lock(&mock_accel_fw_lock);
	wl = mock_accel_wl;
	if (wl)
		kref_get(&wl->ref);
	mutex_unlock(&mock_accel_fw_lock);
	return wl;
}

u32 mock_accel_wordlist_words(void)
{
	u32 count;

	mutex_lock(&mock_accel_fw_lock);
	count = mock_accel_wl ? mock_accel_wl->count : 0;
	mutex_unlock(&mock_accel_fw_lock);
	return count;
}

/* ASCII, '\n' line ends, exactly MOCK_ACCEL_WORDLIST_WORDS lines of [a-z][a-z-]*. */
static struct mock_accel_wordlist *
mock_accel_wordlist_parse(struct device *dev, const struct firmware *fw)
{
	struct mock_accel_wordlist *wl;
	size_t i, start = 0;
	u32 n = 0;
	char c;

	wl = kvzalloc(struct_size(wl, words, MOCK_ACCEL_WORDLIST_WORDS), GFP_KERNEL);
	if (!wl)
		return ERR_PTR(-ENOMEM);
	wl->text = kvmalloc(fw->size + 1, GFP_KERNEL);
	if (!wl->text) {
		kvfree(wl);
		return ERR_PTR(-ENOMEM);
	}
	memcpy(wl->text, fw->data, fw->size);
	wl->text[fw->size] = '\0';

	for (i = 0; i < fw->size; i++) {
		c = wl->text[i];
		if (c == '\n') {
			if (i == start || n == MOCK_ACCEL_WORDLIST_WORDS)
				goto bad;
			wl->text[i] = '\0';
			wl->words[n++] = &wl->text[start];
			start = i + 1;
		} else if (!(c >= 'a' && c <= 'z') && !(c == '-' && i != start)) {
			goto bad;
		}
	}
	if (start != fw->size || n != MOCK_ACCEL_WORDLIST_WORDS)
		goto bad;
	wl->count = n;
	kref_init(&wl->ref);
	return wl;

bad:
	dev_err(dev, "%s: bad format at byte %zu (line %u of %u, file size %zu)\n",
		MOCK_ACCEL_FIRMWARE_WORDLIST, i, n + 1, MOCK_ACCEL_WORDLIST_WORDS, fw->size);
	kvfree(wl->text);
	kvfree(wl);
	return ERR_PTR(-EINVAL);
}

/* Install @wl (NULL: no wordlist) and drop the previous one. */
static void mock_accel_wordlist_install(struct mock_accel_wordlist *wl)
{
	struct mock_accel_wordlist *old;

	mutex_lock(&mock_accel_fw_lock);
	old = mock_accel_wl;
	mock_accel_wl = wl;
	mutex_unlock(&mock_accel_fw_lock);
	if (old)
		mock_accel_wordlist_put(old);
}

/*
 * Install the wordlist parsed from @fw. On failure, @keep_old decides whether
 * the current wordlist stays: the first-probe request completes at an
 * arbitrary later time, possibly after load_wordlist installed a good list,
 * and must never replace that list with nothing.
 */
static int mock_accel_fw_apply(struct device *dev, const struct firmware *fw, bool keep_old)
{
	struct mock_accel_wordlist *wl;

	if (!fw) {
		if (!keep_old)
			mock_accel_wordlist_install(NULL);
		return -ENOENT;
	}
	wl = mock_accel_wordlist_parse(dev, fw);
	release_firmware(fw);
	if (IS_ERR(wl)) {
		if (!keep_old)
			mock_accel_wordlist_install(NULL);
		return PTR_ERR(wl);
	}
	mock_accel_wordlist_install(wl);
	dev_info(dev, "loaded %u words from %s\n", wl->count, MOCK_ACCEL_FIRMWARE_WORDLIST);
	return 0;
}

static void mock_accel_fw_loaded(const struct firmware *fw, void *context)
{
	struct device *dev = context;
	int ret;

	ret = mock_accel_fw_apply(dev, fw, true);
	if (ret)
		dev_warn(dev, "%s not loaded (%d): passphrase ioctls fail until load_wordlist succeeds\n",
			 MOCK_ACCEL_FIRMWARE_WORDLIST, ret);
}

/* At the first probe: the request holds a reference on @dev and on the module. */
void mock_accel_fw_request_once(struct device *dev)
{
	int ret;

	mutex_lock(&mock_accel_fw_lock);
	if (mock_accel_fw_requested) {
		mutex_unlock(&mock_accel_fw_lock);
		return;
	}
	mock_accel_fw_requested = true;
	mutex_unlock(&mock_accel_fw_lock);

	ret = request_firmware_nowait(THIS_MODULE, FW_ACTION_UEVENT, MOCK_ACCEL_FIRMWARE_WORDLIST,
				      dev, GFP_KERNEL, dev, mock_accel_fw_loaded);
	if (ret) {
		dev_warn(dev, "cannot request %s: %d\n", MOCK_ACCEL_FIRMWARE_WORDLIST, ret);
		mutex_lock(&mock_accel_fw_lock);
		mock_accel_fw_requested = false;
		mutex_unlock(&mock_accel_fw_lock);
	}
}

/* load_wordlist: reload synchronously; a failed reload leaves no wordlist. */
int mock_accel_fw_reload(struct device *dev)
{
	const struct firmware *fw;
	int ret;

	ret = request_firmware(&fw, MOCK_ACCEL_FIRMWARE_WORDLIST, dev);
	if (ret) {
		mock_accel_wordlist_install(NULL);
		return ret;
	}
	return mock_accel_fw_apply(dev, fw, false);
}

/* @words from @wl, chosen uniformly (get_random_u32_below), joined by @sep. */
int mock_accel_wordlist_phrase(struct mock_accel_wordlist *wl, unsigned int words,
			       char sep, char *buf, size_t size)
{
	size_t len = 0, n;
	const char *word;
	unsigned int i;

	for (i = 0; i < words; i++) {
		word = wl->words[get_random_u32_below(wl->count)];
		n = strlen(word);
		if (len + !!i + n + 1 > size)
			return -ENOSPC;
		if (i)
			buf[len++] = sep;
		memcpy(&buf[len], word, n);
		len += n;
	}
	buf[len] = '\0';
	return len;
}

void mock_accel_fw_exit(void)
{
	mock_accel_wordlist_install(NULL);
}
