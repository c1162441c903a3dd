/*
 * tx.c: transactions, their shadows, commit and abort (see tx.h).
 *
 * Data: the table holds a list of transactions and a hash of shadows keyed
 * by the base object (dev, ino) they copy.  A shadow is a regular file in
 * the transaction's directory, STATEDIR/tx-ID/N, with the base file's data
 * and attributes at the moment of its copy-up and every change the members
 * made since.  Everything reachable from the table is guarded by the STM;
 * records are immutable except for their tvars, and are retired through
 * the STM, so readers never see freed memory.
 *
 * Transaction states, and the function behind each transition:
 *
 *   (none)     -> OPEN        [tx_begin]
 *   OPEN       -> COMMITTING  [tx_commit: start_body]
 *   COMMITTING -> OPEN        [tx_commit: the journal could not be written]
 *   COMMITTING -> DONE        [tx_commit: finish (applied), or a conflict]
 *   OPEN       -> ABORTING    [tx_abort: start_body]
 *   ABORTING   -> DONE        [tx_abort: finish]
 *
 * Shadow states:
 *
 *   (none)    -> COPYING    [tx_copy_up: claim_body, before any I/O]
 *   COPYING   -> READY      [tx_copy_up: ready_body, the copy is complete]
 *   COPYING   -> (removed)  [tx_copy_up: the copy failed or the tx ended]
 *   READY     -> PUBLISHED  [tx_commit: flip_body, all of a tx at once]
 *   READY, PUBLISHED -> (removed) [finish: commit applied, or abort]
 *
 * Invariants:
 *  (1) A transaction has at most one shadow per base object; a shadow is
 *      on its transaction's list and in the hash exactly while it is not
 *      removed.
 *  (2) ncopying counts the transaction's COPYING shadows and its name
 *      operations in flight (tx_new_object .. tx_end_object); nready its
 *      READY and PUBLISHED shadows.  Commit and abort wait for ncopying to
 *      reach 0 after leaving OPEN, and no shadow enters COPYING unless its
 *      transaction is OPEN, so from then on the shadow list is theirs.
 *  (3) PUBLISHED shadows belong to a COMMITTING transaction whose commit
 *      record is durable in the journal.
 *  (4) A shadow's immutable fields are written before the STM write that
 *      makes it READY; readers look at them only when they read READY or
 *      PUBLISHED (the STM's release/acquire orders them).
 *  (5) live counts the shadows in the hash; it is raised before a shadow
 *      is published and lowered after it is removed, so a zero read by
 *      tx_note_base_write means no copy-up had started when the write
 *      completed.
 *  (6) No STM body does I/O.  Copies, fsync, renames and the journal run
 *      between bodies, on private objects or on objects this thread owns
 *      by invariant (2).
 */
#include "config.h"

#include "tx.h"

#include "checkpoint.h"
#include "copy.h"
#include "crash.h"
#include "handle.h"
#include "journal.h"
#include "log.h"
#include "membership.h"
#include "statedir.h"
#include "stm.h"
#include "view.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define TX_BUCKETS	4096
#define TX_ID_BLOCK	1024 /* ids reserved in the journal at a time */
#define TX_MAX_RETRY	8    /* copies redone because the base changed */
#define TX_SYNCFS_AFTER 64   /* changes beyond which commit uses syncfs(2) */

enum shadow_state { SH_COPYING, SH_READY, SH_PUBLISHED };

struct tx;

struct shadow {
	/* Immutable once READY, see invariant (4). */
	struct tx *tx;
	struct node_key base;
	struct stat base_st;   /* the base's attributes when copied */
	struct handle *parent; /* the base's directory; NULL: the root */
	char *name;	       /* the base's name in parent */
	char *path;	       /* "/dir/name" in the mount, for messages */
	struct handle *handle; /* the shadow file's */
	struct node_key skey;  /* the shadow file's own identity */
	char leaf[24];	       /* its name in the transaction's directory */

	/* Guarded by the STM. */
	struct stm_tvar state;
	struct stm_tvar base_changed;
	struct stm_tvar next_tx;   /* the transaction's list */
	struct stm_tvar next_hash; /* the table's hash chain */
};

struct tx {
	/* Immutable after tx_begin publishes it. */
	uint64_t id;
	uid_t owner;
	pid_t leader;
	char label[256];
	int64_t started;
	uint64_t conn;
	int dirfd; /* STATEDIR/tx-ID; closed by whoever ends the tx */
	char dirname[32];
	_Atomic unsigned seq; /* names the next shadow file */

	/* Guarded by the STM. */
	struct stm_tvar state;
	struct stm_tvar shadows;
	struct stm_tvar ncopying;
	struct stm_tvar nready;
	struct stm_tvar next;
};

struct tx_table {
	struct tx_config cfg;	     /* immutable */
	int statedir_fd;	     /* immutable, borrowed */
	struct stm_tvar txs;	     /* list of struct tx; the STM */
	struct stm_tvar *buckets;    /* shadows by base key; the STM */
	_Atomic size_t live;	     /* invariant (5) */
	_Atomic size_t ntx;	     /* transactions not yet DONE, a hint */
	_Atomic uint64_t generation; /* transactions ended; see tx.h */
	pthread_mutex_t id_lock;     /* guards next_id and reserved */
	uint64_t next_id, reserved;
	struct tx_recovery recovery; /* written by tx_table_new only */
	/* A committed record could not be applied: no commit until restart. */
	_Atomic bool unapplied;
};

static size_t bucket_of(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
	h ^= h >> 31;
	return (size_t)(h & (TX_BUCKETS - 1));
}

static bool same_base(const struct shadow *s, const struct node_key *k)
{
	return s->base.ino == k->ino && s->base.dev == k->dev &&
	       (s->base.birth == 0 || k->birth == 0 ||
		s->base.birth == k->birth);
}

static void shadow_free(void *p)
{
	struct shadow *s = p;

	handle_free(s->parent);
	handle_free(s->handle);
	free(s->name);
	free(s->path);
	free(s);
}

static void tx_free(void *p)
{
	free(p);
}

/* ---- finding transactions --------------------------------------------- */

/* Finds transaction id in the table inside a body; NULL if absent. */
static int find_tx(struct stm_tx *stx, struct tx_table *tt, uint64_t id,
		   struct tx **out)
{
	struct tx *t;

	STM_LOADP(stx, &tt->txs, &t);
	while (t != NULL && t->id != id)
		STM_LOADP(stx, &t->next, &t);
	*out = t;
	return 0;
}

struct view_args {
	struct tx_table *tt;
	uint64_t id;
	bool open;
};

static int view_body(struct stm_tx *stx, void *arg)
{
	struct view_args *a = arg;
	struct tx *t;
	uintptr_t state;
	int ret;

	a->open = false;
	ret = find_tx(stx, a->tt, a->id, &t);
	if (ret != 0 || t == NULL)
		return ret;
	STM_LOAD(stx, &t->state, &state);
	a->open = state == TX_OPEN || state == TX_COMMITTING;
	return 0;
}

int tx_of_pid(struct tx_table *tt, pid_t pid, uint64_t *id)
{
	return membership_classify(tt->cfg.members, pid, id);
}

int tx_view_of(struct tx_table *tt, pid_t tid, uint64_t *view)
{
	struct view_args a = { .tt = tt };
	int ret;

	*view = NODE_VIEW_BASE;
	if (tid == 0 || atomic_load(&tt->ntx) == 0)
		return 0;
	ret = membership_classify(tt->cfg.members, tid, &a.id);
	if (ret < 0 || a.id == 0)
		return ret;
	ret = stm_atomically(view_body, &a, STM_RO);
	if (ret < 0)
		return ret;
	if (a.open)
		*view = a.id;
	return 0;
}

uint64_t tx_generation(struct tx_table *tt)
{
	return atomic_load(&tt->generation);
}

bool tx_any(struct tx_table *tt)
{
	return atomic_load(&tt->ntx) != 0;
}

/* ---- resolving lookups ------------------------------------------------- */

struct resolve_args {
	struct tx_table *tt;
	uint64_t view;
	const struct node_key *base;
	struct tx_target *out;
};

/*
 * Finds what the view shows.  The records may be retired as soon as the
 * body ends, so everything needed is copied inside it.
 */
static int resolve_body(struct stm_tx *stx, void *arg)
{
	struct shadow *s_next;
	struct resolve_args *a = arg;
	struct shadow *s, *own = NULL, *published = NULL;
	struct tx_target *out = a->out;
	uintptr_t state;

	handle_free(out->handle);
	memset(out, 0, sizeof(*out));
	out->kind = TX_SHOW_BASE;
	out->key = *a->base;
	STM_LOADP(stx, &a->tt->buckets[bucket_of(a->base->dev, a->base->ino)],
		  &s);
	for (; s != NULL; s = s_next) {
		STM_LOADP(stx, &s->next_hash, &s_next);
		if (!same_base(s, a->base))
			continue;
		STM_LOAD(stx, &s->state, &state);
		if (state == SH_PUBLISHED)
			published = s;
		else if (state == SH_READY && s->tx->id == a->view)
			own = s;
	}
	/* Read-your-writes first, then what others committed. */
	s = own != NULL ? own : published;
	if (s == NULL)
		return 0;
	out->kind = own != NULL ? TX_SHOW_SHADOW : TX_SHOW_PUBLISHED;
	out->key = own != NULL ? *a->base : s->skey;
	out->nlink = s->base_st.st_nlink;
	out->handle = handle_dup(s->handle);
	return out->handle == NULL ? -ENOMEM : 0;
}

