/*
 * test_stm.c: the STM's unit tests (Check).
 *
 * Every concurrency test runs at 1, 2, 4 and 8 threads.  Bodies never call
 * ck_assert: a failed check inside a transaction counts into `bad` (any
 * attempt, committed or not, must see a consistent snapshot), and the test
 * thread asserts `bad == 0` at the end.  Iteration counts shrink under
 * ASan and TSan; STM_TEST_SCALE (a percentage) scales them further.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stm.h"

#if defined(__SANITIZE_THREAD__)
#define SAN_DIVISOR 8
#elif defined(__SANITIZE_ADDRESS__)
#define SAN_DIVISOR 2
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SAN_DIVISOR 8
#elif __has_feature(address_sanitizer)
#define SAN_DIVISOR 2
#endif
#endif
#ifndef SAN_DIVISOR
#define SAN_DIVISOR 1
#endif

static const int thread_counts[] = { 1, 2, 4, 8 };
#define NCOUNTS	    (sizeof(thread_counts) / sizeof(thread_counts[0]))
#define MAX_THREADS 8

/* Checks that failed inside transaction bodies or worker threads. */
static _Atomic unsigned bad;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			atomic_fetch_add(&bad, 1);                             \
	} while (0)

/* Scales an iteration count for the build and STM_TEST_SCALE. */
static unsigned scaled(unsigned n)
{
	const char *env = getenv("STM_TEST_SCALE");
	unsigned long pct = env ? strtoul(env, NULL, 10) : 100;

	n = (unsigned)((unsigned long)n * pct / 100) / SAN_DIVISOR;
	return n ? n : 1;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Widens the window between two reads so that races show up. */
static void widen(void)
{
	for (volatile int i = 0; i < 64; i++)
		;
}

struct worker {
	pthread_t th;
	int id;
	int nthreads;
	uint64_t rng;
	void *ctx;
};

/* Runs fn on n threads and joins them. */
static void run_workers(int n, void *(*fn)(void *), void *ctx)
{
	struct worker w[MAX_THREADS];

	ck_assert_int_le(n, MAX_THREADS);
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ .id = i,
					.nthreads = n,
					.rng = 0x9E3779B97F4A7C15ULL * (i + 1),
					.ctx = ctx };
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, fn, &w[i]), 0);
	}
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(pthread_join(w[i].th, NULL), 0);
}

/* The statistics of every call site that runs the body `name`, summed. */
struct totals {
	const char *name;
	unsigned sites;
	uint64_t commits, aborts_locked, aborts_validate, aborts_user;
	uint64_t waits, serial;
};

static void totals_cb(const struct stm_site *site, void *arg)
{
	struct totals *t = arg;

	if (strcmp(site->name, t->name) != 0)
		return;
	t->sites++;
	t->commits += atomic_load(&site->commits);
	t->aborts_locked += atomic_load(&site->aborts_locked);
	t->aborts_validate += atomic_load(&site->aborts_validate);
	t->aborts_user += atomic_load(&site->aborts_user);
	t->waits += atomic_load(&site->waits);
	t->serial += atomic_load(&site->serial);
}

static struct totals totals_of(const char *name)
{
	struct totals t = { .name = name };

	stm_sites_foreach(totals_cb, &t);
	ck_assert_msg(t.sites > 0, "no site runs %s", name);
	return t;
}

static void setup(void)
{
	ck_assert_int_eq(stm_init(), 0);
	atomic_store(&bad, 0);
	stm_debug_fail_every(0);
}

static void teardown(void)
{
	stm_debug_fail_every(0);
	stm_quiesce();
	ck_assert_uint_eq(stm_debug_retired_pending(), 0);
	ck_assert(stm_invariants());
}

/* --- lost update --------------------------------------------------------- */

struct counter_ctx {
	struct stm_tvar x;
	unsigned iters;
};

static int increment(struct stm_tx *tx, void *arg)
{
	struct counter_ctx *c = arg;
	uintptr_t v;

	STM_LOAD(tx, &c->x, &v);
	stm_write(tx, &c->x, v + 1);
	return 0;
}

static void *lost_update_worker(void *arg)
{
	struct worker *w = arg;
	struct counter_ctx *c = w->ctx;

	for (unsigned i = 0; i < c->iters; i++)
		CHECK(stm_atomically(increment, c, 0) == 0);
	return NULL;
}

START_TEST(concurrent_increments_are_never_lost)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct counter_ctx c = { .iters = scaled(40000) / n };

		stm_tvar_init(&c.x, 0);
		run_workers(n, lost_update_worker, &c);
		ck_assert_uint_eq(stm_peek(&c.x), (uintptr_t)c.iters * n);
		ck_assert(stm_tvar_invariants(&c.x));
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- bank ---------------------------------------------------------------- */

#define ACCOUNTS 64
#define INITIAL	 1000

struct bank {
	struct stm_tvar acct[ACCOUNTS];
	unsigned iters;
};

struct transfer {
	struct bank *b;
	unsigned from, to;
	intptr_t amount;
};

static int bank_transfer(struct stm_tx *tx, void *arg)
{
	struct transfer *t = arg;
	uintptr_t a, b;

	if (t->from == t->to)
		return 0;
	STM_LOAD(tx, &t->b->acct[t->from], &a);
	STM_LOAD(tx, &t->b->acct[t->to], &b);
	stm_write(tx, &t->b->acct[t->from], a - t->amount);
	stm_write(tx, &t->b->acct[t->to], b + t->amount);
	return 0;
}

/* Totals every account and checks the total inside the transaction. */
static int bank_audit(struct stm_tx *tx, void *arg)
{
	struct bank *b = arg;
	intptr_t sum = 0;

	for (unsigned i = 0; i < ACCOUNTS; i++) {
		uintptr_t v;

		STM_LOAD(tx, &b->acct[i], &v);
		sum += (intptr_t)v;
	}
	CHECK(sum == (intptr_t)ACCOUNTS * INITIAL);
	return 0;
}

static void *bank_worker(void *arg)
{
	struct worker *w = arg;
	struct bank *b = w->ctx;

	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t r = xorshift(&w->rng);

		if (r % 5 == 0) {
			/* 20% audits, half flagged read-only. */
			CHECK(stm_atomically(bank_audit, b,
					     (r & 32) ? STM_RO : 0) == 0);
		} else {
			struct transfer t = {
				.b = b,
				.from = (r >> 8) % ACCOUNTS,
				.to = (r >> 20) % ACCOUNTS,
				.amount = (intptr_t)((r >> 32) % 50) - 10,
			};

			CHECK(stm_atomically(bank_transfer, &t, 0) == 0);
		}
	}
	return NULL;
}

