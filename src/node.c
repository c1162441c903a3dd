/*
 * node.c: the node table.
 *
 * The table maps (view, dev, ino) to the node that stands for that object in
 * that view, and FUSE nodeids to nodes.  A nodeid is the node's address
 * (the root is FUSE_ROOT_ID); the kernel holds a lookup reference on every
 * nodeid it may send, so the address stays valid for as long as requests
 * can name it.
 *
 * Node life cycle:
 *
 *        node_ref_fd (miss)          node_mark_dead
 *   (none) ---------------> LIVE ----------------------> DEAD
 *                            |  node_forget (nlookup 0)   | node_forget
 *                            v                            v (nlookup 0)
 *                         RETIRED <-----------------------+
 *
 *   LIVE: in its hash chain, findable by (view, dev, ino).
 *   DEAD: unlinked from the chain (its object lost its last name), still
 *         referenced by the kernel.
 *   RETIRED: handed to stm_retire(); freed once no transaction can see it.
 *
 * Invariants:
 *  (1) At most one LIVE node exists per (view, dev, ino).
 *  (2) A LIVE node is in exactly one hash chain (in_table NODE_IN_CHAIN),
 *      a DEAD node is on the table's dead list (NODE_IN_DEAD), and a
 *      RETIRED node is on neither, so node_table_free reaches every node
 *      the kernel still holds.
 *  (3) nlookup counts the kernel's lookup references; a node is retired in
 *      the same STM transaction that brings it to zero, and never before.
 *  (4) dev, ino, type, view, generation and handle never change after the
 *      node is published, so requests read them without the STM.
 *  (5) fd, pins and the LRU links are guarded by the node's fd shard mutex;
 *      a descriptor with pins > 0 is never closed; nfds counts the cached
 *      descriptors of all shards.
 *  (6) No I/O happens inside an STM body: handles and descriptors are made
 *      before the transaction that publishes a node, and a node that loses
 *      the race to publish is freed privately.
 */
#include "config.h"

#include "node.h"

#include "handle.h"
#include "log.h"
#include "stm.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define NODE_BUCKETS   (1u << 18)
#define NODE_FD_SHARDS 64

struct fd_shard {
	pthread_mutex_t lock;
	struct node *lru_head; /* most recently used; guarded by lock */
	struct node *lru_tail;
	size_t count; /* cached descriptors in this shard; guarded by lock */
} __attribute__((aligned(64)));

/* Where a node is linked (its in_table tvar), see invariant (2). */
enum { NODE_UNLINKED = 0, NODE_IN_CHAIN = 1, NODE_IN_DEAD = 2 };

struct node {
	/* Immutable after publication, see invariant (4). */
	struct node_table *table;
	uint64_t view;
	dev_t dev;
	ino_t ino;
	mode_t type;
	uint64_t birth; /* see struct node_key */
	uint64_t generation;
	struct handle *handle; /* NULL: fd is pinned for the node's life */

	/* Guarded by the STM. */
	struct stm_tvar nlookup;
	struct stm_tvar next; /* hash chain */
	struct stm_tvar in_table;
	struct stm_tvar
	    name; /* struct node_name *, or NULL; see node_set_name */

	/* Guarded by the fd shard's lock, see invariant (5). */
	int fd;
	unsigned pins;
	bool permanent; /* the descriptor is never evicted */
	struct node *lru_prev, *lru_next;
};

/*
 * The name a regular file of the base view was last looked up by: its
 * parent's handle (NULL for the root) and the name.  Immutable; replaced
 * copy-on-write and retired through the STM.
 */
struct node_name {
	struct handle *parent;
	char name[];
};

static void node_name_free(void *p)
{
	struct node_name *nn = p;

	if (nn != NULL)
		handle_free(nn->parent);
	free(nn);
}

struct node_table {
	struct stm_tvar *buckets; /* chain heads; guarded by the STM */
	struct stm_tvar dead;	  /* DEAD nodes, linked by next; the STM */
	struct node root;
	_Atomic uint64_t next_generation;
	_Atomic size_t nnodes;
	_Atomic size_t nfds;
	size_t shard_cap; /* immutable */
	struct fd_shard shards[NODE_FD_SHARDS];
};

