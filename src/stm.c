/*
 * stm.c: software transactional memory for txfsd's shared metadata.
 *
 * RESPONSIBILITY
 *
 * This module runs transaction bodies atomically and in isolation from
 * every other body, re-running a body when it conflicts.  It owns the global
 * version clock, the per-thread transaction descriptors and their logs, the
 * epoch-based reclamation of retired memory, the blocking wait behind
 * STM_WAIT, contention management (back-off, serial mode) and the
 * per-call-site statistics.  It knows nothing about what the tvars mean.
 *
 * ALGORITHM
 *
 * TL2 with commit-time locking and write-back (Dice, Shalev and Shavit,
 * DISC 2006), one versioned lock per tvar rather than a striped table:
 *
 *   begin:  publish the thread's epoch slot (seq_cst), then rv = clock
 *           (seq_cst).
 *   read:   l1 = lock (acquire); v = val (acquire); l2 = lock (relaxed);
 *           the read is good if l1 == l2, l1 is unlocked and version(l1)
 *           <= rv.  A locked tvar is waited for briefly (lock_wait); a
 *           version > rv dooms the attempt (STM_RETRY).  Read-write
 *           attempts log {tv, version}; read-only (STM_RO) ones do not.
 *   write:  buffer the value in the write set; nothing shared is touched.
 *   commit: no writes: done, without locks or validation (every read was
 *           valid at rv, so the attempt serialises at rv).  Otherwise sort
 *           the write set by address, CAS every lock from version << 1 to
 *           (owning write entry | 1), wv = ++clock, validate the read set
 *           unless wv == rv + 1, store the values (release), store every
 *           lock as wv << 1 (release), and wake blocked waiters if any.
 *   abort:  restore the lock words already taken, free stm_alloc blocks,
 *           drop the logs, back off, re-run.
 *
 * A tvar the attempt read and then locked itself still carries the version
 * it had before the lock (struct wentry.prelock); validation compares that
 * one, so our own lock cannot mask a commit by someone else between our
 * read and our lock (self-lock masking).
 *
 * Whether a body will write is unknown until it does, so only STM_RO
 * attempts skip the read set.  An STM_RO body that writes keeps running
 * (it reads its own writes) but its commit is refused and it re-runs as
 * read-write.  A body that returns STM_WAIT from a read-only attempt is
 * re-run once with a read set, so that there is something to wait on.
 *
 * Reclamation is epoch-based on the clock: a commit tags what it retired
 * with wv; an object is freed once every thread's epoch slot is >= its tag
 * (idle threads' slots are STM_IDLE, the maximum, so parked threads never
 * hold reclamation back).  Each thread frees its own retired objects, in
 * batches, from a list sorted by tag; threads that exit hand theirs to
 * g_orphans, which are freed only below both the slots and the clock read
 * before the slots were scanned (see reclaim()).  Contention: randomised
 * exponential back-off after each abort, and after SERIAL_AFTER
 * consecutive aborts the body runs in serial mode, where no other attempt
 * can start or still be running, so it cannot conflict.  Statistics:
 * aborts, waits and serial runs are counted on the site at once; commits
 * are counted per thread and added to the site every SITE_FLUSH commits,
 * when the thread sleeps, exits, or calls stm_sites_foreach(), so a busy
 * site's commits lag by < SITE_FLUSH per thread.
 *
 * INVARIANTS
 *
 * (1) A lock word is even (version << 1) except while exactly one
 *     descriptor, in state TX_COMMITTING, holds it as the address of its
 *     write entry | 1.  A descriptor leaves TX_COMMITTING only after
 *     storing every lock it took back to an even value.
 * (2) Versions are <= g_clock and never decrease: a lock is released
 *     either with its pre-lock word (abort) or with wv > every version the
 *     tvar had before (commit).
 * (3) A tvar's value is stored only by the descriptor holding its lock,
 *     and only after that descriptor's read set was validated at wv.
 * (4) Opacity: every value stm_read() returns in an attempt was unlocked
 *     and had version <= rv when read, so the attempt sees the state the
 *     clock had at rv and nothing else.  An attempt never acts on a value
 *     that failed this check: the read returns STM_RETRY and the attempt
 *     is doomed (tx->doom is sticky).
 * (5) A read-only attempt (tx->ro) has an empty read set and takes no
 *     lock.  If its body writes, tx->promote is set and it never commits.
 * (6) A thread's epoch slot is STM_IDLE outside an attempt.  During an
 *     attempt it is <= tx->rv and was stored (seq_cst) before rv was
 *     loaded (seq_cst).
 * (7) An object retired by a commit at version wv (or clock + 1 for a
 *     commit without writes) is handed to its destructor only when every
 *     epoch slot is >= that tag, so no attempt that could still reach it
 *     is running.  A thread's limbo list is sorted by tag.
 * (8) While g_serial is set, the serial descriptor is the only one inside
 *     an attempt: serial_enter() waits until every other slot is idle, and
 *     tx_begin() never enters an attempt while g_serial is set.
 * (9) stm_alloc blocks are freed exactly when the attempt aborts; retires
 *     and on-commit hooks take effect exactly when it commits, hooks in
 *     registration order, after every lock is released and outside the
 *     attempt.
 * (10) No lost wake-ups: a waiter counts itself in g_waiters, reads
 *     g_wake_seq, then re-reads every lock in its read set; a committer
 *     CASes its locks, then reads g_waiters and bumps g_wake_seq.  All of
 *     these are seq_cst, so either the waiter sees a changed lock or the
 *     committer sees the waiter and the futex word changes under it.
 *
 * STATES of a descriptor (struct stm_tx.state) and who moves it
 *
 *   TX_IDLE       -> TX_RUNNING     [tx_begin]
 *   TX_RUNNING    -> TX_COMMITTING  [tx_commit: the write set is not empty]
 *   TX_RUNNING    -> TX_IDLE        [tx_commit: no writes; tx_finish]
 *   TX_COMMITTING -> TX_IDLE        [tx_commit: validated; tx_finish]
 *   TX_COMMITTING -> TX_RUNNING     [tx_commit: lock busy or validation
 *                                    failed, locks restored]
 *   TX_RUNNING    -> TX_IDLE        [tx_abort: STM_RETRY, STM_WAIT, an
 *                                    error, or a promoted read-only body]
 *
 *   Around attempts, stm_run() may enter serial mode [serial_enter], which
 *   every attempt leaves when it ends [attempt_end]; it may sleep between
 *   attempts [tx_wait] and back off [backoff].
 *
 * MEMORY ORDERS
 *
 * Every shared access is a C11 atomic on the object itself; there is no
 * standalone fence, because ThreadSanitizer does not model fences.
 *  - The read is a seqlock read (Boehm, MSPC 2012): the value load is
 *    acquire, so the second, relaxed lock load cannot move above it.  If
 *    the value load returns a committer's store (release), the committer's
 *    lock CAS happens-before the second lock load, which therefore differs.
 *  - Lock CASes are seq_cst for the wake-up protocol (10); the value and
 *    the release of the lock are release stores.  The clock increment is
 *    seq_cst too; a reader whose rv load returns it (or later) therefore
 *    synchronises with every write the committer made before it.
 *  - The epoch slot store and the rv load in tx_begin(), the g_serial load,
 *    the slot loads of reclaimers and of serial_enter() are seq_cst: they
 *    are store-then-load (Dekker) pairs, which acquire/release cannot
 *    order.  The slot store is the one atomic read-modify-write a
 *    read-only transaction performs (xchg on x86); it is what lets idle
 *    threads leave reclamation and serial mode alone.  Removing it would
 *    need an asymmetric barrier (membarrier(2)) outside the C11 model.
 *  - Statistics are relaxed.
 *
 * Bodies must not reach a cancellation point: this module has none (its
 * futex calls go through syscall(2), which is not one), so a thread is
 * never cancelled inside an attempt.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "stm.h"

/* An epoch slot outside any attempt. */
#define STM_IDLE UINT64_MAX