START_TEST(bank_total_holds_inside_and_after_transactions)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct bank b = { .iters = scaled(30000) / n };
		intptr_t sum = 0;

		for (unsigned i = 0; i < ACCOUNTS; i++)
			stm_tvar_init(&b.acct[i], INITIAL);
		run_workers(n, bank_worker, &b);
		for (unsigned i = 0; i < ACCOUNTS; i++) {
			sum += (intptr_t)stm_peek(&b.acct[i]);
			ck_assert(stm_tvar_invariants(&b.acct[i]));
		}
		ck_assert_int_eq(sum, (intptr_t)ACCOUNTS * INITIAL);
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- write skew ---------------------------------------------------------- */

struct skew {
	struct stm_tvar x, y;
	unsigned iters;
};

struct skew_op {
	struct skew *s;
	bool use_x;
};

/* if (x + y >= 1) decrement one of them: serialisably, x + y stays >= 0. */
static int skew_take(struct stm_tx *tx, void *arg)
{
	struct skew_op *op = arg;
	uintptr_t x, y;

	STM_LOAD(tx, &op->s->x, &x);
	STM_LOAD(tx, &op->s->y, &y);
	CHECK((intptr_t)x + (intptr_t)y >= 0);
	if ((intptr_t)x + (intptr_t)y >= 1) {
		if (op->use_x)
			stm_write(tx, &op->s->x, x - 1);
		else
			stm_write(tx, &op->s->y, y - 1);
	}
	return 0;
}

/* Puts one unit back when the pool is empty, keeping the race tight. */
static int skew_refill(struct stm_tx *tx, void *arg)
{
	struct skew_op *op = arg;
	uintptr_t x, y;

	STM_LOAD(tx, &op->s->x, &x);
	STM_LOAD(tx, &op->s->y, &y);
	CHECK((intptr_t)x + (intptr_t)y >= 0);
	if ((intptr_t)x + (intptr_t)y <= 0) {
		if (op->use_x)
			stm_write(tx, &op->s->x, x + 1);
		else
			stm_write(tx, &op->s->y, y + 1);
	}
	return 0;
}

static void *skew_worker(void *arg)
{
	struct worker *w = arg;
	struct skew *s = w->ctx;

	for (unsigned i = 0; i < s->iters; i++) {
		uint64_t r = xorshift(&w->rng);
		struct skew_op op = { .s = s, .use_x = r & 1 };

		if (r % 3 == 0)
			CHECK(stm_atomically(skew_refill, &op, 0) == 0);
		else
			CHECK(stm_atomically(skew_take, &op, 0) == 0);
	}
	return NULL;
}

START_TEST(write_skew_cannot_break_the_sum_invariant)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct skew s = { .iters = scaled(30000) / n };

		stm_tvar_init(&s.x, 1);
		stm_tvar_init(&s.y, 0);
		run_workers(n, skew_worker, &s);
		ck_assert_int_ge(
		    (intptr_t)stm_peek(&s.x) + (intptr_t)stm_peek(&s.y), 0);
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- read-only fast path ------------------------------------------------- */

struct triple {
	struct stm_tvar a, b, c;
	struct stm_tvar counter;
	unsigned iters;
};

static int triple_set(struct stm_tx *tx, void *arg)
{
	struct triple *t = arg;
	uintptr_t v;

	STM_LOAD(tx, &t->a, &v);
	stm_write(tx, &t->a, v + 1);
	stm_write(tx, &t->b, v + 1);
	stm_write(tx, &t->c, v + 1);
	return 0;
}

static int triple_check(struct stm_tx *tx, void *arg)
{
	struct triple *t = arg;
	uintptr_t a, b, c;

	STM_LOAD(tx, &t->a, &a);
	widen();
	STM_LOAD(tx, &t->b, &b);
	STM_LOAD(tx, &t->c, &c);
	CHECK(a == b && b == c);
	return 0;
}

static _Thread_local unsigned ro_attempts;

/* Flagged read-only, but writes: must re-run read-write and land. */
static int ro_increment(struct stm_tx *tx, void *arg)
{
	struct triple *t = arg;
	uintptr_t v, again;

	ro_attempts++;
	STM_LOAD(tx, &t->counter, &v);
	stm_write(tx, &t->counter, v + 1);
	/* The attempt sees its own write even while it is read-only. */
	STM_LOAD(tx, &t->counter, &again);
	CHECK(again == v + 1);
	return 0;
}

static void *triple_worker(void *arg)
{
	struct worker *w = arg;
	struct triple *t = w->ctx;

	for (unsigned i = 0; i < t->iters; i++) {
		uint64_t r = xorshift(&w->rng) % 8;

		if (r < 3)
			CHECK(stm_atomically(triple_set, t, 0) == 0);
		else if (r == 3)
			CHECK(stm_atomically(ro_increment, t, STM_RO) == 0);
		else
			CHECK(stm_atomically(triple_check, t, STM_RO) == 0);
	}
	return NULL;
}

START_TEST(read_only_transactions_see_consistent_snapshots)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct triple t = { .iters = scaled(40000) / n };

		stm_tvar_init(&t.a, 0);
		stm_tvar_init(&t.b, 0);
		stm_tvar_init(&t.c, 0);
		stm_tvar_init(&t.counter, 0);
		run_workers(n, triple_worker, &t);
		ck_assert_uint_eq(stm_peek(&t.a), stm_peek(&t.b));
		ck_assert_uint_eq(stm_peek(&t.a), stm_peek(&t.c));
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

START_TEST(read_only_body_that_writes_restarts_read_write)
{
	struct triple t;

	stm_tvar_init(&t.counter, 41);
	ro_attempts = 0;
	ck_assert_int_eq(stm_atomically(ro_increment, &t, STM_RO), 0);
	ck_assert_uint_eq(stm_peek(&t.counter), 42);
	/* One read-only attempt, refused; one read-write attempt. */
	ck_assert_uint_eq(ro_attempts, 2);
	ck_assert(stm_tvar_invariants(&t.counter));

	ck_assert_uint_eq(bad, 0);
}
END_TEST

struct ro_count_ctx {
	struct triple t;
	unsigned iters;
};

static void *ro_count_worker(void *arg)
{
	struct worker *w = arg;
	struct ro_count_ctx *c = w->ctx;

	for (unsigned i = 0; i < c->iters; i++)
		CHECK(stm_atomically(ro_increment, &c->t, STM_RO) == 0);
	return NULL;
}

START_TEST(read_only_writes_are_never_lost)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct ro_count_ctx c = { .iters = scaled(20000) / n };

		stm_tvar_init(&c.t.counter, 0);
		run_workers(n, ro_count_worker, &c);
		ck_assert_uint_eq(stm_peek(&c.t.counter),
				  (uintptr_t)c.iters * n);
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- opacity: nodes moved between two lists ------------------------------ */

#define LIST_NODES 32

