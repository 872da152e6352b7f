/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The conduit entry points: what an SMC, HVC or SVC instruction would do,
 * for code that calls its partition manager through one function.
 */
#include <cstring>

#include "internal.h"
#include "rspmc.h"
#include "rspmc_ffa.h" /* SMCCC_NOT_SUPPORTED: what a caller sees when no one answers */

namespace rspmc {
int conduit_target(rspmc_ep **ep, uint32_t *vcpu);
}

extern "C" int rspmc_smccc_1_2(const struct rspmc_smccc_1_2_regs *args,
			       struct rspmc_smccc_1_2_regs *res)
{
	uint64_t x[RSPMC_REGS];
	struct rspmc_ep *ep;
	uint32_t vcpu;
	int err;

	if (!args || !res)
		return rspmc::fail(RSPMC_EINVAL, "smccc_1_2: NULL registers");
	static_assert(sizeof(*args) == sizeof(x), "x0..x17");
	memcpy(x, args, sizeof(x));
	err = rspmc::conduit_target(&ep, &vcpu);
	if (!err)
		err = rspmc_call(ep, vcpu, x);
	if (err) {
		memset(res, 0, sizeof(*res));
		res->a0 = SMCCC_NOT_SUPPORTED;
		return err;
	}
	memcpy(res, x, sizeof(x));
	return 0;
}

extern "C" int rspmc_smccc_8(const uint64_t in[8], uint64_t out[8])
{
	struct rspmc_smccc_1_2_regs regs;
	int err;

	if (!in || !out)
		return rspmc::fail(RSPMC_EINVAL, "smccc_8: NULL registers");
	memset(&regs, 0, sizeof(regs));
	memcpy(&regs, in, 8 * sizeof(uint64_t));
	err = rspmc_smccc_1_2(&regs, &regs);
	memcpy(out, &regs, 8 * sizeof(uint64_t));
	return err;
}