static size_t bucket_of(uint64_t view, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull;
	h ^= ((uint64_t)dev + view * 0x632be59bd9b4e019ull) *
	     0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return (size_t)(h & (NODE_BUCKETS - 1));
}

static struct fd_shard *shard_of(struct node_table *t, const struct node *n)
{
	uintptr_t p = (uintptr_t)n;
	return &t->shards[(p >> 6 ^ p >> 12) % NODE_FD_SHARDS];
}

/* LRU list helpers; the shard lock is held. */
static void lru_unlink(struct fd_shard *s, struct node *n)
{
	if (n->lru_prev != NULL)
		n->lru_prev->lru_next = n->lru_next;
	else
		s->lru_head = n->lru_next;
	if (n->lru_next != NULL)
		n->lru_next->lru_prev = n->lru_prev;
	else
		s->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
}

static void lru_push_head(struct fd_shard *s, struct node *n)
{
	n->lru_prev = NULL;
	n->lru_next = s->lru_head;
	if (s->lru_head != NULL)
		s->lru_head->lru_prev = n;
	s->lru_head = n;
	if (s->lru_tail == NULL)
		s->lru_tail = n;
}

/* How many descriptors one eviction pass may close. */
#define EVICT_BATCH 8

/*
 * Takes unpinned descriptors off the cold end of s while it is over its
 * budget, at most EVICT_BATCH; the caller closes them after unlocking.
 * Returns how many it took.  The shard lock is held.
 */