struct lnode {
	struct stm_tvar next;
	unsigned key;
	int poisoned;	     /* set by lnode_bury once reclaimed */
	struct lnode *grave; /* graveyard link, guarded by grave_lock */
};

static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lnode *graveyard; /* guarded by grave_lock */
static _Atomic unsigned buried;

/* The reclamation destructor: poison, keep the memory to detect use. */
static void lnode_bury(void *p)
{
	struct lnode *n = p;

	n->poisoned = 1;
	pthread_mutex_lock(&grave_lock);
	n->grave = graveyard;
	graveyard = n;
	pthread_mutex_unlock(&grave_lock);
	atomic_fetch_add(&buried, 1);
}

struct lists {
	struct stm_tvar head[2];
	unsigned iters;
};

struct move {
	struct lists *l;
	unsigned from, hops;
};

/* Moves the node `hops` into list `from` to the head of the other list. */
static int list_move(struct stm_tx *tx, void *arg)
{
	struct move *m = arg;
	struct stm_tvar *link = &m->l->head[m->from];
	struct stm_tvar *other = &m->l->head[1 - m->from];
	struct lnode *p, *next, *head, *copy;

	STM_LOADP(tx, link, &p);
	for (unsigned i = 0; p != NULL && i < m->hops; i++) {
		CHECK(!p->poisoned);
		link = &p->next;
		STM_LOADP(tx, link, &p);
	}
	if (p == NULL)
		return 0;
	CHECK(!p->poisoned);
	STM_LOADP(tx, &p->next, &next);
	STM_LOADP(tx, other, &head);
	copy = stm_alloc(tx, sizeof(*copy));
	if (copy == NULL)
		return -ENOMEM;
	copy->key = p->key;
	stm_tvar_init(&copy->next, (uintptr_t)head);
	stm_write(tx, link, (uintptr_t)next);
	stm_write(tx, other, (uintptr_t)copy);
	stm_retire(tx, p, lnode_bury);
	return 0;
}

/* Walks both lists: every node exactly once, none poisoned, no cycle. */
static int list_scan(struct stm_tx *tx, void *arg)
{
	struct lists *l = arg;
	unsigned hops = 0;
	uint64_t keys = 0;

	for (int i = 0; i < 2; i++) {
		struct lnode *p;

		STM_LOADP(tx, &l->head[i], &p);
		while (p != NULL) {
			if (++hops > LIST_NODES || p->poisoned) {
				CHECK(false);
				return -ELOOP;
			}
			keys += p->key;
			STM_LOADP(tx, &p->next, &p);
		}
	}
	CHECK(hops == LIST_NODES);
	CHECK(keys == (uint64_t)LIST_NODES * (LIST_NODES - 1) / 2);
	return 0;
}

static void *list_worker(void *arg)
{
	struct worker *w = arg;
	struct lists *l = w->ctx;

	for (unsigned i = 0; i < l->iters; i++) {
		uint64_t r = xorshift(&w->rng);

		if (r % 2 == 0) {
			struct move m = { .l = l,
					  .from = (r >> 8) & 1,
					  .hops = (r >> 16) % 8 };

			CHECK(stm_atomically(list_move, &m, 0) == 0);
		} else {
			CHECK(stm_atomically(list_scan, l,
					     (r & 2) ? STM_RO : 0) == 0);
		}
	}
	return NULL;
}

static void list_free(struct lnode *p)
{
	while (p != NULL) {
		struct lnode *next = (struct lnode *)stm_peek(&p->next);

		free(p);
		p = next;
	}
}

START_TEST(zombie_readers_never_see_cycles_or_reclaimed_nodes)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct lists l = { .iters = scaled(20000) / n };
		struct lnode *prev = NULL;

		for (unsigned i = 0; i < LIST_NODES; i++) {
			struct lnode *node = calloc(1, sizeof(*node));

			ck_assert_ptr_nonnull(node);
			node->key = i;
			stm_tvar_init(&node->next, (uintptr_t)prev);
			prev = node;
		}
		stm_tvar_init(&l.head[0], (uintptr_t)prev);
		stm_tvar_init(&l.head[1], 0);
		run_workers(n, list_worker, &l);
		ck_assert_int_eq(stm_atomically(list_scan, &l, STM_RO), 0);
		stm_quiesce();
		list_free((struct lnode *)stm_peek(&l.head[0]));
		list_free((struct lnode *)stm_peek(&l.head[1]));
		while (graveyard != NULL) {
			struct lnode *g = graveyard;

			graveyard = g->grave;
			free(g);
		}
	}
	ck_assert_uint_gt(buried, 0);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- self-lock masking --------------------------------------------------- */

struct masking {
	struct stm_tvar x;
	_Atomic int read_done;	/* T1 has read x in its first attempt */
	_Atomic int other_done; /* T2 has committed x */
	_Atomic unsigned attempts;
	uintptr_t first_read; /* set by T1 only */
};

/* T1: read x, let T2 commit x, then write x + 1 and commit. */
static int masking_t1(struct stm_tx *tx, void *arg)
{
	struct masking *m = arg;
	uintptr_t v;

	STM_LOAD(tx, &m->x, &v);
	if (atomic_fetch_add(&m->attempts, 1) == 0) {
		m->first_read = v;
		atomic_store(&m->read_done, 1);
		while (!atomic_load(&m->other_done))
			sched_yield();
	}
	stm_write(tx, &m->x, v + 1);
	return 0;
}

static int masking_t2(struct stm_tx *tx, void *arg)
{
	struct masking *m = arg;

	stm_write(tx, &m->x, 10);
	return 0;
}

static void *masking_thread(void *arg)
{
	struct masking *m = arg;

	CHECK(stm_atomically(masking_t1, m, 0) == 0);
	return NULL;
}

START_TEST(own_lock_does_not_mask_a_conflicting_commit)
{
	struct masking m = { 0 };
	pthread_t th;

	stm_tvar_init(&m.x, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, masking_thread, &m), 0);
	while (!atomic_load(&m.read_done))
		sched_yield();
	ck_assert_int_eq(stm_atomically(masking_t2, &m, 0), 0);
	atomic_store(&m.other_done, 1);
	ck_assert_int_eq(pthread_join(th, NULL), 0);

	/* T1 read 0, must have aborted, re-read 10 and written 11. */
	ck_assert_uint_eq(m.first_read, 0);
	ck_assert_uint_eq(stm_peek(&m.x), 11);
	ck_assert_uint_eq(atomic_load(&m.attempts), 2);
	ck_assert_uint_ge(totals_of("masking_t1").aborts_validate, 1);
	ck_assert(stm_tvar_invariants(&m.x));
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- torn reads ---------------------------------------------------------- */

struct pair {
	struct stm_tvar a, b;
	unsigned iters;
};

