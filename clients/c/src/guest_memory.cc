/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Each range the endpoint may touch lives in an "area": a memfd mapped
 * twice, once at the guest address (the program's view, its protection
 * following the endpoint's access) and once anywhere, read-write, for the
 * library. A writable page starts read-only; its first write faults, the
 * handler marks it dirty and opens it, and the next call sends it. A fault
 * on a page the endpoint may not write goes to the program as a SIGSEGV.
 */
#include "guest_memory.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "rspmc.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1U
#endif

namespace rspmc {

static const uint64_t PAGE = 4096;

enum page_bits : uint8_t {
	ALLOW_NONE = 0,
	ALLOW_RO = 1,
	ALLOW_RW = 2,
	ALLOW_MASK = 3,
	DIRTY = 4,
};

struct area {
	std::atomic<bool> live{false};
	uint64_t base = 0;
	uint64_t size = 0;
	uint8_t *alias = nullptr;
	int fd = -1;
	bool ram = false;
	std::atomic<uint8_t> *pages = nullptr;
	ep_memory *owner = nullptr;

	const uint8_t *alias_bytes(uint64_t page) const
	{
		return alias + page * 4096;
	}
};

/* A fixed table: the signal handler reads it without locks. */
static const int MAX_AREAS = 256;
/* Ranges without access kept mapped per endpoint, for when they return. */
static const size_t KEEP_EMPTY_AREAS = 16;
static area areas[MAX_AREAS];
static std::mutex areas_lock;

struct ep_memory {
	std::atomic<unsigned> dirty{0};
	std::mutex lock;
};

static struct sigaction previous;
static std::once_flag handler_once;

static area *area_at(uint64_t addr)
{
	for (int i = 0; i < MAX_AREAS; i++) {
		area *a = &areas[i];

		if (a->live.load(std::memory_order_acquire) && addr >= a->base &&
		    addr - a->base < a->size)
			return a;
	}
	return nullptr;
}

/* Not ours to handle: the program's handler, or the default (death). */
static void forward(int sig, siginfo_t *info, void *ctx)
{
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, info, ctx);
		return;
	}
	if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
		return;
	}
	/* Returning re-runs the access, which now kills as it would have. */
	signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *info, void *ctx)
{
	uint64_t addr = (uint64_t)(uintptr_t)info->si_addr;
	area *a = area_at(addr);

	if (a) {
		uint64_t i = (addr - a->base) / PAGE;
		uint8_t st = a->pages[i].load();

		/* A page it may write faults only on the first write. */
		if ((st & ALLOW_MASK) == ALLOW_RW) {
			void *page = (void *)(uintptr_t)(a->base + i * PAGE);

			/* Open first, then mark: see memory_collect. */
			mprotect(page, PAGE, PROT_READ | PROT_WRITE);
			if (!(a->pages[i].fetch_or(DIRTY) & DIRTY))
				a->owner->dirty.fetch_add(1);
			return;
		}
	}
	forward(sig, info, ctx);
}

static void install_handler()
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &previous);
}

static int prot_of(uint8_t st)
{
	switch (st & ALLOW_MASK) {
	case ALLOW_RW:
		return st & DIRTY ? PROT_READ | PROT_WRITE : PROT_READ;
	case ALLOW_RO:
		return PROT_READ;
	default:
		return PROT_NONE;
	}
}

/* Apply the protection of pages [from, to) of an area, in runs. */
static void protect(area *a, uint64_t from, uint64_t to)
{
	while (from < to) {
		int prot = prot_of(a->pages[from].load());
		uint64_t end = from + 1;

		while (end < to && prot_of(a->pages[end].load()) == prot)
			end++;
		mprotect((void *)(uintptr_t)(a->base + from * PAGE),
			 (end - from) * PAGE, prot);
		from = end;
	}
}