static int shard_evict(struct node_table *t, struct fd_shard *s,
		       int victims[EVICT_BATCH])
{
	int n = 0;

	for (struct node *v = s->lru_tail;
	     v != NULL && s->count > t->shard_cap && n < EVICT_BATCH;) {
		struct node *prev = v->lru_prev;
		if (v->pins == 0) {
			victims[n++] = v->fd;
			lru_unlink(s, v);
			v->fd = -1;
			s->count--;
			atomic_fetch_sub(&t->nfds, 1);
		}
		v = prev;
	}
	return n;
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void node_init(struct node_table *t, struct node *n, uint64_t view,
		      const struct node_key *key)
{
	n->table = t;
	n->view = view;
	n->dev = key->dev;
	n->ino = key->ino;
	n->type = key->type;
	n->birth = key->birth;
	n->generation = atomic_fetch_add(&t->next_generation, 1);
	n->handle = NULL;
	stm_tvar_init(&n->nlookup, 0);
	stm_tvar_init(&n->next, 0);
	stm_tvar_init(&n->in_table, 0);
	stm_tvar_init(&n->name, 0);
	n->fd = -1;
	n->pins = 0;
	n->permanent = false;
	n->lru_prev = n->lru_next = NULL;
}

/* Drops the node's cached descriptor; the node is unreachable. */
static void node_release_fd(struct node *n)
{
	struct node_table *t = n->table;
	struct fd_shard *s = shard_of(t, n);
	int fd;

	pthread_mutex_lock(&s->lock);
	fd = n->fd;
	if (fd >= 0) {
		assert(n->pins == 0);
		if (!n->permanent)
			lru_unlink(s, n);
		s->count--;
		n->fd = -1;
		atomic_fetch_sub(&t->nfds, 1);
	}
	pthread_mutex_unlock(&s->lock);
	if (fd >= 0)
		close(fd);
}

/* Frees a node nobody can reach any more (the STM retire destructor). */
static void node_free(void *p)
{
	struct node *n = p;

	node_release_fd(n);
	node_name_free((struct node_name *)stm_peek(&n->name));
	handle_free(n->handle);
	atomic_fetch_sub(&n->table->nnodes, 1);
	free(n);
}

int node_table_new(int root_fd, size_t fd_cache_max, struct node_table **out)
{
	struct node_table *t;
	struct stat st;
	int ret;

	ret = stm_init();
	if (ret < 0)
		return ret;
	if (fstat(root_fd, &st) < 0)
		return -errno;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->buckets = calloc(NODE_BUCKETS, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		ret = -ENOMEM;
		goto out_free_table;
	}
	for (size_t i = 0; i < NODE_BUCKETS; i++)
		stm_tvar_init(&t->buckets[i], 0);
	stm_tvar_init(&t->dead, 0);
	for (size_t i = 0; i < NODE_FD_SHARDS; i++)
		pthread_mutex_init(&t->shards[i].lock, NULL);
	if (fd_cache_max < NODE_FD_SHARDS)
		fd_cache_max = NODE_FD_SHARDS;
	t->shard_cap = fd_cache_max / NODE_FD_SHARDS;
	atomic_init(&t->next_generation, 1);

	/* The root keeps the descriptor it was opened with. */
	struct node_key rkey = {
		.dev = st.st_dev,
		.ino = st.st_ino,
		.type = S_IFDIR,
		.birth = 0,
	};
	node_init(t, &t->root, NODE_VIEW_BASE, &rkey);
	stm_tvar_init(&t->root.nlookup, 1);
	t->root.fd = root_fd;
	t->root.permanent = true;
	shard_of(t, &t->root)->count++;
	atomic_init(&t->nfds, 1);
	*out = t;
	return 0;

out_free_table:
	free(t);
	return ret;
}

void node_table_free(struct node_table *t)
{
	if (t == NULL)
		return;
	stm_quiesce();
	for (size_t i = 0; i <= NODE_BUCKETS; i++) {
		struct stm_tvar *head =
		    i < NODE_BUCKETS ? &t->buckets[i] : &t->dead;
		struct node *n = (struct node *)stm_peek(head);
		while (n != NULL) {
			struct node *next = (struct node *)stm_peek(&n->next);
			node_free(n);
			n = next;
		}
	}
	if (t->root.fd >= 0)
		close(t->root.fd);
	for (size_t i = 0; i < NODE_FD_SHARDS; i++)
		pthread_mutex_destroy(&t->shards[i].lock);
	free(t->buckets);
	free(t);
}

struct node *node_root(struct node_table *t)
{
	return &t->root;
}

uint64_t node_id(const struct node *n)
{
	if (n == &n->table->root)
		return FUSE_ROOT_ID;
	return (uint64_t)(uintptr_t)n;
}

uint64_t node_generation(const struct node *n)
{
	return n->generation;
}

mode_t node_type(const struct node *n)
{
	return n->type;
}

bool node_is_root(const struct node *n)
{
	return n == &n->table->root;
}

struct node *node_from_id(struct node_table *t, uint64_t id)
{
	if (id == FUSE_ROOT_ID)
		return &t->root;
	return (struct node *)(uintptr_t)id;
}

struct ref_args {
	struct node_table *t;
	uint64_t view;
	const struct node_key *key;
	struct node *insert; /* private node to publish on a miss, or NULL */
	struct node *found;
};

static int unlink_from_chain(struct stm_tx *tx, struct node_table *t,
			     struct node *n);

/* Returns true when n stands for the object key names (not an older one). */
static bool same_object(const struct node *n, const struct node_key *key)
{
	return n->type == key->type &&
	       (n->birth == 0 || key->birth == 0 || n->birth == key->birth);
}

/*
 * Finds the live node for the key and takes a reference; may insert.  A
 * live node with the key's number that is another object is marked dead.
 */
static int ref_body(struct stm_tx *tx, void *arg)
{
	struct ref_args *a = arg;
	const struct node_key *k = a->key;
	struct stm_tvar *head =
	    &a->t->buckets[bucket_of(a->view, k->dev, k->ino)];
	struct node *first, *n;
	uintptr_t count;
	int ret;

	a->found = NULL;
	STM_LOADP(tx, head, &first);
	for (n = first; n != NULL;) {
		if (n->ino == k->ino && n->dev == k->dev && n->view == a->view)
			break;
		STM_LOADP(tx, &n->next, &n);
	}
	if (n != NULL && same_object(n, k)) {
		STM_LOAD(tx, &n->nlookup, &count);
		stm_write(tx, &n->nlookup, count + 1);
		a->found = n;
		return 0;
	}
	if (n != NULL) {
		/* Invariant (1): the number now names another object. */
		ret = unlink_from_chain(tx, a->t, n);
		if (ret != 0)
			return ret;
		STM_LOADP(tx, head, &first);
	}
	if (a->insert == NULL)
		return 0;
	stm_write(tx, &a->insert->next, (uintptr_t)first);
	stm_write(tx, &a->insert->nlookup, 1);
	stm_write(tx, &a->insert->in_table, NODE_IN_CHAIN);
	stm_write(tx, head, (uintptr_t)a->insert);
	a->found = a->insert;
	return 0;
}

int node_stat(int dirfd, const char *name, int flags, struct stat *st,
	      struct node_key *key)
{
	struct statx x;

	if (statx(dirfd, name, flags | AT_NO_AUTOMOUNT,
		  STATX_BASIC_STATS | STATX_BTIME, &x) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	st->st_ino = x.stx_ino;
	st->st_mode = x.stx_mode;
	st->st_nlink = x.stx_nlink;
	st->st_uid = x.stx_uid;
	st->st_gid = x.stx_gid;
	st->st_rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
	st->st_size = (off_t)x.stx_size;
	st->st_blksize = (blksize_t)x.stx_blksize;
	st->st_blocks = (blkcnt_t)x.stx_blocks;
	st->st_atim.tv_sec = x.stx_atime.tv_sec;
	st->st_atim.tv_nsec = x.stx_atime.tv_nsec;
	st->st_mtim.tv_sec = x.stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
	st->st_ctim.tv_sec = x.stx_ctime.tv_sec;
	st->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
	if (key != NULL) {
		key->dev = st->st_dev;
		key->ino = st->st_ino;
		key->type = st->st_mode & S_IFMT;
		key->birth = (x.stx_mask & STATX_BTIME)
				 ? (uint64_t)x.stx_btime.tv_sec * 1000000000u +
				       x.stx_btime.tv_nsec
				 : 0;
	}
	return 0;
}

int node_ref(struct node_table *t, const struct node_key *key,
	     struct node **out)
{
	return node_ref_view(t, NODE_VIEW_BASE, key, out);
}

int node_ref_view(struct node_table *t, uint64_t view,
		  const struct node_key *key, struct node **out)
{
	struct ref_args a = {
		.t = t,
		.view = view,
		.key = key,
		.insert = NULL,
	};
	int ret;

	if (key->ino == t->root.ino && key->dev == t->root.dev) {
		/* The root is not in the hash; the kernel never forgets it,
		 * and every view shares it. */
		*out = &t->root;
		return 0;
	}
	ret = stm_atomically(ref_body, &a, 0);
	if (ret < 0)
		return ret;
	if (a.found == NULL)
		return -ENOENT;
	*out = a.found;
	return 0;
}

int node_ref_fd(struct node_table *t, int fd, const struct node_key *key,
		struct node **out)
{
	return node_ref_fd_view(t, NODE_VIEW_BASE, fd, key, out);
}

int node_ref_fd_view(struct node_table *t, uint64_t view, int fd,
		     const struct node_key *key, struct node **out)
{
	struct ref_args a = {
		.t = t,
		.view = view,
		.key = key,
	};
	struct node *n;
	int ret;

	ret = node_ref_view(t, view, key, out);
	if (ret != -ENOENT) {
		close(fd);
		return ret;
	}

	/* A miss: build the node privately (invariant 6), then publish. */
	n = malloc(sizeof(*n));
	if (n == NULL) {
		close(fd);
		return -ENOMEM;
	}
	node_init(t, n, view, key);
	ret = handle_from_fd(fd, &n->handle);
	if (ret == -EOPNOTSUPP) {
		/* No handle: the node keeps this descriptor for its life,
		 * installed before anyone can find the node. */
		n->permanent = true;
		n->fd = fd;
	} else if (ret < 0) {
		close(fd);
		free(n);
		return ret;
	}
	a.insert = n;
	atomic_fetch_add(&t->nnodes, 1);
	ret = stm_atomically(ref_body, &a, 0);
	if (ret < 0 || a.found != n) {
		/* Another thread published the same object first. */
		atomic_fetch_sub(&t->nnodes, 1);
		handle_free(n->handle);
		free(n);
		close(fd);
		if (ret < 0)
			return ret;
		*out = a.found;
		return 0;
	}

	/*
	 * Seed the descriptor cache with the fd the lookup opened, unless a
	 * thread that found the published node has opened one already.
	 */
	struct fd_shard *s = shard_of(t, n);
	int victims[EVICT_BATCH], nvictims = 0;
	pthread_mutex_lock(&s->lock);
	if (n->permanent) {
		fd = -1;
		s->count++;
		atomic_fetch_add(&t->nfds, 1);
	} else if (n->fd < 0) {
		n->fd = fd;
		fd = -1;
		s->count++;
		lru_push_head(s, n);
		atomic_fetch_add(&t->nfds, 1);
		nvictims = shard_evict(t, s, victims);
	}
	pthread_mutex_unlock(&s->lock);
	close_all(victims, nvictims);
	if (fd >= 0)
		close(fd);
	*out = n;
	return 0;
}

int node_lookup(struct node_table *t, int dirfd, const char *name,
		struct stat *st, struct node **out)
{
	struct node_key key;
	int ret;

	ret = node_stat(dirfd, name, AT_SYMLINK_NOFOLLOW, st, &key);
	if (ret < 0)
		return ret;
	return node_ref_at(t, dirfd, name, &key, st, out);
}

int node_ref_at(struct node_table *t, int dirfd, const char *name,
		const struct node_key *seen, struct stat *st, struct node **out)
{
	struct node_key key;
	int fd, ret;

	ret = node_ref(t, seen, out);
	if (ret != -ENOENT)
		return ret;
	/* A new object: stat what was opened, not the name again. */
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = node_stat(fd, "", AT_EMPTY_PATH, st, &key);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return node_ref_fd(t, fd, &key, out);
}

/*
 * Unlinks n from the list it is on (its hash chain or the dead list) and,
 * with to_dead, puts it on the dead list, where node_table_free still finds
 * it if the kernel never forgets it.
 */
static int move_node(struct stm_tx *tx, struct node_table *t, struct node *n,
		     bool to_dead)
{
	struct stm_tvar *link;
	struct node *cur, *next, *dead;
	uintptr_t where;

	STM_LOAD(tx, &n->in_table, &where);
	if (where == NODE_UNLINKED || (where == NODE_IN_DEAD && to_dead))
		return 0;
	link = where == NODE_IN_CHAIN
		   ? &t->buckets[bucket_of(n->view, n->dev, n->ino)]
		   : &t->dead;
	for (;;) {
		STM_LOADP(tx, link, &cur);
		if (cur == NULL)
			return 0; /* not reachable: invariant (2) broken */
		if (cur == n)
			break;
		link = &cur->next;
	}
	STM_LOADP(tx, &n->next, &next);
	stm_write(tx, link, (uintptr_t)next);
	if (!to_dead) {
		stm_write(tx, &n->in_table, NODE_UNLINKED);
		return 0;
	}
	STM_LOADP(tx, &t->dead, &dead);
	stm_write(tx, &n->next, (uintptr_t)dead);
	stm_write(tx, &t->dead, (uintptr_t)n);
	stm_write(tx, &n->in_table, NODE_IN_DEAD);
	return 0;
}

/* Takes n out of its hash chain: its inode number names another object. */
static int unlink_from_chain(struct stm_tx *tx, struct node_table *t,
			     struct node *n)
{
	return move_node(tx, t, n, true);
}

struct forget_args {
	struct node_table *t;
	struct node *n;
	uint64_t nlookup;
};

static int forget_body(struct stm_tx *tx, void *arg)
{
	struct forget_args *a = arg;
	uintptr_t count;
	int ret;

	STM_LOAD(tx, &a->n->nlookup, &count);
	if (count > a->nlookup) {
		stm_write(tx, &a->n->nlookup, count - a->nlookup);
		return 0;
	}
	stm_write(tx, &a->n->nlookup, 0);
	ret = move_node(tx, a->t, a->n, false);
	if (ret != 0)
		return ret;
	stm_retire(tx, a->n, node_free);
	return 0;
}

void node_forget(struct node_table *t, struct node *n, uint64_t nlookup)
{
	struct forget_args a = { .t = t, .n = n, .nlookup = nlookup };

	if (node_is_root(n))
		return;
	(void)stm_atomically(forget_body, &a, 0);
}

struct dead_args {
	struct node_table *t;
	dev_t dev;
	ino_t ino;
};

static int dead_body(struct stm_tx *tx, void *arg)
{
	struct dead_args *a = arg;
	struct stm_tvar *head =
	    &a->t->buckets[bucket_of(NODE_VIEW_BASE, a->dev, a->ino)];
	struct node *n;

	STM_LOADP(tx, head, &n);
	while (n != NULL) {
		if (n->ino == a->ino && n->dev == a->dev &&
		    n->view == NODE_VIEW_BASE)
			return unlink_from_chain(tx, a->t, n);
		STM_LOADP(tx, &n->next, &n);
	}
	return 0;
}

void node_mark_dead(struct node_table *t, dev_t dev, ino_t ino)
{
	struct dead_args a = { .t = t, .dev = dev, .ino = ino };

	(void)stm_atomically(dead_body, &a, 0);
}

int node_fd_get(struct node_table *t, struct node *n)
{
	struct fd_shard *s = shard_of(t, n);
	int victims[EVICT_BATCH], nvictims = 0;
	int fd, spare = -1;

	pthread_mutex_lock(&s->lock);
	if (n->fd >= 0)
		goto out_pin;
	pthread_mutex_unlock(&s->lock);

	/* Reopen outside the lock; another thread may do the same. */
	if (n->handle == NULL)
		return -ESTALE;
	fd = handle_open(n->handle, O_PATH | O_NOFOLLOW);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&s->lock);
	if (n->fd >= 0) {
		spare = fd;
		goto out_pin;
	}
	n->fd = fd;
	s->count++;
	atomic_fetch_add(&t->nfds, 1);
	lru_push_head(s, n);

out_pin:
	n->pins++; /* before evicting, so n itself is never a victim */
	if (!n->permanent && s->lru_head != n) {
		lru_unlink(s, n);
		lru_push_head(s, n);
	}
	nvictims = shard_evict(t, s, victims);
	fd = n->fd;
	pthread_mutex_unlock(&s->lock);
	close_all(victims, nvictims);
	if (spare >= 0)
		close(spare);
	return fd;
}

void node_fd_put(struct node_table *t, struct node *n)
{
	struct fd_shard *s = shard_of(t, n);
	int victims[EVICT_BATCH], nvictims;

	pthread_mutex_lock(&s->lock);
	assert(n->pins > 0);
	n->pins--;
	nvictims = shard_evict(t, s, victims);
	pthread_mutex_unlock(&s->lock);
	close_all(victims, nvictims);
}

int node_open(struct node_table *t, struct node *n, int flags)
{
	char path[64];
	int fd, pfd;

	flags &= ~(O_CREAT | O_EXCL);
	if (n->handle != NULL && !node_is_root(n)) {
		fd = handle_open(n->handle, flags);
		if (fd != -ESTALE)
			return fd;
	}
	/*
	 * Objects without handles (and the root) reopen their O_PATH fd, as
	 * does an object whose last name is gone but whose descriptor is
	 * still cached (open-unlinked files).
	 */
	pfd = node_fd_get(t, n);
	if (pfd < 0)
		return pfd;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);
	fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		fd = -errno;
	node_fd_put(t, n);
	return fd;
}