/*
 * Waiting for a tvar another transaction has locked: locks are held only
 * while committing, so spin briefly, then (a reader, which holds no lock
 * itself) yield in case the holder was preempted, then give up and abort.
 */
#define WAIT_SPINS  64
#define WAIT_YIELDS 16

/* Consecutive aborts after which a body runs in serial mode. */
#define SERIAL_AFTER 16

/* Write sets up to this size are searched linearly. */
#define LINEAR_MAX 8

/* Retired objects a thread collects before it tries to reclaim. */
#define RECLAIM_BATCH 64

/* Per-thread commit counters, flushed to the site every SITE_FLUSH. */
#define SITE_CACHE 8
#define SITE_FLUSH 64

#define CACHELINE 64

#define ATOMIC_LOAD(p, mo) atomic_load_explicit((p), memory_order_##mo)
#define ATOMIC_STORE(p, v, mo)                                                 \
	atomic_store_explicit((p), (v), memory_order_##mo)
#define ATOMIC_ADD(p, v, mo)                                                   \
	atomic_fetch_add_explicit((p), (v), memory_order_##mo)
#define ATOMIC_SUB(p, v, mo)                                                   \
	atomic_fetch_sub_explicit((p), (v), memory_order_##mo)

enum tx_state { TX_IDLE, TX_RUNNING, TX_COMMITTING };

enum abort_cause { CAUSE_NONE, CAUSE_LOCKED, CAUSE_VALIDATE };

/* A read-set entry: the tvar and the version it had when read. */
struct rentry {
	struct stm_tvar *tv;
	uint64_t seen;
};

/*
 * A write-set entry.  While the tvar is locked its lock word is the address
 * of this entry | 1, and prelock holds the word it replaced.
 */
struct wentry {
	struct stm_tvar *tv;
	uintptr_t val;
	uint64_t prelock;
};

/* A retired object and the version after which nobody can reach it. */
struct retired {
	void *ptr;
	void (*dtor)(void *);
	uint64_t tag;
};

struct hook {
	void (*fn)(void *);
	void *arg;
};

/* A growable array, reused from one attempt to the next. */
struct vec {
	void *v;
	size_t n, cap;
};

/* Commits counted locally for one site, not yet added to it. */
struct site_count {
	struct stm_site *site;
	uint64_t commits;
};

/* All fields belong to the owning thread (struct stm_thread). */
struct stm_tx {
	struct stm_thread *thr;
	enum tx_state state;
	enum abort_cause cause; /* why the last read or commit failed */
	bool ro;		/* read-only attempt: no read set */
	bool promote;		/* a read-only attempt wrote: re-run */
	bool serial;		/* this attempt holds serial mode */
	int doom;		/* sticky: 0, STM_RETRY or -ENOMEM */
	int depth;		/* stm_run() nesting, 0 outside bodies */
	uint64_t rv;		/* read version: the snapshot's clock */
	uint64_t bloom;		/* one bit per hash of each written tvar */
	struct vec rs;		/* struct rentry */
	struct vec ws;		/* struct wentry */
	uint32_t *widx;		/* open-addressed index of ws, 1-based */
	size_t widx_cap;	/* slots in widx, a power of two */
	size_t widx_n;		/* ws entries indexed so far */
	struct vec allocs;	/* void *: stm_alloc blocks of the attempt */
	struct vec retires;	/* struct retired: tag set at commit */
	struct vec hooks;	/* struct hook */
};

/*
 * One record per thread that used the STM.  Records are never freed: a
 * record whose thread exited is reused by the next new thread.
 */
struct stm_thread {
	/* Atomic: stored by the owner only, read by reclaimers and serial. */
	_Alignas(CACHELINE) _Atomic uint64_t slot;
	/* Immutable once the record is published on g_threads. */
	struct stm_thread *next;
	/* Atomic: claimed by CAS in self_register, cleared in self_exit. */
	_Atomic bool in_use;
	/*
	 * A spin lock (one RMW to take, a release store to drop): the owner
	 * takes it once per commit that retires, other threads only in
	 * stm_quiesce() and stm_debug_retired_pending().
	 */
	_Atomic bool limbo_lock;
	/*
	 * Retired objects waiting for their tag, from limbo_head on, sorted by
	 * tag (the owner's commits have increasing versions).  Guarded by
	 * limbo_lock.
	 */
	struct vec limbo;
	size_t limbo_head;
	size_t reclaim_at;  /* pending size that triggers; limbo_lock */
	uint64_t rng;	    /* owner only: back-off randomness */
	struct vec scratch; /* owner only: objects being reclaimed */
	struct site_count sites[SITE_CACHE]; /* owner only */
	struct stm_tx tx;		     /* owner only */
};

/* The global version clock (atomic), alone on its cache line. */
static _Alignas(CACHELINE) _Atomic uint64_t g_clock;
/* Atomic futex word: bumped by committers that see waiters. */
static _Alignas(CACHELINE) _Atomic uint32_t g_wake_seq;
/* Read on every begin and commit, written rarely: atomics. */
static _Alignas(CACHELINE) _Atomic uint32_t g_serial; /* futex word */
static _Atomic uint32_t g_waiters;
static _Atomic unsigned g_fail_every;
static _Atomic unsigned g_fail_seq;
/* Lock-free push-only lists (atomic heads, immutable links). */
static struct stm_thread *_Atomic g_threads;
static struct stm_site *_Atomic g_sites;
/* Serialises serial transactions among themselves. */
static pthread_mutex_t g_serial_lock = PTHREAD_MUTEX_INITIALIZER;
/* Retire lists of exited threads. */
static pthread_mutex_t g_orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vec g_orphans;	   /* guarded by g_orphan_lock */
static _Atomic size_t g_orphans_n; /* atomic hint of g_orphans.n */
/* Set once by init_once (pthread_once orders them). */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static int g_init_err;

static __thread struct stm_thread *t_self;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Waits a little for a locked tvar; false once the budget is spent. */
static bool lock_wait(unsigned *spins, unsigned yields)
{
	if (*spins >= WAIT_SPINS + yields)
		return false;
	if ((*spins)++ < WAIT_SPINS)
		cpu_relax();
	else
		sched_yield();
	return true;
}

static void limbo_lock(struct stm_thread *t)
{
	while (atomic_exchange_explicit(&t->limbo_lock, true,
					memory_order_acquire))
		sched_yield();
}

static void limbo_unlock(struct stm_thread *t)
{
	ATOMIC_STORE(&t->limbo_lock, false, release);
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val,
		  const struct timespec *ts)
{
	return syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, ts, NULL,
		       FUTEX_BITSET_MATCH_ANY);
}

static uint64_t rng_next(struct stm_thread *t)
{
	/* xorshift64* */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t tv_hash(const struct stm_tvar *tv)
{
	return ((uintptr_t)tv >> 4) * 0x9E3779B97F4A7C15ULL;
}

static uint64_t bloom_bit(const struct stm_tvar *tv)
{
	return 1ULL << (tv_hash(tv) >> 58);
}

static __attribute__((noinline)) void *vec_grow(struct vec *v, size_t size)
{
	size_t cap = v->cap ? v->cap * 2 : 16;
	void *p = realloc(v->v, cap * size);

	if (p == NULL)
		return NULL;
	v->v = p;
	v->cap = cap;
	return (char *)v->v + v->n++ * size;
}

/* Makes room for one more element of size bytes; NULL on ENOMEM. */
static inline void *vec_push(struct vec *v, size_t size)
{
	if (v->n < v->cap)
		return (char *)v->v + v->n++ * size;
	return vec_grow(v, size);
}

static void vec_free(struct vec *v)
{
	free(v->v);
	*v = (struct vec){ 0 };
}

/* --- per-call-site statistics ------------------------------------------ */

static void site_register(struct stm_site *s)
{
	struct stm_site *head;
	int expected = 0;

	if (ATOMIC_LOAD(&s->registered, acquire))
		return;
	if (!atomic_compare_exchange_strong_explicit(&s->registered, &expected,
						     1, memory_order_acq_rel,
						     memory_order_acquire))
		return;
	head = ATOMIC_LOAD(&g_sites, relaxed);
	do {
		ATOMIC_STORE(&s->next, head, relaxed);
	} while (!atomic_compare_exchange_weak_explicit(
	    &g_sites, &head, s, memory_order_release, memory_order_relaxed));
}

static struct site_count *site_slot(struct stm_thread *t,
				    const struct stm_site *s)
{
	return &t->sites[((uintptr_t)s >> 4) % SITE_CACHE];
}

static void site_flush_one(struct site_count *c)
{
	if (c->site != NULL && c->commits != 0)
		ATOMIC_ADD(&c->site->commits, c->commits, relaxed);
	c->commits = 0;
}

static void sites_flush(struct stm_thread *t)
{
	for (size_t i = 0; i < SITE_CACHE; i++)
		site_flush_one(&t->sites[i]);
}

/*
 * Counts a commit without touching the shared site: a relaxed add on a
 * cache line that every thread using the site writes would cost more than
 * a short read-only transaction.
 */
static void site_commit(struct stm_thread *t, struct stm_site *s)
{
	struct site_count *c = site_slot(t, s);

	if (c->site != s) {
		site_flush_one(c);
		c->site = s;
	}
	if (++c->commits >= SITE_FLUSH)
		site_flush_one(c);
}

static void site_abort(struct stm_site *s, enum abort_cause cause)
{
	if (cause == CAUSE_LOCKED)
		ATOMIC_ADD(&s->aborts_locked, 1, relaxed);
	else
		ATOMIC_ADD(&s->aborts_validate, 1, relaxed);
}

/* --- threads and epochs -------------------------------------------------- */

static void self_exit(void *arg);

static void init_once(void)
{
	g_init_err = -pthread_key_create(&g_key, self_exit);
}

int stm_init(void)
{
	pthread_once(&g_once, init_once);
	return g_init_err;
}

static struct stm_thread *self_register(void)
{
	struct stm_thread *t, *head;
	bool expected;

	if (stm_init() != 0)
		return NULL;
	for (t = ATOMIC_LOAD(&g_threads, seq_cst); t != NULL; t = t->next) {
		expected = false;
		if (!ATOMIC_LOAD(&t->in_use, relaxed) &&
		    atomic_compare_exchange_strong_explicit(
			&t->in_use, &expected, true, memory_order_acq_rel,
			memory_order_relaxed))
			goto out_claimed;
	}
	t = aligned_alloc(CACHELINE, sizeof(*t));
	if (t == NULL)
		return NULL;
	memset(t, 0, sizeof(*t));
	atomic_init(&t->slot, STM_IDLE);
	atomic_init(&t->in_use, true);
	atomic_init(&t->limbo_lock, false);
	t->reclaim_at = RECLAIM_BATCH;
	t->tx.thr = t;
	head = ATOMIC_LOAD(&g_threads, relaxed);
	do {
		t->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
	    &g_threads, &head, t, memory_order_seq_cst, memory_order_relaxed));
out_claimed:
	t->rng = ((uintptr_t)t ^ (uintptr_t)&expected) | 1;
	if (pthread_setspecific(g_key, t) != 0) {
		ATOMIC_STORE(&t->in_use, false, release);
		return NULL;
	}
	t_self = t;
	return t;
}

static struct stm_thread *self_get(void)
{
	if (t_self != NULL)
		return t_self;
	return self_register();
}

/*
 * The pthread key destructor: hands the thread's retired objects over to
 * the orphan list, frees its logs and frees the record for reuse.
 */
static void self_exit(void *arg)
{
	struct stm_thread *t = arg;
	struct stm_tx *tx = &t->tx;
	struct retired *r;

	assert(tx->state == TX_IDLE && tx->depth == 0);
	sites_flush(t);
	limbo_lock(t);
	pthread_mutex_lock(&g_orphan_lock);
	r = t->limbo.v;
	for (size_t i = t->limbo_head; i < t->limbo.n; i++) {
		struct retired *o = vec_push(&g_orphans, sizeof(*o));

		if (o == NULL) {
			/* Cannot hand it over: leak rather than free early. */
			continue;
		}
		*o = r[i];
	}
	ATOMIC_STORE(&g_orphans_n, g_orphans.n, relaxed);
	pthread_mutex_unlock(&g_orphan_lock);
	vec_free(&t->limbo);
	t->limbo_head = 0;
	t->reclaim_at = RECLAIM_BATCH;
	limbo_unlock(t);
	vec_free(&t->scratch);
	vec_free(&tx->rs);
	vec_free(&tx->ws);
	vec_free(&tx->allocs);
	vec_free(&tx->retires);
	vec_free(&tx->hooks);
	free(tx->widx);
	tx->widx = NULL;
	tx->widx_cap = tx->widx_n = 0;
	memset(t->sites, 0, sizeof(t->sites));
	t_self = NULL;
	ATOMIC_STORE(&t->in_use, false, release);
}

/* The oldest snapshot any thread may still be reading, or STM_IDLE. */
static uint64_t epoch_min(void)
{
	uint64_t min = STM_IDLE;

	for (struct stm_thread *t = ATOMIC_LOAD(&g_threads, seq_cst); t != NULL;
	     t = t->next) {
		uint64_t s = ATOMIC_LOAD(&t->slot, seq_cst);

		if (s < min)
			min = s;
	}
	return min;
}

/*
 * Moves the entries of limbo that no attempt can reach (tag <= min) to
 * out.  The caller holds the lock guarding limbo.
 */
static void limbo_collect(struct vec *limbo, uint64_t min, struct vec *out)
{
	struct retired *r = limbo->v;
	size_t keep = 0;

	for (size_t i = 0; i < limbo->n; i++) {
		struct retired *o;

		if (r[i].tag <= min && (o = vec_push(out, sizeof(*o))) != NULL)
			*o = r[i];
		else
			r[keep++] = r[i];
	}
	limbo->n = keep;
}

/*
 * Moves the prefix of t's limbo list that no attempt can reach to out:
 * the list is sorted by tag, so the rest need not be looked at.  The
 * caller holds t->limbo_lock.
 */
static void limbo_collect_own(struct stm_thread *t, uint64_t min,
			      struct vec *out)
{
	struct retired *r = t->limbo.v;
	size_t i;

	for (i = t->limbo_head; i < t->limbo.n && r[i].tag <= min; i++) {
		struct retired *o = vec_push(out, sizeof(*o));

		if (o == NULL)
			break;
		*o = r[i];
	}
	if (i == t->limbo.n) {
		t->limbo.n = 0;
		i = 0;
	} else if (i > t->limbo.n / 2) {
		memmove(r, r + i, (t->limbo.n - i) * sizeof(*r));
		t->limbo.n -= i;
		i = 0;
	}
	t->limbo_head = i;
	t->reclaim_at = t->limbo.n - i + RECLAIM_BATCH;
}

/* Runs the destructors collected by limbo_collect, outside any lock. */
static void limbo_free(struct vec *out)
{
	struct retired *r = out->v;

	for (size_t i = 0; i < out->n; i++) {
		if (r[i].dtor != NULL)
			r[i].dtor(r[i].ptr);
		else
			free(r[i].ptr);
	}
	out->n = 0;
}

static void orphans_reclaim(uint64_t min, struct vec *out, bool wait)
{
	if (wait)
		pthread_mutex_lock(&g_orphan_lock);
	else if (pthread_mutex_trylock(&g_orphan_lock) != 0)
		return;
	limbo_collect(&g_orphans, min, out);
	ATOMIC_STORE(&g_orphans_n, g_orphans.n, relaxed);
	pthread_mutex_unlock(&g_orphan_lock);
	limbo_free(out);
}

/*
 * Frees what the calling thread retired and nobody can reach any more, and
 * the orphans that are as safe.  The thread's own entries were all retired
 * before the scan in epoch_min(), so any attempt that can reach one began
 * before the scan and shows in it.  Orphans are different: an exiting
 * thread may hand over an object it retired after the scan, which an
 * attempt begun after the scan may still reach, and a scan of idle slots
 * says STM_IDLE.  So orphans are bounded by the clock read before the
 * scan too: an orphan tagged at or below it was retired by a commit
 * ordered before the scan, and invariant (7) holds for it.
 */
static void reclaim(struct stm_thread *t)
{
	uint64_t clock = ATOMIC_LOAD(&g_clock, seq_cst);
	uint64_t min = epoch_min();

	limbo_lock(t);
	limbo_collect_own(t, min, &t->scratch);
	limbo_unlock(t);
	limbo_free(&t->scratch);
	if (ATOMIC_LOAD(&g_orphans_n, relaxed) != 0)
		orphans_reclaim(min < clock ? min : clock, &t->scratch, false);
}

/* --- serial mode --------------------------------------------------------- */

static void serial_enter(struct stm_tx *tx)
{
	pthread_mutex_lock(&g_serial_lock);
	ATOMIC_STORE(&g_serial, 1, seq_cst);
	tx->serial = true;
	for (struct stm_thread *t = ATOMIC_LOAD(&g_threads, seq_cst); t != NULL;
	     t = t->next) {
		if (t == tx->thr)
			continue;
		for (unsigned n = 0; ATOMIC_LOAD(&t->slot, seq_cst) != STM_IDLE;
		     n++) {
			if (n < 64)
				cpu_relax();
			else
				sched_yield();
		}
	}
}

static void serial_exit(struct stm_tx *tx)
{
	tx->serial = false;
	ATOMIC_STORE(&g_serial, 0, seq_cst);
	futex(&g_serial, FUTEX_WAKE, INT_MAX, NULL);
	pthread_mutex_unlock(&g_serial_lock);
}

static void serial_wait(void)
{
	while (ATOMIC_LOAD(&g_serial, acquire) != 0)
		futex(&g_serial, FUTEX_WAIT_BITSET, 1, NULL);
}

/* --- the write set ------------------------------------------------------- */

static size_t widx_slot(const struct stm_tx *tx, const struct stm_tvar *tv)
{
	return (tv_hash(tv) >> 16) & (tx->widx_cap - 1);
}

/* Indexes every write entry not indexed yet; false on ENOMEM. */
static bool ws_index(struct stm_tx *tx)
{
	const struct wentry *ws = tx->ws.v;

	if (tx->ws.n * 2 > tx->widx_cap) {
		size_t cap = tx->widx_cap ? tx->widx_cap : 64;
		uint32_t *idx;

		while (tx->ws.n * 2 > cap)
			cap *= 2;
		idx = calloc(cap, sizeof(*idx));
		if (idx == NULL)
			return false;
		free(tx->widx);
		tx->widx = idx;
		tx->widx_cap = cap;
		tx->widx_n = 0;
	}
	for (; tx->widx_n < tx->ws.n; tx->widx_n++) {
		size_t h = widx_slot(tx, ws[tx->widx_n].tv);

		while (tx->widx[h] != 0)
			h = (h + 1) & (tx->widx_cap - 1);
		tx->widx[h] = (uint32_t)tx->widx_n + 1;
	}
	return true;
}

static struct wentry *ws_find(const struct stm_tx *tx,
			      const struct stm_tvar *tv)
{
	struct wentry *ws = tx->ws.v;

	if (!(tx->bloom & bloom_bit(tv)))
		return NULL;
	if (tx->ws.n <= LINEAR_MAX) {
		for (size_t i = 0; i < tx->ws.n; i++)
			if (ws[i].tv == tv)
				return &ws[i];
		return NULL;
	}
	for (size_t h = widx_slot(tx, tv);; h = (h + 1) & (tx->widx_cap - 1)) {
		uint32_t k = tx->widx[h];

		if (k == 0)
			return NULL;
		if (ws[k - 1].tv == tv)
			return &ws[k - 1];
	}
}

static int wentry_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct wentry *)a)->tv;
	uintptr_t y = (uintptr_t)((const struct wentry *)b)->tv;

	return (x > y) - (x < y);
}

