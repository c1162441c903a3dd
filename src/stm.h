/*
 * stm.h: software transactional memory that guards txfsd's shared metadata.
 *
 * A transactional variable (struct stm_tvar) holds one machine word: a
 * scalar, or a pointer to an immutable record that is replaced copy-on-write.
 * Every read and write of shared metadata happens inside a transaction body
 * run by stm_atomically().  Bodies are re-executable: they must not do I/O,
 * must not reply to FUSE, and must not free memory other than through
 * stm_retire().  Side effects go through stm_on_commit().
 *
 * Status convention: a body returns 0 to commit, a negative errno to abort
 * the attempt with no effect (the error is returned by stm_atomically), or
 * one of the STM_* codes below that it received from an stm_ call.  The
 * STM_LOAD/STM_LOADP macros propagate those codes for it.
 */
#ifndef TXFS_STM_H
#define TXFS_STM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A transactional variable.  Embed it in the object it guards.  The fields
 * are private to stm.c; initialise with STM_TVAR_INIT or stm_tvar_init()
 * before the object becomes reachable by other threads.
 */
struct stm_tvar {
	_Atomic uint64_t lock; /* version << 1, or owner | 1 while locked */
	_Atomic uintptr_t val; /* the value: scalar or immutable pointer */
};

#define STM_TVAR_INIT(v)                                                       \
	{                                                                      \
		0, (uintptr_t)(v)                                              \
	}

/* Codes a body receives from stm_read()/stm_wait() and must return. */
enum {
	STM_RETRY = -100000, /* the snapshot is inconsistent: re-run */
	STM_WAIT = -100001   /* block until something read changes */
};

/* Flags for stm_atomically(). */
enum {
	STM_RO = 1u << 0 /* read-only hint: no read set, no locks */
};

struct stm_tx;
typedef int (*stm_fn)(struct stm_tx *tx, void *arg);

/*
 * Per-call-site statistics.  stm_atomically() declares one static site per
 * call; the site registers itself on its first use.  Fields are atomics.
 * Aborts, waits and serial runs are counted at once; commits are counted
 * per thread and added in batches (when a thread has 64 for the site, when
 * it sleeps in a wait or exits, and for the calling thread in
 * stm_sites_foreach), so a busy site's commits may lag by < 64 per thread.
 */
struct stm_site {
	const char *name;
	_Atomic uint64_t commits;
	_Atomic uint64_t aborts_locked;	  /* a lock was held by another tx */
	_Atomic uint64_t aborts_validate; /* read-set validation failed */
	_Atomic uint64_t aborts_user;	  /* the body returned -errno */
	_Atomic uint64_t waits;		  /* the body asked to block */
	_Atomic uint64_t serial;	  /* ran in serial fallback */
	_Atomic int registered;
	struct stm_site *_Atomic next;
};

/* Lifecycle (process-wide).  stm_init is idempotent. */
int stm_init(void);

/*
 * Frees every retired object once no transaction is running.  Call only when
 * no other thread is inside stm_atomically (tests, shutdown).
 */
void stm_quiesce(void);

/* Initialises a tvar that is not yet shared. */
void stm_tvar_init(struct stm_tvar *tv, uintptr_t v);

/*
 * Reads a tvar outside any transaction.  Only valid while the caller knows
 * no transaction can write it (initialisation, tests, single-threaded
 * shutdown).
 */
uintptr_t stm_peek(const struct stm_tvar *tv);

/*
 * Runs fn(tx, arg) atomically, re-running it on conflict, with randomised
 * exponential back-off and a serial fallback after repeated aborts.
 * Returns 0 on commit, or the negative errno the body returned (then
 * nothing it wrote is published and no on-commit hook runs).  A body that
 * returns STM_WAIT sleeps until a tvar it read changes, then re-runs; with
 * timeout_ms >= 0 the call gives up with -ETIMEDOUT after that long.
 * Nested calls join the outer transaction (flat nesting).
 */
int stm_run(struct stm_site *site, stm_fn fn, void *arg, unsigned flags,
	    int timeout_ms);

#define stm_atomically(fn, arg, flags)                                         \
	__extension__({                                                        \
		static struct stm_site stm_site_ = { .name = #fn };            \
		stm_run(&stm_site_, (fn), (arg), (flags), -1);                 \
	})

#define stm_atomically_timed(fn, arg, flags, timeout_ms)                       \
	__extension__({                                                        \
		static struct stm_site stm_site_ = { .name = #fn };            \
		stm_run(&stm_site_, (fn), (arg), (flags), (timeout_ms));       \
	})

/*
 * Transactional access.  stm_read returns 0 or STM_RETRY, or -ENOMEM when
 * the read set cannot grow; if stm_write or stm_retire cannot record its
 * effect, the attempt fails and stm_run returns -ENOMEM.
 */
int stm_read(struct stm_tx *tx, struct stm_tvar *tv, uintptr_t *out);
void stm_write(struct stm_tx *tx, struct stm_tvar *tv, uintptr_t v);

#define STM_LOAD(tx, tv, out)                                                  \
	do {                                                                   \
		uintptr_t stm_v_;                                              \
		int stm_r_ = stm_read((tx), (tv), &stm_v_);                    \
		if (stm_r_ != 0)                                               \
			return stm_r_;                                         \
		*(out) = stm_v_;                                               \
	} while (0)

#define STM_LOADP(tx, tv, outp)                                                \
	do {                                                                   \
		uintptr_t stm_v_;                                              \
		int stm_r_ = stm_read((tx), (tv), &stm_v_);                    \
		if (stm_r_ != 0)                                               \
			return stm_r_;                                         \
		*(outp) = (void *)stm_v_;                                      \
	} while (0)

/*
 * Memory management inside a body.  stm_alloc returns zeroed memory that is
 * freed automatically if the attempt aborts (NULL on ENOMEM).  stm_retire
 * frees ptr with dtor (free if NULL) after the transaction commits and no
 * running transaction can still see it; on abort it does nothing.
 */
void *stm_alloc(struct stm_tx *tx, size_t size);
void stm_retire(struct stm_tx *tx, void *ptr, void (*dtor)(void *));

/* Runs fn(arg) after the transaction commits, in order; never on abort. */
int stm_on_commit(struct stm_tx *tx, void (*fn)(void *), void *arg);

/* Returns STM_WAIT, for `return stm_wait(tx);` in a body. */
int stm_wait(struct stm_tx *tx);

/* Statistics. */
typedef void (*stm_site_cb)(const struct stm_site *site, void *arg);
void stm_sites_foreach(stm_site_cb cb, void *arg);
uint64_t stm_clock(void);

/*
 * Formats one line "name commits=N aborts_locked=N ..." into buf.  Returns
 * its length, or -ENOSPC if buf is too small.
 */
int stm_site_format(const struct stm_site *site, char *buf, size_t size);

/*
 * Checks the calling thread's descriptor (valid inside and outside bodies)
 * and the global counters; for assert() and tests.
 */
bool stm_invariants(void);

/*
 * Checks a tvar that no commit is writing right now: it is unlocked and its
 * version is not ahead of the clock.  Tests use it to prove no lock leaked.
 */
bool stm_tvar_invariants(const struct stm_tvar *tv);

/* Test hook: retired objects not yet freed, over all threads. */
size_t stm_debug_retired_pending(void);

/*
 * Test hook: make every k-th commit-time validation fail (0 turns it off).
 * Compiled in every build; costs one relaxed load per commit.
 */
void stm_debug_fail_every(unsigned k);

#endif /* TXFS_STM_H */