int node_open_root(struct node_table *t)
{
	int rfd = node_fd_get(t, &t->root), fd;

	if (rfd < 0)
		return rfd;
	fd = fcntl(rfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		fd = -errno;
	node_fd_put(t, &t->root);
	return fd;
}

const struct handle *node_handle(const struct node *n)
{
	return node_is_root(n) ? NULL : n->handle;
}

uint64_t node_view(const struct node *n)
{
	return n->view;
}

void node_get_key(const struct node *n, struct node_key *key)
{
	key->dev = n->dev;
	key->ino = n->ino;
	key->type = n->type;
	key->birth = n->birth;
}

struct name_args {
	struct node *n;
	struct node_name *fresh; /* to publish, or NULL to only compare */
	struct handle *parent;
	const char *name;
	bool same;
};

static int name_body(struct stm_tx *tx, void *arg)
{
	struct name_args *a = arg;
	struct node_name *cur;

	STM_LOADP(tx, &a->n->name, &cur);
	a->same = cur != NULL && strcmp(cur->name, a->name) == 0 &&
		  ((cur->parent == NULL && a->parent == NULL) ||
		   (cur->parent != NULL && a->parent != NULL &&
		    handle_equal(cur->parent, a->parent)));
	if (a->same || a->fresh == NULL)
		return 0;
	stm_write(tx, &a->n->name, (uintptr_t)a->fresh);
	if (cur != NULL)
		stm_retire(tx, cur, node_name_free);
	return 0;
}

int node_set_name(struct node_table *t, struct node *n, struct node *parent,
		  const char *name)
{
	struct name_args a = {
		.n = n,
		.parent = node_is_root(parent) ? NULL : parent->handle,
		.name = name,
	};
	size_t len = strlen(name);
	int ret;

	(void)t;
	if (n->view != NODE_VIEW_BASE || n->type != S_IFREG ||
	    (a.parent == NULL && !node_is_root(parent)))
		return 0;
	/* Most lookups repeat the name already recorded: compare first. */
	ret = stm_atomically(name_body, &a, STM_RO);
	if (ret < 0 || a.same)
		return ret;
	a.fresh = malloc(sizeof(*a.fresh) + len + 1);
	if (a.fresh == NULL)
		return -ENOMEM;
	memcpy(a.fresh->name, name, len + 1);
	a.fresh->parent = NULL;
	if (a.parent != NULL) {
		a.fresh->parent = handle_dup(a.parent);
		if (a.fresh->parent == NULL) {
			free(a.fresh);
			return -ENOMEM;
		}
	}
	ret = stm_atomically(name_body, &a, 0);
	if (ret < 0 || a.same)
		node_name_free(a.fresh);
	return ret;
}

struct get_name_args {
	struct node *n;
	char *buf;
	size_t len;
	struct handle *parent; /* a private copy */
	bool found, fits;
};

static int get_name_body(struct stm_tx *tx, void *arg)
{
	struct get_name_args *a = arg;
	struct node_name *cur;

	STM_LOADP(tx, &a->n->name, &cur);
	a->found = cur != NULL;
	if (cur == NULL)
		return 0;
	a->fits = strlen(cur->name) < a->len;
	if (a->fits)
		strcpy(a->buf, cur->name);
	/* The record is immutable and safe until this attempt ends. */
	handle_free(a->parent);
	a->parent = cur->parent != NULL ? handle_dup(cur->parent) : NULL;
	if (cur->parent != NULL && a->parent == NULL)
		return -ENOMEM;
	return 0;
}

int node_get_name(struct node_table *t, struct node *n, int *dirfd, char *buf,
		  size_t len)
{
	struct get_name_args a = { .n = n, .buf = buf, .len = len };
	int ret, fd;

	ret = stm_atomically(get_name_body, &a, STM_RO);
	if (ret < 0)
		goto out_free;
	if (!a.found) {
		ret = -ENOENT;
		goto out_free;
	}
	if (!a.fits) {
		ret = -ENAMETOOLONG;
		goto out_free;
	}
	fd = a.parent != NULL ? handle_open(a.parent, O_PATH | O_DIRECTORY)
			      : node_open_root(t);
	if (fd < 0) {
		ret = fd;
		goto out_free;
	}
	*dirfd = fd;
	ret = 0;
out_free:
	handle_free(a.parent);
	return ret;
}

size_t node_count(struct node_table *t)
{
	return atomic_load(&t->nnodes);
}

size_t node_fd_count(struct node_table *t)
{
	return atomic_load(&t->nfds);
}

bool node_table_invariants(struct node_table *t)
{
	size_t fds = 0;

	for (size_t i = 0; i < NODE_FD_SHARDS; i++) {
		struct fd_shard *s = &t->shards[i];
		size_t listed = 0;
		pthread_mutex_lock(&s->lock);
		for (struct node *n = s->lru_head; n != NULL; n = n->lru_next) {
			if (n->fd < 0) {
				pthread_mutex_unlock(&s->lock);
				return false;
			}
			listed++;
		}
		if (listed > s->count) {
			pthread_mutex_unlock(&s->lock);
			return false;
		}
		fds += s->count;
		pthread_mutex_unlock(&s->lock);
	}
	return fds == atomic_load(&t->nfds);
}
