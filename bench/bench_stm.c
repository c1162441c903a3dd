/*
 * bench_stm.c: the STM against one global lock, on the same data.
 *
 * Schemes: the STM; one pthread_rwlock_t, reader-preferring (the glibc
 * default) and writer-preferring; one pthread_mutex_t.  Lock schemes run the
 * same data structure with plain (relaxed) accesses inside the lock.
 * Workloads: an integer hash set (4096 keys, 0/20/50% updates) and a bank
 * (1024 accounts, 80% transfers, 20% read-all audits).  Every cell checks
 * its structure afterwards (set size, bank total) and the program exits
 * non-zero if any check fails.
 *
 * Usage: bench_stm [-c] [-d SECONDS] [-q] [-r REPEATS] [-w WORKLOAD]
 *                  [-s SCHEME] [-t THREADS] [-v]
 *
 * To add a workload (for instance a file-system-shaped one over the real
 * node table), implement struct bench_workload and append it to
 * `workloads[]` below: see "WORKLOAD HOOK".
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stm.h"

enum scheme { S_STM, S_RWLOCK, S_RWLOCK_W, S_MUTEX, S_COUNT };

static const char *const scheme_names[S_COUNT] = { "stm", "rwlock", "rwlock-w",
						   "mutex" };

enum op_kind { OP_READ, OP_UPDATE };

/* One benchmark thread: its private randomness and counts. */
struct bench_thread {
	uint64_t rng;
	uint64_t ops;
	double cpu;    /* seconds of CPU the thread used */
	int64_t delta; /* workload-defined, e.g. set insertions - removals */
};

