/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rspmc: a native client of remote-spmc.
 *
 * Connect to a server, attach as a VM or as a manifest partition marked
 * remote, and make FF-A calls with x0..x17. The endpoint's guest memory is
 * mapped in this process at its guest addresses (IPA == PA): plain pointers
 * read and write it, and it is coherent at every call boundary (see the
 * README, "C and native code").
 *
 * Every function returns 0 or a negative RSPMC_E* code; rspmc_last_error()
 * says why (per thread). Nothing aborts the process.
 */
#ifndef RSPMC_H
#define RSPMC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RSPMC_REGS 18

enum rspmc_error {
	RSPMC_OK = 0,
	RSPMC_EINVAL = -1,	/* a bad argument, or INVALID_ARGUMENT */
	RSPMC_EUNAVAILABLE = -2, /* server unreachable or shutting down */
	RSPMC_EDENIED = -3,	/* PERMISSION_DENIED: a memory fault, a credential */
	RSPMC_EEXIST = -4,	/* ALREADY_EXISTS: endpoint id or RAM window in use */
	RSPMC_ESESSION = -5,	/* UNAUTHENTICATED: no such session (detached) */
	RSPMC_ENOMEM = -6,	/* RESOURCE_EXHAUSTED, or no room to map memory */
	RSPMC_ETIMEDOUT = -7,	/* a wait timed out */
	RSPMC_EIO = -8,		/* any other transport failure */
};

struct rspmc_conn;
struct rspmc_ep;

struct rspmc_connect_opts {
	const char *address;	/* gRPC "host:port" */
	/* TLS: all NULL for plaintext. ca_pem alone: server-authenticated. */
	const char *ca_pem;
	const char *cert_pem;	/* with key_pem: a client certificate (mTLS) */
	const char *key_pem;
	const char *join_token;	/* sent as "authorization: Bearer" when set */
};

struct rspmc_vm_opts {
	uint16_t id;		/* 0: the server assigns one */
	const char *name;
	uint32_t vcpus;		/* 0: one */
	uint64_t ram_bytes;	/* 0: the server's default */
	uint64_t ram_base;	/* 0: the server places the window */
	uint32_t properties;	/* 0: the usual VM */
	const char *const *uuids; /* uuid_count strings */
	size_t uuid_count;
	uint32_t flags;		/* RSPMC_VM_* */
};

/*
 * The RAM window is memory of this program already (ram_base and ram_bytes
 * name a page-aligned static array, say): it is mapped over in place and
 * its contents go to the server with the first call.
 */
#define RSPMC_VM_RAM_IN_PLACE (1U << 0)

int rspmc_connect(const struct rspmc_connect_opts *opts,
		  struct rspmc_conn **out);
int rspmc_disconnect(struct rspmc_conn *conn);

/*
 * Attach: the RAM window is mapped at its guest address in this process.
 * The first endpoint attached becomes the process default of the conduit.
 */
int rspmc_attach_vm(struct rspmc_conn *conn, const struct rspmc_vm_opts *opts,
		    struct rspmc_ep **out);
int rspmc_attach_partition(struct rspmc_conn *conn, uint16_t id,
			   const char *credential, struct rspmc_ep **out);
/* Leave: the server releases the endpoint; its memory is unmapped here. */
int rspmc_detach(struct rspmc_ep *ep);

int rspmc_ep_info(const struct rspmc_ep *ep, uint16_t *id, uint64_t *ram_base,
		  uint64_t *ram_bytes, uint32_t *ffa_version);

/*
 * One SMCCC call: x[0..17] in, the answer out. Blocks as long as the call
 * does (MSG_WAIT included). Thread-safe; calls of one vCPU are one at a time.
 */
int rspmc_call(struct rspmc_ep *ep, uint32_t vcpu, uint64_t x[RSPMC_REGS]);

/*
 * The interrupt line (the SRI for a VM). Either a callback, run on a thread
 * of the library, or a blocking wait (timeout_ms < 0: forever).
 */
typedef void (*rspmc_irq_fn)(struct rspmc_ep *ep, uint32_t intid,
			     uint32_t vcpu, void *arg);
int rspmc_set_interrupt_handler(struct rspmc_ep *ep, rspmc_irq_fn fn,
				void *arg);
int rspmc_wait_interrupt(struct rspmc_ep *ep, uint32_t *intid, uint32_t *vcpu,
			 int timeout_ms);

/* ---- Conduit entry points for code that makes SMC/HVC/SVC calls ---- */

/* Laid out as Linux's struct arm_smccc_1_2_regs and U-Boot's ffa_value_t. */
struct rspmc_smccc_1_2_regs {
	uint64_t a0, a1, a2, a3, a4, a5, a6, a7, a8;
	uint64_t a9, a10, a11, a12, a13, a14, a15, a16, a17;
};

/* The endpoint (and vCPU) this thread's conduit calls use; NULL: default. */
int rspmc_use_endpoint(struct rspmc_ep *ep, uint32_t vcpu);
int rspmc_set_default_endpoint(struct rspmc_ep *ep);

/*
 * SMCCC v1.2: x0..x17 in, x0..x17 out (res may be args). On a transport
 * failure res->a0 is SMCCC's NOT_SUPPORTED (0xffffffff) and the error
 * code is returned.
 */
int rspmc_smccc_1_2(const struct rspmc_smccc_1_2_regs *args,
		    struct rspmc_smccc_1_2_regs *res);
/* x0..x7 in, x0..x7 out (x8..x17 zero): libsp's ffa_svc, Hafnium's ffa_call. */
int rspmc_smccc_8(const uint64_t in[8], uint64_t out[8]);

/* Why the last failure of this thread failed. */
const char *rspmc_last_error(void);
const char *rspmc_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* RSPMC_H */