/* Sorts the write set by tvar address: the order locks are taken in. */
static void ws_sort(struct wentry *ws, size_t n)
{
	if (n > 16) {
		qsort(ws, n, sizeof(*ws), wentry_cmp);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		struct wentry w = ws[i];
		size_t j = i;

		for (; j > 0 && (uintptr_t)ws[j - 1].tv > (uintptr_t)w.tv; j--)
			ws[j] = ws[j - 1];
		ws[j] = w;
	}
}

/* --- the descriptor ------------------------------------------------------ */

static bool tx_invariants(const struct stm_tx *tx)
{
	const struct wentry *ws = tx->ws.v;
	uint64_t slot = ATOMIC_LOAD(&tx->thr->slot, relaxed);

	if (tx->state == TX_IDLE)
		return slot == STM_IDLE && tx->depth == 0 && tx->rs.n == 0 &&
		       tx->ws.n == 0 && tx->allocs.n == 0 &&
		       tx->retires.n == 0 && tx->hooks.n == 0 &&
		       tx->widx_n == 0;
	if (slot > tx->rv || tx->rv > ATOMIC_LOAD(&g_clock, relaxed))
		return false;
	if (tx->ro && tx->rs.n != 0)
		return false;
	if (tx->promote && !tx->ro)
		return false;
	if (tx->widx_n > tx->ws.n)
		return false;
	for (size_t i = 0; i < tx->ws.n; i++)
		if (!(tx->bloom & bloom_bit(ws[i].tv)))
			return false;
	return true;
}

