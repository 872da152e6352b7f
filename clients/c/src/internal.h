/* SPDX-License-Identifier: Apache-2.0 */
#ifndef RSPMC_INTERNAL_H
#define RSPMC_INTERNAL_H

#include <string>

namespace rspmc {

/* Record why this thread's last failure failed; returns err. */
int fail(int err, const std::string &why);

} /* namespace rspmc */

#endif
