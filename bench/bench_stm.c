/*
 * bench_stm.c: the STM against one global lock, on the same data.
 *
 * Schemes: the STM; one pthread_rwlock_t, reader-preferring (the glibc
 * default) and writer-preferring; one pthread_mutex_t.  Lock schemes run the
 * same data structure with plain (relaxed) accesses inside the lock.
 * Workloads: an integer hash set (4096 keys, 0/20/50% updates), a bank
 * (1024 accounts, 80% transfers, 20% read-all audits), fs-meta (a model of
 * the daemon's metadata: inode table and directory hashes, 92% read-only)
 * and node-table (the daemon's real node table, src/node.c, under
 * lookup+forget; STM only, with a serialised baseline row).  Every cell
 * checks its structure afterwards (set size, bank total, entry and inode
 * counts, node count) and the program exits non-zero if any check fails.
 *
 * Usage: bench_stm [-c] [-d SECONDS] [-q] [-r REPEATS] [-w WORKLOAD]
 *                  [-s SCHEME] [-t THREADS] [-v]
 *
 * To add a workload, implement struct bench_workload and append it to
 * `workloads[]` below: see "WORKLOAD HOOK".
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node.h"
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
	unsigned id;   /* 0 to threads - 1 */
	uint64_t seq;  /* workload-defined, e.g. to make names unique */
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
 * outside any lock; its low bits chose the kind.  check returns false if
 * the state is inconsistent.  schemes is the set of schemes (1u << S_*)
 * the workload runs, 0 for all; a scheme it does not run needs no op.
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
	unsigned schemes;
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

/* --- fs-meta: a model of the daemon's metadata ----------------------------- */

/*
 * An inode table and FS_DIRS directories, each an entry hash of
 * FS_DIR_BUCKETS chains, holding FS_FILES entries each at the start.  Every
 * tvar holds a pointer to an immutable record: an inode slot points to its
 * attributes (struct fs_attr), replaced copy-on-write; a chain links entries
 * (struct fs_dentry) whose only mutable field is their next link.  A
 * directory's attributes count its entries (size), so every update of a
 * directory rewrites its attribute record too, as a real one changes mtime.
 *
 * Operations, as the kernel sends them:
 *   90% lookup+getattr: find name in its directory, read the inode's record;
 *    5% create+unlink of a temporary name (two requests, two transactions);
 *    3% rename of a file to another directory;
 *    2% readdir: copy every entry of a directory into a reply buffer.
 * The first and last are read-only (STM_RO, or the read lock).
 *
 * The lock schemes run the same functions with plain accesses: struct
 * fs_ctx carries the transaction, or NULL under a lock, and FS_LOADP,
 * fs_store, fs_new and fs_free pick the access.  Under the lock replaced
 * records are freed at once (no reader can hold them); the STM retires them.
 */
#define FS_DIRS	       16
#define FS_FILES       100
#define FS_NAMES       (FS_DIRS * FS_FILES)
#define FS_DIR_BUCKETS 64
#define FS_INODES      4096
#define FS_NAME_LEN    24
#define FS_READDIR_BUF 8192

/* An inode's attributes; immutable once published. */
struct fs_attr {
	uint64_t ino;
	uint32_t mode, nlink, uid, gid;
	uint64_t size; /* a directory: its number of entries */
	uint64_t mtime, ctime;
};

/* A directory entry; immutable once published except next. */
struct fs_dentry {
	struct stm_tvar next;
	uint64_t ino;
	uint32_t hash;
	uint32_t type;
	char name[FS_NAME_LEN];
};

struct fs_dir {
	uint64_t ino; /* immutable */
	struct stm_tvar bucket[FS_DIR_BUCKETS];
};

struct fs {
	struct stm_tvar inode[FS_INODES]; /* ino - 1: struct fs_attr * or 0 */
	struct fs_dir dir[FS_DIRS];
	/*
	 * The directory that holds "f<j>", as the kernel's dcache knows a
	 * dentry's parent.  A hint (relaxed atomics, set after a rename
	 * commits): a stale one makes a lookup miss, or a rename do nothing.
	 */
	_Atomic uint8_t where[FS_NAMES];
	char names[FS_NAMES][FS_NAME_LEN]; /* "f<j>"; immutable */
};

