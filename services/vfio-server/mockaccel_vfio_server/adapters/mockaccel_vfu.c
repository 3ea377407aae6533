/*
 * The C part of the cffi extension _mockaccel_vfu (built by _vfu_build.py).
 *
 * The context's private pointer is a struct mockaccel_private: the Python
 * owner (a cffi handle) and BAR0's register image. A guest read the access
 * rule clearly allows is served here without entering Python; every other
 * access goes to the Python handler.
 *
 * mockaccel_serve() runs an attached client in a thread of its own: cffi
 * releases the GIL for the call, so a plain read costs no Python at all.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "libvfio-user.h"

struct mockaccel_image {
	const unsigned char *bytes;	/* the device's register image, owned by Python */
	size_t size;
	bool serve_reads;		/* false while a read fault is injected */
	uint64_t reads;			/* reads served here, not seen by Python */
	vfu_region_access_cb_t *fallback;	/* the Python handler */
};

struct mockaccel_private {
	void *owner;
	struct mockaccel_image bar0;
};

static void *mockaccel_owner(vfu_ctx_t *vfu_ctx)
{
	struct mockaccel_private *priv = vfu_get_private(vfu_ctx);

	return priv->owner;
}

/*
 * Copy a plain read out of the image: 1, 2, 4 or 8 bytes, naturally aligned,
 * inside the region. Returns count, or -1 to leave the access to the Python
 * handler, which applies the same rule and says what is wrong.
 */
static ssize_t mockaccel_image_read(struct mockaccel_image *image, char *buf,
				    size_t count, loff_t offset)
{
	if (!image->serve_reads || !image->bytes)
		return -1;
	if (count != 1 && count != 2 && count != 4 && count != 8)
		return -1;
	if (offset < 0 || (uint64_t)offset % count != 0)
		return -1;
	if (count > image->size || (uint64_t)offset > image->size - count)
		return -1;
	memcpy(buf, image->bytes + offset, count);
	image->reads++;
	return (ssize_t)count;
}

static ssize_t mockaccel_bar0_access(vfu_ctx_t *vfu_ctx, char *buf,
				     size_t count, loff_t offset,
				     bool is_write)
{
	struct mockaccel_private *priv = vfu_get_private(vfu_ctx);
	ssize_t ret;

	if (!is_write) {
		ret = mockaccel_image_read(&priv->bar0, buf, count, offset);
		if (ret >= 0)
			return ret;
	}
	return priv->bar0.fallback(vfu_ctx, buf, count, offset, is_write);
}

/*
 * Handle up to max pending messages (all of them if max is 0). Returns how
 * many were handled (0: none pending), or -1 with errno set. A client that
 * went away is always -1 with ENOTCONN: when a reply fails with ECONNRESET
 * the library closes the connection but vfu_run_ctx() still returns success,
 * and only the poll fd, back to the listening socket, tells. The listening
 * socket stays open for the context's whole life, so no connection can have
 * its number: that test cannot be fooled.
 */
static int mockaccel_run(vfu_ctx_t *vfu_ctx, int max, int listen_fd)
{
	int handled = 0;
	int ret;

	while (max <= 0 || handled < max) {
		ret = vfu_run_ctx(vfu_ctx);
		if (ret < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		if (ret == 0)
			break;
		handled += ret;
	}
	if (vfu_get_poll_fd(vfu_ctx) == listen_fd) {
		errno = ENOTCONN;
		return -1;
	}
	return handled;
}

enum mockaccel_serve_end {
	MOCKACCEL_WOKEN = 0,	/* wake_fd is readable: the caller has work */
	MOCKACCEL_FAILED = -1,	/* errno says why; ENOTCONN: the client left */
	MOCKACCEL_STALLED = -2,	/* one message took stall_ms or more */
	MOCKACCEL_HUNG_UP = -3,	/* error or hang-up on the socket, no message */
};

static int64_t mockaccel_ms_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - start->tv_sec) * 1000 +
	       (now.tv_nsec - start->tv_nsec) / 1000000;
}

/*
 * Serve the attached client on conn_fd (non-blocking) until it ends or
 * wake_fd becomes readable: wait for either, then handle what is pending,
 * one message per readiness. wake_fd is checked first and left for the
 * caller to drain. conn_fd is polled only between vfu_run_ctx() calls and
 * only while the library still has it open: when the library closes it,
 * mockaccel_run() says so (ENOTCONN) and we return at once.
 */
static int mockaccel_serve(vfu_ctx_t *vfu_ctx, int conn_fd, int wake_fd,
			   int listen_fd, int stall_ms)
{
	struct pollfd fds[2] = {
		{ .fd = wake_fd, .events = POLLIN },
		{ .fd = conn_fd, .events = POLLIN },
	};
	struct timespec start;
	int ret;

	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return MOCKACCEL_FAILED;
		}
		if (fds[0].revents)
			return MOCKACCEL_WOKEN;
		if (!fds[1].revents)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &start);
		ret = mockaccel_run(vfu_ctx, 1, listen_fd);
		if (ret < 0)
			return MOCKACCEL_FAILED;
		if (mockaccel_ms_since(&start) >= stall_ms)
			return MOCKACCEL_STALLED;
		if (ret == 0 && (fds[1].revents & (POLLERR | POLLHUP)))
			return MOCKACCEL_HUNG_UP;
	}
}
