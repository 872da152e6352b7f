/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Four C VMs, each on its own thread, contending for one partition with
 * direct requests, through the conduit entry points: each thread chooses
 * its endpoint, then makes SMCCC v1.2 calls as firmware code would.
 *
 * Usage: c_threads ADDRESS SP_ID
 */
#include <pthread.h>
#include <unistd.h>

#include "testlib.h"

#define VMS	4
#define ROUNDS	25

static struct rspmc_conn *conn;
static uint16_t sp;

struct vm {
	int n;
	int attached;
	uint16_t id;
	int id_get;		/* the 8-register conduit's ID_GET */
	int answered;		/* echoes that came back right */
	int busy;		/* BUSY answers retried */
	int wrong;
	int detached;
	char why[256];
};

static void *run(void *arg)
{
	struct vm *v = arg;
	struct rspmc_vm_opts o = { 0 };
	struct rspmc_smccc_1_2_regs r;
	struct rspmc_ep *ep;
	uint64_t in[8] = { FFA_ID_GET }, out[8];
	char name[16];

	snprintf(name, sizeof(name), "c-vm-%d", v->n);
	o.name = name;
	o.ram_bytes = 1 << 20;
	if (rspmc_attach_vm(conn, &o, &ep)) {
		snprintf(v->why, sizeof(v->why), "%s", rspmc_last_error());
		return NULL;
	}
	v->attached = 1;
	rspmc_ep_info(ep, &v->id, NULL, NULL, NULL);
	rspmc_use_endpoint(ep, 0);
	v->id_get = !rspmc_smccc_8(in, out) && out[0] == FFA_SUCCESS_32 &&
		    out[2] == v->id;
	memset(&r, 0, sizeof(r));
	r.a0 = FFA_VERSION;
	r.a1 = FFA_VERSION_1_2;
	rspmc_smccc_1_2(&r, &r);
	for (int i = 0; i < ROUNDS; i++) {
		memset(&r, 0, sizeof(r));
		r.a0 = FFA_MSG_SEND_DIRECT_REQ_64;
		r.a1 = (uint64_t)v->id << 16 | sp;
		r.a3 = CMD_ECHO;
		r.a4 = v->id;
		r.a5 = i;
		if (rspmc_smccc_1_2(&r, &r)) {
			snprintf(v->why, sizeof(v->why), "%s",
				 rspmc_last_error());
			break;
		}
		if (ffa_error((uint64_t *)&r) == FFA_BUSY) {
			v->busy++;
			i--;
			usleep(200);
			continue;
		}
		if (r.a0 == FFA_MSG_SEND_DIRECT_RESP_64 && r.a4 == v->id &&
		    r.a5 == (uint64_t)i)
			v->answered++;
		else
			v->wrong++;
	}
	v->detached = !rspmc_detach(ep);
	return NULL;
}

int main(int argc, char **argv)
{
	struct rspmc_connect_opts co = { 0 };
	pthread_t th[VMS];
	struct vm vms[VMS];

	if (argc < 3) {
		fprintf(stderr, "usage: c_threads ADDRESS SP_ID\n");
		return 2;
	}
	co.address = argv[1];
	sp = (uint16_t)strtoul(argv[2], NULL, 0);
	if (!ok(!rspmc_connect(&co, &conn), "connect"))
		return tap_done();
	memset(vms, 0, sizeof(vms));
	for (int i = 0; i < VMS; i++) {
		vms[i].n = i;
		pthread_create(&th[i], NULL, run, &vms[i]);
	}
	for (int i = 0; i < VMS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < VMS; i++) {
		struct vm *v = &vms[i];

		ok(v->attached, "VM %d attached %s", i, v->why);
		ok(v->id_get, "VM %d: ID_GET through the 8-register conduit gives its id 0x%x",
		   i, v->id);
		ok(v->answered == ROUNDS && !v->wrong,
		   "VM %d: %d of %d echoes from the partition, each its own (%d BUSY retried) %s",
		   i, v->answered, ROUNDS, v->busy, v->why);
		ok(v->detached, "VM %d detached", i);
	}
	rspmc_disconnect(conn);
	return tap_done();
}