int tx_resolve(struct tx_table *tt, uint64_t view, const struct node_key *base,
	       struct tx_target *out)
{
	struct resolve_args a = {
		.tt = tt, .view = view, .base = base, .out = out
	};
	int ret;

	memset(out, 0, sizeof(*out));
	out->kind = TX_SHOW_BASE;
	out->key = *base;
	if (atomic_load(&tt->live) == 0)
		return 0;
	ret = stm_atomically(resolve_body, &a, STM_RO);
	if (ret < 0) {
		handle_free(out->handle);
		out->handle = NULL;
	}
	return ret;
}

/* ---- conflicts noted by non-member writes ------------------------------ */

struct note_args {
	struct tx_table *tt;
	const struct node_key *key;
};

static int note_body(struct stm_tx *stx, void *arg)
{
	struct shadow *s_next;
	struct note_args *a = arg;
	struct shadow *s;
	uintptr_t changed, state;

	STM_LOADP(stx, &a->tt->buckets[bucket_of(a->key->dev, a->key->ino)],
		  &s);
	for (; s != NULL; s = s_next) {
		STM_LOADP(stx, &s->next_hash, &s_next);
		if (!same_base(s, a->key))
			continue;
		STM_LOAD(stx, &s->state, &state);
		if (state == SH_PUBLISHED)
			continue;
		STM_LOAD(stx, &s->base_changed, &changed);
		if (!changed)
			stm_write(stx, &s->base_changed, 1);
	}
	return 0;
}

void tx_note_base_write(struct tx_table *tt, const struct node_key *key)
{
	struct note_args a = { .tt = tt, .key = key };

	if (atomic_load(&tt->live) == 0)
		return;
	(void)stm_atomically(note_body, &a, 0);
}

static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Builds "/dir/name" for messages from the parent's descriptor. */
static char *mount_path(struct tx_table *tt, int dirfd, const char *name)
{
	char link[64], dir[PATH_MAX];
	const char *rel = "";
	size_t slen = strlen(tt->cfg.source_path);
	ssize_t n;
	char *out;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	n = readlink(link, dir, sizeof(dir) - 1);
	if (n >= 0) {
		dir[n] = '\0';
		if (strncmp(dir, tt->cfg.source_path, slen) == 0 &&
		    (dir[slen] == '/' || dir[slen] == '\0'))
			rel = dir + slen;
		else
			rel = "/?";
	}
	if (strcmp(tt->cfg.source_path, "/") == 0 && n >= 0)
		rel = dir;
	if (asprintf(&out, "%s/%s", strcmp(rel, "/") == 0 ? "" : rel, name) < 0)
		return NULL;
	return out;
}

/* ---- copy-up ------------------------------------------------------------ */

struct claim_args {
	struct tx_table *tt;
	uint64_t id;
	struct shadow *fresh;
	bool exists;
};

/* Publishes fresh as COPYING, unless the tx has a shadow already. */
static int claim_body(struct stm_tx *stx, void *arg)
{
	struct claim_args *a = arg;
	struct stm_tvar *head =
	    &a->tt->buckets[bucket_of(a->fresh->base.dev, a->fresh->base.ino)];
	struct shadow *s, *s_next, *first, *tfirst;
	uintptr_t state, n;
	struct tx *t;
	int ret;

	a->exists = false;
	ret = find_tx(stx, a->tt, a->id, &t);
	if (ret != 0)
		return ret;
	if (t == NULL)
		return -EBUSY;
	STM_LOAD(stx, &t->state, &state);
	if (state != TX_OPEN)
		return -EBUSY;
	STM_LOADP(stx, head, &first);
	for (s = first; s != NULL; s = s_next) {
		STM_LOADP(stx, &s->next_hash, &s_next);
		if (s->tx != t || !same_base(s, &a->fresh->base))
			continue;
		STM_LOAD(stx, &s->state, &state);
		if (state == SH_COPYING)
			return stm_wait(stx); /* another thread copies it */
		a->exists = true;
		return 0;
	}
	a->fresh->tx = t;
	stm_write(stx, &a->fresh->next_hash, (uintptr_t)first);
	stm_write(stx, head, (uintptr_t)a->fresh);
	STM_LOADP(stx, &t->shadows, &tfirst);
	stm_write(stx, &a->fresh->next_tx, (uintptr_t)tfirst);
	stm_write(stx, &t->shadows, (uintptr_t)a->fresh);
	STM_LOAD(stx, &t->ncopying, &n);
	stm_write(stx, &t->ncopying, n + 1);
	return 0;
}

/*
 * Unlinks s from the list starting at link whose next pointers are the
 * tvar at byte offset off in each shadow.
 */
static int unlink_from(struct stm_tx *stx, struct stm_tvar *link,
		       struct shadow *s, size_t off)
{
	struct shadow *cur, *next;

	for (;;) {
		STM_LOADP(stx, link, &cur);
		if (cur == NULL)
			return 0;
		if (cur == s)
			break;
		link = (struct stm_tvar *)((char *)cur + off);
	}
	STM_LOADP(stx, (struct stm_tvar *)((char *)s + off), &next);
	stm_write(stx, link, (uintptr_t)next);
	return 0;
}

/* Unlinks s from the hash chain and its transaction's list. */
static int unlink_shadow(struct stm_tx *stx, struct tx_table *tt,
			 struct shadow *s)
{
	int ret =
	    unlink_from(stx, &tt->buckets[bucket_of(s->base.dev, s->base.ino)],
			s, offsetof(struct shadow, next_hash));

	if (ret != 0)
		return ret;
	return unlink_from(stx, &s->tx->shadows, s,
			   offsetof(struct shadow, next_tx));
}

struct ready_args {
	struct tx_table *tt;
	struct shadow *s;
	bool ok;      /* the copy succeeded */
	bool changed; /* out: the base changed while it was copied */
	bool removed; /* out: the shadow was dropped */
};

static int ready_body(struct stm_tx *stx, void *arg)
{
	struct ready_args *a = arg;
	struct tx *t = a->s->tx;
	uintptr_t state, changed, n;
	int ret;

	a->changed = a->removed = false;
	STM_LOAD(stx, &t->state, &state);
	STM_LOAD(stx, &a->s->base_changed, &changed);
	if (a->ok && state == TX_OPEN && changed) {
		/* Copy again; clear the flag for the next attempt. */
		stm_write(stx, &a->s->base_changed, 0);
		a->changed = true;
		return 0;
	}
	STM_LOAD(stx, &t->ncopying, &n);
	stm_write(stx, &t->ncopying, n - 1);
	if (a->ok && state == TX_OPEN) {
		stm_write(stx, &a->s->state, SH_READY);
		STM_LOAD(stx, &t->nready, &n);
		stm_write(stx, &t->nready, n + 1);
		return 0;
	}
	ret = unlink_shadow(stx, a->tt, a->s);
	if (ret != 0)
		return ret;
	stm_retire(stx, a->s, shadow_free);
	a->removed = true;
	return 0;
}

/*
 * Does the copy of one claimed shadow: creates its file in the transaction
 * directory and fills it.  Fills s's immutable fields.  0 or -errno.
 */