static void tx_begin(struct stm_tx *tx, bool ro)
{
	struct stm_thread *t = tx->thr;

	assert(tx_invariants(tx));
	tx->ro = ro;
	tx->promote = false;
	tx->doom = 0;
	tx->cause = CAUSE_NONE;
	tx->bloom = 0;
	for (;;) {
		uint64_t c = ATOMIC_LOAD(&g_clock, relaxed);

		ATOMIC_STORE(&t->slot, c, seq_cst);
		if (tx->serial || ATOMIC_LOAD(&g_serial, seq_cst) == 0) {
			tx->rv = ATOMIC_LOAD(&g_clock, seq_cst);
			break;
		}
		ATOMIC_STORE(&t->slot, STM_IDLE, release);
		serial_wait();
	}
	tx->state = TX_RUNNING;
}

/* Empties the logs and leaves the attempt (and serial mode). */
static void attempt_end(struct stm_tx *tx)
{
	tx->rs.n = 0;
	tx->ws.n = 0;
	tx->allocs.n = 0;
	tx->retires.n = 0;
	tx->hooks.n = 0;
	if (tx->widx_n != 0) {
		memset(tx->widx, 0, tx->widx_cap * sizeof(*tx->widx));
		tx->widx_n = 0;
	}
	tx->depth = 0;
	tx->state = TX_IDLE;
	ATOMIC_STORE(&tx->thr->slot, STM_IDLE, release);
	if (tx->serial)
		serial_exit(tx);
}