static int area_create(ep_memory *owner, uint64_t base, uint64_t size,
		       uint8_t allow, bool ram, bool in_place, area **out,
		       std::string *why)
{
	std::lock_guard<std::mutex> g(areas_lock);
	area *slot = nullptr;

	for (int i = 0; i < MAX_AREAS && !slot; i++)
		if (!areas[i].live.load() && !areas[i].pages)
			slot = &areas[i];
	if (!slot) {
		*why = "guest memory: too many mapped ranges";
		return RSPMC_ENOMEM;
	}
	int fd = memfd_create("rspmc-guest", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		*why = std::string("guest memory: memfd: ") + strerror(errno);
		if (fd >= 0)
			close(fd);
		return RSPMC_ENOMEM;
	}
	/* In place: the program's bytes first, then the mapping over them. */
	if (in_place &&
	    pwrite(fd, (void *)(uintptr_t)base, size, 0) != (ssize_t)size) {
		*why = std::string("guest memory: copying in place: ") +
		       strerror(errno);
		close(fd);
		return RSPMC_ENOMEM;
	}
	int prot = allow == ALLOW_NONE ? PROT_NONE : PROT_READ;
	void *view = mmap((void *)(uintptr_t)base, size, prot,
			  MAP_SHARED | (in_place ? MAP_FIXED :
						   MAP_FIXED_NOREPLACE),
			  fd, 0);

	if (view == MAP_FAILED || view != (void *)(uintptr_t)base) {
		char buf[160];

		snprintf(buf, sizeof(buf),
			 "guest memory: cannot map 0x%llx+0x%llx at its guest address in this process: %s",
			 (unsigned long long)base, (unsigned long long)size,
			 view == MAP_FAILED ? strerror(errno) : "placed elsewhere");
		*why = buf;
		if (view != MAP_FAILED)
			munmap(view, size);
		close(fd);
		return view == MAP_FAILED && errno == EEXIST ? RSPMC_EEXIST :
							       RSPMC_ENOMEM;
	}
	void *alias = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   fd, 0);

	if (alias == MAP_FAILED) {
		*why = std::string("guest memory: alias: ") + strerror(errno);
		munmap(view, size);
		close(fd);
		return RSPMC_ENOMEM;
	}
	uint64_t n = size / PAGE;

	slot->pages = new std::atomic<uint8_t>[n];
	for (uint64_t i = 0; i < n; i++)
		slot->pages[i].store(allow);
	slot->base = base;
	slot->size = size;
	slot->alias = (uint8_t *)alias;
	slot->fd = fd;
	slot->ram = ram;
	slot->owner = owner;
	/* Bytes already there travel with the first call, as written. */
	for (uint64_t i = 0; in_place && i < n; i++) {
		const uint8_t *p = slot->alias_bytes(i);
		uint64_t j = 0;

		while (j < PAGE && !p[j])
			j++;
		if (j < PAGE) {
			slot->pages[i].store(allow | DIRTY);
			mprotect((void *)(uintptr_t)(base + i * PAGE), PAGE,
				 PROT_READ | PROT_WRITE);
			owner->dirty.fetch_add(1);
		}
	}
	slot->live.store(true, std::memory_order_release);
	*out = slot;
	return 0;
}

/* Called with areas_lock held. */
static void area_destroy(area *a)
{
	a->live.store(false, std::memory_order_release);
	munmap((void *)(uintptr_t)a->base, a->size);
	munmap(a->alias, a->size);
	close(a->fd);
	delete[] a->pages;
	a->pages = nullptr;
	a->owner = nullptr;
}

int memory_create(uint64_t ram_base, uint64_t ram_bytes, bool in_place,
		  ep_memory **out, std::string *why)
{
	std::call_once(handler_once, install_handler);
	ep_memory *mem = new ep_memory;
	area *a;
	int err = ram_bytes ? area_create(mem, ram_base, ram_bytes, ALLOW_RW,
					  true, in_place, &a, why) :
			      0;

	if (err) {
		delete mem;
		return err;
	}
	*out = mem;
	return 0;
}

void memory_destroy(ep_memory *mem)
{
	if (!mem)
		return;
	{
		std::lock_guard<std::mutex> g(areas_lock);

		for (int i = 0; i < MAX_AREAS; i++)
			if (areas[i].pages && areas[i].owner == mem)
				area_destroy(&areas[i]);
	}
	delete mem;
}

