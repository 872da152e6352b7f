/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS and the join token: attach over TLS with the server's CA (and a
 * client certificate for mTLS) and the token; refused without the token,
 * and over plaintext, with an error code rather than an abort.
 *
 * Usage: c_tls ADDRESS CA_PEM CERT_PEM KEY_PEM TOKEN (files)
 */
#include "testlib.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, n + 1);
	if (buf && fread(buf, 1, n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int attach(const struct rspmc_connect_opts *co, struct rspmc_ep **ep)
{
	struct rspmc_conn *conn;
	int err = rspmc_connect(co, &conn);

	if (!err)
		err = rspmc_attach_vm(conn, NULL, ep);
	return err;
}

int main(int argc, char **argv)
{
	struct rspmc_connect_opts co = { 0 };
	struct rspmc_ep *ep;
	uint64_t x[RSPMC_REGS];
	int err;

	if (argc < 6)
		return 2;
	co.address = argv[1];
	co.ca_pem = slurp(argv[2]);
	co.cert_pem = slurp(argv[3]);
	co.key_pem = slurp(argv[4]);
	co.join_token = argv[5];
	if (!co.ca_pem || !co.cert_pem || !co.key_pem)
		return 2;

	err = attach(&co, &ep);
	ok(!err, "attach over mTLS with the join token: %s",
	   err ? rspmc_last_error() : "");
	if (!err) {
		regs(x, FFA_VERSION, FFA_VERSION_1_2, 0, 0, 0, 0, 0, 0);
		ok(!rspmc_call(ep, 0, x) && x[0] == FFA_VERSION_1_2,
		   "FFA_VERSION over TLS");
		ok(!rspmc_detach(ep), "detach");
	}

	co.join_token = NULL;
	err = attach(&co, &ep);
	ok(err == RSPMC_ESESSION,
	   "without the token: refused, %s: %s", rspmc_strerror(err),
	   rspmc_last_error());

	co.join_token = argv[5];
	co.ca_pem = co.cert_pem = co.key_pem = NULL;
	err = attach(&co, &ep);
	ok(err == RSPMC_EUNAVAILABLE, "plaintext to a TLS server: %s: %s",
	   rspmc_strerror(err), rspmc_last_error());
	return tap_done();
}