static void tx_abort(struct stm_tx *tx)
{
	void **a = tx->allocs.v;

	assert(tx->state == TX_RUNNING);
	for (size_t i = 0; i < tx->allocs.n; i++)
		free(a[i]);
	attempt_end(tx);
}

static bool lock_one(struct wentry *w)
{
	uint64_t mine = (uint64_t)(uintptr_t)w | 1;
	unsigned spins = 0;

	for (;;) {
		uint64_t l = ATOMIC_LOAD(&w->tv->lock, relaxed);

		if (!(l & 1)) {
			if (atomic_compare_exchange_strong_explicit(
				&w->tv->lock, &l, mine, memory_order_seq_cst,
				memory_order_relaxed)) {
				w->prelock = l;
				return true;
			}
		}
		/* Never yield while holding locks: abort instead. */
		if (!lock_wait(&spins, 0))
			return false;
	}
}

/* Is every tvar read still at the version read, ignoring our own locks? */
static bool validate(const struct stm_tx *tx)
{
	const struct rentry *rs = tx->rs.v;
	uintptr_t lo = (uintptr_t)tx->ws.v;
	uintptr_t hi = lo + tx->ws.n * sizeof(struct wentry);

	for (size_t i = 0; i < tx->rs.n; i++) {
		uint64_t l = ATOMIC_LOAD(&rs[i].tv->lock, acquire);

		if (l & 1) {
			uintptr_t owner = (uintptr_t)(l & ~(uint64_t)1);

			if (owner < lo || owner >= hi)
				return false;
			l = ((const struct wentry *)owner)->prelock;
		}
		if ((l >> 1) != rs[i].seen)
			return false;
	}
	return true;
}

