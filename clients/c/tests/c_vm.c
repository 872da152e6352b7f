/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM in C against `remote-spmc serve` with the C partition (c_sp) and
 * the built-in SP1: its RAM is a static array of this program (a chosen
 * RAM base), discovery and messages through the RX pointer, memory sent
 * and checked through plain pointers, a write to lent memory caught as
 * SIGSEGV, notifications on the interrupt line.
 *
 * Usage: c_vm ADDRESS SP_ID [builtin]
 * With "builtin", SP_ID runs the built-in partitions' test service (in
 * TypeScript, `remote-spmc partition`): echo, and memory through its MEM.
 */
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

/* Guest RAM: whole pages of this program. TX is page 0, RX page 1. */
static uint8_t ram[64][PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static uint8_t *const tx = ram[0];
static uint8_t *const rx = ram[1];

static struct rspmc_ep *ep;
static uint16_t self, sp;

static sigjmp_buf fault_jump;
static volatile sig_atomic_t faults;

static void on_segv(int sig)
{
	faults++;
	siglongjmp(fault_jump, 1);
}

/* Whether writing *p faults (the program's own SIGSEGV handler catches it). */
static int write_faults(volatile uint8_t *p)
{
	int before = faults;

	if (sigsetjmp(fault_jump, 1) == 0)
		*p = 0xee;
	return faults > before;
}

static void direct(uint16_t to, uint64_t w3, uint64_t w4, uint64_t w5,
		   uint64_t w6, uint64_t w7, uint64_t x[RSPMC_REGS])
{
	for (;;) {
		regs(x, FFA_MSG_SEND_DIRECT_REQ_64, (uint64_t)self << 16 | to,
		     0, w3, w4, w5, w6, w7);
		must_call(ep, 0, x);
		/* A partition not yet waiting is BUSY: try again. */
		if (ffa_error(x) != FFA_BUSY)
			return;
		usleep(1000);
	}
}

static void discovery(void)
{
	uint64_t x[RSPMC_REGS];
	int seen_sp1 = 0, seen_sp = 0;

	regs(x, FFA_PARTITION_INFO_GET, 0, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32 && x[3] == FFA_PARTITION_INFO_SIZE_V1_1,
	   "PARTITION_INFO_GET: %llu descriptors of %llu bytes",
	   (unsigned long long)x[2], (unsigned long long)x[3]);
	for (uint64_t i = 0; i < x[2]; i++) {
		uint16_t id = get16(rx, i * x[3]);

		seen_sp1 |= id == SP1_ID;
		seen_sp |= id == sp;
	}
	ok(seen_sp1 && seen_sp,
	   "the descriptors read through the RX pointer name SP1 and the C partition 0x%x",
	   sp);
	regs(x, FFA_RX_RELEASE, 0, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
}

static void messages(void)
{
	uint64_t x[RSPMC_REGS];

	direct(sp, CMD_ECHO, 1, 2, 3, 4, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[1] >> 16 == sp &&
		   x[4] == 1 && x[7] == 4,
	   "DIRECT_REQ to the C partition answered by its DIRECT_RESP");
	direct(sp, CMD_VIA_SP1, 5, 6, 7, 8, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[3] == CMD_ECHO &&
		   x[4] == 5 && x[7] == 8,
	   "the C partition's own DIRECT_REQ to SP1 and back");
	direct(SP1_ID, CMD_ECHO, 9, 0, 0, 0, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[4] == 9,
	   "DIRECT_REQ to SP1");
}

static void memory(int type)
{
	uint64_t x[RSPMC_REGS];
	uint8_t *page = ram[16 + type];
	uint8_t mine = 0x10 + type, theirs = 0x80 + type;
	uint32_t len;

	memset(page, mine, PAGE_SIZE);
	len = mem_descriptor(tx, self, sp, type, (uintptr_t)page, 1);
	regs(x, type == MEM_SHARE ? FFA_MEM_SHARE_32 :
	     type == MEM_LEND	  ? FFA_MEM_LEND_32 :
				    FFA_MEM_DONATE_32,
	     len, len, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	if (!ok(x[0] == FFA_SUCCESS_32, "MEM_%s of a static page (error %d)",
		type_name(type), ffa_error(x)))
		return;
	uint64_t handle = x[2] | x[3] << 32;

	if (type != MEM_SHARE)
		ok(write_faults(page),
		   "writing memory %s away faults (SIGSEGV caught)",
		   type == MEM_LEND ? "lent" : "donated");
	direct(sp, CMD_CHECK_MEM, handle & 0xffffffff, handle >> 32, type,
	       mine | theirs << 8, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[4] == 0,
	   "the C partition retrieved the %s, found our bytes, wrote its own (step %llu)",
	   type_name(type), (unsigned long long)x[4]);
	if (type == MEM_SHARE)
		ok(page[0] == theirs && page[PAGE_SIZE - 1] == theirs,
		   "shared: its bytes read through our pointer once the request returns");
	if (type == MEM_DONATE)
		return;
	regs(x, FFA_MEM_RECLAIM, handle & 0xffffffff, handle >> 32, 0, 0, 0, 0,
	     0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32, "MEM_RECLAIM of the %s", type_name(type));
	ok(page[0] == theirs && page[PAGE_SIZE - 1] == theirs,
	   "after reclaim our pointer reads what the partition wrote");
	ok(!write_faults(page), "and writing it is ours again");
}

static void to_sp1(int type)
{
	uint64_t x[RSPMC_REGS];

	direct(sp, CMD_TO_SP1, type, 0x40 + type, 0, 0, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[4] == 0,
	   "the C partition's %s to SP1 (step %llu)", type_name(type),
	   (unsigned long long)x[4]);
}

/* A partition running the built-in test service: its MEM writes a pattern. */
static void test_service(void)
{
	uint64_t x[RSPMC_REGS];

	direct(sp, CMD_ECHO, 11, 12, 13, 14, x);
	ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[4] == 11 && x[7] == 14,
	   "DIRECT_REQ to the TypeScript partition 0x%x", sp);
	for (int type = MEM_SHARE; type <= MEM_DONATE; type++) {
		uint8_t *page = ram[24 + type];
		uint8_t pattern = 0x30 + type;
		uint32_t len = mem_descriptor(tx, self, sp, type,
					      (uintptr_t)page, 1);

		memset(page, 0x01, PAGE_SIZE);
		regs(x, type == MEM_SHARE ? FFA_MEM_SHARE_32 :
		     type == MEM_LEND	  ? FFA_MEM_LEND_32 :
					    FFA_MEM_DONATE_32,
		     len, len, 0, 0, 0, 0, 0);
		must_call(ep, 0, x);
		uint64_t handle = x[2] | x[3] << 32;

		ok(x[0] == FFA_SUCCESS_32, "MEM_%s to it", type_name(type));
		direct(sp, CMD_MEM, handle & 0xffffffff, handle >> 32, pattern,
		       type, x);
		ok(x[4] == 0, "it retrieved the %s and wrote its pattern",
		   type_name(type));
		if (type == MEM_DONATE)
			break;
		regs(x, FFA_MEM_RECLAIM, handle & 0xffffffff, handle >> 32, 0,
		     0, 0, 0, 0);
		must_call(ep, 0, x);
		ok(x[0] == FFA_SUCCESS_32 && page[0] == pattern &&
			   page[PAGE_SIZE - 1] == pattern,
		   "reclaimed: its pattern read through our pointer");
	}
}

static sem_t irq_sem;
static volatile uint32_t irq_seen;

static void on_irq(struct rspmc_ep *e, uint32_t intid, uint32_t vcpu,
		   void *arg)
{
	irq_seen = intid;
	sem_post(&irq_sem);
}

static void notifications(void)
{
	uint64_t x[RSPMC_REGS];
	uint32_t intid = 0, vcpu = 0;

	/* VM to partition. */
	direct(sp, CMD_BIND, 1 << 1, 0, 0, 0, x);
	ok(x[4] == 0, "the C partition binds our notification 1");
	regs(x, FFA_NOTIFICATION_SET, (uint64_t)self << 16 | sp, 0, 1 << 1, 0,
	     0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32, "NOTIFICATION_SET to it (error %d)",
	   ffa_error(x));
	direct(sp, CMD_GETN, 0, 0, 0, 0, x);
	ok(x[4] == 1 << 1, "it gets notification 1 from us (0x%llx)",
	   (unsigned long long)x[4]);

	/* Partition to VM, raised on our interrupt line. */
	regs(x, FFA_NOTIFICATION_BIND, (uint64_t)sp << 16 | self, 0, 1 << 2,
	     0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32, "we bind its notification 2 (error %d)",
	   ffa_error(x));
	direct(sp, CMD_NOTIFY, 1 << 2, 0, 0, 0, x);
	ok(x[4] == 0, "it sets notification 2 for us");
	int err = rspmc_wait_interrupt(ep, &intid, &vcpu, 30000);

	ok(!err && intid == 8,
	   "the schedule receiver interrupt arrives on the line (intid %u)",
	   intid);
	regs(x, FFA_NOTIFICATION_GET, self, FFA_NOTIFICATION_GET_FLAG_SP, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32 && x[2] == 1 << 2,
	   "NOTIFICATION_GET: notification 2 from partitions (0x%llx)",
	   (unsigned long long)x[2]);

	/* The same through a callback on the library's thread. */
	struct timespec deadline;

	sem_init(&irq_sem, 0, 0);
	ok(!rspmc_set_interrupt_handler(ep, on_irq, NULL),
	   "an interrupt callback instead");
	direct(sp, CMD_NOTIFY, 1 << 2, 0, 0, 0, x);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	ok(!sem_timedwait(&irq_sem, &deadline) && irq_seen == 8,
	   "the callback runs for the SRI (intid %u)", irq_seen);
	regs(x, FFA_NOTIFICATION_GET, self, FFA_NOTIFICATION_GET_FLAG_SP, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32 && x[2] == 1 << 2,
	   "and NOTIFICATION_GET gets it again");
}

static void indirect(void)
{
	uint64_t x[RSPMC_REGS];
	uint64_t payload[3];

	direct(sp, CMD_SEND2, 0x1111, 0x2222, 0x3333, 0, x);
	ok(x[4] == 0, "the C partition sent us a message (error %d)",
	   (int32_t)x[4]);
	memcpy(payload, rx + get32(rx, 8), sizeof(payload));
	ok(get16(rx, 14) == sp && get16(rx, 12) == self && get32(rx, 16) == 24 &&
		   payload[0] == 0x1111 && payload[2] == 0x3333,
	   "MSG_SEND2: header and payload read straight from the RX pointer");
	regs(x, FFA_RX_RELEASE, 0, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
}

int main(int argc, char **argv)
{
	struct rspmc_conn *conn;
	struct rspmc_connect_opts co = { 0 };
	struct rspmc_vm_opts vo = { 0 };
	struct rspmc_ep *other;
	uint64_t x[RSPMC_REGS], base;
	int err;

	if (argc < 3) {
		fprintf(stderr, "usage: c_vm ADDRESS SP_ID\n");
		return 2;
	}
	sp = (uint16_t)strtoul(argv[2], NULL, 0);
	/* Ours first: the library passes on faults that are not its own. */
	signal(SIGSEGV, on_segv);
	co.address = argv[1];
	ok(!rspmc_connect(&co, &conn), "connect");

	/* Bytes already in the array travel with the first call. */
	strcpy((char *)ram[40], "in place");
	vo.name = "c-vm";
	vo.ram_base = (uintptr_t)ram;
	vo.ram_bytes = sizeof(ram);
	vo.flags = RSPMC_VM_RAM_IN_PLACE;
	err = rspmc_attach_vm(conn, &vo, &ep);
	if (!ok(!err, "attach with the RAM at a static array: %s",
		rspmc_last_error()))
		return tap_done();
	rspmc_ep_info(ep, &self, &base, NULL, NULL);
	ok(base == (uintptr_t)ram, "the chosen RAM base 0x%llx is honoured",
	   (unsigned long long)base);

	vo.ram_base = (uintptr_t)ram[32];
	vo.ram_bytes = 4 * PAGE_SIZE;
	vo.flags = 0;
	err = rspmc_attach_vm(conn, &vo, &other);
	ok(err == RSPMC_EEXIST && strstr(rspmc_last_error(), "overlaps"),
	   "an overlapping RAM base is refused with why: %s",
	   rspmc_last_error());

	regs(x, FFA_VERSION, FFA_VERSION_1_2, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	regs(x, FFA_RXTX_MAP_64, (uintptr_t)tx, (uintptr_t)rx, 1, 0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32, "RXTX_MAP of two pages of the static array");
	ok(write_faults(rx), "writing our own RX buffer faults");

	if (argc > 3 && !strcmp(argv[3], "builtin")) {
		test_service();
		ok(!rspmc_detach(ep), "detach");
		return tap_done();
	}
	discovery();
	messages();
	for (int type = MEM_SHARE; type <= MEM_DONATE; type++)
		memory(type);
	for (int type = MEM_SHARE; type <= MEM_DONATE; type++)
		to_sp1(type);
	notifications();
	indirect();

	ok(!rspmc_detach(ep), "detach");
	rspmc_disconnect(conn);
	return tap_done();
}