static int copy_one(struct tx_table *tt, struct shadow *s, int dirfd,
		    const char *name, bool truncate, int *shadow_fd)
{
	struct tx *t = s->tx;
	struct stat now, sst;
	int bfd, sfd, ret;

	bfd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (bfd < 0)
		return errno == ENOENT || errno == ELOOP ? -ESTALE : -errno;
	if (fstat(bfd, &now) < 0) {
		ret = -errno;
		goto out_close_base;
	}
	if (now.st_dev != s->base.dev || now.st_ino != s->base.ino) {
		ret = -ESTALE;
		goto out_close_base;
	}
	s->base_st = now;
	sfd = *shadow_fd;
	if (sfd < 0) {
		snprintf(s->leaf, sizeof(s->leaf), "%u",
			 atomic_fetch_add(&t->seq, 1));
		sfd = openat(t->dirfd, s->leaf,
			     O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (sfd < 0) {
			ret = -errno;
			goto out_close_base;
		}
		*shadow_fd = sfd;
	} else if (ftruncate(sfd, 0) < 0) {
		ret = -errno;
		goto out_close_base;
	}
	ret = truncate ? 0 : copy_data(bfd, sfd, now.st_size, true);
	if (ret == 0)
		ret = copy_meta(bfd, sfd, &now);
	if (ret < 0)
		goto out_close_base;
	/* A change during the copy makes it torn: the caller copies again. */
	if (fstat(bfd, &now) < 0) {
		ret = -errno;
		goto out_close_base;
	}
	if (!same_version(&now, &s->base_st)) {
		ret = -EAGAIN;
		goto out_close_base;
	}
	if (s->handle == NULL) {
		ret = handle_from_fd(sfd, &s->handle);
		if (ret < 0)
			goto out_close_base;
	}
	ret = node_stat(sfd, "", AT_EMPTY_PATH, &sst, &s->skey);
out_close_base:
	close(bfd);
	return ret;
}

int tx_copy_up(struct tx_table *tt, uint64_t view, struct node *n,
	       bool truncate)
{
	struct claim_args c = { .tt = tt, .id = view };
	struct ready_args r = { .tt = tt };
	char name[NAME_MAX + 1];
	struct shadow *s;
	int dirfd, sfd = -1, ret;

	if (node_view(n) != NODE_VIEW_BASE || node_type(n) != S_IFREG)
		return -EINVAL;
	ret = node_get_name(tt->cfg.nodes, n, &dirfd, name, sizeof(name));
	if (ret < 0)
		return ret == -ENOENT ? -ESTALE : ret;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		ret = -ENOMEM;
		goto out_close_dir;
	}
	node_get_key(n, &s->base);
	stm_tvar_init(&s->state, SH_COPYING);
	stm_tvar_init(&s->base_changed, 0);
	stm_tvar_init(&s->next_tx, 0);
	stm_tvar_init(&s->next_hash, 0);
	s->name = strdup(name);
	s->path = mount_path(tt, dirfd, name);
	/* The root has no handle: its parent is recorded as NULL. */
	struct node_key rkey;
	struct stat dst;
	node_get_key(node_root(tt->cfg.nodes), &rkey);
	if (fstat(dirfd, &dst) < 0) {
		ret = -errno;
		goto out_free_shadow;
	}
	if (dst.st_ino != rkey.ino || dst.st_dev != rkey.dev) {
		ret = handle_from_fd(dirfd, &s->parent);
		if (ret < 0)
			goto out_free_shadow;
	}
	if (s->name == NULL || s->path == NULL) {
		ret = -ENOMEM;
		goto out_free_shadow;
	}

	/* Count the shadow before anyone can find it (invariant 5). */
	atomic_fetch_add(&tt->live, 1);
	c.fresh = s;
	ret = stm_atomically(claim_body, &c, 0);
	if (ret < 0 || c.exists) {
		atomic_fetch_sub(&tt->live, 1);
		goto out_free_shadow;
	}

	/*
	 * While the shadow is COPYING its transaction cannot end (invariant
	 * 2), so s->tx and its directory stay valid until ready_body.
	 */
	r.s = s;
	for (int attempt = 0;; attempt++) {
		ret = copy_one(tt, s, dirfd, name, truncate, &sfd);
		if (ret == -EAGAIN && attempt < TX_MAX_RETRY)
			continue;
		r.ok = ret == 0;
		if (!r.ok && sfd >= 0)
			unlinkat(s->tx->dirfd, s->leaf, 0);
		if (r.ok)
			log_debug("transaction %" PRIu64 ": copied up %s", view,
				  s->path);
		if (stm_atomically(ready_body, &r, 0) < 0) {
			ret = -EIO; /* cannot happen: bodies fail only so */
			break;
		}
		if (r.changed && attempt < TX_MAX_RETRY)
			continue;
		break;
	}
	/* From here on s may be gone: an abort can remove it at any time. */
	if (r.removed) {
		if (ret == 0)
			ret = -EBUSY; /* the transaction ended meanwhile; its
				       * directory goes with it */
		atomic_fetch_sub(&tt->live, 1);
	}
	if (sfd >= 0)
		close(sfd);
	close(dirfd);
	return ret;

out_free_shadow:
	shadow_free(s);
out_close_dir:
	close(dirfd);
	return ret;
}

/* ---- name operations ---------------------------------------------------- */

struct open_args {
	struct tx_table *tt;
	uint64_t id;
	int dirfd;
	unsigned seq;
	int delta; /* added to ncopying */
};

/*
 * The guard of every name operation: the transaction is still OPEN.  With
 * a delta of 1 it also counts an operation in flight, which keeps commit
 * and abort (and so the directory descriptor) waiting, see invariant (2).
 */
static int open_guard(struct stm_tx *stx, void *arg)
{
	struct open_args *a = arg;
	uintptr_t state, n;
	struct tx *t;
	int ret;

	ret = find_tx(stx, a->tt, a->id, &t);
	if (ret != 0)
		return ret;
	if (t == NULL)
		return -EBUSY;
	STM_LOAD(stx, &t->state, &state);
	if (state != TX_OPEN)
		return -EBUSY;
	a->dirfd = t->dirfd;
	if (a->delta != 0) {
		STM_LOAD(stx, &t->ncopying, &n);
		stm_write(stx, &t->ncopying, n + 1);
	}
	return 0;
}

int tx_new_object(struct tx_table *tt, uint64_t view, int *dirfd, char leaf[24])
{
	struct open_args a = { .tt = tt, .id = view, .dirfd = -1, .delta = 1 };
	static _Atomic unsigned seq;
	int ret, fd;

	ret = stm_atomically(open_guard, &a, 0);
	if (ret < 0)
		return ret;
	/* Valid until tx_end_object: the transaction cannot end before. */
	fd = fcntl(a.dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		tx_end_object(tt, view);
		return ret;
	}
	snprintf(leaf, 24, "n%u", atomic_fetch_add(&seq, 1));
	*dirfd = fd;
	return 0;
}

struct end_args {
	struct tx_table *tt;
	uint64_t id;
};

static int end_body(struct stm_tx *stx, void *arg)
{
	struct end_args *a = arg;
	uintptr_t n;
	struct tx *t;
	int ret;

	ret = find_tx(stx, a->tt, a->id, &t);
	if (ret != 0 || t == NULL)
		return ret;
	STM_LOAD(stx, &t->ncopying, &n);
	stm_write(stx, &t->ncopying, n - 1);
	return 0;
}

void tx_end_object(struct tx_table *tt, uint64_t view)
{
	struct end_args a = { .tt = tt, .id = view };

	(void)stm_atomically(end_body, &a, 0);
}

int tx_apply_names(struct tx_table *tt, uint64_t view,
		   const struct view_change *ch)
{
	struct open_args a = { .tt = tt, .id = view };

	return view_apply(tt->cfg.views, view, ch, open_guard, &a);
}

/* ---- begin, bind -------------------------------------------------------- */

