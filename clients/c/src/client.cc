/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C API over gRPC C++: one channel per connection, a Session stream
 * per vCPU (calls of a vCPU in order, one round trip each), and an
 * Interrupts stream read on a thread of its own once asked for.
 */
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "guest_memory.h"
#include "internal.h"
#include "remote_spmc.grpc.pb.h"
#include "rspmc.h"

using remote_spmc::v1::Spmc;
namespace pb = remote_spmc::v1;

static const unsigned MAX_VCPUS = 64;
/* Past this many dirty pages, the rest go ahead by WriteMemory. */
static const int MAX_DIRTY_PER_CALL = 512;

struct rspmc_conn {
	std::shared_ptr<grpc::Channel> channel;
	std::unique_ptr<Spmc::Stub> stub;
	std::string token;
};

struct vcpu_stream {
	std::mutex lock;
	std::unique_ptr<grpc::ClientContext> ctx;
	std::unique_ptr<grpc::ClientReaderWriter<pb::CallRequest, pb::CallReply> >
		stream;
};

struct irq {
	uint32_t intid;
	uint32_t vcpu;
};

struct rspmc_ep {
	rspmc_conn *conn;
	std::string session;
	uint16_t id;
	uint64_t ram_base;
	uint64_t ram_bytes;
	uint32_t ffa_version;
	rspmc::ep_memory *mem = nullptr;
	std::mutex lock;
	std::unique_ptr<vcpu_stream> vcpus[MAX_VCPUS];
	std::atomic<bool> detached{false};

	std::mutex irq_lock;
	std::condition_variable irq_cv;
	std::deque<irq> irqs;
	rspmc_irq_fn irq_fn = nullptr;
	void *irq_arg = nullptr;
	bool irq_started = false;
	bool irq_ended = false;
	std::unique_ptr<grpc::ClientContext> irq_ctx;
	std::thread irq_thread;
};

static thread_local std::string last_error;
static std::atomic<rspmc_ep *> default_ep{nullptr};

namespace rspmc {

int fail(int err, const std::string &why)
{
	last_error = why;
	return err;
}

} /* namespace rspmc */

using rspmc::fail;

static int code_of(const grpc::Status &s)
{
	switch (s.error_code()) {
	case grpc::StatusCode::OK:
		return RSPMC_OK;
	case grpc::StatusCode::INVALID_ARGUMENT:
		return RSPMC_EINVAL;
	case grpc::StatusCode::UNAVAILABLE:
		return RSPMC_EUNAVAILABLE;
	case grpc::StatusCode::PERMISSION_DENIED:
		return RSPMC_EDENIED;
	case grpc::StatusCode::ALREADY_EXISTS:
		return RSPMC_EEXIST;
	case grpc::StatusCode::UNAUTHENTICATED:
		return RSPMC_ESESSION;
	case grpc::StatusCode::RESOURCE_EXHAUSTED:
		return RSPMC_ENOMEM;
	case grpc::StatusCode::DEADLINE_EXCEEDED:
		return RSPMC_ETIMEDOUT;
	default:
		return RSPMC_EIO;
	}
}

static int fail_status(const char *what, const grpc::Status &s)
{
	return fail(code_of(s), std::string(what) + ": " + s.error_message());
}

static void with_token(const rspmc_conn *conn, grpc::ClientContext *ctx)
{
	if (!conn->token.empty())
		ctx->AddMetadata("authorization", "Bearer " + conn->token);
}

extern "C" int rspmc_connect(const struct rspmc_connect_opts *opts,
			     struct rspmc_conn **out)
{
	if (!opts || !opts->address || !out)
		return fail(RSPMC_EINVAL, "connect: an address is needed");
	std::shared_ptr<grpc::ChannelCredentials> creds;

	if (opts->ca_pem || opts->cert_pem) {
		grpc::SslCredentialsOptions ssl;

		if (opts->ca_pem)
			ssl.pem_root_certs = opts->ca_pem;
		if (opts->cert_pem && opts->key_pem) {
			ssl.pem_cert_chain = opts->cert_pem;
			ssl.pem_private_key = opts->key_pem;
		}
		creds = grpc::SslCredentials(ssl);
	} else {
		creds = grpc::InsecureChannelCredentials();
	}
	grpc::ChannelArguments args;