static bool fault_injected(const struct stm_tx *tx)
{
	unsigned k = ATOMIC_LOAD(&g_fail_every, relaxed);

	if (k == 0 || tx->serial)
		return false;
	return ATOMIC_ADD(&g_fail_seq, 1, relaxed) % k == k - 1;
}

static void wake_all(void)
{
	ATOMIC_ADD(&g_wake_seq, 1, seq_cst);
	futex(&g_wake_seq, FUTEX_WAKE, INT_MAX, NULL);
}

/*
 * Commits the attempt's writes.  Returns 0 with *wvp the commit version
 * (0 if nothing was written), or STM_RETRY with tx->cause set and every
 * lock restored.
 */
static int tx_commit(struct stm_tx *tx, uint64_t *wvp)
{
	struct wentry *ws = tx->ws.v;
	size_t n = tx->ws.n, locked;
	uint64_t wv;

	*wvp = 0;
	if (n == 0)
		return 0;
	assert(tx_invariants(tx));
	tx->state = TX_COMMITTING;
	ws_sort(ws, n);
	for (locked = 0; locked < n; locked++) {
		if (!lock_one(&ws[locked])) {
			tx->cause = CAUSE_LOCKED;
			goto out_unlock;
		}
	}
	wv = ATOMIC_ADD(&g_clock, 1, seq_cst) + 1;
	assert(wv < (UINT64_C(1) << 62));
	if (fault_injected(tx) || (wv != tx->rv + 1 && !validate(tx))) {
		tx->cause = CAUSE_VALIDATE;
		goto out_unlock;
	}
	for (size_t i = 0; i < n; i++)
		ATOMIC_STORE(&ws[i].tv->val, ws[i].val, release);
	for (size_t i = 0; i < n; i++)
		ATOMIC_STORE(&ws[i].tv->lock, wv << 1, release);
	tx->state = TX_RUNNING;
	if (ATOMIC_LOAD(&g_waiters, seq_cst) != 0)
		wake_all();
	*wvp = wv;
	return 0;
out_unlock:
	for (size_t i = 0; i < locked; i++)
		ATOMIC_STORE(&ws[i].tv->lock, ws[i].prelock, release);
	tx->state = TX_RUNNING;
	return STM_RETRY;
}

/*
 * Ends a committed attempt: hands its retired objects to the thread's
 * limbo list, leaves the attempt, then runs the on-commit hooks.
 */
static void tx_finish(struct stm_tx *tx, struct stm_site *site, uint64_t wv)
{
	struct stm_thread *t = tx->thr;
	struct hook *h;
	struct vec hooks;
	bool reclaim_now = false;

	if (tx->retires.n != 0) {
		struct retired *r = tx->retires.v;
		/* Without writes, wait for every attempt running now. */
		uint64_t tag = wv ? wv : ATOMIC_LOAD(&g_clock, seq_cst) + 1;

		limbo_lock(t);
		for (size_t i = 0; i < tx->retires.n; i++) {
			struct retired *o = vec_push(&t->limbo, sizeof(*o));

			if (o == NULL)
				continue; /* leak rather than free early */
			*o = r[i];
			o->tag = tag;
		}
		/* Tags only grow: see limbo_collect_own(). */
		assert(t->limbo.n < 2 ||
		       ((struct retired *)t->limbo.v)[t->limbo.n - 2].tag <=
			   tag);
		reclaim_now = t->limbo.n - t->limbo_head >= t->reclaim_at;
		limbo_unlock(t);
	}
	if (tx->serial)
		ATOMIC_ADD(&site->serial, 1, relaxed);
	site_commit(t, site);
	if (tx->hooks.n == 0) {
		attempt_end(tx);
	} else {
		/* Detach the hooks: a hook may run transactions itself. */
		hooks = tx->hooks;
		tx->hooks = (struct vec){ 0 };
		attempt_end(tx);
		h = hooks.v;
		for (size_t i = 0; i < hooks.n; i++)
			h[i].fn(h[i].arg);
		hooks.n = 0;
		if (tx->hooks.v == NULL)
			tx->hooks = hooks;
		else
			vec_free(&hooks);
	}
	if (reclaim_now)
		reclaim(t);
}