void memory_collect(ep_memory *mem, remote_spmc::v1::CallRequest *req)
{
	if (mem->dirty.exchange(0) == 0)
		return;
	std::lock_guard<std::mutex> g(mem->lock);

	for (int i = 0; i < MAX_AREAS; i++) {
		area *a = &areas[i];

		if (!a->live.load() || a->owner != mem)
			continue;
		for (uint64_t p = 0; p < a->size / PAGE; p++) {
			if (!(a->pages[p].load() & DIRTY))
				continue;
			/*
			 * Unmark, close, then copy: a write after the close
			 * faults and marks it again for the next call.
			 */
			a->pages[p].fetch_and((uint8_t)~DIRTY);
			mprotect((void *)(uintptr_t)(a->base + p * PAGE), PAGE,
				 PROT_READ);
			auto *page = req->add_dirty();
			page->set_address(a->base + p * PAGE);
			page->set_data(a->alias + p * PAGE, PAGE);
		}
	}
}

static uint8_t allow_in(const remote_spmc::v1::CoherenceUpdate &u,
			uint64_t addr)
{
	for (const auto &r : u.map())
		if (addr >= r.base() && addr < r.limit())
			return r.writable() ? ALLOW_RW : ALLOW_RO;
	return ALLOW_NONE;
}

int memory_apply(ep_memory *mem, const remote_spmc::v1::CoherenceUpdate &u,
		 std::string *why)
{
	std::lock_guard<std::mutex> g(mem->lock);

	if (u.map_changed()) {
		/* Ranges not mapped yet get an area of their own. */
		for (const auto &r : u.map()) {
			for (uint64_t at = r.base(); at < r.limit();) {
				area *a = area_at(at);

				if (a && a->owner == mem) {
					at = a->base + a->size;
					continue;
				}
				uint64_t end = at;

				while (end < r.limit() && !area_at(end))
					end += PAGE;
				if (end == at) {
					*why = "guest memory: a range overlaps another endpoint's in this process";
					return RSPMC_EEXIST;
				}
				int err = area_create(mem, at, end - at,
						      ALLOW_NONE, false, false,
						      &a, why);
				if (err)
					return err;
				at = end;
			}
		}
		std::vector<area *> empty;

		for (int i = 0; i < MAX_AREAS; i++) {
			area *a = &areas[i];
			bool any = false;

			if (!a->live.load() || a->owner != mem)
				continue;
			for (uint64_t p = 0; p < a->size / PAGE; p++) {
				uint64_t addr = a->base + p * PAGE;
				uint8_t was = a->pages[p].load();
				uint8_t now = allow_in(u, addr);

				/* Newly readable: zero unless it comes. */
				if ((was & ALLOW_MASK) == ALLOW_NONE &&
				    now != ALLOW_NONE)
					memset(a->alias + p * PAGE, 0, PAGE);
				/* Kept dirty only while still writable. */
				if (now == ALLOW_RW)
					now |= was & DIRTY;
				a->pages[p].store(now);
				any |= now != ALLOW_NONE;
			}
			protect(a, 0, a->size / PAGE);
			if (!any && !a->ram)
				empty.push_back(a);
		}
		/*
		 * Ranges that went (relinquished) stay mapped without access
		 * for a while: the same range often comes back (the next
		 * retrieve), and unmapping costs every thread a TLB flush.
		 */
		if (empty.size() > KEEP_EMPTY_AREAS) {
			std::lock_guard<std::mutex> ga(areas_lock);

			for (area *a : empty)
				area_destroy(a);
		}
	}
	for (const auto &p : u.pages()) {
		area *a = area_at(p.address());

		if (!a || a->owner != mem ||
		    p.address() + p.data().size() > a->base + a->size)
			continue; /* not in this endpoint's view */
		memcpy(a->alias + (p.address() - a->base), p.data().data(),
		       p.data().size());
	}
	return 0;
}

} /* namespace rspmc */
