#include <rspmc.h>
#include <rspmc_ffa.h> /* FF-A numbers, generated from proto/ffa */
#include <stdio.h>

/* Guest RAM is this static array (TX is page 0, RX page 1), mapped over in place. */
static uint8_t ram[16][4096] __attribute__((aligned(4096)));

int main(int argc, char **argv)
{
	struct rspmc_connect_opts co = { .address = argc > 1 ? argv[1] : "127.0.0.1:50051" };
	struct rspmc_vm_opts vo = { .name = "hello", .ram_base = (uintptr_t)ram,
				    .ram_bytes = sizeof(ram), .flags = RSPMC_VM_RAM_IN_PLACE };
	struct rspmc_conn *conn;
	struct rspmc_ep *ep;
	uint16_t id;

	if (rspmc_connect(&co, &conn) || rspmc_attach_vm(conn, &vo, &ep))
		return fprintf(stderr, "%s\n", rspmc_last_error()), 1;
	rspmc_ep_info(ep, &id, NULL, NULL, NULL);
	uint64_t ver[18] = { FFA_VERSION, FFA_VERSION_1_2 };
	uint64_t map[18] = { FFA_RXTX_MAP_64, (uintptr_t)ram[0], (uintptr_t)ram[1], 1 };
	uint64_t info[18] = { FFA_PARTITION_INFO_GET };
	uint64_t req[18] = { FFA_MSG_SEND_DIRECT_REQ_64, (uint64_t)id << 16 | 0x8001, 0, RSPMC_CMD_ECHO, 42 }; /* to SP1 */

	if (rspmc_call(ep, 0, ver) || rspmc_call(ep, 0, map) || rspmc_call(ep, 0, info))
		return fprintf(stderr, "%s\n", rspmc_last_error()), 1;
	for (uint64_t i = 0; i < info[2]; i++) /* read straight from RX */
		printf("partition 0x%x\n", *(uint16_t *)(ram[1] + i * info[3]));
	if (rspmc_call(ep, 0, req) == 0)
		printf("SP1 answered %llu\n", (unsigned long long)req[4]);
	return rspmc_detach(ep);
}