static struct timespec deadline_after(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

static bool deadline_passed(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec &&
		now.tv_nsec >= deadline->tv_nsec);
}

/*
 * Aborts the attempt, then sleeps until a tvar in its read set may have
 * changed (invariant 10).  Returns 0 to re-run or -ETIMEDOUT.
 */
static int tx_wait(struct stm_tx *tx, const struct timespec *deadline)
{
	const struct rentry *rs = tx->rs.v;
	bool changed = false;
	uint32_t seq;
	int rc = 0;

	if (deadline != NULL && deadline_passed(deadline)) {
		tx_abort(tx);
		return -ETIMEDOUT;
	}
	ATOMIC_ADD(&g_waiters, 1, seq_cst);
	seq = ATOMIC_LOAD(&g_wake_seq, seq_cst);
	for (size_t i = 0; i < tx->rs.n && !changed; i++) {
		uint64_t unchanged = rs[i].seen << 1;

		changed = ATOMIC_LOAD(&rs[i].tv->lock, seq_cst) != unchanged;
	}
	tx_abort(tx);
	if (!changed) {
		sites_flush(tx->thr);
		if (futex(&g_wake_seq, FUTEX_WAIT_BITSET, seq, deadline) < 0 &&
		    errno == ETIMEDOUT)
			rc = -ETIMEDOUT;
	}
	ATOMIC_SUB(&g_waiters, 1, seq_cst);
	return rc;
}

static void backoff(struct stm_thread *t, unsigned aborts)
{
	unsigned shift = aborts < 10 ? aborts : 10;
	uint64_t spins = rng_next(t) & ((UINT64_C(1) << shift) * 16 - 1);

	for (uint64_t i = 0; i < spins; i++)
		cpu_relax();
	if (aborts >= 4)
		sched_yield();
}

/* A call inside a body joins the enclosing transaction (flat nesting). */
static int run_nested(struct stm_tx *tx, stm_fn fn, void *arg)
{
	int r;

	tx->depth++;
	r = fn(tx, arg);
	tx->depth--;
	if (r == STM_RETRY && tx->doom == 0)
		tx->doom = STM_RETRY;
	return r;
}

int stm_run(struct stm_site *site, stm_fn fn, void *arg, unsigned flags,
	    int timeout_ms)
{
	struct stm_thread *t = self_get();
	struct stm_tx *tx;
	struct timespec deadline;
	bool ro = flags & STM_RO;
	unsigned aborts = 0;
	int r;

	if (t == NULL)
		return -ENOMEM;
	tx = &t->tx;
	if (tx->depth > 0)
		return run_nested(tx, fn, arg);
	/* A site in the thread's counter cache is registered already. */
	if (site_slot(t, site)->site != site)
		site_register(site);
	if (timeout_ms >= 0)
		deadline = deadline_after(timeout_ms);
	for (;;) {
		uint64_t wv;

		if (aborts >= SERIAL_AFTER)
			serial_enter(tx);
		tx_begin(tx, ro);
		tx->depth = 1;
		r = fn(tx, arg);
		tx->depth = 0;
		if (tx->doom != 0)
			r = tx->doom;
		if (tx->promote && (r == 0 || r == STM_WAIT)) {
			/* A read-only body wrote: re-run it read-write. */
			tx_abort(tx);
			ro = false;
			continue;
		}
		if (r == 0) {
			if (tx_commit(tx, &wv) == 0) {
				tx_finish(tx, site, wv);
				return 0;
			}
			r = STM_RETRY;
		}
		if (r == STM_RETRY) {
			site_abort(site, tx->cause);
			tx_abort(tx);
			backoff(t, ++aborts);
			continue;
		}
		if (r == STM_WAIT && tx->ro) {
			/* A read-only attempt keeps no read set to wait on. */
			tx_abort(tx);
			ro = false;
			continue;
		}
		if (r == STM_WAIT && tx->rs.n == 0) {
			tx_abort(tx);
			return -EINVAL;
		}
		if (r == STM_WAIT) {
			ATOMIC_ADD(&site->waits, 1, relaxed);
			r = tx_wait(tx, timeout_ms >= 0 ? &deadline : NULL);
			if (r != 0)
				return r;
			aborts = 0;
			continue;
		}
		ATOMIC_ADD(&site->aborts_user, 1, relaxed);
		tx_abort(tx);
		return r;
	}
}

/* --- transactional access ------------------------------------------------ */

static int tx_doom(struct stm_tx *tx, int code, enum abort_cause cause)
{
	if (tx->doom == 0) {
		tx->doom = code;
		tx->cause = cause;
	}
	return tx->doom;
}

int stm_read(struct stm_tx *tx, struct stm_tvar *tv, uintptr_t *out)
{
	uint64_t l1, l2;
	uintptr_t v;
	unsigned spins = 0;

	if (tx->doom != 0)
		return tx->doom;
	if (tx->ws.n != 0) {
		const struct wentry *w = ws_find(tx, tv);

		if (w != NULL) {
			*out = w->val;
			return 0;
		}
	}
	for (;;) {
		l1 = ATOMIC_LOAD(&tv->lock, acquire);
		if (!(l1 & 1)) {
			v = ATOMIC_LOAD(&tv->val, acquire);
			l2 = ATOMIC_LOAD(&tv->lock, relaxed);
			if (l1 == l2)
				break;
		}
		if (!lock_wait(&spins, WAIT_YIELDS))
			return tx_doom(tx, STM_RETRY, CAUSE_LOCKED);
	}
	if ((l1 >> 1) > tx->rv)
		return tx_doom(tx, STM_RETRY, CAUSE_VALIDATE);
	if (!tx->ro) {
		struct rentry *r = vec_push(&tx->rs, sizeof(*r));

		if (r == NULL)
			return tx_doom(tx, -ENOMEM, CAUSE_NONE);
		r->tv = tv;
		r->seen = l1 >> 1;
	}
	*out = v;
	return 0;
}