	/* An update may carry many pages. */
	args.SetMaxReceiveMessageSize(-1);
	auto conn = new (std::nothrow) rspmc_conn;

	if (!conn)
		return fail(RSPMC_ENOMEM, "connect: out of memory");
	conn->channel = grpc::CreateCustomChannel(opts->address, creds, args);
	conn->stub = Spmc::NewStub(conn->channel);
	if (opts->join_token)
		conn->token = opts->join_token;
	*out = conn;
	return 0;
}

extern "C" int rspmc_disconnect(struct rspmc_conn *conn)
{
	delete conn;
	return 0;
}

static int attach(rspmc_conn *conn, const pb::AttachRequest &req,
		  bool in_place, struct rspmc_ep **out)
{
	if (!conn || !out)
		return fail(RSPMC_EINVAL, "attach: no connection");
	grpc::ClientContext ctx;
	pb::AttachReply rep;

	with_token(conn, &ctx);
	grpc::Status s = conn->stub->Attach(&ctx, req, &rep);

	if (!s.ok())
		return fail_status("attach", s);
	auto ep = new rspmc_ep;

	ep->conn = conn;
	ep->session = rep.session();
	ep->id = (uint16_t)rep.endpoint_id();
	ep->ram_base = rep.ram_base();
	ep->ram_bytes = rep.ram_bytes();
	ep->ffa_version = rep.ffa_version();
	std::string why;
	int err = rspmc::memory_create(ep->ram_base, ep->ram_bytes, in_place,
				       &ep->mem, &why);

	if (err) {
		grpc::ClientContext dctx;
		pb::DetachRequest d;
		pb::DetachReply dr;

		d.set_session(ep->session);
		conn->stub->Detach(&dctx, d, &dr);
		delete ep;
		return fail(err, "attach: " + why);
	}
	rspmc_ep *none = nullptr;

	default_ep.compare_exchange_strong(none, ep);
	*out = ep;
	return 0;
}

extern "C" int rspmc_attach_vm(struct rspmc_conn *conn,
			       const struct rspmc_vm_opts *opts,
			       struct rspmc_ep **out)
{
	pb::AttachRequest req;
	bool in_place = false;

	if (opts) {
		in_place = opts->flags & RSPMC_VM_RAM_IN_PLACE;
		if (in_place && (!opts->ram_base || !opts->ram_bytes ||
				 (opts->ram_base | opts->ram_bytes) & 4095))
			return fail(RSPMC_EINVAL,
				    "attach: in place, the RAM must be whole pages at a page boundary");
		req.set_endpoint_id(opts->id);
		if (opts->name)
			req.set_name(opts->name);
		req.set_vcpu_count(opts->vcpus);
		req.set_ram_bytes(opts->ram_bytes);
		req.set_ram_base(opts->ram_base);
		req.set_properties(opts->properties);
		for (size_t i = 0; i < opts->uuid_count; i++) {
			if (!opts->uuids || !opts->uuids[i])
				return fail(RSPMC_EINVAL, "attach: a NULL uuid");
			req.add_uuids(opts->uuids[i]);
		}
	}
	return attach(conn, req, in_place, out);
}

extern "C" int rspmc_attach_partition(struct rspmc_conn *conn, uint16_t id,
				      const char *credential,
				      struct rspmc_ep **out)
{
	pb::AttachRequest req;

	req.set_endpoint_id(id);
	if (credential)
		req.set_credential(credential);
	return attach(conn, req, false, out);
}

extern "C" int rspmc_ep_info(const struct rspmc_ep *ep, uint16_t *id,
			     uint64_t *ram_base, uint64_t *ram_bytes,
			     uint32_t *ffa_version)
{
	if (!ep)
		return fail(RSPMC_EINVAL, "ep_info: no endpoint");
	if (id)
		*id = ep->id;
	if (ram_base)
		*ram_base = ep->ram_base;
	if (ram_bytes)
		*ram_bytes = ep->ram_bytes;
	if (ffa_version)
		*ffa_version = ep->ffa_version;
	return 0;
}

static vcpu_stream *stream_of(rspmc_ep *ep, uint32_t vcpu)
{
	std::lock_guard<std::mutex> g(ep->lock);

	if (!ep->vcpus[vcpu])
		ep->vcpus[vcpu].reset(new vcpu_stream);
	return ep->vcpus[vcpu].get();
}