/* Reads the real uid of process pid; 0 or -ESRCH. */
static int proc_uid(pid_t pid, uid_t *uid)
{
	char path[64], line[256];
	FILE *f;
	int ret = -ESRCH;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -ESRCH;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long u;
		if (sscanf(line, "Uid: %lu", &u) == 1) {
			*uid = (uid_t)u;
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

static int may_bind(uid_t requester, pid_t pid)
{
	uid_t uid;
	int ret;

	if (pid <= 0)
		return -ESRCH;
	ret = proc_uid(pid, &uid);
	if (ret < 0)
		return ret;
	if (requester != 0 && uid != requester)
		return -EPERM;
	return 0;
}

/* Hands out the next id, reserving a block in the journal as needed. */
static int next_id(struct tx_table *tt, uint64_t *id)
{
	int ret = 0;

	pthread_mutex_lock(&tt->id_lock);
	if (tt->next_id >= tt->reserved) {
		ret = journal_note_txid(tt->cfg.journal,
					tt->next_id + TX_ID_BLOCK);
		if (ret == 0)
			tt->reserved = tt->next_id + TX_ID_BLOCK;
	}
	if (ret == 0)
		*id = tt->next_id++;
	pthread_mutex_unlock(&tt->id_lock);
	return ret;
}

struct push_args {
	struct tx_table *tt;
	struct tx *t;
};

static int push_body(struct stm_tx *stx, void *arg)
{
	struct push_args *a = arg;
	struct tx *first;

	STM_LOADP(stx, &a->tt->txs, &first);
	stm_write(stx, &a->t->next, (uintptr_t)first);
	stm_write(stx, &a->tt->txs, (uintptr_t)a->t);
	return 0;
}

/* Removes t from the table and marks it DONE; the caller retires nothing
 * else.  */
static int remove_tx_body(struct stm_tx *stx, void *arg)
{
	struct push_args *a = arg;
	struct stm_tvar *link = &a->tt->txs;
	struct tx *cur, *next;

	for (;;) {
		STM_LOADP(stx, link, &cur);
		if (cur == NULL)
			break;
		if (cur == a->t) {
			STM_LOADP(stx, &cur->next, &next);
			stm_write(stx, link, (uintptr_t)next);
			break;
		}
		link = &cur->next;
	}
	stm_write(stx, &a->t->state, TX_DONE);
	stm_retire(stx, a->t, tx_free);
	return 0;
}

int tx_begin(struct tx_table *tt, uid_t requester, pid_t leader,
	     const char *label, uint64_t conn, uint64_t *id)
{
	struct push_args p = { .tt = tt };
	struct timespec now;
	struct tx *t;
	int ret;

	ret = may_bind(requester, leader);
	if (ret < 0)
		return ret;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	ret = next_id(tt, &t->id);
	if (ret < 0)
		goto out_free;
	t->owner = requester;
	t->leader = leader;
	snprintf(t->label, sizeof(t->label), "%s", label != NULL ? label : "");
	clock_gettime(CLOCK_REALTIME, &now);
	t->started = now.tv_sec;
	t->conn = conn;
	atomic_init(&t->seq, 1);
	stm_tvar_init(&t->state, TX_OPEN);
	stm_tvar_init(&t->shadows, 0);
	stm_tvar_init(&t->ncopying, 0);
	stm_tvar_init(&t->nready, 0);
	stm_tvar_init(&t->next, 0);
	snprintf(t->dirname, sizeof(t->dirname), "tx-%" PRIu64, t->id);
	if (mkdirat(tt->statedir_fd, t->dirname, 0700) < 0) {
		ret = -errno;
		goto out_free;
	}
	t->dirfd = openat(tt->statedir_fd, t->dirname,
			  O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd < 0) {
		ret = -errno;
		goto out_rmdir;
	}
	atomic_fetch_add(&tt->ntx, 1);
	p.t = t;
	ret = stm_atomically(push_body, &p, 0);
	if (ret < 0)
		goto out_uncount;
	ret = membership_bind(tt->cfg.members, leader, t->id);
	if (ret < 0) {
		(void)stm_atomically(remove_tx_body, &p, 0);
		atomic_fetch_sub(&tt->ntx, 1);
		close(t->dirfd);
		unlinkat(tt->statedir_fd, t->dirname, AT_REMOVEDIR);
		return ret;
	}
	*id = t->id;
	log_info("transaction %" PRIu64 " begun by uid %u for pid %d%s%s",
		 t->id, (unsigned)requester, (int)leader,
		 t->label[0] ? ", label " : "", t->label);
	return 0;

out_uncount:
	atomic_fetch_sub(&tt->ntx, 1);
	close(t->dirfd);
out_rmdir:
	unlinkat(tt->statedir_fd, t->dirname, AT_REMOVEDIR);
out_free:
	free(t);
	return ret;
}

struct auth_args {
	struct tx_table *tt;
	uint64_t id;
	uid_t requester;
	struct tx *t;
	enum tx_state from, to;
	bool check_only;
};

/* Finds id, checks the requester, and moves it from one state to another. */
static int start_body(struct stm_tx *stx, void *arg)
{
	struct auth_args *a = arg;
	uintptr_t state;
	int ret;

	ret = find_tx(stx, a->tt, a->id, &a->t);
	if (ret != 0)
		return ret;
	if (a->t == NULL)
		return -ENOENT;
	if (a->requester != 0 && a->requester != a->t->owner)
		return -EPERM;
	STM_LOAD(stx, &a->t->state, &state);
	if (state != a->from)
		return state == TX_DONE ? -ENOENT : -EBUSY;
	if (!a->check_only)
		stm_write(stx, &a->t->state, a->to);
	return 0;
}

int tx_bind(struct tx_table *tt, uint64_t id, uid_t requester, pid_t pid)
{
	struct auth_args a = {
		.tt = tt,
		.id = id,
		.requester = requester,
		.from = TX_OPEN,
		.check_only = true,
	};
	int ret;

	ret = stm_atomically(start_body, &a, STM_RO);
	if (ret < 0)
		return ret;
	ret = may_bind(requester, pid);
	if (ret < 0)
		return ret == -EPERM ? -EACCES : ret;
	return membership_bind(tt->cfg.members, pid, id);
}

/* ---- ending transactions ------------------------------------------------ */

static int wait_copies_body(struct stm_tx *stx, void *arg)
{
	struct tx *t = arg;
	uintptr_t n;

	STM_LOAD(stx, &t->ncopying, &n);
	return n == 0 ? 0 : stm_wait(stx);
}

struct snap_args {
	struct tx *t;
	struct shadow **v;
	size_t n, cap;
};

/* Collects the transaction's READY shadows (ncopying is 0). */
static int snap_body(struct stm_tx *stx, void *arg)
{
	struct shadow *s_next;
	struct snap_args *a = arg;
	struct shadow *s;
	uintptr_t n;

	STM_LOAD(stx, &a->t->nready, &n);
	a->n = 0;
	if (n > a->cap)
		return -ENOSPC; /* the caller grows v and runs again */
	STM_LOADP(stx, &a->t->shadows, &s);
	for (; s != NULL; s = s_next) {
		STM_LOADP(stx, &s->next_tx, &s_next);
		if (a->n < a->cap)
			a->v[a->n++] = s;
	}
	return 0;
}

static int snapshot(struct tx *t, struct snap_args *a)
{
	int ret;

	a->t = t;
	for (;;) {
		ret = stm_atomically(snap_body, a, STM_RO);
		if (ret != -ENOSPC)
			return ret;
		size_t cap = a->cap * 2 + 16;
		struct shadow **v = realloc(a->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
}

struct drop_args {
	struct tx_table *tt;
	struct tx *t;
};

/* Removes every shadow of t and t itself. */
static int drop_body(struct stm_tx *stx, void *arg)
{
	struct drop_args *a = arg;
	struct push_args p = { .tt = a->tt, .t = a->t };
	struct shadow *s, *next;
	int ret;

	STM_LOADP(stx, &a->t->shadows, &s);
	while (s != NULL) {
		STM_LOADP(stx, &s->next_tx, &next);
		ret = unlink_shadow(stx, a->tt, s);
		if (ret != 0)
			return ret;
		stm_retire(stx, s, shadow_free);
		s = next;
	}
	return remove_tx_body(stx, &p);
}

/*
 * Empties and removes the transaction's directory; closes its fd.  While
 * aborting, each removed file is a crash point.
 */
static void remove_dir(struct tx_table *tt, struct tx *t, bool aborting)
{
	int fd = fcntl(t->dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (d == NULL && fd >= 0)
		close(fd);
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		/* Objects are flat: directories made here are empty. */
		if (unlinkat(t->dirfd, e->d_name, 0) < 0 &&
		    (errno != EISDIR ||
		     unlinkat(t->dirfd, e->d_name, AT_REMOVEDIR) < 0))
			log_warn("cannot remove %s/%s/%s: %s",
				 statedir_path(tt->cfg.state), t->dirname,
				 e->d_name, strerror(errno));
		else if (aborting)
			crash_point(CRASH_ABORT_STEP);
	}
	if (d != NULL)
		closedir(d);
	close(t->dirfd);
	/*
	 * Not synced: a directory that comes back after a crash is removed
	 * at the next start, and nothing in it is needed any more.
	 */
	if (unlinkat(tt->statedir_fd, t->dirname, AT_REMOVEDIR) < 0)
		log_warn("cannot remove %s/%s: %s",
			 statedir_path(tt->cfg.state), t->dirname,
			 strerror(errno));
}

/*
 * Ends t, whose state this thread owns (COMMITTING or ABORTING).  With
 * keep_dir its directory stays: it holds shadows a committed record that
 * could not be applied still needs at the next start.
 */
static void finish(struct tx_table *tt, struct tx *t, bool aborting,
		   bool keep_dir)
{
	struct drop_args d = { .tt = tt, .t = t };
	struct snap_args a = { 0 };
	struct tx gone;
	size_t n;

	/* Count the shadows leaving the hash (invariant 5). */
	if (snapshot(t, &a) == 0)
		n = a.n;
	else
		n = 0;
	free(a.v);
	membership_release(tt->cfg.members, t->id);
	/* t is retired by drop_body: keep what remove_dir needs. */
	gone.dirfd = t->dirfd;
	gone.id = t->id;
	memcpy(gone.dirname, t->dirname, sizeof(gone.dirname));
	(void)stm_atomically(drop_body, &d, 0);
	view_drop(tt->cfg.views, gone.id);
	atomic_fetch_add(&tt->generation, 1);
	atomic_fetch_sub(&tt->live, n);
	if (keep_dir)
		close(gone.dirfd);
	else
		remove_dir(tt, &gone, aborting);
	atomic_fetch_sub(&tt->ntx, 1);
}

int tx_abort(struct tx_table *tt, uint64_t id, uid_t requester)
{
	struct auth_args a = {
		.tt = tt,
		.id = id,
		.requester = requester,
		.from = TX_OPEN,
		.to = TX_ABORTING,
	};
	int ret;

	ret = stm_atomically(start_body, &a, 0);
	if (ret < 0)
		return ret;
	(void)stm_atomically(wait_copies_body, a.t, 0);
	finish(tt, a.t, true, false);
	log_info("transaction %" PRIu64 " aborted", id);
	return 0;
}

void tx_conflicts_clear(struct tx_conflicts *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->paths[i]);
	free(c->paths);
	c->paths = NULL;
	c->n = 0;
}

static int add_conflict(struct tx_conflicts *c, const char *path)
{
	char **v = realloc(c->paths, (c->n + 1) * sizeof(*v));

	if (v == NULL)
		return -ENOMEM;
	c->paths = v;
	c->paths[c->n] = strdup(path);
	if (c->paths[c->n] == NULL)
		return -ENOMEM;
	c->n++;
	return 0;
}

/* Opens a directory by handle (O_PATH); the root for NULL. */
static int open_dir(struct tx_table *tt, const struct handle *h)
{
	if (h != NULL)
		return handle_open(h, O_PATH | O_DIRECTORY);
	return node_open_root(tt->cfg.nodes);
}

struct changed_args {
	struct shadow *s;
	bool changed;
};

static int changed_body(struct stm_tx *stx, void *arg)
{
	struct changed_args *a = arg;
	uintptr_t v;

	STM_LOAD(stx, &a->s->base_changed, &v);
	a->changed = v != 0;
	return 0;
}

/*
 * Checks that the base object s copied is unchanged and still at its name;
 * fills *cur with its attributes now.  Returns 0, 1 for a conflict, or
 * -errno.
 */
static int check_base(struct tx_table *tt, struct shadow *s, int pfd,
		      struct stat *cur)
{
	struct changed_args c = { .s = s };
	int ret;

	ret = stm_atomically(changed_body, &c, STM_RO);
	if (ret < 0)
		return ret;
	if (c.changed)
		return 1;
	(void)tt;
	if (fstatat(pfd, s->name, cur, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 1 : -errno;
	return same_version(cur, &s->base_st) ? 0 : 1;
}

struct flip_args {
	struct shadow **v;
	size_t n;
	struct view_table *views;
	uint64_t view;
};

/* One STM transaction publishes the new content and the new names. */
static int flip_body(struct stm_tx *stx, void *arg)
{
	struct flip_args *a = arg;

	for (size_t i = 0; i < a->n; i++)
		stm_write(stx, &a->v[i]->state, SH_PUBLISHED);
	return view_publish_in(stx, a->views, a->view);
}

static bool created_by(const struct view_op *ops, size_t n,
		       const struct node_key *key)
{
	for (size_t i = 0; i < n; i++)
		if (ops[i].kind == VIEW_CREATE &&
		    ops[i].obj.key.ino == key->ino &&
		    ops[i].obj.key.dev == key->dev)
			return true;
	return false;
}

struct names_check {
	struct tx_table *tt;
	uint64_t view;
	const struct view_op *ops;
	size_t nops;
	struct tx_conflicts *conflicts;
};

/*
 * A name the transaction changed in a base directory must be as it was
 * when the transaction first changed it (invariant: per-name conflicts,
 * so unrelated names in one directory never conflict).
 */
static int check_name(const struct node_key *dir, const struct handle *dh,
		      const char *name, const struct view_base *base, void *arg)
{
	struct names_check *c = arg;
	struct stat st;
	bool exists, same;
	int dfd, ret = 0;

	if (created_by(c->ops, c->nops, dir))
		return 0; /* a directory of the transaction's own */
	dfd = open_dir(c->tt, dh);
	if (dfd < 0)
		return add_conflict(c->conflicts, name);
	exists = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	same = exists == base->existed &&
	       (!exists ||
		(st.st_ino == base->key.ino && st.st_dev == base->key.dev));
	/* The same file, changed meanwhile, conflicts too. */
	if (same && exists && !S_ISDIR(st.st_mode))
		same = st.st_size == base->size &&
		       st.st_mtim.tv_sec == base->mtime.tv_sec &&
		       st.st_mtim.tv_nsec == base->mtime.tv_nsec &&
		       st.st_ctim.tv_sec == base->ctime.tv_sec &&
		       st.st_ctim.tv_nsec == base->ctime.tv_nsec;
	if (!same) {
		char *path = mount_path(c->tt, dfd, name);
		ret = add_conflict(c->conflicts, path != NULL ? path : name);
		free(path);
	}
	close(dfd);
	(void)dir;
	return ret;
}

/*
 * A base directory the transaction removes must hold nothing it did not
 * see: every name in it now must be one the transaction changed.
 */
static int check_rmdir(struct tx_table *tt, uint64_t view,
		       const struct view_op *op, struct tx_conflicts *conflicts)
{
	struct view_obj o;
	struct dirent *e;
	int fd, ret = 0;
	DIR *d;

	fd = handle_open(op->obj.handle, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return add_conflict(conflicts, op->name1);
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	while (ret == 0 && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		int r = view_lookup(tt->cfg.views, view, &op->obj.key,
				    e->d_name, &o);
		handle_free(o.handle);
		if (r == VIEW_MISS) {
			char *path = mount_path(tt, dirfd(d), e->d_name);
			ret = add_conflict(conflicts,
					   path != NULL ? path : e->d_name);
			free(path);
		}
	}
	closedir(d);
	return ret;
}

/* Fills a journal change for one name operation. */
static void journal_op(struct journal_change *c, const struct view_op *op,
		       const char *shadow)
{
	size_t len = 0;

	memset(c, 0, sizeof(*c));
	c->parent = op->dh1 != NULL ? handle_bytes(op->dh1, &len) : NULL;
	c->parent_len = len;
	c->name = op->name1;
	c->base_dev = op->obj.key.dev;
	c->base_ino = op->obj.key.ino;
	c->mode = op->obj.key.type;
	c->flags = op->flags;
	switch (op->kind) {
	case VIEW_CREATE:
		c->kind =
		    S_ISDIR(op->obj.key.type) ? JOURNAL_MKDIR : JOURNAL_CREATE;
		c->shadow = shadow;
		break;
	case VIEW_LINK:
		c->kind = JOURNAL_LINK;
		c->parent2 = handle_bytes(op->obj.handle, &len);
		c->parent2_len = len;
		break;
	case VIEW_UNLINK:
		c->kind = op->flags ? JOURNAL_RMDIR : JOURNAL_UNLINK;
		break;
	case VIEW_RENAME:
		c->kind = JOURNAL_RENAME;
		len = 0;
		c->parent2 =
		    op->dh2 != NULL ? handle_bytes(op->dh2, &len) : NULL;
		c->parent2_len = len;
		c->name2 = op->name2;
		break;
	}
}

/*
 * Fsyncs a shadow or an object the transaction created in its directory, if
 * it is a regular file or a directory: opening anything else could have
 * effects.
 */
static int sync_created(int dirfd, const char *leaf)
{
	struct stat st;
	int fd, ret = 0;

	if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return 0;
	fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* The handle of the base file s copied, checked to be that file. */
static int base_handle(int pfd, const struct shadow *s, struct handle **out)
{
	struct stat st;
	int fd, ret;

	fd = openat(pfd, s->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (st.st_ino != s->base.ino || st.st_dev != s->base.dev)
		ret = -ESTALE;
	else
		ret = handle_from_fd(fd, out);
	close(fd);
	return ret;
}

int tx_commit(struct tx_table *tt, uint64_t id, uid_t requester,
	      size_t *changes, struct tx_conflicts *conflicts)
{
	struct auth_args a = {
		.tt = tt,
		.id = id,
		.requester = requester,
		.from = TX_OPEN,
		.to = TX_COMMITTING,
	};
	struct snap_args snap = { 0 };
	struct journal_change *jc = NULL;
	char(*shadows)[64] = NULL;
	struct view_op *ops = NULL;
	struct handle **bases = NULL;
	size_t nops = 0;
	int *pfds = NULL;
	bool *into = NULL, keep = false;
	struct tx *t;
	int ret;

	memset(conflicts, 0, sizeof(*conflicts));
	*changes = 0;
	/*
	 * Recovery redoes records in commit order; a later commit applied
	 * now could be overwritten by it.  The transaction stays open.
	 */
	if (atomic_load(&tt->unapplied)) {
		log_err("transaction %" PRIu64 ": not committed, because an "
			"earlier committed transaction is not yet in the "
			"source; restart txfsd to finish it",
			id);
		return -EIO;
	}
	ret = stm_atomically(start_body, &a, 0);
	if (ret < 0)
		return ret;
	t = a.t;
	(void)stm_atomically(wait_copies_body, t, 0);
	ret = snapshot(t, &snap);
	if (ret == 0)
		ret = view_log(tt->cfg.views, id, &ops, &nops);
	if (ret < 0)
		goto out_reopen;
	pfds = calloc(snap.n + 1, sizeof(*pfds));
	into = calloc(snap.n + 1, sizeof(*into));
	jc = calloc(snap.n + nops + 1, sizeof(*jc));
	if (pfds == NULL || into == NULL || jc == NULL) {
		ret = -ENOMEM;
		goto out_reopen;
	}
	for (size_t i = 0; i < snap.n; i++)
		pfds[i] = -1;

	/*
	 * 1. Flush the shadows' data, the objects the transaction created
	 * and the directory that holds them: one fsync each for a small
	 * transaction, one syncfs(2) of the file system for a large one,
	 * which costs about one fsync however many files it covers.
	 */
	if (snap.n + nops > TX_SYNCFS_AFTER) {
		if (syncfs(t->dirfd) < 0) {
			ret = -errno;
			goto out_reopen;
		}
	} else {
		for (size_t i = 0; i < snap.n; i++) {
			ret = sync_created(t->dirfd, snap.v[i]->leaf);
			if (ret < 0)
				goto out_reopen;
		}
		for (size_t i = 0; i < nops; i++) {
			if (ops[i].kind != VIEW_CREATE)
				continue;
			ret = sync_created(t->dirfd, ops[i].leaf);
			if (ret < 0)
				goto out_reopen;
		}
		if (fsync(t->dirfd) < 0) {
			ret = -errno;
			goto out_reopen;
		}
	}
	crash_point(CRASH_COMMIT_FLUSHED);

	/* 2. First committer wins: every base must be as it was copied. */
	for (size_t i = 0; i < snap.n; i++) {
		struct shadow *s = snap.v[i];
		struct stat cur;
		pfds[i] = open_dir(tt, s->parent);
		ret = pfds[i] < 0 ? 1 : check_base(tt, s, pfds[i], &cur);
		if (ret < 0)
			goto out_reopen;
		if (ret == 1) {
			ret = add_conflict(conflicts, s->path);
			if (ret < 0)
				goto out_reopen;
			continue;
		}
		into[i] = cur.st_nlink > 1;
	}
	struct names_check nc = {
		.tt = tt,
		.view = id,
		.ops = ops,
		.nops = nops,
		.conflicts = conflicts,
	};
	struct view_name *names = NULL;
	size_t nnames = 0;
	ret = view_names(tt->cfg.views, id, &names, &nnames);
	for (size_t i = 0; ret == 0 && i < nnames; i++)
		ret = check_name(&names[i].dir, names[i].dh, names[i].name,
				 &names[i].base, &nc);
	view_names_free(names, nnames);
	for (size_t i = 0; ret == 0 && i < nops; i++)
		if (ops[i].kind == VIEW_UNLINK && ops[i].flags != 0 &&
		    !ops[i].obj.created)
			ret = check_rmdir(tt, id, &ops[i], conflicts);
	if (ret < 0)
		goto out_reopen;
	if (conflicts->n > 0) {
		log_info("transaction %" PRIu64 " conflicts on %zu object(s), "
			 "first %s; aborted",
			 id, conflicts->n, conflicts->paths[0]);
		ret = -ECANCELED;
		goto out_finish;
	}

	/* 3. The durability point: one journal record with every change. */
	shadows = calloc(snap.n + nops + 1, sizeof(*shadows));
	bases = calloc(snap.n + 1, sizeof(*bases));
	if (shadows == NULL || bases == NULL) {
		ret = -ENOMEM;
		goto out_reopen;
	}
	for (size_t i = 0; i < snap.n; i++) {
		struct shadow *s = snap.v[i];
		size_t hlen = 0;
		snprintf(shadows[i], sizeof(shadows[i]), "%s/%s", t->dirname,
			 s->leaf);
		jc[i].kind = into[i] ? JOURNAL_WRITE_INTO : JOURNAL_REPLACE;
		jc[i].shadow = shadows[i];
		jc[i].parent =
		    s->parent != NULL ? handle_bytes(s->parent, &hlen) : NULL;
		jc[i].parent_len = hlen;
		jc[i].name = s->name;
		jc[i].base_dev = s->base.dev;
		jc[i].base_ino = s->base.ino;
		jc[i].mode = s->base_st.st_mode;
		jc[i].path = s->path;
		if (into[i]) {
			/* The inode itself, whatever names it has later. */
			ret = base_handle(pfds[i], s, &bases[i]);
			if (ret < 0)
				goto out_reopen;
			hlen = 0;
			jc[i].parent2 = handle_bytes(bases[i], &hlen);
			jc[i].parent2_len = hlen;
		}
	}
	for (size_t i = 0; i < nops; i++) {
		struct journal_change *c = &jc[snap.n + i];
		snprintf(shadows[snap.n + i], sizeof(shadows[0]), "%s/%s",
			 t->dirname, ops[i].leaf);
		journal_op(c, &ops[i], shadows[snap.n + i]);
		/* A file whose content is renamed into place is the shadow
		 * from then on: later steps name the shadow's identity. */
		for (size_t k = 0; k < snap.n; k++) {
			struct shadow *s = snap.v[k];
			if (into[k] || s->base.ino != ops[i].obj.key.ino ||
			    s->base.dev != ops[i].obj.key.dev)
				continue;
			c->base_dev = s->skey.dev;
			c->base_ino = s->skey.ino;
			if (c->kind == JOURNAL_LINK) {
				size_t hlen = 0;
				c->parent2 = handle_bytes(s->handle, &hlen);
				c->parent2_len = hlen;
			}
		}
	}
	ret = snap.n + nops == 0 ? 0
				 : journal_commit(tt->cfg.journal, id, t->owner,
						  t->label, jc, snap.n + nops);
	if (ret < 0) {
		log_err("transaction %" PRIu64 ": cannot write the journal: %s",
			id, strerror(-ret));
		goto out_reopen;
	}
	crash_point(CRASH_COMMIT_RECORDED);

	/* 4. Readers through the mount see every change at once. */
	struct flip_args f = {
		.v = snap.v, .n = snap.n, .views = tt->cfg.views, .view = id
	};
	(void)stm_atomically(flip_body, &f, 0);
	crash_point(CRASH_COMMIT_FLIPPED);

	/* 5. Apply to SOURCE step by step (checkpoint.c), durably. */
	if (snap.n + nops > 0) {
		struct checkpoint_env env = {
			.statedir_fd = tt->statedir_fd,
			.nodes = tt->cfg.nodes,
			.journal = tt->cfg.journal,
		};
		struct checkpoint_stats cs = { 0 };
		int r = checkpoint_apply(&env, id, jc, snap.n + nops, 0, &cs);
		keep = r < 0;
		if (r < 0) {
			atomic_store(&tt->unapplied, true);
			log_err("transaction %" PRIu64 " is committed but not "
				"yet in the source: txfsd applies it at its "
				"next start",
				id);
		}
	}
	crash_point(CRASH_COMMIT_APPLIED);
	*changes = snap.n + nops;
	log_info("transaction %" PRIu64 " committed (%zu file(s), %zu name "
		 "operation(s))",
		 id, snap.n, nops);
	ret = 0;

out_finish:
	for (size_t i = 0; i < snap.n; i++)
		if (pfds[i] >= 0)
			close(pfds[i]);
	finish(tt, t, false, keep);
	goto out_free;

out_reopen:
	/* Nothing is durable yet: the transaction stays open. */
	if (pfds != NULL)
		for (size_t i = 0; i < snap.n; i++)
			if (pfds[i] >= 0)
				close(pfds[i]);
	a.from = TX_COMMITTING;
	a.to = TX_OPEN;
	a.requester = 0;
	(void)stm_atomically(start_body, &a, 0);
	log_err("transaction %" PRIu64 ": commit failed: %s", id,
		strerror(-ret));
out_free:
	for (size_t i = 0; bases != NULL && i < snap.n; i++)
		handle_free(bases[i]);
	free(bases);
	free(snap.v);
	free(pfds);
	free(into);
	free(jc);
	free(shadows);
	view_ops_free(ops, nops);
	return ret;
}

/* ---- introspection ------------------------------------------------------ */

struct list_args {
	struct tx_table *tt;
	struct tx_info *out;
	size_t max, n;
	uint64_t only; /* 0: all */
	uint64_t conn; /* find by connection */
};

static int list_body(struct stm_tx *stx, void *arg)
{
	struct tx *t_next;
	struct list_args *a = arg;
	struct tx *t;
	uintptr_t state, nready;

	a->n = 0;
	STM_LOADP(stx, &a->tt->txs, &t);
	for (; t != NULL; t = t_next) {
		STM_LOADP(stx, &t->next, &t_next);
		if (a->only != 0 && t->id != a->only)
			continue;
		if (a->conn != 0 && t->conn != a->conn)
			continue;
		STM_LOAD(stx, &t->state, &state);
		STM_LOAD(stx, &t->nready, &nready);
		if (a->n < a->max) {
			struct tx_info *i = &a->out[a->n];
			i->id = t->id;
			i->owner = t->owner;
			i->leader = t->leader;
			memcpy(i->label, t->label, sizeof(i->label));
			i->started = t->started;
			i->state = (enum tx_state)state;
			i->changes = nready;
			i->conn = t->conn;
		}
		a->n++;
	}
	return 0;
}

static int cmp_info(const void *x, const void *y)
{
	const struct tx_info *a = x, *b = y;
	return a->id < b->id ? -1 : a->id > b->id;
}

size_t tx_list(struct tx_table *tt, struct tx_info *out, size_t max)
{
	struct list_args a = { .tt = tt, .out = out, .max = max };

	if (stm_atomically(list_body, &a, STM_RO) < 0)
		return 0;
	size_t n = a.n < max ? a.n : max;
	qsort(out, n, sizeof(*out), cmp_info);
	for (size_t i = 0; i < n; i++)
		out[i].members = membership_count(tt->cfg.members, out[i].id);
	return a.n;
}

uint64_t tx_by_conn(struct tx_table *tt, uint64_t conn)
{
	struct tx_info info;
	struct list_args a = { .tt = tt, .out = &info, .max = 1, .conn = conn };

	if (conn == 0 || stm_atomically(list_body, &a, STM_RO) < 0 || a.n == 0)
		return 0;
	return info.state == TX_OPEN ? info.id : 0;
}

struct paths_args {
	struct tx_table *tt;
	uint64_t id;
	char **paths;
	size_t n, cap;
};

static int paths_body(struct stm_tx *stx, void *arg)
{
	struct shadow *s_next;
	struct paths_args *a = arg;
	struct shadow *s;
	uintptr_t state;
	struct tx *t;
	int ret;

	for (size_t i = 0; i < a->n; i++)
		free(a->paths[i]);
	a->n = 0;
	ret = find_tx(stx, a->tt, a->id, &t);
	if (ret != 0 || t == NULL)
		return ret != 0 ? ret : -ENOENT;
	STM_LOADP(stx, &t->shadows, &s);
	for (; s != NULL; s = s_next) {
		STM_LOADP(stx, &s->next_tx, &s_next);
		STM_LOAD(stx, &s->state, &state);
		if (state == SH_COPYING)
			continue;
		if (a->n == a->cap) {
			size_t cap = a->cap * 2 + 16;
			char **v = realloc(a->paths, cap * sizeof(*v));
			if (v == NULL)
				return -ENOMEM;
			a->paths = v;
			a->cap = cap;
		}
		a->paths[a->n] = strdup(s->path);
		if (a->paths[a->n] == NULL)
			return -ENOMEM;
		a->n++;
	}
	return 0;
}

int tx_show(struct tx_table *tt, uint64_t id, struct tx_info *out,
	    void (*fn)(const char *path, const char *change, void *arg),
	    void *arg)
{
	struct list_args l = { .tt = tt, .out = out, .max = 1, .only = id };
	struct paths_args p = { .tt = tt, .id = id };
	int ret;

	ret = stm_atomically(list_body, &l, STM_RO);
	if (ret < 0)
		return ret;
	if (l.n == 0)
		return -ENOENT;
	out->members = membership_count(tt->cfg.members, id);
	ret = stm_atomically(paths_body, &p, STM_RO);
	for (size_t i = 0; i < p.n; i++) {
		if (ret == 0 && fn != NULL)
			fn(p.paths[i], "modified", arg);
		free(p.paths[i]);
	}
	free(p.paths);
	return ret;
}

/* ---- the table ---------------------------------------------------------- */

/* Removes STATEDIR/dirname (tx-ID) and what it holds; false if absent. */
static bool remove_named(struct tx_table *tt, const char *dirname)
{
	struct tx t = { 0 };

	if (strlen(dirname) >= sizeof(t.dirname))
		return false;
	memcpy(t.dirname, dirname, strlen(dirname) + 1);
	t.dirfd = openat(tt->statedir_fd, t.dirname,
			 O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (t.dirfd < 0)
		return false;
	remove_dir(tt, &t, false);
	return true;
}

/*
 * Redoes one committed record that was not applied, from the step the
 * journal recorded (checkpoint.c explains why that is safe).
 */
static int redo_record(uint64_t txid, const struct journal_change *c, size_t n,
		       size_t steps, void *arg)
{
	struct tx_table *tt = arg;
	struct checkpoint_env env = {
		.statedir_fd = tt->statedir_fd,
		.nodes = tt->cfg.nodes,
		.journal = tt->cfg.journal,
		.recovery = true,
	};
	struct checkpoint_stats cs = { 0 };
	int ret;

	log_info("recovery: redoing transaction %" PRIu64 " from step %zu of "
		 "%zu",
		 txid, steps + 1, n);
	ret = checkpoint_apply(&env, txid, c, n, steps, &cs);
	tt->recovery.records++;
	tt->recovery.steps += cs.steps;
	tt->recovery.already += cs.already + steps;
	tt->recovery.skipped += cs.skipped;
	if (ret < 0)
		return ret;
	log_info("recovery: transaction %" PRIu64 " applied (%zu step(s) "
		 "redone, %zu found done)",
		 txid, cs.steps, cs.already + steps);
	/* Its shadows are no longer needed. */
	char dirname[32];
	snprintf(dirname, sizeof(dirname), "tx-%" PRIu64, txid);
	remove_named(tt, dirname);
	return 0;
}

/*
 * Removes what unfinished transactions of an earlier run left in the state
 * dir (recovery has removed the directories of the records it redid).
 */
static void remove_leftovers(struct tx_table *tt)
{
	int fd =
	    openat(tt->statedir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "tx-", 3) != 0 ||
		    !remove_named(tt, e->d_name))
			continue;
		log_info("removed %s, left by a transaction of an earlier run",
			 e->d_name);
		tt->recovery.discarded++;
	}
	closedir(d);
}

int tx_table_new(const struct tx_config *cfg, struct tx_table **out)
{
	struct tx_table *tt;
	uint64_t max = 0;
	int ret;

	tt = calloc(1, sizeof(*tt));
	if (tt == NULL)
		return -ENOMEM;
	tt->cfg = *cfg;
	tt->statedir_fd = statedir_fd(cfg->state);
	tt->buckets = calloc(TX_BUCKETS, sizeof(*tt->buckets));
	if (tt->buckets == NULL) {
		ret = -ENOMEM;
		goto out_free_table;
	}
	for (size_t i = 0; i < TX_BUCKETS; i++)
		stm_tvar_init(&tt->buckets[i], 0);
	stm_tvar_init(&tt->txs, 0);
	atomic_init(&tt->live, 0);
	atomic_init(&tt->ntx, 0);
	pthread_mutex_init(&tt->id_lock, NULL);

	/*
	 * Redo what was committed but not applied, then clear the rest.  A
	 * record that cannot be redone stops the start: serving SOURCE half
	 * changed would break atomicity, and its shadows must stay.
	 */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = journal_pending(cfg->journal, redo_record, tt);
	if (ret < 0)
		goto out_free_buckets;
	crash_point(CRASH_RECOVERY_REDONE);
	remove_leftovers(tt);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	tt->recovery.ms = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000 +
				     (t1.tv_nsec - t0.tv_nsec) / 1000000);
	if (tt->recovery.records + tt->recovery.discarded > 0)
		log_info("recovery: %zu record(s) redone (%zu step(s), %zu "
			 "found done, %zu skipped), %zu unfinished "
			 "transaction(s) discarded, in %" PRIu64 " ms",
			 tt->recovery.records, tt->recovery.steps,
			 tt->recovery.already, tt->recovery.skipped,
			 tt->recovery.discarded, tt->recovery.ms);
	ret = journal_max_txid(cfg->journal, &max);
	if (ret < 0)
		goto out_free_buckets;
	tt->next_id = max + 1;
	tt->reserved = tt->next_id;
	*out = tt;
	return 0;

out_free_buckets:
	pthread_mutex_destroy(&tt->id_lock);
	free(tt->buckets);
out_free_table:
	free(tt);
	return ret;
}

void tx_recovery_get(struct tx_table *tt, struct tx_recovery *out)
{
	*out = tt->recovery;
}

void tx_table_free(struct tx_table *tt)
{
	struct tx_info info[64];
	size_t n;

	if (tt == NULL)
		return;
	/* Every transaction still open is aborted (DESIGN.md, lifetime). */
	while ((n = tx_list(tt, info, 64)) > 0) {
		size_t ended = 0;
		for (size_t i = 0; i < n && i < 64; i++)
			if (tx_abort(tt, info[i].id, 0) == 0)
				ended++;
		if (ended == 0)
			break;
	}
	stm_quiesce();
	pthread_mutex_destroy(&tt->id_lock);
	free(tt->buckets);
	free(tt);
}

struct inv_args {
	struct tx_table *tt;
	bool ok;
};

static int inv_body(struct stm_tx *stx, void *arg)
{
	struct shadow *s_next;
	struct tx *t_next;
	struct inv_args *a = arg;
	struct tx *t;

	a->ok = true;
	STM_LOADP(stx, &a->tt->txs, &t);
	for (; t != NULL; t = t_next) {
		STM_LOADP(stx, &t->next, &t_next);
		struct shadow *s;
		uintptr_t nready, ncopying, state;
		size_t r = 0, c = 0;
		STM_LOAD(stx, &t->nready, &nready);
		STM_LOAD(stx, &t->ncopying, &ncopying);
		STM_LOADP(stx, &t->shadows, &s);
		for (; s != NULL; s = s_next) {
			STM_LOADP(stx, &s->next_tx, &s_next);
			STM_LOAD(stx, &s->state, &state);
			if (s->tx != t)
				a->ok = false;
			if (state == SH_COPYING)
				c++;
			else
				r++;
		}
		if (r != nready || c > ncopying)
			a->ok = false; /* invariant (2) */
	}
	return 0;
}

bool tx_table_invariants(struct tx_table *tt)
{
	struct inv_args a = { .tt = tt };

	return stm_atomically(inv_body, &a, STM_RO) == 0 && a.ok;
}

/* ---- diff ---------------------------------------------------------------- */

/* The absolute path of the object open at fd (via /proc), or NULL. */
static char *fd_abs(int fd)
{
	char link[64], buf[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/* The absolute path of the object behind h, or NULL. */
static char *handle_abs(const struct handle *h)
{
	int fd = handle_open(h, O_PATH | O_NOFOLLOW);
	char *p;

	if (fd < 0)
		return NULL;
	p = fd_abs(fd);
	close(fd);
	return p;
}

static bool same_obj(const struct node_key *a, const struct node_key *b)
{
	return a->ino == b->ino && a->dev == b->dev;
}

/* The path of (dh, name) in the base, "/dir/name". */
static char *base_path(struct tx_table *tt, const struct handle *dh,
		       const char *name)
{
	int dfd = open_dir(tt, dh);
	char *p;

	if (dfd < 0)
		return NULL;
	p = mount_path(tt, dfd, name);
	close(dfd);
	return p;
}

/* The path of directory dir in the view ("" for the root). */
static char *view_dir_path(struct tx_table *tt, const struct view_name *v,
			   size_t n, const struct node_key *dir,
			   const struct handle *dh, int depth)
{
	struct node_key root;
	char *parent, *out;

	node_get_key(node_root(tt->cfg.nodes), &root);
	if (same_obj(dir, &root) || depth > 4096)
		return strdup("");
	for (size_t i = 0; i < n; i++) {
		if (!v[i].found || !same_obj(&v[i].obj.key, dir))
			continue;
		parent = view_dir_path(tt, v, n, &v[i].dir, v[i].dh, depth + 1);
		if (parent == NULL ||
		    asprintf(&out, "%s/%s", parent, v[i].name) < 0)
			out = NULL;
		free(parent);
		return out;
	}
	/* Not moved in the view: where the base has it. */
	int fd = dh != NULL ? handle_open(dh, O_PATH | O_DIRECTORY) : -1;
	if (fd < 0)
		return strdup("/?");
	char *abs = fd_abs(fd), *p = NULL;
	close(fd);
	size_t slen = strlen(tt->cfg.source_path);
	if (abs != NULL && strncmp(abs, tt->cfg.source_path, slen) == 0)
		p = strdup(abs + slen);
	free(abs);
	return p;
}

static char *view_path(struct tx_table *tt, const struct view_name *v, size_t n,
		       const struct view_name *x)
{
	char *dir = view_dir_path(tt, v, n, &x->dir, x->dh, 0), *out;

	if (dir == NULL || asprintf(&out, "%s/%s", dir, x->name) < 0)
		out = NULL;
	free(dir);
	return out;
}

/* Where a copied-up file is in the view (its directory may have moved). */
static char *shadow_view_path(struct tx_table *tt, const struct view_name *v,
			      size_t n, const struct shadow *s)
{
	struct node_key pkey = { 0 };
	struct stat st;
	char *dir, *out;
	int fd;

	fd = open_dir(tt, s->parent);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return strdup(s->path);
	}
	close(fd);
	pkey.dev = st.st_dev;
	pkey.ino = st.st_ino;
	dir = view_dir_path(tt, v, n, &pkey, s->parent, 0);
	if (dir == NULL || asprintf(&out, "%s/%s", dir, s->name) < 0)
		out = strdup(s->path);
	free(dir);
	return out;
}

void tx_changes_free(struct tx_change *c, size_t n)
{
	for (size_t i = 0; c != NULL && i < n; i++) {
		free(c[i].path);
		free(c[i].old);
		free(c[i].old_file);
		free(c[i].new_file);
	}
	free(c);
}

struct changes {
	struct tx_change *v;
	size_t n, cap;
	struct node_key *keys; /* the object each change is about */
};

static struct tx_change *change_add(struct changes *c, char kind,
				    const struct node_key *key)
{
	if (c->n == c->cap) {
		size_t cap = c->cap * 2 + 16;
		struct tx_change *v = realloc(c->v, cap * sizeof(*v));
		struct node_key *k = realloc(c->keys, cap * sizeof(*k));
		if (v != NULL)
			c->v = v;
		if (k != NULL)
			c->keys = k;
		if (v == NULL || k == NULL)
			return NULL;
		c->cap = cap;
	}
	memset(&c->v[c->n], 0, sizeof(c->v[0]));
	c->v[c->n].kind = kind;
	c->v[c->n].type = key->type;
	c->keys[c->n] = *key;
	return &c->v[c->n++];
}

static int cmp_change(const void *a, const void *b)
{
	const struct tx_change *x = a, *y = b;
	return strcmp(x->path != NULL ? x->path : "",
		      y->path != NULL ? y->path : "");
}

static char *source_file(struct tx_table *tt, const char *path)
{
	char *out;

	if (path == NULL || asprintf(&out, "%s%s",
				     strcmp(tt->cfg.source_path, "/") == 0
					 ? ""
					 : tt->cfg.source_path,
				     path) < 0)
		return NULL;
	return out;
}

int tx_diff(struct tx_table *tt, uint64_t id, uid_t requester,
	    struct tx_change **out, size_t *nout)
{
	struct auth_args a = {
		.tt = tt,
		.id = id,
		.requester = requester,
		.from = TX_OPEN,
		.check_only = true,
	};
	struct snap_args snap = { 0 };
	struct changes c = { 0 };
	struct view_name *v = NULL;
	size_t n = 0;
	int ret;

	*out = NULL;
	*nout = 0;
	/* Runs on the worker, so no commit or abort frees what it reads. */
	ret = stm_atomically(start_body, &a, STM_RO);
	if (ret == 0)
		ret = view_names(tt->cfg.views, id, &v, &n);
	if (ret == 0)
		ret = snapshot(a.t, &snap);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		struct view_name *x = &v[i];
		struct tx_change *ch;
		if (x->found) {
			const struct node_key *k = &x->obj.key;
			struct view_name *from = NULL;
			if (x->base.existed && same_obj(&x->base.key, k))
				continue;
			for (size_t j = 0; j < n && from == NULL; j++)
				if (j != i && !v[j].found &&
				    v[j].base.existed &&
				    same_obj(&v[j].base.key, k))
					from = &v[j];
			char kind = from != NULL		  ? 'R'
				    : !x->base.existed		  ? 'A'
				    : x->base.key.type != k->type ? 'T'
								  : 'M';
			ch = change_add(&c, kind, k);
			if (ch == NULL) {
				ret = -ENOMEM;
				break;
			}
			ch->path = view_path(tt, v, n, x);
			if (from != NULL)
				ch->old = base_path(tt, from->dh, from->name);
			if (kind == 'R' && ch->old == NULL)
				ch->kind = kind = 'A'; /* lost track of it */
			ch->new_file = handle_abs(x->obj.handle);
			if (kind == 'R')
				ch->old_file = source_file(tt, ch->old);
			else if (kind != 'A') {
				char *bp = base_path(tt, x->dh, x->name);
				ch->old_file = source_file(tt, bp);
				free(bp);
			}
		} else {
			bool moved = false;
			if (!x->base.existed)
				continue;
			for (size_t j = 0; j < n && !moved; j++)
				moved = v[j].found &&
					same_obj(&v[j].obj.key, &x->base.key);
			if (moved)
				continue;
			ch = change_add(&c, 'D', &x->base.key);
			if (ch == NULL) {
				ret = -ENOMEM;
				break;
			}
			ch->path = base_path(tt, x->dh, x->name);
			ch->old_file = source_file(tt, ch->path);
		}
	}
	/* Content and attribute changes of base files. */
	for (size_t i = 0; ret == 0 && i < snap.n; i++) {
		struct shadow *s = snap.v[i];
		struct tx_change *ch = NULL;
		struct stat sst;
		bool gone = false;
		for (size_t j = 0; j < c.n && ch == NULL; j++)
			if (same_obj(&c.keys[j], &s->base))
				ch = &c.v[j];
		for (size_t j = 0; j < n && !gone; j++)
			gone = !v[j].found && v[j].base.existed &&
			       same_obj(&v[j].base.key, &s->base);
		if (ch == NULL && gone)
			continue; /* deleted; reported as such */
		if (ch == NULL) {
			ch = change_add(&c, 'M', &s->base);
			if (ch == NULL) {
				ret = -ENOMEM;
				break;
			}
			ch->path = shadow_view_path(tt, v, n, s);
			ch->old_file = source_file(tt, s->path);
		}
		free(ch->new_file);
		ch->new_file = handle_abs(s->handle);
		int sfd = handle_open(s->handle, O_PATH | O_NOFOLLOW);
		if (sfd >= 0 && fstat(sfd, &sst) == 0)
			ch->mode_changed = (sst.st_mode & 07777) !=
					   (s->base_st.st_mode & 07777);
		if (sfd >= 0)
			close(sfd);
	}
	free(snap.v);
	view_names_free(v, n);
	free(c.keys);
	if (ret < 0) {
		tx_changes_free(c.v, c.n);
		return ret;
	}
	qsort(c.v, c.n, sizeof(c.v[0]), cmp_change);
	*out = c.v;
	*nout = c.n;
	return 0;
}