struct pair_write {
	struct pair *p;
	uintptr_t v;
};

static int pair_write(struct stm_tx *tx, void *arg)
{
	struct pair_write *w = arg;

	stm_write(tx, &w->p->a, w->v);
	stm_write(tx, &w->p->b, w->v);
	return 0;
}

static int pair_read(struct stm_tx *tx, void *arg)
{
	struct pair *p = arg;
	uintptr_t a, b;

	STM_LOAD(tx, &p->a, &a);
	widen();
	STM_LOAD(tx, &p->b, &b);
	CHECK(a == b);
	return 0;
}

static void *pair_worker(void *arg)
{
	struct worker *w = arg;
	struct pair *p = w->ctx;

	for (unsigned i = 0; i < p->iters; i++) {
		uint64_t r = xorshift(&w->rng);

		if (r % 2 == 0) {
			struct pair_write pw = { .p = p, .v = (uintptr_t)r };

			CHECK(stm_atomically(pair_write, &pw, 0) == 0);
		} else {
			CHECK(stm_atomically(pair_read, p,
					     (r & 2) ? STM_RO : 0) == 0);
		}
	}
	return NULL;
}

START_TEST(readers_never_see_half_a_commit)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct pair p = { .iters = scaled(40000) / n };

		stm_tvar_init(&p.a, 7);
		stm_tvar_init(&p.b, 7);
		run_workers(n, pair_worker, &p);
		ck_assert_uint_eq(stm_peek(&p.a), stm_peek(&p.b));
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- fault injection ----------------------------------------------------- */

struct block {
	uintptr_t value;
};

struct faulty {
	struct stm_tvar cell;	 /* struct block *, replaced on each commit */
	struct stm_tvar counter; /* commits so far */
	_Atomic unsigned hooks;
	_Atomic unsigned commits;
	_Atomic unsigned failures;
	unsigned iters;
};

static void faulty_hook(void *arg)
{
	struct faulty *f = arg;

	atomic_fetch_add(&f->hooks, 1);
}

struct faulty_op {
	struct faulty *f;
	bool fail;
};

static int faulty_body(struct stm_tx *tx, void *arg)
{
	struct faulty_op *op = arg;
	struct faulty *f = op->f;
	struct block *old, *new;
	uintptr_t n;

	STM_LOADP(tx, &f->cell, &old);
	STM_LOAD(tx, &f->counter, &n);
	CHECK(old->value == n);
	new = stm_alloc(tx, sizeof(*new));
	if (new == NULL)
		return -ENOMEM;
	new->value = n + 1;
	stm_write(tx, &f->cell, (uintptr_t) new);
	stm_write(tx, &f->counter, n + 1);
	stm_retire(tx, old, NULL);
	if (stm_on_commit(tx, faulty_hook, f) != 0)
		return -ENOMEM;
	return op->fail ? -EIO : 0;
}

static void *faulty_worker(void *arg)
{
	struct worker *w = arg;
	struct faulty *f = w->ctx;

	for (unsigned i = 0; i < f->iters; i++) {
		struct faulty_op op = { .f = f,
					.fail = xorshift(&w->rng) % 8 == 0 };
		int rc = stm_atomically(faulty_body, &op, 0);

		if (rc == 0)
			atomic_fetch_add(&f->commits, 1);
		else if (rc == -EIO && op.fail)
			atomic_fetch_add(&f->failures, 1);
		else
			CHECK(false);
	}
	return NULL;
}

static int faulty_reset(struct stm_tx *tx, void *arg)
{
	struct faulty *f = arg;

	stm_write(tx, &f->counter, 0);
	return 0;
}

START_TEST(injected_validation_failures_leak_nothing)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct faulty f = { .iters = scaled(8000) / n };
		struct block *first = calloc(1, sizeof(*first));
		struct block *last;

		ck_assert_ptr_nonnull(first);
		stm_tvar_init(&f.cell, (uintptr_t)first);
		stm_tvar_init(&f.counter, 0);
		stm_debug_fail_every(3);
		run_workers(n, faulty_worker, &f);
		stm_debug_fail_every(0);

		/* Exactly the committed bodies took effect and ran hooks. */
		ck_assert_uint_eq(atomic_load(&f.commits) +
				      atomic_load(&f.failures),
				  (unsigned)f.iters * n);
		ck_assert_uint_eq(stm_peek(&f.counter),
				  atomic_load(&f.commits));
		ck_assert_uint_eq(atomic_load(&f.hooks),
				  atomic_load(&f.commits));
		last = (struct block *)stm_peek(&f.cell);
		ck_assert_uint_eq(last->value, atomic_load(&f.commits));

		/* No lock leaked: both tvars are free and writable. */
		ck_assert(stm_tvar_invariants(&f.cell));
		ck_assert(stm_tvar_invariants(&f.counter));
		ck_assert_int_eq(stm_atomically(faulty_reset, &f, 0), 0);
		ck_assert_uint_eq(stm_peek(&f.counter), 0);
		free(last);
	}
	ck_assert_uint_ge(totals_of("faulty_body").aborts_validate, 1);
	ck_assert_uint_ge(totals_of("faulty_body").aborts_user, 1);
	ck_assert_uint_eq(bad, 0);
	/* teardown() frees the retired blocks; ASan reports any leak. */
}
END_TEST

/* --- reclamation --------------------------------------------------------- */

#define REC_LIVE 0x11fe11fe11fe11feULL
#define REC_DEAD 0xdeaddeaddeaddeadULL
#define RECORDS	 16

struct rec {
	uint64_t magic;
	uint64_t a, b;
};

static _Atomic unsigned recs_freed;

static void rec_kill(void *p)
{
	struct rec *r = p;

	r->magic = REC_DEAD;
	atomic_fetch_add(&recs_freed, 1);
	free(r);
}

struct recs {
	struct stm_tvar slot[RECORDS];
	unsigned iters;
	_Atomic int stop;
};

struct rec_op {
	struct recs *rs;
	unsigned i;
};

static int rec_replace(struct stm_tx *tx, void *arg)
{
	struct rec_op *op = arg;
	struct rec *old, *new;

	STM_LOADP(tx, &op->rs->slot[op->i], &old);
	new = stm_alloc(tx, sizeof(*new));
	if (new == NULL)
		return -ENOMEM;
	new->magic = REC_LIVE;
	new->a = new->b = old->a + 1;
	stm_write(tx, &op->rs->slot[op->i], (uintptr_t) new);
	stm_retire(tx, old, rec_kill);
	return 0;
}

static int rec_inspect(struct stm_tx *tx, void *arg)
{
	struct recs *rs = arg;

	for (unsigned i = 0; i < RECORDS; i++) {
		struct rec *r;

		STM_LOADP(tx, &rs->slot[i], &r);
		CHECK(r->magic == REC_LIVE && r->a == r->b);
	}
	return 0;
}