/* Dirty pages past what one call carries go ahead, one WriteMemory each. */
static int write_ahead(rspmc_ep *ep, pb::CallRequest *req)
{
	while (req->dirty_size() > MAX_DIRTY_PER_CALL) {
		const pb::CoherencePage &p = req->dirty(req->dirty_size() - 1);
		grpc::ClientContext ctx;
		pb::WriteMemoryRequest w;
		pb::WriteMemoryReply r;

		w.set_session(ep->session);
		w.set_address(p.address());
		w.set_data(p.data());
		grpc::Status s = ep->conn->stub->WriteMemory(&ctx, w, &r);

		if (!s.ok())
			return fail_status("call: writing dirty pages", s);
		req->mutable_dirty()->RemoveLast();
	}
	return 0;
}

extern "C" int rspmc_call(struct rspmc_ep *ep, uint32_t vcpu,
			  uint64_t x[RSPMC_REGS])
{
	if (!ep || !x)
		return fail(RSPMC_EINVAL, "call: no endpoint or registers");
	if (vcpu >= MAX_VCPUS)
		return fail(RSPMC_EINVAL, "call: vcpu out of range");
	if (ep->detached.load())
		return fail(RSPMC_ESESSION, "call: the endpoint was detached");
	vcpu_stream *vs = stream_of(ep, vcpu);
	std::lock_guard<std::mutex> g(vs->lock);
	pb::CallRequest req;
	int n = RSPMC_REGS;

	while (n > 0 && x[n - 1] == 0)
		n--;
	req.set_session(ep->session);
	req.set_vcpu(vcpu);
	for (int i = 0; i < n; i++)
		req.add_x(x[i]);
	req.set_coherent(true);
	rspmc::memory_collect(ep->mem, &req);
	int err = write_ahead(ep, &req);

	if (err)
		return err;
	if (!vs->stream) {
		vs->ctx.reset(new grpc::ClientContext);
		vs->stream = ep->conn->stub->Session(vs->ctx.get());
	}
	pb::CallReply rep;

	if (!vs->stream->Write(req) || !vs->stream->Read(&rep)) {
		grpc::Status s = vs->stream->Finish();

		vs->stream.reset();
		vs->ctx.reset();
		if (s.ok())
			s = grpc::Status(grpc::StatusCode::UNAVAILABLE,
					 "the stream ended");
		return fail_status("call", s);
	}
	if (rep.has_coherence()) {
		std::string why;

		err = rspmc::memory_apply(ep->mem, rep.coherence(), &why);
		if (err)
			return fail(err, "call: " + why);
	}
	for (int i = 0; i < RSPMC_REGS; i++)
		x[i] = i < rep.x_size() ? rep.x(i) : 0;
	if (rep.has_reason())
		last_error = rep.reason().text();
	return 0;
}

static void irq_loop(rspmc_ep *ep)
{
	pb::InterruptsRequest req;
	pb::Interrupt m;

	req.set_session(ep->session);
	auto reader = ep->conn->stub->Interrupts(ep->irq_ctx.get(), req);

	while (reader->Read(&m)) {
		std::unique_lock<std::mutex> g(ep->irq_lock);
		rspmc_irq_fn fn = ep->irq_fn;
		void *arg = ep->irq_arg;

		if (!fn) {
			ep->irqs.push_back({ m.intid(), m.vcpu() });
			ep->irq_cv.notify_all();
			continue;
		}
		g.unlock();
		fn(ep, m.intid(), m.vcpu(), arg);
	}
	reader->Finish();
	std::lock_guard<std::mutex> g(ep->irq_lock);
	ep->irq_ended = true;
	ep->irq_cv.notify_all();
}

/* Called with irq_lock held. */
static void irq_start(rspmc_ep *ep)
{
	if (ep->irq_started)
		return;
	ep->irq_started = true;
	ep->irq_ctx.reset(new grpc::ClientContext);
	ep->irq_thread = std::thread(irq_loop, ep);
}

extern "C" int rspmc_set_interrupt_handler(struct rspmc_ep *ep,
					   rspmc_irq_fn fn, void *arg)
{
	if (!ep)
		return fail(RSPMC_EINVAL, "interrupts: no endpoint");
	std::lock_guard<std::mutex> g(ep->irq_lock);

	ep->irq_fn = fn;
	ep->irq_arg = arg;
	irq_start(ep);
	return 0;
}

