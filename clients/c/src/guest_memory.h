/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory of the endpoints attached in this process, mapped at the
 * guest addresses. Writes are tracked with page protection; what the
 * server says changed is written through a second, private mapping.
 */
#ifndef RSPMC_GUEST_MEMORY_H
#define RSPMC_GUEST_MEMORY_H

#include <cstdint>
#include <string>

#include "remote_spmc.pb.h"

namespace rspmc {

struct ep_memory;

/*
 * Map [ram_base, ram_bytes): readable and writable, zero; or, in_place,
 * over memory of this program, keeping its bytes (sent with the next call).
 */
int memory_create(uint64_t ram_base, uint64_t ram_bytes, bool in_place,
		  ep_memory **out, std::string *why);
void memory_destroy(ep_memory *mem);

/* The pages written since the last call, into the request (whole pages). */
void memory_collect(ep_memory *mem, remote_spmc::v1::CallRequest *req);

/* What changed: the map first, then the bytes. */
int memory_apply(ep_memory *mem, const remote_spmc::v1::CoherenceUpdate &u,
		 std::string *why);

} /* namespace rspmc */

#endif