static void *rec_worker(void *arg)
{
	struct worker *w = arg;
	struct recs *rs = w->ctx;

	for (unsigned i = 0; i < rs->iters; i++) {
		uint64_t r = xorshift(&w->rng);

		if (r % 2 == 0) {
			struct rec_op op = { .rs = rs,
					     .i = (r >> 8) % RECORDS };

			CHECK(stm_atomically(rec_replace, &op, 0) == 0);
		} else {
			CHECK(stm_atomically(rec_inspect, rs,
					     (r & 2) ? STM_RO : 0) == 0);
		}
	}
	return NULL;
}

static void recs_init(struct recs *rs)
{
	for (unsigned i = 0; i < RECORDS; i++) {
		struct rec *r = calloc(1, sizeof(*r));

		ck_assert_ptr_nonnull(r);
		r->magic = REC_LIVE;
		stm_tvar_init(&rs->slot[i], (uintptr_t)r);
	}
}

static void recs_free(struct recs *rs)
{
	for (unsigned i = 0; i < RECORDS; i++)
		free((void *)stm_peek(&rs->slot[i]));
}

START_TEST(retired_records_outlive_every_reader)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct recs rs = { .iters = scaled(20000) / n };

		recs_init(&rs);
		run_workers(n, rec_worker, &rs);
		stm_quiesce();
		ck_assert_uint_eq(stm_debug_retired_pending(), 0);
		recs_free(&rs);
	}
	ck_assert_uint_gt(atomic_load(&recs_freed), 0);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* Bounds the backlog: per-thread batches plus what one reader pins. */
#define BACKLOG_BOUND 512

struct parked {
	struct recs *rs;
	_Atomic int parked;
	_Atomic int release;
};

static void *parked_thread(void *arg)
{
	struct parked *p = arg;
	struct rec_op op = { .rs = p->rs, .i = 0 };

	/* Registers with the STM, retires one record, then parks. */
	CHECK(stm_atomically(rec_replace, &op, 0) == 0);
	atomic_store(&p->parked, 1);
	while (!atomic_load(&p->release))
		sched_yield();
	return NULL;
}

static void *exiting_thread(void *arg)
{
	struct recs *rs = arg;

	/* Retires a few records, fewer than a reclaim batch, and exits. */
	for (unsigned i = 0; i < 10; i++) {
		struct rec_op op = { .rs = rs, .i = 1 + i % 3 };

		CHECK(stm_atomically(rec_replace, &op, 0) == 0);
	}
	return NULL;
}