static uint64_t rng_next(struct bench_thread *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

/*
 * WORKLOAD HOOK.  A workload owns its shared state.  op_stm runs one
 * operation as STM transaction(s); op_locked runs the same operation on the
 * same state with plain accesses, and the driver wraps it in the scheme's
 * lock (read lock for OP_READ).  `r` is the operation's randomness, drawn
 * outside any lock.  check returns false if the state is inconsistent.
 */
struct bench_workload {
	const char *name;
	int update_pct;
	void *(*create)(void);
	void (*destroy)(void *state);
	void (*op_stm)(void *state, struct bench_thread *t, enum op_kind kind,
		       uint64_t r);
	void (*op_locked)(void *state, struct bench_thread *t,
			  enum op_kind kind, uint64_t r);
	bool (*check)(void *state, int64_t delta);
};

/* Plain accesses to tvars for the lock-based schemes. */
static uintptr_t plain_get(struct stm_tvar *tv)
{
	return atomic_load_explicit(&tv->val, memory_order_relaxed);
}

static void plain_set(struct stm_tvar *tv, uintptr_t v)
{
	atomic_store_explicit(&tv->val, v, memory_order_relaxed);
}

/* --- integer set: a chained hash set ------------------------------------- */

#define SET_KEYS    4096
#define SET_RANGE   (2 * SET_KEYS)
#define SET_BUCKETS 4096

struct snode {
	uint64_t key;
	struct stm_tvar next;
};

struct set {
	struct stm_tvar bucket[SET_BUCKETS];
};

struct set_op {
	struct set *s;
	uint64_t key;
	bool done;
};

static struct stm_tvar *set_bucket(struct set *s, uint64_t key)
{
	return &s->bucket[(key * 0x9E3779B97F4A7C15ULL) >> 52];
}

static void *set_create(void)
{
	struct set *s = calloc(1, sizeof(*s));
	uint64_t rng = 12345;
	unsigned n = 0;

	if (s == NULL)
		return NULL;
	for (unsigned i = 0; i < SET_BUCKETS; i++)
		stm_tvar_init(&s->bucket[i], 0);
	while (n < SET_KEYS) {
		uint64_t key;
		struct stm_tvar *b;
		struct snode *p;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		key = rng % SET_RANGE;
		b = set_bucket(s, key);
		for (p = (struct snode *)plain_get(b); p != NULL;
		     p = (struct snode *)plain_get(&p->next))
			if (p->key == key)
				break;
		if (p != NULL)
			continue;
		p = malloc(sizeof(*p));
		if (p == NULL)
			abort();
		p->key = key;
		stm_tvar_init(&p->next, plain_get(b));
		plain_set(b, (uintptr_t)p);
		n++;
	}
	return s;
}

static size_t set_size_and_free(struct set *s, bool free_nodes)
{
	size_t n = 0;

	for (unsigned i = 0; i < SET_BUCKETS; i++) {
		struct snode *p = (struct snode *)plain_get(&s->bucket[i]);

		while (p != NULL) {
			struct snode *next =
			    (struct snode *)plain_get(&p->next);

			n++;
			if (free_nodes)
				free(p);
			p = next;
		}
	}
	return n;
}

static void set_destroy(void *state)
{
	set_size_and_free(state, true);
	free(state);
}

static bool set_check(void *state, int64_t delta)
{
	return (int64_t)set_size_and_free(state, false) ==
	       (int64_t)SET_KEYS + delta;
}

static int set_lookup_tx(struct stm_tx *tx, void *arg)
{
	struct set_op *op = arg;
	struct snode *p;

	STM_LOADP(tx, set_bucket(op->s, op->key), &p);
	while (p != NULL) {
		if (p->key == op->key) {
			op->done = true;
			return 0;
		}
		STM_LOADP(tx, &p->next, &p);
	}
	op->done = false;
	return 0;
}

static int set_insert_tx(struct stm_tx *tx, void *arg)
{
	struct set_op *op = arg;
	struct stm_tvar *b = set_bucket(op->s, op->key);
	struct snode *head, *p, *n;

	STM_LOADP(tx, b, &head);
	for (p = head; p != NULL;) {
		if (p->key == op->key) {
			op->done = false;
			return 0;
		}
		STM_LOADP(tx, &p->next, &p);
	}
	n = stm_alloc(tx, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->key = op->key;
	stm_tvar_init(&n->next, (uintptr_t)head);
	stm_write(tx, b, (uintptr_t)n);
	op->done = true;
	return 0;
}

static int set_remove_tx(struct stm_tx *tx, void *arg)
{
	struct set_op *op = arg;
	struct stm_tvar *link = set_bucket(op->s, op->key);
	struct snode *p, *next;

	STM_LOADP(tx, link, &p);
	while (p != NULL && p->key != op->key) {
		link = &p->next;
		STM_LOADP(tx, link, &p);
	}
	op->done = p != NULL;
	if (p == NULL)
		return 0;
	STM_LOADP(tx, &p->next, &next);
	stm_write(tx, link, (uintptr_t)next);
	stm_retire(tx, p, NULL);
	return 0;
}

static void set_op_stm(void *state, struct bench_thread *t, enum op_kind kind,
		       uint64_t r)
{
	struct set_op op = { .s = state, .key = (r >> 8) % SET_RANGE };

	if (kind == OP_READ) {
		if (stm_atomically(set_lookup_tx, &op, STM_RO) != 0)
			abort();
	} else if (r & 1) {
		if (stm_atomically(set_insert_tx, &op, 0) != 0)
			abort();
		t->delta += op.done;
	} else {
		if (stm_atomically(set_remove_tx, &op, 0) != 0)
			abort();
		t->delta -= op.done;
	}
}

static void set_op_locked(void *state, struct bench_thread *t,
			  enum op_kind kind, uint64_t r)
{
	struct set *s = state;
	uint64_t key = (r >> 8) % SET_RANGE;
	struct stm_tvar *link = set_bucket(s, key);
	struct snode *p = (struct snode *)plain_get(link);

	while (p != NULL && p->key != key) {
		link = &p->next;
		p = (struct snode *)plain_get(link);
	}
	if (kind == OP_READ)
		return;
	if ((r & 1) && p == NULL) {
		struct snode *n = malloc(sizeof(*n));

		if (n == NULL)
			abort();
		n->key = key;
		stm_tvar_init(&n->next, plain_get(set_bucket(s, key)));
		plain_set(set_bucket(s, key), (uintptr_t)n);
		t->delta++;
	} else if (!(r & 1) && p != NULL) {
		plain_set(link, plain_get(&p->next));
		free(p);
		t->delta--;
	}
}

/* --- bank ---------------------------------------------------------------- */

#define ACCOUNTS 1024
#define INITIAL	 1000

struct bank {
	struct stm_tvar acct[ACCOUNTS];
};

struct bank_op {
	struct bank *b;
	unsigned from, to;
	intptr_t amount;
	intptr_t total;
};

static void *bank_create(void)
{
	struct bank *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	for (unsigned i = 0; i < ACCOUNTS; i++)
		stm_tvar_init(&b->acct[i], INITIAL);
	return b;
}

static void bank_destroy(void *state)
{
	free(state);
}

static bool bank_check(void *state, int64_t delta)
{
	struct bank *b = state;
	intptr_t sum = 0;

	(void)delta;
	for (unsigned i = 0; i < ACCOUNTS; i++)
		sum += (intptr_t)plain_get(&b->acct[i]);
	return sum == (intptr_t)ACCOUNTS * INITIAL;
}

static int bank_transfer_tx(struct stm_tx *tx, void *arg)
{
	struct bank_op *op = arg;
	uintptr_t a, b;

	STM_LOAD(tx, &op->b->acct[op->from], &a);
	STM_LOAD(tx, &op->b->acct[op->to], &b);
	stm_write(tx, &op->b->acct[op->from], a - op->amount);
	stm_write(tx, &op->b->acct[op->to], b + op->amount);
	return 0;
}

static int bank_audit_tx(struct stm_tx *tx, void *arg)
{
	struct bank_op *op = arg;
	intptr_t sum = 0;

	for (unsigned i = 0; i < ACCOUNTS; i++) {
		uintptr_t v;

		STM_LOAD(tx, &op->b->acct[i], &v);
		sum += (intptr_t)v;
	}
	op->total = sum;
	return 0;
}

static void bank_prepare(struct bank_op *op, void *state, uint64_t r)
{
	op->b = state;
	op->from = (r >> 8) % ACCOUNTS;
	op->to = (r >> 24) % ACCOUNTS;
	if (op->to == op->from)
		op->to = (op->to + 1) % ACCOUNTS;
	op->amount = (intptr_t)((r >> 40) % 100);
}

static void bank_op_stm(void *state, struct bench_thread *t, enum op_kind kind,
			uint64_t r)
{
	struct bank_op op;

	bank_prepare(&op, state, r);
	if (kind == OP_READ) {
		if (stm_atomically(bank_audit_tx, &op, STM_RO) != 0 ||
		    op.total != (intptr_t)ACCOUNTS * INITIAL)
			abort();
	} else if (stm_atomically(bank_transfer_tx, &op, 0) != 0) {
		abort();
	}
}

static void bank_op_locked(void *state, struct bench_thread *t,
			   enum op_kind kind, uint64_t r)
{
	struct bank_op op;
	intptr_t sum = 0;

	bank_prepare(&op, state, r);
	if (kind == OP_UPDATE) {
		struct stm_tvar *from = &op.b->acct[op.from];
		struct stm_tvar *to = &op.b->acct[op.to];

		plain_set(from, plain_get(from) - op.amount);
		plain_set(to, plain_get(to) + op.amount);
		return;
	}
	for (unsigned i = 0; i < ACCOUNTS; i++)
		sum += (intptr_t)plain_get(&op.b->acct[i]);
	if (sum != (intptr_t)ACCOUNTS * INITIAL)
		abort();
}

/* WORKLOAD HOOK: append new workloads here. */
static const struct bench_workload workloads[] = {
	{ "intset-0%", 0, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check },
	{ "intset-20%", 20, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check },
	{ "intset-50%", 50, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check },
	{ "bank-80%", 80, bank_create, bank_destroy, bank_op_stm,
	  bank_op_locked, bank_check },
};

#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

/* --- the driver ---------------------------------------------------------- */

struct cell {
	const struct bench_workload *wl;
	enum scheme scheme;
	void *state;
	pthread_rwlock_t rwlock;
	pthread_mutex_t mutex;
	pthread_barrier_t start;
	_Atomic int stop;
};

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Cache-line aligned: runners write their counters on every operation. */
struct runner {
	_Alignas(64) pthread_t th;
	struct cell *cell;
	struct bench_thread t;
};

static void *runner_main(void *arg)
{
	struct runner *rn = arg;
	struct cell *c = rn->cell;
	const struct bench_workload *wl = c->wl;

	pthread_barrier_wait(&c->start);
	rn->t.cpu = cpu_now();
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		for (int batch = 0; batch < 64; batch++) {
			uint64_t r = rng_next(&rn->t);
			enum op_kind kind = (int)(r % 100) < wl->update_pct
						? OP_UPDATE
						: OP_READ;

			switch (c->scheme) {
			case S_STM:
				wl->op_stm(c->state, &rn->t, kind, r);
				break;
			case S_RWLOCK:
			case S_RWLOCK_W:
				if (kind == OP_READ)
					pthread_rwlock_rdlock(&c->rwlock);
				else
					pthread_rwlock_wrlock(&c->rwlock);
				wl->op_locked(c->state, &rn->t, kind, r);
				pthread_rwlock_unlock(&c->rwlock);
				break;
			case S_MUTEX:
			default:
				pthread_mutex_lock(&c->mutex);
				wl->op_locked(c->state, &rn->t, kind, r);
				pthread_mutex_unlock(&c->mutex);
				break;
			}
		}
		rn->t.ops += 64;
	}
	rn->t.cpu = cpu_now() - rn->t.cpu;
	return NULL;
}

struct stm_totals {
	uint64_t commits, aborts;
};

static void totals_cb(const struct stm_site *site, void *arg)
{
	struct stm_totals *t = arg;

	t->commits += atomic_load(&site->commits);
	t->aborts += atomic_load(&site->aborts_locked) +
		     atomic_load(&site->aborts_validate);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_site(const struct stm_site *site, void *arg)
{
	char line[512];

	(void)arg;
	if (stm_site_format(site, line, sizeof(line)) > 0)
		printf("#   %s\n", line);
}

static bool failed;
static bool per_cpu; /* -c: ops per CPU-second instead of per second */
static bool verbose; /* -v: print the STM's per-site counters at the end */

/* Runs one cell; returns ops/s and sets *abort_rate for the STM. */
static double run_cell(const struct bench_workload *wl, enum scheme scheme,
		       int nthreads, double seconds, double *abort_rate)
{
	struct cell c = { .wl = wl, .scheme = scheme };
	struct runner rn[16];
	pthread_rwlockattr_t attr;
	struct stm_totals before = { 0 }, after = { 0 };
	uint64_t ops = 0;
	int64_t delta = 0;
	double t0, t1, cpu = 0;
	struct timespec ts = {
		.tv_sec = (time_t)seconds,
		.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)
	};

	c.state = wl->create();
	if (c.state == NULL) {
		perror("bench_stm: cannot create the workload state");
		exit(1);
	}
	pthread_rwlockattr_init(&attr);
	if (scheme == S_RWLOCK_W)
		pthread_rwlockattr_setkind_np(
		    &attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&c.rwlock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&c.mutex, NULL);
	pthread_barrier_init(&c.start, NULL, (unsigned)nthreads + 1);
	stm_sites_foreach(totals_cb, &before);
	for (int i = 0; i < nthreads; i++) {
		rn[i] = (struct runner){ .cell = &c,
					 .t.rng = 0x9E3779B97F4A7C15ULL *
						  (uint64_t)(i + 1) };
		if (pthread_create(&rn[i].th, NULL, runner_main, &rn[i]) != 0) {
			perror("bench_stm: cannot create a thread");
			exit(1);
		}
	}
	pthread_barrier_wait(&c.start);
	t0 = now();
	nanosleep(&ts, NULL);
	atomic_store(&c.stop, 1);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(rn[i].th, NULL);
		ops += rn[i].t.ops;
		delta += rn[i].t.delta;
		cpu += rn[i].t.cpu;
	}
	t1 = now();
	stm_sites_foreach(totals_cb, &after);
	*abort_rate = after.commits > before.commits
			  ? (double)(after.aborts - before.aborts) /
				(double)(after.commits - before.commits)
			  : 0;
	stm_quiesce();
	if (!wl->check(c.state, delta)) {
		fprintf(stderr,
			"bench_stm: %s/%s/%d: consistency check failed\n",
			wl->name, scheme_names[scheme], nthreads);
		failed = true;
	}
	wl->destroy(c.state);
	pthread_barrier_destroy(&c.start);
	pthread_mutex_destroy(&c.mutex);
	pthread_rwlock_destroy(&c.rwlock);
	return (double)ops / (per_cpu ? cpu : t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_stm [-c] [-d SECONDS] [-q] [-r REPEATS] [-w "
		"WORKLOAD] "
		"[-s SCHEME] [-t THREADS] [-v]\n"
		"  -d  seconds per cell (default 0.5)\n"
		"  -q  quick run: 0.1 s per cell, one repeat\n"
		"  -r  repeats per cell; the median is reported (default 1)\n"
		"  -w  run only workloads whose name starts with WORKLOAD\n"
		"  -s  run only SCHEME (stm, rwlock, rwlock-w, mutex), e.g. "
		"to profile it\n"
		"  -t  run only with THREADS threads (1 to 16)\n"
		"  -c  report ops per CPU-second of the benchmark threads\n"
		"      (steadier on a loaded machine) instead of ops/s\n"
		"  -v  print the STM's per-call-site counters at the end\n");
}

int main(int argc, char **argv)
{
	static const int thread_counts[] = { 1, 2, 4 };
	double seconds = 0.5;
	int repeats = 1, opt, only_threads = 0, only_scheme = -1;
	const char *only = NULL;

	while ((opt = getopt(argc, argv, "cd:qr:w:s:t:vh")) != -1) {
		switch (opt) {
		case 'c':
			per_cpu = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'd':
			seconds = strtod(optarg, NULL);
			break;
		case 'q':
			seconds = 0.1;
			repeats = 1;
			break;
		case 'r':
			repeats = atoi(optarg);
			break;
		case 'w':
			only = optarg;
			break;
		case 's':
			for (int i = 0; i < S_COUNT; i++)
				if (strcmp(optarg, scheme_names[i]) == 0)
					only_scheme = i;
			if (only_scheme < 0) {
				usage();
				return 2;
			}
			break;
		case 't':
			only_threads = atoi(optarg);
			if (only_threads < 1 || only_threads > 16) {
				usage();
				return 2;
			}
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (seconds <= 0 || repeats < 1 || repeats > 15) {
		usage();
		return 2;
	}
	if (stm_init() != 0) {
		fprintf(stderr, "bench_stm: cannot initialise the stm\n");
		return 1;
	}
	printf("# %s, %.2f s per cell, median of %d\n",
	       per_cpu ? "ops per CPU-second" : "ops per second", seconds,
	       repeats);
	printf("%-11s %3s %12s %12s %12s %12s %9s %8s %8s\n", "workload", "thr",
	       "stm", "rwlock", "rwlock-w", "mutex", "abort/cmt", "stm/rwl",
	       "stm/mtx");
	for (size_t w = 0; w < NWORKLOADS; w++) {
		const struct bench_workload *wl = &workloads[w];

		if (only && strncmp(wl->name, only, strlen(only)) != 0)
			continue;
		for (size_t k = 0; k < sizeof(thread_counts) / sizeof(int);
		     k++) {
			int nthreads =
			    only_threads ? only_threads : thread_counts[k];
			double ops[S_COUNT] = { 0 }, rate = 0;

			if (only_threads && k > 0)
				break;
			double runs[S_COUNT][15], rates[15] = { 0 };

			/* Interleave the schemes so load drift hits all. */
			for (int i = 0; i < repeats; i++) {
				for (int s = 0; s < S_COUNT; s++) {
					double r = 0;

					if (only_scheme >= 0 &&
					    s != only_scheme) {
						runs[s][i] = 0;
						continue;
					}
					runs[s][i] =
					    run_cell(wl, (enum scheme)s,
						     nthreads, seconds, &r);
					if (s == S_STM)
						rates[i] = r;
				}
			}
			for (int s = 0; s < S_COUNT; s++) {
				qsort(runs[s], (size_t)repeats, sizeof(double),
				      cmp_double);
				ops[s] = runs[s][repeats / 2];
			}
			qsort(rates, (size_t)repeats, sizeof(double),
			      cmp_double);
			rate = rates[repeats / 2];
			printf("%-11s %3d %12.0f %12.0f %12.0f %12.0f %9.4f "
			       "%8.2f %8.2f\n",
			       wl->name, nthreads, ops[S_STM], ops[S_RWLOCK],
			       ops[S_RWLOCK_W], ops[S_MUTEX], rate,
			       ops[S_STM] / ops[S_RWLOCK],
			       ops[S_STM] / ops[S_MUTEX]);
			fflush(stdout);
		}
	}
	if (verbose) {
		printf("# stm call sites, all cells:\n");
		stm_sites_foreach(print_site, NULL);
	}
	return failed ? 1 : 0;
}