void stm_write(struct stm_tx *tx, struct stm_tvar *tv, uintptr_t v)
{
	struct wentry *w;

	if (tx->doom != 0)
		return;
	w = ws_find(tx, tv);
	if (w != NULL) {
		w->val = v;
		return;
	}
	w = vec_push(&tx->ws, sizeof(*w));
	if (w == NULL) {
		tx_doom(tx, -ENOMEM, CAUSE_NONE);
		return;
	}
	w->tv = tv;
	w->val = v;
	w->prelock = 0;
	tx->bloom |= bloom_bit(tv);
	if (tx->ws.n > LINEAR_MAX && !ws_index(tx)) {
		tx_doom(tx, -ENOMEM, CAUSE_NONE);
		return;
	}
	if (tx->ro)
		tx->promote = true;
}

int stm_wait(struct stm_tx *tx)
{
	(void)tx;
	return STM_WAIT;
}

void *stm_alloc(struct stm_tx *tx, size_t size)
{
	void **slot = vec_push(&tx->allocs, sizeof(*slot));
	void *p;

	if (slot == NULL)
		return NULL;
	p = calloc(1, size ? size : 1);
	if (p == NULL) {
		tx->allocs.n--;
		return NULL;
	}
	*slot = p;
	return p;
}

void stm_retire(struct stm_tx *tx, void *ptr, void (*dtor)(void *))
{
	struct retired *r;

	if (ptr == NULL)
		return;
	r = vec_push(&tx->retires, sizeof(*r));
	if (r == NULL) {
		tx_doom(tx, -ENOMEM, CAUSE_NONE);
		return;
	}
	r->ptr = ptr;
	r->dtor = dtor;
	r->tag = 0;
}

int stm_on_commit(struct stm_tx *tx, void (*fn)(void *), void *arg)
{
	struct hook *h = vec_push(&tx->hooks, sizeof(*h));

	if (h == NULL)
		return -ENOMEM;
	h->fn = fn;
	h->arg = arg;
	return 0;
}

/* --- outside transactions ------------------------------------------------ */

void stm_tvar_init(struct stm_tvar *tv, uintptr_t v)
{
	ATOMIC_STORE(&tv->lock, 0, relaxed);
	ATOMIC_STORE(&tv->val, v, relaxed);
}

uintptr_t stm_peek(const struct stm_tvar *tv)
{
	return ATOMIC_LOAD(&tv->val, acquire);
}

uint64_t stm_clock(void)
{
	return ATOMIC_LOAD(&g_clock, acquire);
}

void stm_quiesce(void)
{
	struct vec out = { 0 };
	uint64_t min = epoch_min();

	if (t_self != NULL)
		sites_flush(t_self);
	for (struct stm_thread *t = ATOMIC_LOAD(&g_threads, seq_cst); t != NULL;
	     t = t->next) {
		limbo_lock(t);
		limbo_collect_own(t, min, &out);
		limbo_unlock(t);
		limbo_free(&out);
	}
	orphans_reclaim(min, &out, true);
	vec_free(&out);
}

void stm_sites_foreach(stm_site_cb cb, void *arg)
{
	if (t_self != NULL)
		sites_flush(t_self);
	for (struct stm_site *s = ATOMIC_LOAD(&g_sites, acquire); s != NULL;
	     s = ATOMIC_LOAD(&s->next, relaxed))
		cb(s, arg);
}

int stm_site_format(const struct stm_site *site, char *buf, size_t size)
{
	int n = snprintf(
	    buf, size,
	    "%s commits=%llu aborts_locked=%llu aborts_validate=%llu "
	    "aborts_user=%llu waits=%llu serial=%llu",
	    site->name,
	    (unsigned long long)ATOMIC_LOAD(&site->commits, relaxed),
	    (unsigned long long)ATOMIC_LOAD(&site->aborts_locked, relaxed),
	    (unsigned long long)ATOMIC_LOAD(&site->aborts_validate, relaxed),
	    (unsigned long long)ATOMIC_LOAD(&site->aborts_user, relaxed),
	    (unsigned long long)ATOMIC_LOAD(&site->waits, relaxed),
	    (unsigned long long)ATOMIC_LOAD(&site->serial, relaxed));

	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENOSPC;
	return n;
}

void stm_debug_fail_every(unsigned k)
{
	ATOMIC_STORE(&g_fail_seq, 0, relaxed);
	ATOMIC_STORE(&g_fail_every, k, relaxed);
}

size_t stm_debug_retired_pending(void)
{
	size_t n = 0;

	for (struct stm_thread *t = ATOMIC_LOAD(&g_threads, seq_cst); t != NULL;
	     t = t->next) {
		limbo_lock(t);
		n += t->limbo.n - t->limbo_head;
		limbo_unlock(t);
	}
	pthread_mutex_lock(&g_orphan_lock);
	n += g_orphans.n;
	pthread_mutex_unlock(&g_orphan_lock);
	return n;
}

bool stm_tvar_invariants(const struct stm_tvar *tv)
{
	uint64_t l = ATOMIC_LOAD(&tv->lock, acquire);

	return !(l & 1) && (l >> 1) <= ATOMIC_LOAD(&g_clock, acquire);
}

bool stm_invariants(void)
{
	uint32_t waiters = ATOMIC_LOAD(&g_waiters, relaxed);

	if (waiters > INT32_MAX || ATOMIC_LOAD(&g_serial, relaxed) > 1)
		return false;
	return t_self == NULL || tx_invariants(&t_self->tx);
}