/* One operation's arguments and results; tx is NULL under a lock. */
struct fs_ctx {
	struct stm_tx *tx;
	struct fs *fs;
	const char *name;
	uint32_t hash;
	unsigned d, to; /* directory, rename target */
	unsigned start; /* inode slot the allocator probes first */
	uint64_t now;
	bool done, broken;
	unsigned count;
	uint64_t dsize;
	struct fs_attr st;
	char *buf; /* readdir's reply, FS_READDIR_BUF bytes */
};

#define FS_LOADP(c, tv, outp)                                                  \
	do {                                                                   \
		if ((c)->tx != NULL)                                           \
			STM_LOADP((c)->tx, (tv), (outp));                      \
		else                                                           \
			*(outp) = (void *)plain_get(tv);                       \
	} while (0)

static void fs_store(struct fs_ctx *c, struct stm_tvar *tv, const void *p)
{
	if (c->tx != NULL)
		stm_write(c->tx, tv, (uintptr_t)p);
	else
		plain_set(tv, (uintptr_t)p);
}

static void *fs_new(struct fs_ctx *c, size_t size)
{
	void *p;

	if (c->tx != NULL)
		return stm_alloc(c->tx, size);
	p = calloc(1, size);
	if (p == NULL)
		abort();
	return p;
}

static void fs_free(struct fs_ctx *c, void *p)
{
	if (c->tx != NULL)
		stm_retire(c->tx, p, NULL);
	else
		free(p);
}

static uint32_t fs_hash(const char *name)
{
	uint32_t h = 2166136261u;

	while (*name != '\0')
		h = (h ^ (uint8_t)*name++) * 16777619u;
	return h;
}

static struct stm_tvar *fs_bucket(struct fs_dir *dir, uint32_t hash)
{
	return &dir->bucket[hash % FS_DIR_BUCKETS];
}

/* Finds c->name in directory d: *linkp is the tvar that points to *ep. */
static int fs_find(struct fs_ctx *c, unsigned d, struct stm_tvar **linkp,
		   struct fs_dentry **ep)
{
	struct stm_tvar *link = fs_bucket(&c->fs->dir[d], c->hash);
	struct fs_dentry *e;

	FS_LOADP(c, link, &e);
	while (e != NULL &&
	       (e->hash != c->hash || strcmp(e->name, c->name) != 0)) {
		link = &e->next;
		FS_LOADP(c, link, &e);
	}
	*linkp = link;
	*ep = e;
	return 0;
}

