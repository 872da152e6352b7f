/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A remote partition in C, written as a secure partition is written: a
 * MSG_WAIT loop answering direct requests with DIRECT_RESP, its RX and TX
 * buffers and retrieved memory reached through plain pointers, and its own
 * descriptor code for retrieve and relinquish.
 *
 * Usage: c_sp ADDRESS ID CREDENTIAL (it serves until it is killed)
 */
#include "testlib.h"

static struct rspmc_ep *ep;
static uint16_t self;
static uint8_t *tx, *rx, *own;

/* Retrieve `handle`: where the memory appears, from the response in RX. */
static int32_t retrieve(uint16_t sender, uint64_t handle, int type,
			uint8_t **addr, uint32_t *pages)
{
	uint64_t x[RSPMC_REGS];
	uint32_t len = retrieve_descriptor(tx, sender, self, handle, type);

	regs(x, FFA_MEM_RETRIEVE_REQ_32, len, len, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	if (x[0] != FFA_MEM_RETRIEVE_RESP)
		return ffa_error(x) ? ffa_error(x) : -1;
	uint32_t emad = get32(rx, 32);
	uint32_t composite = get32(rx, emad + 4);

	*pages = get32(rx, composite);
	*addr = (uint8_t *)(uintptr_t)get64(rx, composite + FFA_COMPOSITE_HEADER_SIZE);
	regs(x, FFA_RX_RELEASE, 0, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	return 0;
}

static int32_t relinquish(uint64_t handle)
{
	uint64_t x[RSPMC_REGS];

	relinquish_descriptor(tx, handle, self);
	regs(x, FFA_MEM_RELINQUISH, 0, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	return ffa_error(x);
}

static int all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/* Memory from a VM: check what it wrote, write ours, give it back. */
static uint64_t check_mem(uint16_t sender, uint64_t handle, int type,
			  uint8_t expect, uint8_t fill)
{
	uint8_t *mem = NULL;
	uint32_t pages = 0;
	int32_t err = retrieve(sender, handle, type, &mem, &pages);

	if (!ok(!err, "%s from 0x%x retrieved (error %d)", type_name(type),
		sender, err))
		return 1;
	size_t n = (size_t)pages * PAGE_SIZE;

	if (!ok(all(mem, n, expect),
		"%s: the sender's bytes read through the pointer %p after retrieve",
		type_name(type), (void *)mem))
		return 2;
	memset(mem, fill, n);
	if (type != MEM_DONATE && !ok(!relinquish(handle), "%s relinquished",
				      type_name(type)))
		return 3;
	return 0;
}

/* Our own page to SP1, whose MEM command writes a pattern over it. */
static uint64_t to_sp1(int type, uint8_t pattern)
{
	uint64_t x[RSPMC_REGS];
	uint8_t *page = own + (size_t)type * PAGE_SIZE;
	uint32_t len;

	memset(page, 0x5a, PAGE_SIZE);
	len = mem_descriptor(tx, self, SP1_ID, type, (uintptr_t)page, 1);
	regs(x, type == MEM_SHARE ? FFA_MEM_SHARE_32 :
	     type == MEM_LEND	  ? FFA_MEM_LEND_32 :
				    FFA_MEM_DONATE_32,
	     len, len, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	if (!ok(x[0] == FFA_SUCCESS_32, "%s to SP1 (error %d)",
		type_name(type), ffa_error(x)))
		return 1;
	uint64_t handle = x[2] | x[3] << 32;

	regs(x, FFA_MSG_SEND_DIRECT_REQ_64, (uint64_t)self << 16 | SP1_ID, 0,
	     CMD_MEM, handle & 0xffffffff, handle >> 32, pattern, type);
	must_call(ep, 0, x);
	if (!ok(x[0] == FFA_MSG_SEND_DIRECT_RESP_64 && x[4] == 0,
		"SP1 retrieved the %s and wrote its pattern (w4 %llx)",
		type_name(type), (unsigned long long)x[4]))
		return 2;
	if (type == MEM_DONATE)
		return 0;
	regs(x, FFA_MEM_RECLAIM, handle & 0xffffffff, handle >> 32, 0, 0, 0,
	     0, 0);
	must_call(ep, 0, x);
	if (!ok(x[0] == FFA_SUCCESS_32, "%s reclaimed from SP1",
		type_name(type)))
		return 3;
	if (!ok(all(page, PAGE_SIZE, pattern),
		"SP1's pattern read through the pointer after reclaim"))
		return 4;
	return 0;
}

int main(int argc, char **argv)
{
	struct rspmc_conn *conn;
	struct rspmc_connect_opts co = { 0 };
	uint64_t x[RSPMC_REGS], ram;
	uint32_t version;
	int err;

	if (argc < 4) {
		fprintf(stderr, "usage: c_sp ADDRESS ID CREDENTIAL\n");
		return 2;
	}
	co.address = argv[1];
	if (rspmc_connect(&co, &conn))
		return 2;
	err = rspmc_attach_partition(conn, (uint16_t)strtoul(argv[2], NULL, 0),
				     argv[3], &ep);
	if (!ok(!err, "partition attached: %s", rspmc_last_error()))
		return tap_done();
	rspmc_ep_info(ep, &self, &ram, NULL, &version);
	tx = (uint8_t *)(uintptr_t)ram;
	rx = tx + PAGE_SIZE;
	own = tx + 4 * PAGE_SIZE;

	regs(x, FFA_VERSION, version, 0, 0, 0, 0, 0, 0);
	must_call(ep, 0, x);
	regs(x, FFA_RXTX_MAP_64, (uintptr_t)tx, (uintptr_t)rx, 1, 0, 0, 0, 0);
	must_call(ep, 0, x);
	ok(x[0] == FFA_SUCCESS_32, "RXTX_MAP with buffers in its RAM");

	printf("# ready\n");
	fflush(stdout);
	regs(x, FFA_MSG_WAIT, 0, 0, 0, 0, 0, 0, 0);
	for (;;) {
		must_call(ep, 0, x);
		if (x[0] != FFA_MSG_SEND_DIRECT_REQ_64 &&
		    x[0] != FFA_MSG_SEND_DIRECT_REQ_32) {
			regs(x, FFA_MSG_WAIT, 0, 0, 0, 0, 0, 0, 0);
			continue;
		}
		uint16_t src = x[1] >> 16;
		uint64_t w[5] = { x[3], x[4], x[5], x[6], x[7] };
		uint64_t y[RSPMC_REGS];

		switch (x[3]) {
		case CMD_CHECK_MEM: /* w4/w5 handle, w6 type, w7 expect|fill<<8 */
			w[1] = check_mem(src, x[4] | x[5] << 32, (int)x[6],
					 x[7] & 0xff, (x[7] >> 8) & 0xff);
			break;
		case CMD_TO_SP1: /* w4 type, w5 pattern */
			w[1] = to_sp1((int)x[4], (uint8_t)x[5]);
			break;
		case CMD_VIA_SP1: /* w4..w7 echoed by SP1 */
			regs(y, FFA_MSG_SEND_DIRECT_REQ_64,
			     (uint64_t)self << 16 | SP1_ID, 0, CMD_ECHO, x[4],
			     x[5], x[6], x[7]);
			must_call(ep, 0, y);
			memcpy(w, &y[3], sizeof(w));
			break;
		case CMD_BIND:
			regs(y, FFA_NOTIFICATION_BIND, (uint64_t)src << 16 | self,
			     0, x[4], 0, 0, 0, 0);
			must_call(ep, 0, y);
			w[1] = (uint32_t)ffa_error(y);
			break;
		case CMD_GETN:
			regs(y, FFA_NOTIFICATION_GET, self, FFA_NOTIFICATION_GET_FLAG_VM, 0, 0, 0, 0, 0);
			must_call(ep, 0, y);
			w[1] = y[0] == FFA_SUCCESS_32 ? y[4] : ~0ULL;
			break;
		case CMD_NOTIFY:
			regs(y, FFA_NOTIFICATION_SET, (uint64_t)self << 16 | src,
			     0, x[4], 0, 0, 0, 0);
			must_call(ep, 0, y);
			w[1] = (uint32_t)ffa_error(y);
			break;
		case CMD_SEND2: /* w4..w6: the 24-byte payload */
			memset(tx, 0, FFA_INDIRECT_MSG_HEADER_SIZE_V1_2 + 24);
			put32(tx, 8, FFA_INDIRECT_MSG_HEADER_SIZE_V1_2);
			put16(tx, 12, src);
			put16(tx, 14, self);
			put32(tx, 16, 24);
			memcpy(tx + FFA_INDIRECT_MSG_HEADER_SIZE_V1_2, &x[4], 24);
			regs(y, FFA_MSG_SEND2, 0, 0, 0, 0, 0, 0, 0);
			must_call(ep, 0, y);
			w[1] = (uint32_t)ffa_error(y);
			break;
		}
		/* The answer; the call returns with the next request. */
		regs(x, FFA_MSG_SEND_DIRECT_RESP_64, (uint64_t)self << 16 | src,
		     0, w[0], w[1], w[2], w[3], w[4]);
	}
}