START_TEST(parked_and_exited_threads_do_not_stop_reclamation)
{
	struct recs rs = { 0 };
	struct parked p = { .rs = &rs };
	unsigned iters = scaled(20000), retired = 0;
	size_t peak = 0;
	pthread_t parked, exiting;

	atomic_store(&recs_freed, 0);
	recs_init(&rs);
	ck_assert_int_eq(pthread_create(&parked, NULL, parked_thread, &p), 0);
	while (!atomic_load(&p.parked))
		sched_yield();
	retired++;

	ck_assert_int_eq(pthread_create(&exiting, NULL, exiting_thread, &rs),
			 0);
	ck_assert_int_eq(pthread_join(exiting, NULL), 0);
	retired += 10;

	for (unsigned i = 0; i < iters; i++) {
		struct rec_op op = { .rs = &rs, .i = 4 + i % 12 };
		size_t pending;

		ck_assert_int_eq(stm_atomically(rec_replace, &op, 0), 0);
		retired++;
		pending = stm_debug_retired_pending();
		if (pending > peak)
			peak = pending;
	}
	/* Without an idle state the parked thread would pin everything. */
	ck_assert_uint_le(peak, BACKLOG_BOUND);
	ck_assert_uint_ge(atomic_load(&recs_freed), retired - BACKLOG_BOUND);
	/* The exited thread's records were handed over and freed. */
	atomic_store(&p.release, 1);
	ck_assert_int_eq(pthread_join(parked, NULL), 0);
	stm_quiesce();
	ck_assert_uint_eq(stm_debug_retired_pending(), 0);
	ck_assert_uint_eq(atomic_load(&recs_freed), retired);
	recs_free(&rs);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/*
 * An orphan retired after a reclaimer scanned the epoch slots must not be
 * freed by that reclaimer while an attempt begun after the scan can still
 * reach it.  The schedule is forced: the reclaimer (R) is held inside the
 * destructor of one of its own objects, between its scan and its pass over
 * the orphans; meanwhile a reader (B) enters an attempt and reads the
 * pointer to X, and a writer (A) replaces X, retires it and exits, which
 * makes X an orphan.  Then R goes on.  X's destructor must not run before
 * B's attempt ends.
 */
struct orphan_race {
	struct stm_tvar ptr;	 /* points at X, then at a fresh record */
	struct stm_tvar counter; /* written so that retires get a commit tag */
	_Atomic int r_in_dtor, r_go, b_inside, b_go, b_done;
	_Atomic int x_freed, x_freed_early;
};

static struct orphan_race *orace;

static void orphan_blocker_dtor(void *p)
{
	free(p);
	atomic_store(&orace->r_in_dtor, 1);
	while (!atomic_load(&orace->r_go))
		sched_yield();
}

static void orphan_x_dtor(void *p)
{
	/* The reader is still inside its attempt: X was freed too early. */
	if (!atomic_load(&orace->b_done))
		atomic_store(&orace->x_freed_early, 1);
	atomic_store(&orace->x_freed, 1);
	free(p);
}

struct orphan_retire {
	void *victim;
	void (*dtor)(void *);
};

static int orphan_retire_body(struct stm_tx *tx, void *arg)
{
	struct orphan_retire *op = arg;
	uintptr_t c;

	STM_LOAD(tx, &orace->counter, &c);
	stm_write(tx, &orace->counter, c + 1);
	stm_retire(tx, op->victim, op->dtor);
	return 0;
}

static void *orphan_reclaimer(void *arg)
{
	struct orphan_retire op = { malloc(16), orphan_blocker_dtor };

	(void)arg;
	/* The blocker has the lowest tag, so it is freed first; retire more
	 * until a batch triggers reclamation and the blocker's dtor runs. */
	CHECK(stm_atomically(orphan_retire_body, &op, 0) == 0);
	while (!atomic_load(&orace->r_go)) {
		struct orphan_retire more = { malloc(16), NULL };

		CHECK(stm_atomically(orphan_retire_body, &more, 0) == 0);
	}
	return NULL;
}

static int orphan_read_body(struct stm_tx *tx, void *arg)
{
	uintptr_t x;

	(void)arg;
	STM_LOAD(tx, &orace->ptr, &x);
	atomic_store(&orace->b_inside, 1);
	while (!atomic_load(&orace->b_go))
		sched_yield();
	/* Still inside the attempt that read x: x must be alive. */
	CHECK(!atomic_load(&orace->x_freed));
	atomic_store(&orace->b_done, 1);
	return 0;
}

static void *orphan_reader(void *arg)
{
	(void)arg;
	CHECK(stm_atomically(orphan_read_body, NULL, STM_RO) == 0);
	return NULL;
}

static int orphan_replace_body(struct stm_tx *tx, void *arg)
{
	uintptr_t old;

	STM_LOAD(tx, &orace->ptr, &old);
	stm_write(tx, &orace->ptr, (uintptr_t)arg);
	stm_retire(tx, (void *)old, orphan_x_dtor);
	return 0;
}

static void *orphan_writer(void *arg)
{
	/* Fewer retires than a batch: X stays in limbo until the exit. */
	CHECK(stm_atomically(orphan_replace_body, arg, 0) == 0);
	return NULL;
}

START_TEST(orphans_retired_after_a_scan_outlive_readers)
{
	struct orphan_race race;
	pthread_t r, b, a;
	void *fresh = malloc(16);

	memset(&race, 0, sizeof(race));
	orace = &race;
	stm_tvar_init(&race.ptr, (uintptr_t)malloc(16));
	stm_tvar_init(&race.counter, 0);

	ck_assert_int_eq(pthread_create(&r, NULL, orphan_reclaimer, NULL), 0);
	while (!atomic_load(&race.r_in_dtor))
		sched_yield();
	/* R has scanned the slots (everyone was idle) and is held. */
	ck_assert_int_eq(pthread_create(&b, NULL, orphan_reader, NULL), 0);
	while (!atomic_load(&race.b_inside))
		sched_yield();
	ck_assert_int_eq(pthread_create(&a, NULL, orphan_writer, fresh), 0);
	ck_assert_int_eq(pthread_join(a, NULL), 0);
	/* X is an orphan now; let R reach the orphans. */
	atomic_store(&race.r_go, 1);
	ck_assert_int_eq(pthread_join(r, NULL), 0);
	atomic_store(&race.b_go, 1);
	ck_assert_int_eq(pthread_join(b, NULL), 0);
	ck_assert_int_eq(atomic_load(&race.x_freed_early), 0);

	stm_quiesce();
	ck_assert_int_eq(atomic_load(&race.x_freed), 1);
	free((void *)stm_peek(&race.ptr));
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- blocking ------------------------------------------------------------ */

struct ring {
	struct stm_tvar turn;
	struct stm_tvar handoffs;
	unsigned rounds;
};

struct ring_op {
	struct ring *r;
	int me, n;
};

/* Waits for this thread's turn, then passes the token on. */
static int ring_take(struct stm_tx *tx, void *arg)
{
	struct ring_op *op = arg;
	uintptr_t turn, h;

	STM_LOAD(tx, &op->r->turn, &turn);
	if ((int)turn != op->me)
		return stm_wait(tx);
	STM_LOAD(tx, &op->r->handoffs, &h);
	stm_write(tx, &op->r->turn, (uintptr_t)((op->me + 1) % op->n));
	stm_write(tx, &op->r->handoffs, h + 1);
	return 0;
}

static void *ring_worker(void *arg)
{
	struct worker *w = arg;
	struct ring *r = w->ctx;
	struct ring_op op = { .r = r, .me = w->id, .n = w->nthreads };

	for (unsigned i = 0; i < r->rounds; i++)
		CHECK(stm_atomically(ring_take, &op, (i & 1) ? STM_RO : 0) ==
		      0);
	return NULL;
}

START_TEST(token_ring_never_loses_a_wakeup)
{
	/* A lost wake-up hangs the ring; the "blocking" test case's
	 * timeout is the watchdog that turns the hang into a failure. */
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct ring r = { .rounds = scaled(10000) / n };

		stm_tvar_init(&r.turn, 0);
		stm_tvar_init(&r.handoffs, 0);
		run_workers(n, ring_worker, &r);
		ck_assert_uint_eq(stm_peek(&r.handoffs),
				  (uintptr_t)r.rounds * n);
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

struct gate {
	struct stm_tvar open;
	_Atomic int waiting;
	_Atomic unsigned attempts;
};

static int gate_pass(struct stm_tx *tx, void *arg)
{
	struct gate *g = arg;
	uintptr_t open;

	atomic_fetch_add(&g->attempts, 1);
	STM_LOAD(tx, &g->open, &open);
	if (!open) {
		atomic_store(&g->waiting, 1);
		return stm_wait(tx);
	}
	return 0;
}

static int gate_open(struct stm_tx *tx, void *arg)
{
	struct gate *g = arg;

	stm_write(tx, &g->open, 1);
	return 0;
}

static void *gate_thread(void *arg)
{
	CHECK(stm_atomically(gate_pass, arg, 0) == 0);
	return NULL;
}

START_TEST(waiter_wakes_when_what_it_read_changes)
{
	struct gate g = { 0 };
	pthread_t th;

	stm_tvar_init(&g.open, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, gate_thread, &g), 0);
	while (!atomic_load(&g.waiting))
		sched_yield();
	ck_assert_int_eq(stm_atomically(gate_open, &g, 0), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_uint_ge(atomic_load(&g.attempts), 2);
	ck_assert_uint_ge(totals_of("gate_pass").waits, 1);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

START_TEST(wait_times_out_with_etimedout)
{
	struct gate g = { 0 };

	stm_tvar_init(&g.open, 0);
	ck_assert_int_eq(stm_atomically_timed(gate_pass, &g, 0, 20),
			 -ETIMEDOUT);
	ck_assert_int_eq(stm_atomically_timed(gate_pass, &g, 0, 0), -ETIMEDOUT);
	/* Read-only: re-run once with a read set, then time out. */
	ck_assert_int_eq(stm_atomically_timed(gate_pass, &g, STM_RO, 10),
			 -ETIMEDOUT);
	ck_assert(stm_tvar_invariants(&g.open));
	ck_assert(stm_invariants());
}
END_TEST

static int wait_on_nothing(struct stm_tx *tx, void *arg)
{
	return stm_wait(tx);
}

START_TEST(wait_with_empty_read_set_is_einval)
{
	ck_assert_int_eq(stm_atomically(wait_on_nothing, NULL, 0), -EINVAL);
	ck_assert_int_eq(stm_atomically(wait_on_nothing, NULL, STM_RO),
			 -EINVAL);
}
END_TEST

/* --- progress ------------------------------------------------------------ */

#define BIG 1024

struct hot {
	struct stm_tvar acct[BIG];
	_Atomic int stop;
	_Atomic uint64_t commits; /* by the hot writers */
	int writers;
};

struct hot_transfer {
	struct hot *h;
	unsigned from, to;
};

static int hot_transfer(struct stm_tx *tx, void *arg)
{
	struct hot_transfer *t = arg;
	uintptr_t a, b;

	STM_LOAD(tx, &t->h->acct[t->from], &a);
	STM_LOAD(tx, &t->h->acct[t->to], &b);
	stm_write(tx, &t->h->acct[t->from], a - 1);
	stm_write(tx, &t->h->acct[t->to], b + 1);
	return 0;
}

/*
 * Reads and bumps every account.  Before committing it waits (boundedly)
 * until the writers have committed writers + 1 times since it started: by
 * pigeonhole one writer then committed twice, the second time entirely
 * after this attempt's snapshot, so every non-serial attempt conflicts.
 */
static int hot_everything(struct stm_tx *tx, void *arg)
{
	struct hot *h = arg;
	uint64_t start = atomic_load(&h->commits);
	intptr_t sum = 0;

	for (unsigned i = 0; i < BIG; i++) {
		uintptr_t v;

		STM_LOAD(tx, &h->acct[i], &v);
		sum += (intptr_t)v;
		stm_write(tx, &h->acct[i], v + 1);
	}
	CHECK(sum == (intptr_t)BIG * INITIAL);
	for (unsigned spin = 0;
	     spin < 20000 && h->writers > 0 &&
	     atomic_load(&h->commits) < start + (uint64_t)h->writers + 1;
	     spin++)
		sched_yield();
	return 0;
}

static void *hot_worker(void *arg)
{
	struct worker *w = arg;
	struct hot *h = w->ctx;

	while (!atomic_load(&h->stop)) {
		uint64_t r = xorshift(&w->rng);
		/* Always two distinct accounts: every commit writes. */
		struct hot_transfer t = {
			.h = h,
			.from = r % BIG,
			.to = (r % BIG + 1 + (r >> 20) % (BIG - 1)) % BIG,
		};

		CHECK(stm_atomically(hot_transfer, &t, 0) == 0);
		atomic_fetch_add(&h->commits, 1);
	}
	return NULL;
}

START_TEST(huge_transaction_finishes_against_hot_writers)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		int n = thread_counts[k];
		struct hot *h = calloc(1, sizeof(*h));
		struct worker w[MAX_THREADS];
		intptr_t sum = 0;

		ck_assert_ptr_nonnull(h);
		h->writers = n - 1;
		for (unsigned i = 0; i < BIG; i++)
			stm_tvar_init(&h->acct[i], INITIAL);
		for (int i = 0; i < h->writers; i++) {
			w[i] = (struct worker){ .id = i,
						.nthreads = h->writers,
						.rng = 77 * (i + 1),
						.ctx = h };
			ck_assert_int_eq(
			    pthread_create(&w[i].th, NULL, hot_worker, &w[i]),
			    0);
		}
		while (atomic_load(&h->commits) < 100 * (uint64_t)h->writers)
			sched_yield();
		ck_assert_int_eq(stm_atomically(hot_everything, h, 0), 0);
		atomic_store(&h->stop, 1);
		for (int i = 0; i < h->writers; i++)
			ck_assert_int_eq(pthread_join(w[i].th, NULL), 0);
		for (unsigned i = 0; i < BIG; i++)
			sum += (intptr_t)stm_peek(&h->acct[i]);
		ck_assert_int_eq(sum, (intptr_t)BIG * (INITIAL + 1));
		if (n > 1)
			ck_assert_uint_ge(totals_of("hot_everything").serial,
					  1);
		free(h);
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* --- errors, nesting, hooks, statistics ---------------------------------- */

static _Atomic unsigned hook_runs;
static _Atomic unsigned dtor_runs;

static void count_hook(void *arg)
{
	atomic_fetch_add(&hook_runs, 1);
}

static void count_dtor(void *arg)
{
	atomic_fetch_add(&dtor_runs, 1);
}

struct cells {
	struct stm_tvar x, y;
	int victim; /* retired by failing bodies, never freed by the STM */
};

static int fail_after_writing(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;
	void *block = stm_alloc(tx, 128);

	if (block == NULL)
		return -ENOMEM;
	stm_write(tx, &c->x, (uintptr_t)block);
	stm_retire(tx, &c->victim, count_dtor);
	if (stm_on_commit(tx, count_hook, NULL) != 0)
		return -ENOMEM;
	return -EIO;
}

START_TEST(user_error_aborts_without_publishing)
{
	struct cells c;

	atomic_store(&hook_runs, 0);
	atomic_store(&dtor_runs, 0);
	stm_tvar_init(&c.x, 5);
	ck_assert_int_eq(stm_atomically(fail_after_writing, &c, 0), -EIO);
	ck_assert_int_eq(stm_atomically(fail_after_writing, &c, STM_RO), -EIO);
	ck_assert_uint_eq(stm_peek(&c.x), 5);
	ck_assert(stm_tvar_invariants(&c.x));
	stm_quiesce();
	ck_assert_uint_eq(atomic_load(&hook_runs), 0);
	ck_assert_uint_eq(atomic_load(&dtor_runs), 0);
	ck_assert_uint_eq(totals_of("fail_after_writing").aborts_user, 2);
	ck_assert_uint_eq(totals_of("fail_after_writing").commits, 0);
	/* ASan: the stm_alloc'ed blocks were freed with the attempts. */
}
END_TEST

static int inner(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;
	uintptr_t x;

	STM_LOAD(tx, &c->x, &x);
	CHECK(x == 1); /* sees the outer body's buffered write */
	stm_write(tx, &c->y, 2);
	return stm_on_commit(tx, count_hook, NULL);
}

static int outer(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;
	int rc;

	stm_write(tx, &c->x, 1);
	rc = stm_atomically(inner, c, 0);
	if (rc != 0)
		return rc;
	/* The inner call has not committed on its own. */
	CHECK(stm_peek(&c->y) == 0);
	CHECK(atomic_load(&hook_runs) == 0);
	return 0;
}

static int outer_failing(struct stm_tx *tx, void *arg)
{
	int rc = stm_atomically(inner, arg, 0);

	return rc ? rc : -EIO;
}

static int outer_prepare(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;

	stm_write(tx, &c->x, 1);
	return 0;
}

START_TEST(nested_atomically_joins_the_outer_transaction)
{
	struct cells c;

	atomic_store(&hook_runs, 0);
	stm_tvar_init(&c.x, 0);
	stm_tvar_init(&c.y, 0);
	ck_assert_int_eq(stm_atomically(outer, &c, 0), 0);
	ck_assert_uint_eq(stm_peek(&c.x), 1);
	ck_assert_uint_eq(stm_peek(&c.y), 2);
	ck_assert_uint_eq(atomic_load(&hook_runs), 1);

	/* An outer failure discards what the inner call wrote. */
	stm_tvar_init(&c.y, 0);
	ck_assert_int_eq(stm_atomically(outer_prepare, &c, 0), 0);
	ck_assert_int_eq(stm_atomically(outer_failing, &c, 0), -EIO);
	ck_assert_uint_eq(stm_peek(&c.y), 0);
	ck_assert_uint_eq(atomic_load(&hook_runs), 1);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

struct order {
	int seen[4];
	int n;
	struct cells *c;
};

static struct order *order_ctx;

static void record_hook(void *arg)
{
	order_ctx->seen[order_ctx->n++] = (int)(intptr_t)arg;
}

static int hook_tx(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;

	stm_write(tx, &c->y, 9);
	return 0;
}

/* A hook may run a transaction of its own. */
static void tx_hook(void *arg)
{
	struct order *o = arg;

	CHECK(stm_atomically(hook_tx, o->c, 0) == 0);
	o->seen[o->n++] = 3;
}

static int with_hooks(struct stm_tx *tx, void *arg)
{
	struct order *o = arg;

	stm_write(tx, &o->c->x, 7);
	if (stm_on_commit(tx, record_hook, (void *)(intptr_t)1) ||
	    stm_on_commit(tx, record_hook, (void *)(intptr_t)2) ||
	    stm_on_commit(tx, tx_hook, o))
		return -ENOMEM;
	return 0;
}

START_TEST(commit_hooks_run_in_order_after_commit)
{
	struct cells c;
	struct order o = { .c = &c };

	order_ctx = &o;
	stm_tvar_init(&c.x, 0);
	stm_tvar_init(&c.y, 0);
	ck_assert_int_eq(stm_atomically(with_hooks, &o, 0), 0);
	ck_assert_int_eq(o.n, 3);
	ck_assert_int_eq(o.seen[0], 1);
	ck_assert_int_eq(o.seen[1], 2);
	ck_assert_int_eq(o.seen[2], 3);
	ck_assert_uint_eq(stm_peek(&c.x), 7);
	ck_assert_uint_eq(stm_peek(&c.y), 9);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

static int stats_body(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;
	uintptr_t x;

	STM_LOAD(tx, &c->x, &x);
	if (x == 100)
		return -EIO;
	if (x == 200)
		return stm_wait(tx);
	stm_write(tx, &c->x, x + 1);
	return 0;
}

/* Formats the stats_body sites; the loop's site shows its 5 commits. */
static void format_cb(const struct stm_site *site, void *arg)
{
	bool *found = arg;
	char line[256];

	if (strcmp(site->name, "stats_body") != 0)
		return;
	CHECK(stm_site_format(site, line, sizeof(line)) > 0);
	CHECK(stm_site_format(site, line, 8) == -ENOSPC);
	if (stm_site_format(site, line, sizeof(line)) > 0 &&
	    strstr(line, "stats_body commits=5 ") != NULL)
		*found = true;
}

START_TEST(statistics_count_commits_aborts_and_waits)
{
	struct cells c;
	struct totals s;
	bool found = false;
	uint64_t clock = stm_clock();

	stm_tvar_init(&c.x, 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(stm_atomically(stats_body, &c, 0), 0);
	stm_tvar_init(&c.x, 100);
	ck_assert_int_eq(stm_atomically(stats_body, &c, 0), -EIO);
	stm_tvar_init(&c.x, 200);
	ck_assert_int_eq(stm_atomically_timed(stats_body, &c, 0, 0),
			 -ETIMEDOUT);
	s = totals_of("stats_body");
	ck_assert_uint_eq(s.sites, 3);
	ck_assert_uint_eq(s.commits, 5);
	ck_assert_uint_eq(s.aborts_user, 1);
	ck_assert_uint_eq(s.waits, 1);
	ck_assert_uint_eq(s.serial, 0);
	ck_assert_uint_ge(stm_clock(), clock + 5);
	ck_assert_uint_eq(bad, 0);
	stm_sites_foreach(format_cb, &found);
	ck_assert(found);
}
END_TEST

static int check_invariants_inside(struct stm_tx *tx, void *arg)
{
	struct cells *c = arg;
	uintptr_t x;

	STM_LOAD(tx, &c->x, &x);
	CHECK(stm_invariants());
	stm_write(tx, &c->x, x + 1);
	CHECK(stm_invariants());
	return 0;
}

START_TEST(invariants_hold_inside_and_outside_bodies)
{
	struct cells c;

	ck_assert(stm_invariants());
	stm_tvar_init(&c.x, 0);
	ck_assert(stm_tvar_invariants(&c.x));
	ck_assert_int_eq(stm_atomically(check_invariants_inside, &c, 0), 0);
	ck_assert(stm_invariants());
	ck_assert(stm_tvar_invariants(&c.x));
	ck_assert_uint_eq(bad, 0);
}
END_TEST

static Suite *stm_suite(void)
{
	Suite *s = suite_create("stm");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, concurrent_increments_are_never_lost);
	tcase_add_test(tc, bank_total_holds_inside_and_after_transactions);
	tcase_add_test(tc, write_skew_cannot_break_the_sum_invariant);
	tcase_add_test(tc, read_only_transactions_see_consistent_snapshots);
	tcase_add_test(tc, read_only_body_that_writes_restarts_read_write);
	tcase_add_test(tc, read_only_writes_are_never_lost);
	tcase_add_test(tc, zombie_readers_never_see_cycles_or_reclaimed_nodes);
	tcase_add_test(tc, own_lock_does_not_mask_a_conflicting_commit);
	tcase_add_test(tc, readers_never_see_half_a_commit);
	tcase_add_test(tc, injected_validation_failures_leak_nothing);
	tcase_add_test(tc, retired_records_outlive_every_reader);
	tcase_add_test(tc, parked_and_exited_threads_do_not_stop_reclamation);
	tcase_add_test(tc, orphans_retired_after_a_scan_outlive_readers);
	tcase_add_test(tc, huge_transaction_finishes_against_hot_writers);
	tcase_add_test(tc, user_error_aborts_without_publishing);
	tcase_add_test(tc, nested_atomically_joins_the_outer_transaction);
	tcase_add_test(tc, commit_hooks_run_in_order_after_commit);
	tcase_add_test(tc, statistics_count_commits_aborts_and_waits);
	tcase_add_test(tc, invariants_hold_inside_and_outside_bodies);
	suite_add_tcase(s, tc);

	/* The timeout is the watchdog against lost wake-ups. */
	tc = tcase_create("blocking");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, token_ring_never_loses_a_wakeup);
	tcase_add_test(tc, waiter_wakes_when_what_it_read_changes);
	tcase_add_test(tc, wait_times_out_with_etimedout);
	tcase_add_test(tc, wait_with_empty_read_set_is_einval);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stm_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