/* Replaces inode ino's record by a copy with size + dsize and new times. */
static int fs_touch(struct fs_ctx *c, uint64_t ino, int dsize)
{
	struct stm_tvar *slot = &c->fs->inode[ino - 1];
	struct fs_attr *old, *a;

	FS_LOADP(c, slot, &old);
	if (old == NULL) {
		c->broken = true;
		return 0;
	}
	a = fs_new(c, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	*a = *old;
	a->size += (uint64_t)(int64_t)dsize;
	a->mtime = a->ctime = c->now;
	fs_store(c, slot, a);
	fs_free(c, old);
	return 0;
}

static int fs_lookup_body(struct fs_ctx *c)
{
	struct stm_tvar *link;
	struct fs_dentry *e;
	struct fs_attr *a;
	int ret;

	c->done = c->broken = false;
	ret = fs_find(c, c->d, &link, &e);
	if (ret != 0 || e == NULL)
		return ret;
	FS_LOADP(c, &c->fs->inode[e->ino - 1], &a);
	if (a == NULL || a->ino != e->ino) {
		c->broken = true;
		return 0;
	}
	c->st = *a; /* the getattr reply */
	c->done = true;
	return 0;
}

/* Fills c->buf with FUSE-style dirents; counts entries even past its end. */
static int fs_readdir_body(struct fs_ctx *c)
{
	struct fs_dir *dir = &c->fs->dir[c->d];
	struct fs_attr *da;
	size_t off = 0;

	c->count = 0;
	FS_LOADP(c, &c->fs->inode[dir->ino - 1], &da);
	c->dsize = da->size;
	for (unsigned b = 0; b < FS_DIR_BUCKETS; b++) {
		struct fs_dentry *e;

		FS_LOADP(c, &dir->bucket[b], &e);
		while (e != NULL) {
			size_t len = strlen(e->name);
			size_t rec = (24 + len + 7) & ~(size_t)7;

			if (off + rec <= FS_READDIR_BUF) {
				memcpy(c->buf + off, &e->ino, 8);
				memcpy(c->buf + off + 8, &off, 8);
				memcpy(c->buf + off + 16, &len, 4);
				memcpy(c->buf + off + 20, &e->type, 4);
				memcpy(c->buf + off + 24, e->name, len);
				off += rec;
			}
			c->count++;
			FS_LOADP(c, &e->next, &e);
		}
	}
	return 0;
}

/* Takes the first free inode slot from c->start on; -ENOSPC if none. */
static int fs_ialloc(struct fs_ctx *c, uint64_t *ino)
{
	for (unsigned i = 0; i < FS_INODES; i++) {
		unsigned s = (c->start + i) % FS_INODES;
		struct fs_attr *a;

		FS_LOADP(c, &c->fs->inode[s], &a);
		if (a == NULL) {
			*ino = s + 1;
			return 0;
		}
	}
	return -ENOSPC;
}

static int fs_create_body(struct fs_ctx *c)
{
	struct stm_tvar *link, *head = fs_bucket(&c->fs->dir[c->d], c->hash);
	struct fs_dentry *e, *first;
	struct fs_attr *a;
	uint64_t ino;
	int ret;

	c->done = c->broken = false;
	ret = fs_find(c, c->d, &link, &e);
	if (ret != 0 || e != NULL)
		return ret; /* EEXIST */
	ret = fs_ialloc(c, &ino);
	if (ret != 0)
		return ret;
	a = fs_new(c, sizeof(*a));
	e = fs_new(c, sizeof(*e));
	if (a == NULL || e == NULL)
		return -ENOMEM;
	*a = (struct fs_attr){ .ino = ino,
			       .mode = S_IFREG | 0644,
			       .nlink = 1,
			       .mtime = c->now,
			       .ctime = c->now };
	e->ino = ino;
	e->hash = c->hash;
	e->type = S_IFREG;
	snprintf(e->name, sizeof(e->name), "%s", c->name);
	FS_LOADP(c, head, &first);
	stm_tvar_init(&e->next, (uintptr_t)first);
	fs_store(c, &c->fs->inode[ino - 1], a);
	fs_store(c, head, e);
	ret = fs_touch(c, c->fs->dir[c->d].ino, 1);
	c->done = ret == 0;
	return ret;
}

static int fs_unlink_body(struct fs_ctx *c)
{
	struct stm_tvar *link, *slot;
	struct fs_dentry *e, *next;
	struct fs_attr *a;
	int ret;

	c->done = c->broken = false;
	ret = fs_find(c, c->d, &link, &e);
	if (ret != 0 || e == NULL)
		return ret; /* ENOENT */
	slot = &c->fs->inode[e->ino - 1];
	FS_LOADP(c, slot, &a);
	FS_LOADP(c, &e->next, &next);
	if (a == NULL) {
		c->broken = true;
		return 0;
	}
	fs_store(c, link, next);
	fs_store(c, slot, NULL);
	fs_free(c, e);
	fs_free(c, a);
	ret = fs_touch(c, c->fs->dir[c->d].ino, -1);
	c->done = ret == 0;
	return ret;
}

/* Moves c->name from directory d to directory to, keeping its inode. */
static int fs_rename_body(struct fs_ctx *c)
{
	struct stm_tvar *link, *tlink, *head;
	struct fs_dentry *e, *t, *next, *first, *n;
	int ret;

	c->done = c->broken = false;
	ret = fs_find(c, c->d, &link, &e);
	if (ret != 0 || e == NULL)
		return ret; /* ENOENT: the hint was stale */
	ret = fs_find(c, c->to, &tlink, &t);
	if (ret != 0 || t != NULL)
		return ret; /* EEXIST: names are unique, so never */
	FS_LOADP(c, &e->next, &next);
	n = fs_new(c, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->ino = e->ino;
	n->hash = e->hash;
	n->type = e->type;
	memcpy(n->name, e->name, sizeof(n->name));
	head = fs_bucket(&c->fs->dir[c->to], c->hash);
	FS_LOADP(c, head, &first);
	stm_tvar_init(&n->next, (uintptr_t)first);
	fs_store(c, link, next);
	fs_store(c, head, n);
	fs_free(c, e);
	ret = fs_touch(c, n->ino, 0);
	if (ret == 0)
		ret = fs_touch(c, c->fs->dir[c->d].ino, -1);
	if (ret == 0)
		ret = fs_touch(c, c->fs->dir[c->to].ino, 1);
	c->done = ret == 0;
	return ret;
}

static int fs_lookup_tx(struct stm_tx *tx, void *arg)
{
	struct fs_ctx *c = arg;

	c->tx = tx;
	return fs_lookup_body(c);
}

static int fs_readdir_tx(struct stm_tx *tx, void *arg)
{
	struct fs_ctx *c = arg;

	c->tx = tx;
	return fs_readdir_body(c);
}

static int fs_create_tx(struct stm_tx *tx, void *arg)
{
	struct fs_ctx *c = arg;

	c->tx = tx;
	return fs_create_body(c);
}

static int fs_unlink_tx(struct stm_tx *tx, void *arg)
{
	struct fs_ctx *c = arg;

	c->tx = tx;
	return fs_unlink_body(c);
}

static int fs_rename_tx(struct stm_tx *tx, void *arg)
{
	struct fs_ctx *c = arg;

	c->tx = tx;
	return fs_rename_body(c);
}

static void *fs_create_state(void)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	struct fs_ctx *c = calloc(1, sizeof(*c));

	if (fs == NULL || c == NULL) {
		free(fs);
		free(c);
		return NULL;
	}
	for (unsigned i = 0; i < FS_INODES; i++)
		stm_tvar_init(&fs->inode[i], 0);
	c->fs = fs;
	for (unsigned d = 0; d < FS_DIRS; d++) {
		struct fs_dir *dir = &fs->dir[d];
		struct fs_attr *a = calloc(1, sizeof(*a));

		if (a == NULL)
			abort();
		for (unsigned b = 0; b < FS_DIR_BUCKETS; b++)
			stm_tvar_init(&dir->bucket[b], 0);
		dir->ino = d + 1;
		*a = (struct fs_attr){ .ino = dir->ino,
				       .mode = S_IFDIR | 0755,
				       .nlink = 2 };
		plain_set(&fs->inode[dir->ino - 1], (uintptr_t)a);
	}
	for (unsigned j = 0; j < FS_NAMES; j++) {
		snprintf(fs->names[j], FS_NAME_LEN, "f%u", j);
		atomic_init(&fs->where[j], (uint8_t)(j / FS_FILES));
		c->name = fs->names[j];
		c->hash = fs_hash(c->name);
		c->d = j / FS_FILES;
		/* Every other slot, so that the allocator's probes are short. */
		c->start = 2 * (FS_DIRS + j);
		if (fs_create_body(c) != 0 || !c->done)
			abort();
	}
	free(c);
	return fs;
}

static void fs_destroy(void *state)
{
	struct fs *fs = state;

	for (unsigned d = 0; d < FS_DIRS; d++) {
		for (unsigned b = 0; b < FS_DIR_BUCKETS; b++) {
			struct fs_dentry *e = (struct fs_dentry *)plain_get(
			    &fs->dir[d].bucket[b]);

			while (e != NULL) {
				struct fs_dentry *next =
				    (struct fs_dentry *)plain_get(&e->next);

				free(e);
				e = next;
			}
		}
	}
	for (unsigned i = 0; i < FS_INODES; i++)
		free((void *)plain_get(&fs->inode[i]));
	free(fs);
}

/*
 * Checks the structure: every entry's inode exists and is of the entry's
 * type, every directory's size is its entry count, the entries number
 * FS_NAMES + creates - unlinks, and no inode is leaked.
 */
static bool fs_check(void *state, int64_t delta)
{
	struct fs *fs = state;
	int64_t entries = 0, inodes = 0;

	for (unsigned d = 0; d < FS_DIRS; d++) {
		struct fs_dir *dir = &fs->dir[d];
		const struct fs_attr *da =
		    (const struct fs_attr *)plain_get(&fs->inode[dir->ino - 1]);
		uint64_t n = 0;

		for (unsigned b = 0; b < FS_DIR_BUCKETS; b++) {
			struct fs_dentry *e =
			    (struct fs_dentry *)plain_get(&dir->bucket[b]);

			for (; e != NULL;
			     e = (struct fs_dentry *)plain_get(&e->next)) {
				const struct fs_attr *a =
				    (const struct fs_attr *)plain_get(
					&fs->inode[e->ino - 1]);

				if (a == NULL || a->ino != e->ino ||
				    (a->mode & S_IFMT) != e->type ||
				    e->hash % FS_DIR_BUCKETS != b) {
					fprintf(stderr,
						"bench_stm: fs-meta: entry %s "
						"has no inode %llu\n",
						e->name,
						(unsigned long long)e->ino);
					return false;
				}
				n++;
			}
		}
		if (da == NULL || da->size != n) {
			fprintf(stderr,
				"bench_stm: fs-meta: directory %u holds %llu "
				"entries, its size says %llu\n",
				d, (unsigned long long)n,
				da ? (unsigned long long)da->size : 0ULL);
			return false;
		}
		entries += (int64_t)n;
	}
	for (unsigned i = 0; i < FS_INODES; i++)
		inodes += plain_get(&fs->inode[i]) != 0;
	if (entries != FS_NAMES + delta || inodes != FS_DIRS + entries) {
		fprintf(stderr,
			"bench_stm: fs-meta: %lld entries (expected %lld), "
			"%lld inodes\n",
			(long long)entries, (long long)(FS_NAMES + delta),
			(long long)inodes);
		return false;
	}
	return true;
}

/*
 * One operation.  kind already splits reads (92%) from updates (8%); the
 * bits of r above those the driver used pick the operation and its
 * arguments.  Under a lock the driver holds the lock around the whole call,
 * so the create+unlink pair is one critical section there (a slight
 * advantage to the locks: the STM commits it as two transactions).
 */
static void fs_op(struct fs *fs, struct bench_thread *t, enum op_kind kind,
		  uint64_t r, bool stm)
{
	char tmp[FS_NAME_LEN], buf[FS_READDIR_BUF];
	struct fs_ctx c = { .fs = fs, .now = r, .buf = buf };
	unsigned j = (unsigned)((r >> 16) % FS_NAMES);
	int ret = 0;

	c.name = fs->names[j];
	c.d = atomic_load_explicit(&fs->where[j], memory_order_relaxed);
	if (kind == OP_READ && (r >> 8) % 92 < 2) {
		c.d = (unsigned)(r >> 40) % FS_DIRS;
		ret = stm ? stm_atomically(fs_readdir_tx, &c, STM_RO)
			  : fs_readdir_body(&c);
		if (ret != 0 || c.count != c.dsize) {
			fprintf(stderr,
				"bench_stm: fs-meta: readdir saw %u entries, "
				"size %llu\n",
				c.count, (unsigned long long)c.dsize);
			abort();
		}
		return;
	}
	if (kind == OP_READ) {
		c.hash = fs_hash(c.name);
		ret = stm ? stm_atomically(fs_lookup_tx, &c, STM_RO)
			  : fs_lookup_body(&c);
	} else if ((r >> 8) % 8 < 5) {
		snprintf(tmp, sizeof(tmp), "tmp.%u.%u", t->id,
			 (unsigned)(t->seq++ % 64));
		c.name = tmp;
		c.hash = fs_hash(tmp);
		c.d = (unsigned)(r >> 40) % FS_DIRS;
		c.start = (unsigned)(r >> 28) % FS_INODES;
		ret = stm ? stm_atomically(fs_create_tx, &c, 0)
			  : fs_create_body(&c);
		t->delta += c.done;
		if (ret == 0 && !c.broken)
			ret = stm ? stm_atomically(fs_unlink_tx, &c, 0)
				  : fs_unlink_body(&c);
		t->delta -= c.done;
	} else {
		c.hash = fs_hash(c.name);
		c.to =
		    (c.d + 1 + (unsigned)(r >> 40) % (FS_DIRS - 1)) % FS_DIRS;
		ret = stm ? stm_atomically(fs_rename_tx, &c, 0)
			  : fs_rename_body(&c);
		if (ret == 0 && c.done)
			atomic_store_explicit(&fs->where[j], (uint8_t)c.to,
					      memory_order_relaxed);
	}
	if (ret != 0 || c.broken) {
		fprintf(stderr, "bench_stm: fs-meta: %s: %s\n", c.name,
			ret != 0 ? strerror(-ret) : "entry without inode");
		abort();
	}
}

static void fs_op_stm(void *state, struct bench_thread *t, enum op_kind kind,
		      uint64_t r)
{
	fs_op(state, t, kind, r, true);
}

static void fs_op_locked(void *state, struct bench_thread *t, enum op_kind kind,
			 uint64_t r)
{
	fs_op(state, t, kind, r, false);
}

/* --- node-table: the daemon's real node table ------------------------------ */

/*
 * src/node.c driven as the kernel drives it: each operation is a LOOKUP of a
 * name in one directory (statx, node_ref, on a miss openat O_PATH and
 * node_ref_fd: the code path of fs_ops.c's lookup_at) followed by a FORGET
 * of the reference.  NT_FILES files live in a fresh directory under /tmp;
 * half of them are held with one reference for the whole run, as the
 * kernel's dentry cache holds hot names, so half the lookups hit a node and
 * half build one and retire it again.
 *
 * The table is guarded by the STM, so there is no lock variant.  The row
 * "node-table (serialised)" runs the same calls with the driver's one global
 * mutex around each lookup+forget pair: it measures what serialising the
 * table's users would cost, not an alternative implementation.
 */
#define NT_FILES 512
#define NT_HELD	 (NT_FILES / 2)

struct nt {
	struct node_table *table;
	int dirfd;
	char dir[32];
	char names[NT_FILES][8];
};

/* The daemon's lookup: returns 0 and a referenced node, or -errno. */
static int nt_lookup(struct nt *nt, const char *name, struct node **out)
{
	struct stat st;

	return node_lookup(nt->table, nt->dirfd, name, &st, out);
}

static void nt_remove_files(struct nt *nt, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		unlinkat(nt->dirfd, nt->names[i], 0);
	close(nt->dirfd);
	rmdir(nt->dir);
}

static void *nt_create(void)
{
	struct nt *nt = calloc(1, sizeof(*nt));
	unsigned made = 0;
	int fd, ret, saved;

	if (nt == NULL)
		return NULL;
	snprintf(nt->dir, sizeof(nt->dir), "/tmp/bench_stm.XXXXXX");
	if (mkdtemp(nt->dir) == NULL)
		goto out_free;
	nt->dirfd = open(nt->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (nt->dirfd < 0) {
		saved = errno;
		rmdir(nt->dir);
		errno = saved;
		goto out_free;
	}
	for (; made < NT_FILES; made++) {
		snprintf(nt->names[made], sizeof(nt->names[made]), "f%u", made);
		fd = openat(nt->dirfd, nt->names[made],
			    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			goto out_remove_files;
		close(fd);
	}
	fd = fcntl(nt->dirfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		goto out_remove_files;
	ret = node_table_new(fd, 1024, &nt->table);
	if (ret < 0) {
		close(fd);
		errno = -ret;
		goto out_remove_files;
	}
	for (unsigned i = 0; i < NT_HELD; i++) {
		struct node *n;

		ret = nt_lookup(nt, nt->names[2 * i], &n);
		if (ret < 0) {
			node_table_free(nt->table);
			errno = -ret;
			goto out_remove_files;
		}
	}
	return nt;

out_remove_files:
	saved = errno;
	nt_remove_files(nt, made);
	errno = saved;
out_free:
	free(nt);
	return NULL;
}

static void nt_destroy(void *state)
{
	struct nt *nt = state;

	node_table_free(nt->table);
	nt_remove_files(nt, NT_FILES);
	free(nt);
}

/* After stm_quiesce: only the held nodes are left. */
static bool nt_check(void *state, int64_t delta)
{
	struct nt *nt = state;

	(void)delta;
	if (node_count(nt->table) != NT_HELD ||
	    !node_table_invariants(nt->table)) {
		fprintf(stderr,
			"bench_stm: node-table: %zu nodes, expected %d\n",
			node_count(nt->table), NT_HELD);
		return false;
	}
	return true;
}

static void nt_op(void *state, struct bench_thread *t, enum op_kind kind,
		  uint64_t r)
{
	struct nt *nt = state;
	const char *name = nt->names[(r >> 16) % NT_FILES];
	struct node *n;
	int ret;

	(void)t;
	(void)kind;
	ret = nt_lookup(nt, name, &n);
	if (ret < 0) {
		fprintf(stderr,
			"bench_stm: node-table: cannot look up %s: %s\n", name,
			strerror(-ret));
		abort();
	}
	node_forget(nt->table, n, 1);
}

/* WORKLOAD HOOK: append new workloads here. */
static const struct bench_workload workloads[] = {
	{ "intset-0%", 0, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check, 0 },
	{ "intset-20%", 20, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check, 0 },
	{ "intset-50%", 50, set_create, set_destroy, set_op_stm, set_op_locked,
	  set_check, 0 },
	{ "bank-80%", 80, bank_create, bank_destroy, bank_op_stm,
	  bank_op_locked, bank_check, 0 },
	{ "fs-meta", 8, fs_create_state, fs_destroy, fs_op_stm, fs_op_locked,
	  fs_check, 0 },
	{ "node-table", 0, nt_create, nt_destroy, nt_op, NULL, nt_check,
	  1u << S_STM },
	{ "node-table (serialised)", 0, nt_create, nt_destroy, NULL, nt_op,
	  nt_check, 1u << S_MUTEX },
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
					 .t.id = (unsigned)i,
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

/* Prints v in width columns with prec decimals, or "-" if v is 0 (not run). */
static void print_cell(int width, int prec, double v)
{
	if (v == 0)
		printf(" %*s", width, "-");
	else
		printf(" %*.*f", width, prec, v);
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
	printf("%-23s %3s %12s %12s %12s %12s %9s %8s %8s\n", "workload", "thr",
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

					if ((only_scheme >= 0 &&
					     s != only_scheme) ||
					    (wl->schemes != 0 &&
					     !(wl->schemes & (1u << s)))) {
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
			printf("%-23s %3d", wl->name, nthreads);
			for (int s = 0; s < S_COUNT; s++)
				print_cell(12, 0, ops[s]);
			if (ops[S_STM] == 0)
				printf(" %9s", "-");
			else
				printf(" %9.4f", rate);
			print_cell(8, 2,
				   ops[S_RWLOCK] == 0
				       ? 0
				       : ops[S_STM] / ops[S_RWLOCK]);
			print_cell(
			    8, 2,
			    ops[S_MUTEX] == 0 ? 0 : ops[S_STM] / ops[S_MUTEX]);
			printf("\n");
			fflush(stdout);
		}
	}
	if (verbose) {
		printf("# stm call sites, all cells:\n");
		stm_sites_foreach(print_site, NULL);
	}
	return failed ? 1 : 0;
}
