/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the C test programs share: TAP output (each check is one line that
 * test/c-client.test.ts counts), the FF-A numbers, and the descriptor code an
 * endpoint writes for itself (as firmware does, not the library).
 */
#ifndef RSPMC_TESTLIB_H
#define RSPMC_TESTLIB_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rspmc.h"
#include "rspmc_ffa.h"

static int tap_n;
static int tap_failed;

/* RSPMC_QUIET set: failures only (a benchmark's partition). */
static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;

	++tap_n;
	if (!cond)
		tap_failed++;
	if (cond && getenv("RSPMC_QUIET"))
		return cond;

	printf("%s %d - ", cond ? "ok" : "not ok", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

/* FF-A numbers: generated from proto/ffa (rspmc_ffa.h, see CMakeLists.txt). */
#define PAGE_SIZE	FFA_PAGE_SIZE
#define SP1_ID		0x8001	/* the manifest's first partition (bench/c-build.ts) */

/*
 * The built-in partitions' commands (server/partitions/commands.ts, in
 * rspmc_ffa.h); the C partition answers these too.
 */
#define CMD_ECHO	RSPMC_CMD_ECHO
#define CMD_MEM		RSPMC_CMD_MEM
#define CMD_BIND	RSPMC_CMD_BIND	/* bind the caller's notifications */
#define CMD_NOTIFY	RSPMC_CMD_NOTIFY /* NOTIFICATION_SET to the caller */
#define CMD_SEND2	RSPMC_CMD_SEND2	/* MSG_SEND2 to the caller */
/* The C partition's own. */
#define CMD_CHECK_MEM	0x63686b6d	/* retrieve, check, write, relinquish */
#define CMD_GETN	0x6765746e	/* NOTIFICATION_GET from VMs */
#define CMD_TO_SP1	0x74737031	/* send own memory to SP1's MEM */
#define CMD_VIA_SP1	0x76737031	/* a direct request to SP1 */

enum mem_type {
	MEM_SHARE = FFA_MEM_TYPE_SHARE,
	MEM_LEND = FFA_MEM_TYPE_LEND,
	MEM_DONATE = FFA_MEM_TYPE_DONATE,
};

static inline const char *type_name(int type)
{
	return type == MEM_SHARE ? "share" : type == MEM_LEND ? "lend" : "donate";
}

static inline void put16(uint8_t *b, size_t at, uint16_t v)
{
	memcpy(b + at, &v, 2);
}

static inline void put32(uint8_t *b, size_t at, uint32_t v)
{
	memcpy(b + at, &v, 4);
}

static inline void put64(uint8_t *b, size_t at, uint64_t v)
{
	memcpy(b + at, &v, 8);
}

static inline uint16_t get16(const uint8_t *b, size_t at)
{
	uint16_t v;

	memcpy(&v, b + at, 2);
	return v;
}

static inline uint32_t get32(const uint8_t *b, size_t at)
{
	uint32_t v;

	memcpy(&v, b + at, 4);
	return v;
}

static inline uint64_t get64(const uint8_t *b, size_t at)
{
	uint64_t v;

	memcpy(&v, b + at, 8);
	return v;
}

/* FF-A v1.2 layout: the v1.1 header, 32-byte access descriptors. */
#define MEM_HEADER	FFA_MEM_HEADER_SIZE_V1_1
#define EMAD_SIZE	FFA_EMAD_SIZE_V1_2
#define COMPOSITE_AT	(MEM_HEADER + EMAD_SIZE) /* one EMAD; 16-byte aligned */

/* A transaction descriptor for one receiver and one range; its length. */
static inline uint32_t mem_descriptor(uint8_t *tx, uint16_t sender,
				      uint16_t receiver, int type,
				      uint64_t addr, uint32_t pages)
{
	memset(tx, 0, COMPOSITE_AT + FFA_COMPOSITE_HEADER_SIZE + FFA_CONSTITUENT_SIZE);
	put16(tx, 0, sender);
	/* Normal, write-back, inner shareable for a share; the rest leave it. */
	put16(tx, 2, type == MEM_SHARE ? FFA_MEM_ATTR_NORMAL_WB_IS : 0);
	put32(tx, 24, EMAD_SIZE);
	put32(tx, 28, 1);
	put32(tx, 32, MEM_HEADER);
	put16(tx, MEM_HEADER, receiver);
	/* Read-write; a donor leaves it to the receiver. */
	tx[MEM_HEADER + 2] = type == MEM_DONATE ? 0 : FFA_MEM_PERM_DATA_RW;
	put32(tx, MEM_HEADER + 4, COMPOSITE_AT);
	put32(tx, COMPOSITE_AT, pages);
	put32(tx, COMPOSITE_AT + 4, 1);
	put64(tx, COMPOSITE_AT + FFA_COMPOSITE_HEADER_SIZE, addr);
	put32(tx, COMPOSITE_AT + FFA_COMPOSITE_HEADER_SIZE + 8, pages);
	return COMPOSITE_AT + FFA_COMPOSITE_HEADER_SIZE + FFA_CONSTITUENT_SIZE;
}

/* A retrieve request for `handle` by `self`; its length. */
static inline uint32_t retrieve_descriptor(uint8_t *tx, uint16_t sender,
					   uint16_t self, uint64_t handle,
					   int type)
{
	memset(tx, 0, MEM_HEADER + EMAD_SIZE);
	put16(tx, 0, sender);
	put32(tx, 4, (uint32_t)type << FFA_MEM_FLAG_TYPE_SHIFT);
	put64(tx, 8, handle);
	put32(tx, 24, EMAD_SIZE);
	put32(tx, 28, 1);
	put32(tx, 32, MEM_HEADER);
	put16(tx, MEM_HEADER, self);
	/* Read-write; not executable unless shared. */
	tx[MEM_HEADER + 2] = FFA_MEM_PERM_DATA_RW |
		(type == MEM_SHARE ? 0 : FFA_MEM_PERM_INSTRUCTION_NX << FFA_MEM_PERM_INSTRUCTION_SHIFT);
	return MEM_HEADER + EMAD_SIZE;
}

static inline uint32_t relinquish_descriptor(uint8_t *tx, uint64_t handle,
					     uint16_t self)
{
	memset(tx, 0, FFA_RELINQUISH_HEADER_SIZE + 8);
	put64(tx, 0, handle);
	put32(tx, 12, 1);
	put16(tx, FFA_RELINQUISH_HEADER_SIZE, self);
	return FFA_RELINQUISH_HEADER_SIZE + 2;
}

static inline void regs(uint64_t x[RSPMC_REGS], uint64_t x0, uint64_t x1,
			uint64_t x2, uint64_t x3, uint64_t x4, uint64_t x5,
			uint64_t x6, uint64_t x7)
{
	memset(x, 0, RSPMC_REGS * sizeof(uint64_t));
	x[0] = x0;
	x[1] = x1;
	x[2] = x2;
	x[3] = x3;
	x[4] = x4;
	x[5] = x5;
	x[6] = x6;
	x[7] = x7;
}

static inline int32_t ffa_error(const uint64_t x[RSPMC_REGS])
{
	return x[0] == FFA_ERROR ? (int32_t)(uint32_t)x[2] : 0;
}

/* A call that must work: on a transport failure the program stops. */
static inline void must_call(struct rspmc_ep *ep, uint32_t vcpu,
			     uint64_t x[RSPMC_REGS])
{
	int err = rspmc_call(ep, vcpu, x);

	if (err) {
		ok(0, "call 0x%llx: %s: %s", (unsigned long long)x[0],
		   rspmc_strerror(err), rspmc_last_error());
		exit(tap_done() | 2);
	}
}

#endif
