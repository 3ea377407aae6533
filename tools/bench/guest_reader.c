/*
 * Guest side of tools/bench/vfio_register_reads.py: read one device register
 * N times in a tight loop and print how long it took.
 *
 *   guest_reader mmio PHYS_ADDR N   32-bit reads through an mmap of /dev/mem
 *   guest_reader port IO_PORT N     8-bit inb() from an I/O port
 *
 * Why a program and not busybox: `devmem` forks and execs once per read, so a
 * shell loop measures process start-up under TCG, not the device. The same
 * loop serves both servers: ours has a memory BAR, libvfio-user's C sample
 * gpio-pci-idio-16 only an I/O BAR; either way each access is one vfio-user
 * REGION_READ round trip between QEMU and the server.
 *
 * Output: "READER kind=mmio n=N ns=ELAPSED value=0x..." on stdout.
 * Built static on the host (gcc -O2 -static) and copied into the initramfs.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned long addr, n, i;
	uint32_t value = 0;
	uint64_t start, end;

	if (argc != 4) {
		fprintf(stderr, "usage: %s mmio|port ADDR N\n", argv[0]);
		return 2;
	}
	addr = strtoul(argv[2], NULL, 0);
	n = strtoul(argv[3], NULL, 0);

	if (strcmp(argv[1], "mmio") == 0) {
		long page = sysconf(_SC_PAGESIZE);
		int fd = open("/dev/mem", O_RDONLY | O_SYNC);
		volatile uint32_t *reg;
		void *map;

		if (fd < 0) {
			perror("open /dev/mem");
			return 1;
		}
		map = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, addr & ~(page - 1));
		if (map == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		reg = (volatile uint32_t *)((char *)map + (addr & (page - 1)));
		start = now_ns();
		for (i = 0; i < n; i++)
			value = *reg;
		end = now_ns();
	} else if (strcmp(argv[1], "port") == 0) {
		if (ioperm(addr, 1, 1) < 0) {
			perror("ioperm");
			return 1;
		}
		start = now_ns();
		for (i = 0; i < n; i++)
			value = inb(addr);
		end = now_ns();
	} else {
		fprintf(stderr, "unknown kind %s\n", argv[1]);
		return 2;
	}
	printf("READER kind=%s n=%lu ns=%llu value=0x%x\n", argv[1], n,
	       (unsigned long long)(end - start), value);
	return 0;
}