extern "C" int rspmc_wait_interrupt(struct rspmc_ep *ep, uint32_t *intid,
				    uint32_t *vcpu, int timeout_ms)
{
	if (!ep)
		return fail(RSPMC_EINVAL, "interrupts: no endpoint");
	std::unique_lock<std::mutex> g(ep->irq_lock);

	if (ep->irq_fn)
		return fail(RSPMC_EINVAL, "interrupts: a handler takes them");
	irq_start(ep);
	auto ready = [ep] { return !ep->irqs.empty() || ep->irq_ended; };

	if (timeout_ms < 0)
		ep->irq_cv.wait(g, ready);
	else if (!ep->irq_cv.wait_for(g, std::chrono::milliseconds(timeout_ms),
				      ready))
		return fail(RSPMC_ETIMEDOUT, "interrupts: none within the timeout");
	if (ep->irqs.empty())
		return fail(RSPMC_ESESSION, "interrupts: the line ended");
	irq i = ep->irqs.front();

	ep->irqs.pop_front();
	if (intid)
		*intid = i.intid;
	if (vcpu)
		*vcpu = i.vcpu;
	return 0;
}

extern "C" int rspmc_detach(struct rspmc_ep *ep)
{
	if (!ep)
		return fail(RSPMC_EINVAL, "detach: no endpoint");
	ep->detached.store(true);
	grpc::ClientContext ctx;
	pb::DetachRequest req;
	pb::DetachReply rep;

	req.set_session(ep->session);
	grpc::Status s = ep->conn->stub->Detach(&ctx, req, &rep);
	/* Blocked calls and the interrupt line end now. */
	{
		std::lock_guard<std::mutex> g(ep->lock);

		for (auto &vs : ep->vcpus)
			if (vs && vs->ctx)
				vs->ctx->TryCancel();
	}
	for (auto &vs : ep->vcpus) {
		if (!vs)
			continue;
		std::lock_guard<std::mutex> g(vs->lock);

		if (vs->stream) {
			vs->stream->WritesDone();
			vs->stream->Finish();
		}
	}
	{
		std::lock_guard<std::mutex> g(ep->irq_lock);

		if (ep->irq_ctx)
			ep->irq_ctx->TryCancel();
	}
	if (ep->irq_thread.joinable())
		ep->irq_thread.join();
	rspmc_ep *self = ep;

	default_ep.compare_exchange_strong(self, nullptr);
	rspmc::memory_destroy(ep->mem);
	delete ep;
	if (!s.ok())
		return fail_status("detach", s);
	return 0;
}

/* ---- the conduit's endpoint ---- */

static thread_local rspmc_ep *thread_ep;
static thread_local uint32_t thread_vcpu;

extern "C" int rspmc_use_endpoint(struct rspmc_ep *ep, uint32_t vcpu)
{
	if (vcpu >= MAX_VCPUS)
		return fail(RSPMC_EINVAL, "use_endpoint: vcpu out of range");
	thread_ep = ep;
	thread_vcpu = vcpu;
	return 0;
}

extern "C" int rspmc_set_default_endpoint(struct rspmc_ep *ep)
{
	default_ep.store(ep);
	return 0;
}

namespace rspmc {

/* The endpoint this thread's conduit calls go to. */
int conduit_target(rspmc_ep **ep, uint32_t *vcpu)
{
	*ep = thread_ep ? thread_ep : default_ep.load();
	*vcpu = thread_ep ? thread_vcpu : 0;
	if (!*ep)
		return fail(RSPMC_EINVAL, "conduit: no endpoint attached");
	return 0;
}

} /* namespace rspmc */

extern "C" const char *rspmc_last_error(void)
{
	return last_error.c_str();
}

extern "C" const char *rspmc_strerror(int err)
{
	switch (err) {
	case RSPMC_OK:
		return "success";
	case RSPMC_EINVAL:
		return "invalid argument";
	case RSPMC_EUNAVAILABLE:
		return "server unavailable";
	case RSPMC_EDENIED:
		return "permission denied";
	case RSPMC_EEXIST:
		return "already exists";
	case RSPMC_ESESSION:
		return "no such session";
	case RSPMC_ENOMEM:
		return "resources exhausted";
	case RSPMC_ETIMEDOUT:
		return "timed out";
	case RSPMC_EIO:
		return "transport failure";
	default:
		return "unknown error";
	}
}
