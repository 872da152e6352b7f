/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Round trips of a C VM, for bench/c-client.ts: FFA_VERSION, a direct
 * request to the C partition and back, and a 4 KiB share, retrieve, write,
 * relinquish, reclaim cycle between the two. Prints "NAME P50 P99" in
 * microseconds per line (the cycle also its FF-A calls).
 *
 * Usage: c_bench ADDRESS SP_ID SAMPLES
 */
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
	vo.name = "c-bench";
	vo.ram_base = (uintptr_t)ram;
	vo.ram_bytes = sizeof(ram);
	vo.flags = RSPMC_VM_RAM_IN_PLACE;
	if (rspmc_connect(&co, &conn) || rspmc_attach_vm(conn, &vo, &ep)) {
		fprintf(stderr, "c_bench: %s\n", rspmc_last_error());
		return 1;
	}
	rspmc_ep_info(ep, &self, NULL, NULL, NULL);
	version();
	regs(x, FFA_RXTX_MAP_64, (uintptr_t)ram[0], (uintptr_t)ram[1], 1, 0, 0,
	     0, 0);
	must_call(ep, 0, x);
	measure("version", version, n, 1);
	measure("direct", direct, n, 1);
	/* VM: share, request, reclaim; partition: retrieve, RX_RELEASE, relinquish. */
	measure("cycle", cycle, n / 10 > 100 ? n / 10 : 100, 6);
	rspmc_detach(ep);
	rspmc_disconnect(conn);
	return 0;
}
