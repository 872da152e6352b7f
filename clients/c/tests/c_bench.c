/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Round trips of a C VM, for bench/c-client.ts: FFA_VERSION, a direct
 * request to the C partition and back, and a 4 KiB share, retrieve, write,
 * relinquish, reclaim cycle measured two ways:
 * - "cycle": with the C partition, signalled by a direct request (whose
 *   hops through the SPMC to the partition's process are in the time);
 * - "cycle_direct": between two C VMs, each making its own calls: A shares,
 *   B retrieves (and RX_RELEASE), checks and writes through the pointer,
 *   relinquishes, A reclaims and reads B's bytes through its pointer. B runs in a child
 *   forked before any connection (one address space cannot hold a guest
 *   page twice: IPA == PA), told the handle and answering through pipes.
 * Prints "NAME P50 P99 CALLS" in microseconds per line.
 *
 * Usage: c_bench ADDRESS SP_ID SAMPLES
 */
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

static uint8_t ram[32][PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static struct rspmc_ep *ep;
static uint16_t self, sp;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, double *t, int n, int calls)
{
	qsort(t, n, sizeof(double), cmp);
	printf("%s %.1f %.1f %d\n", name, t[n / 2], t[(int)(n * 0.99)], calls);
	fflush(stdout);
}

static void version(void)
{
	uint64_t x[RSPMC_REGS];

	regs(x, FFA_VERSION, FFA_VERSION_1_2, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
}

static void direct(void)
{
	uint64_t x[RSPMC_REGS];

	do {
		regs(x, FFA_MSG_SEND_DIRECT_REQ_64, (uint64_t)self << 16 | sp, 0,
		     CMD_ECHO, 1, 2, 3, 4);
		must_call(ep, 0, x);
	} while (ffa_error(x) == FFA_BUSY);
}

/* Share a page, the partition retrieves, checks, writes, relinquishes; reclaim. */
static void cycle(void)
{
	uint64_t x[RSPMC_REGS];
	uint8_t *page = ram[8];
	uint32_t len = mem_descriptor(ram[0], self, sp, MEM_SHARE,
				      (uintptr_t)page, 1);

	memset(page, 1, PAGE_SIZE);
	regs(x, FFA_MEM_SHARE_32, len, len, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	if (x[0] != FFA_SUCCESS_32)
		exit(3);
	uint64_t handle = x[2] | x[3] << 32;

	regs(x, FFA_MSG_SEND_DIRECT_REQ_64, (uint64_t)self << 16 | sp, 0,
	     CMD_CHECK_MEM, handle & 0xffffffff, handle >> 32, MEM_SHARE,
	     1 | 2 << 8);
	must_call(ep, 0, x);
	if (x[4] != 0)
		exit(4);
	regs(x, FFA_MEM_RECLAIM, handle & 0xffffffff, handle >> 32, 0, 0, 0, 0,
	     0);
	must_call(ep, 0, x);
	if (x[0] != FFA_SUCCESS_32 || page[0] != 2)
		exit(5);
}

/* The two VMs of cycle_direct: A here, B in the child; a pipe each way. */
static int to_b[2], to_a[2];
static uint16_t vm_b;

static void send_word(int fd, uint64_t v)
{
	if (write(fd, &v, sizeof(v)) != sizeof(v))
		exit(6);
}

static uint64_t recv_word(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		exit(7);
	return v;
}

/*
 * A's side: share a page with B, wait for B, reclaim, read B's bytes. A
 * does not write it (the cycle is B's write): B finds its previous bytes,
 * come back to A by reclaim and to B again by retrieve.
 */
static uint8_t b_wrote; /* what B writes in the next cycle: a counter */

static void cycle_direct(void)
{
	uint64_t x[RSPMC_REGS];
	uint8_t *page = ram[9];
	uint32_t len = mem_descriptor(ram[0], self, vm_b, MEM_SHARE,
				      (uintptr_t)page, 1);

	regs(x, FFA_MEM_SHARE_32, len, len, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	if (x[0] != FFA_SUCCESS_32)
		exit(3);
	uint64_t handle = x[2] | x[3] << 32;

	send_word(to_b[1], handle);
	if (recv_word(to_a[0]) != 0)
		exit(4);
	regs(x, FFA_MEM_RECLAIM, handle & 0xffffffff, handle >> 32, 0, 0, 0, 0,
	     0);
	must_call(ep, 0, x);
	++b_wrote;
	if (x[0] != FFA_SUCCESS_32 || page[0] != b_wrote ||
	    page[PAGE_SIZE - 1] != b_wrote)
		exit(5);
}

/*
 * B: a VM of its own (its window placed by the server), told its id to A,
 * then for each handle: retrieve, RX_RELEASE, check the page holds what it
 * wrote last time (zero at first), write the next count over it,
 * relinquish, answer 0 (or where it failed).
 */
static int vm_b_main(const char *address, uint16_t a)
{
	struct rspmc_connect_opts co = { .address = address };
	struct rspmc_vm_opts vo = { .name = "c-bench-b", .ram_bytes = 1 << 16 };
	struct rspmc_conn *conn;
	struct rspmc_ep *b;
	uint64_t base, x[RSPMC_REGS];
	uint16_t id;

	if (rspmc_connect(&co, &conn) || rspmc_attach_vm(conn, &vo, &b)) {
		fprintf(stderr, "c_bench B: %s\n", rspmc_last_error());
		return 1;
	}
	rspmc_ep_info(b, &id, &base, NULL, NULL);
	uint8_t *tx = (uint8_t *)(uintptr_t)base, *rx = tx + PAGE_SIZE;

	regs(x, FFA_VERSION, FFA_VERSION_1_2, 0, 0, 0, 0, 0, 0);
	must_call(b, 0, x);
	regs(x, FFA_RXTX_MAP_64, (uintptr_t)tx, (uintptr_t)rx, 1, 0, 0, 0, 0);
	must_call(b, 0, x);
	send_word(to_a[1], id);
	for (uint8_t last = 0;; last++) {
		uint64_t handle, v;

		if (read(to_b[0], &handle, sizeof(handle)) != sizeof(handle))
			break; /* A is done */
		uint32_t len = retrieve_descriptor(tx, a, id, handle, MEM_SHARE);

		regs(x, FFA_MEM_RETRIEVE_REQ_32, len, len, 0, 0, 0, 0, 0);
		must_call(b, 0, x);
		if (x[0] != FFA_MEM_RETRIEVE_RESP) {
			send_word(to_a[1], 1);
			continue;
		}
		uint32_t composite = get32(rx, get32(rx, 32) + 4);
		uint8_t *mem = (uint8_t *)(uintptr_t)get64(
			rx, composite + FFA_COMPOSITE_HEADER_SIZE);

		regs(x, FFA_RX_RELEASE, 0, 0, 0, 0, 0, 0, 0);
		must_call(b, 0, x);
		v = mem[0] == last && mem[PAGE_SIZE - 1] == last ? 0 : 2;
		memset(mem, (uint8_t)(last + 1), PAGE_SIZE);
		relinquish_descriptor(tx, handle, id);
		regs(x, FFA_MEM_RELINQUISH, 0, 0, 0, 0, 0, 0, 0);
		must_call(b, 0, x);
		send_word(to_a[1], v ? v : ffa_error(x) ? 3 : 0);
	}
	rspmc_detach(b);
	rspmc_disconnect(conn);
	return 0;
}

static void measure(const char *name, void (*op)(void), int n, int calls)
{
	double *t = calloc(n, sizeof(double));

	for (int i = 0; i < n / 10 + 10; i++)
		op();
	for (int i = 0; i < n; i++) {
		double t0 = now_us();

		op();
		t[i] = now_us() - t0;
	}
	report(name, t, n, calls);
	free(t);
}

int main(int argc, char **argv)
{
	struct rspmc_conn *conn;
	struct rspmc_connect_opts co = { 0 };
	struct rspmc_vm_opts vo = { 0 };
	uint64_t x[RSPMC_REGS];
	int n;

	if (argc < 4)
		return 2;
	co.address = argv[1];
	sp = (uint16_t)strtoul(argv[2], NULL, 0);
	n = atoi(argv[3]);
	/*
	 * A's window is the static array, at the same address in the child:
	 * the child gives that range up, so the page B retrieves can be
	 * mapped there (at its guest address).
	 */
	if (pipe(to_b) || pipe(to_a))
		return 1;
	pid_t child = fork();

	if (child == 0) {
		close(to_b[1]);
		close(to_a[0]);
		if (munmap(ram, sizeof(ram)))
			return 1;
		exit(vm_b_main(argv[1], (uint16_t)recv_word(to_b[0])));
	}
	close(to_b[0]);
	close(to_a[1]);
	vo.name = "c-bench";
	vo.ram_base = (uintptr_t)ram;
	vo.ram_bytes = sizeof(ram);
	vo.flags = RSPMC_VM_RAM_IN_PLACE;
	if (rspmc_connect(&co, &conn) || rspmc_attach_vm(conn, &vo, &ep)) {
		fprintf(stderr, "c_bench: %s\n", rspmc_last_error());
		return 1;
	}
	rspmc_ep_info(ep, &self, NULL, NULL, NULL);
	send_word(to_b[1], self);
	vm_b = (uint16_t)recv_word(to_a[0]);
	version();
	regs(x, FFA_RXTX_MAP_64, (uintptr_t)ram[0], (uintptr_t)ram[1], 1, 0, 0,
	     0, 0);
	must_call(ep, 0, x);
	measure("version", version, n, 1);
	measure("direct", direct, n, 1);
	/* VM: share, request, reclaim; partition: retrieve, RX_RELEASE, relinquish. */
	measure("cycle", cycle, n / 10 > 100 ? n / 10 : 100, 6);
	/* A: share, reclaim; B: retrieve, RX_RELEASE, relinquish. */
	measure("cycle_direct", cycle_direct, n / 10 > 100 ? n / 10 : 100, 5);
	close(to_b[1]); /* B detaches and exits */
	waitpid(child, NULL, 0);
	rspmc_detach(ep);
	rspmc_disconnect(conn);
	return 0;
}
