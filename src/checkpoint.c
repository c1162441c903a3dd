/*
 * checkpoint.c: applying committed journal records to SOURCE (see
 * checkpoint.h).
 *
 * RESPONSIBILITY
 *
 * A record lists the content changes first (REPLACE: rename a shadow over
 * the base name; WRITE_INTO: copy a shadow into a base inode with several
 * links), then the name operations in the order the transaction made them
 * (CREATE and MKDIR move an object made in the transaction's directory to
 * its name; UNLINK, RMDIR, RENAME, LINK).  Name operations carry the
 * identity (base_dev, base_ino) of the object they act on as it is in
 * SOURCE at that step: for a file whose content was replaced, the
 * shadow's.  This module performs the steps, makes them durable and
 * records progress in the journal.  It keeps no state between calls.
 *
 * WHY REDOING IS SAFE
 *
 * A crash can stop the checkpoint anywhere.  Recovery resumes at the
 * record's steps (journal_mark_steps): the steps before it are done and
 * durable, the steps from it on may or may not be.  Each step therefore
 * finds out whether it is done before it acts, exactly:
 *
 *   REPLACE, CREATE, MKDIR  done iff the shadow is gone from the state
 *                           directory: only this step moves it away.
 *   WRITE_INTO              always redone: it writes the same bytes into
 *                           the same inode, so twice is once.
 *   UNLINK, RMDIR, RENAME   done iff the (first) name no longer holds the
 *                           object.
 *   LINK                    done iff the name holds the object.
 *
 * The name checks are exact only if no later step of the record touches
 * the same names again: a later step could put the object back.  So
 * (invariant 1) after a step whose names a later step touches, every step
 * so far is made durable and recorded before the next one runs.  Then
 * after a crash at most one such step is in doubt, the steps after it were
 * never started, and the check of every step between the last mark and the
 * crash is exact.  Content steps never need a mark.
 *
 * INVARIANTS
 *
 *  (1) When step i has marks[i] set, steps 0..i are durable and recorded
 *      with journal_mark_steps before step i + 1 begins.
 *  (2) A record is marked applied only after every step succeeded (or was
 *      skipped) and every directory the steps touched, and the directories
 *      the shadows left, were fsynced.
 *  (3) No step acts on an object whose identity differs from the one the
 *      record names (REPLACE and CREATE move a shadow, whose name in the
 *      state directory is its identity).
 */
#include "config.h"

#include "checkpoint.h"

#include "copy.h"
#include "crash.h"
#include "log.h"
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- which steps need a mark -------------------------------------------- */

/* One (directory, name) a step touches. */
struct name_key {
	const void *dir; /* handle bytes; NULL: the root */
	size_t dirlen;
	const char *name;
	uint64_t hash;
	size_t last; /* the last step touching it */
};

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * UINT64_C(1099511628211);
	return h;
}

static bool is_name_op(enum journal_kind k)
{
	return k == JOURNAL_UNLINK || k == JOURNAL_RMDIR ||
	       k == JOURNAL_RENAME || k == JOURNAL_LINK ||
	       k == JOURNAL_CREATE || k == JOURNAL_MKDIR;
}

/* The names step c touches: 0, 1 or 2 of them. */
static size_t step_names(const struct journal_change *c, struct name_key k[2])
{
	size_t n = 0;

	if (!is_name_op(c->kind) || c->name == NULL)
		return 0;
	k[n++] = (struct name_key){ c->parent, c->parent_len, c->name, 0, 0 };
	if (c->kind == JOURNAL_RENAME && c->name2 != NULL)
		k[n++] = (struct name_key){ c->parent2, c->parent2_len,
					    c->name2, 0, 0 };
	for (size_t i = 0; i < n; i++) {
		uint64_t h = UINT64_C(14695981039346656037);
		h = fnv(h, &k[i].dirlen, sizeof(k[i].dirlen));
		if (k[i].dir != NULL)
			h = fnv(h, k[i].dir, k[i].dirlen);
		k[i].hash = fnv(h, k[i].name, strlen(k[i].name) + 1);
	}
	return n;
}

static bool same_name(const struct name_key *a, const struct name_key *b)
{
	return a->hash == b->hash && a->dirlen == b->dirlen &&
	       (a->dirlen == 0 || memcmp(a->dir, b->dir, a->dirlen) == 0) &&
	       strcmp(a->name, b->name) == 0;
}

/* Finds k's slot in an open-addressing table of cap (a power of two). */
static struct name_key *slot_of(struct name_key *tab, size_t cap,
				const struct name_key *k)
{
	for (size_t h = k->hash & (cap - 1);; h = (h + 1) & (cap - 1))
		if (tab[h].name == NULL || same_name(&tab[h], k))
			return &tab[h];
}

bool *checkpoint_marks(const struct journal_change *c, size_t n)
{
	struct name_key k[2], *tab;
	size_t cap = 16;
	bool *marks;

	while (cap < 4 * n)
		cap *= 2;
	marks = calloc(n ? n : 1, sizeof(*marks));
	tab = calloc(cap, sizeof(*tab));
	if (marks == NULL || tab == NULL) {
		free(marks);
		free(tab);
		return NULL;
	}
	/* The last step touching each name. */
	for (size_t i = 0; i < n; i++) {
		size_t m = step_names(&c[i], k);
		for (size_t j = 0; j < m; j++) {
			struct name_key *s = slot_of(tab, cap, &k[j]);
			*s = k[j];
			s->last = i;
		}
	}
	/* Exact steps (CREATE, MKDIR) never need one. */
	for (size_t i = 0; i < n; i++) {
		size_t m = step_names(&c[i], k);
		if (c[i].kind == JOURNAL_CREATE || c[i].kind == JOURNAL_MKDIR)
			continue;
		for (size_t j = 0; j < m; j++)
			if (slot_of(tab, cap, &k[j])->last > i)
				marks[i] = true;
	}
	free(tab);
	return marks;
}

/* ---- directories to make durable ---------------------------------------- */

/* A directory a step touched: handle bytes (NULL: the root) or a path. */
struct dirref {
	const void *h;
	size_t len;
	const char *shadow; /* "tx-ID/N": the shadow's directory */
};

struct dirset {
	struct dirref *v;
	size_t n, cap;
};

static int dirset_add(struct dirset *d, const void *h, size_t len,
		      const char *shadow)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct dirref *v = realloc(d->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = (struct dirref){ h, len, shadow };
	return 0;
}

/* Orders handles, then shadow directories by the part before the '/'. */
static int cmp_dirref(const void *x, const void *y)
{
	const struct dirref *a = x, *b = y;

	if ((a->shadow != NULL) != (b->shadow != NULL))
		return a->shadow != NULL ? 1 : -1;
	if (a->shadow != NULL) {
		size_t la = strcspn(a->shadow, "/");
		size_t lb = strcspn(b->shadow, "/");
		int r = memcmp(a->shadow, b->shadow, la < lb ? la : lb);
		return r != 0 ? r : (la > lb) - (la < lb);
	}
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return a->len == 0 ? 0 : memcmp(a->h, b->h, a->len);
}

/* ---- opening what the journal names ------------------------------------- */

/*
 * Opens an object from handle bytes with flags (O_PATH plus O_DIRECTORY or
 * O_NOFOLLOW, or O_WRONLY); no bytes name the root directory.
 */
static int open_handle(const struct checkpoint_env *env, const void *h,
		       size_t len, int flags)
{
	struct file_handle *fh;
	int fd;

	if ((h == NULL || len == 0) && (flags & O_DIRECTORY))
		return node_open_root(env->nodes);
	if (h == NULL || len < sizeof(struct file_handle))
		return -EINVAL;
	fh = malloc(len);
	if (fh == NULL)
		return -ENOMEM;
	memcpy(fh, h, len);
	/* Any descriptor on the file system names the mount: SOURCE's. */
	fd = open_by_handle_at(env->statedir_fd, fh, flags | O_CLOEXEC);
	free(fh);
	return fd < 0 ? -errno : fd;
}

static int fsync_fd_dir(int pfd)
{
	int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Fsyncs every directory in d once, then empties d. */
static int dirset_sync(const struct checkpoint_env *env, struct dirset *d)
{
	int ret = 0;

	qsort(d->v, d->n, sizeof(*d->v), cmp_dirref);
	for (size_t i = 0; i < d->n && ret == 0; i++) {
		int fd;

		if (i > 0 && cmp_dirref(&d->v[i - 1], &d->v[i]) == 0)
			continue;
		if (d->v[i].shadow != NULL) {
			char dir[64];
			size_t l = strcspn(d->v[i].shadow, "/");
			snprintf(dir, sizeof(dir), "%.*s", (int)l,
				 d->v[i].shadow);
			fd = openat(env->statedir_fd, dir,
				    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			fd = fd < 0 ? -errno : fd;
		} else {
			fd = open_handle(env, d->v[i].h, d->v[i].len,
					 O_PATH | O_DIRECTORY);
		}
		if (fd == -ENOENT || fd == -ESTALE)
			continue; /* gone: nothing of it to make durable */
		if (fd < 0) {
			ret = fd;
			break;
		}
		ret = fsync_fd_dir(fd);
		close(fd);
	}
	d->n = 0;
	return ret;
}

/* ---- the steps ---------------------------------------------------------- */

/* 1 if pfd/name is the object (dev, ino), 0 if not or absent, or -errno. */
static int name_holds(int pfd, const char *name, uint64_t dev, uint64_t ino)
{
	struct stat st;

	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

/* 1 if the shadow is still in the state directory, 0 if not, or -errno. */
static int shadow_present(const struct checkpoint_env *env, const char *shadow)
{
	struct stat st;

	if (shadow == NULL)
		return -EINVAL;
	if (fstatat(env->statedir_fd, shadow, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 1;
}

/* Copies the shadow's data and attributes into the base inode. */
static int write_into(const struct checkpoint_env *env,
		      const struct journal_change *c, int pfd)
{
	struct stat sst, bst;
	int sfd, bfd, ret;

	sfd = openat(env->statedir_fd, c->shadow,
		     O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (sfd < 0)
		return -errno;
	/* By handle when the record has one: names may have moved since. */
	if (c->parent2 != NULL && c->parent2_len > 0)
		bfd = open_handle(env, c->parent2, c->parent2_len, O_WRONLY);
	else
		bfd = openat(pfd, c->name,
			     O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (bfd < 0) {
		ret = bfd == -1 ? -errno : bfd;
		/* Gone: a later step of the record removed every link. */
		if (ret == -ESTALE || ret == -ENOENT)
			ret = 0;
		goto out_close_shadow;
	}
	if (fstat(bfd, &bst) < 0 || fstat(sfd, &sst) < 0) {
		ret = -errno;
		goto out_close;
	}
	if ((uint64_t)bst.st_ino != c->base_ino ||
	    (uint64_t)bst.st_dev != c->base_dev) {
		ret = 0; /* the name moved on: a later step changed it */
		goto out_close;
	}
	if (ftruncate(bfd, 0) < 0) {
		ret = -errno;
		goto out_close;
	}
	ret = copy_data(sfd, bfd, sst.st_size, false);
	if (ret == 0)
		ret = copy_meta(sfd, bfd, &sst);
	if (ret == 0 && fsync(bfd) < 0)
		ret = -errno;
out_close:
	close(bfd);
out_close_shadow:
	close(sfd);
	return ret;
}

/* What step() did, or -errno. */
enum {
	STEP_ALREADY = 0, /* found the step done */
	STEP_DONE = 1,	  /* performed it */
	STEP_GONE = 2,	  /* skipped: its target is gone from SOURCE */
};

/*
 * Performs one step if it is not done yet.  Adds the directories to make
 * durable.  WRITE_INTO into an inode that no longer exists is done: only a
 * later step of the record (or a removal outside) deletes it.
 */
static int step(const struct checkpoint_env *env,
		const struct journal_change *c, int pfd, struct dirset *dirs)
{
	int p2 = -1, ofd, r;

	switch (c->kind) {
	case JOURNAL_REPLACE:
	case JOURNAL_CREATE:
	case JOURNAL_MKDIR:
		r = shadow_present(env, c->shadow);
		if (r <= 0)
			return r;
		if (dirset_add(dirs, NULL, 0, c->shadow) < 0)
			return -ENOMEM;
		if (renameat2(
			env->statedir_fd, c->shadow, pfd, c->name,
			c->kind == JOURNAL_REPLACE ? 0 : RENAME_NOREPLACE) < 0)
			return -errno;
		if (c->kind == JOURNAL_REPLACE)
			node_mark_dead(env->nodes, (dev_t)c->base_dev,
				       (ino_t)c->base_ino);
		return STEP_DONE;
	case JOURNAL_WRITE_INTO:
		r = write_into(env, c, pfd);
		return r < 0 ? r : STEP_DONE;
	case JOURNAL_UNLINK:
	case JOURNAL_RMDIR:
		r = name_holds(pfd, c->name, c->base_dev, c->base_ino);
		if (r <= 0)
			return r;
		if (unlinkat(pfd, c->name,
			     c->kind == JOURNAL_RMDIR ? AT_REMOVEDIR : 0) < 0)
			return -errno;
		return STEP_DONE;
	case JOURNAL_RENAME:
		r = name_holds(pfd, c->name, c->base_dev, c->base_ino);
		if (r <= 0)
			return r;
		p2 = open_handle(env, c->parent2, c->parent2_len,
				 O_PATH | O_DIRECTORY);
		if (p2 == -ESTALE || p2 == -ENOENT)
			return STEP_GONE;
		if (p2 < 0)
			return p2;
		r = dirset_add(dirs, c->parent2, c->parent2_len, NULL);
		if (r == 0 &&
		    renameat2(pfd, c->name, p2, c->name2, c->flags) < 0)
			r = -errno;
		close(p2);
		return r < 0 ? r : STEP_DONE;
	case JOURNAL_LINK:
		r = name_holds(pfd, c->name, c->base_dev, c->base_ino);
		if (r != 0)
			return r < 0 ? r : STEP_ALREADY;
		ofd = open_handle(env, c->parent2, c->parent2_len,
				  O_PATH | O_NOFOLLOW);
		if (ofd == -ESTALE || ofd == -ENOENT)
			return STEP_GONE;
		if (ofd < 0)
			return ofd;
		r = linkat(ofd, "", pfd, c->name, AT_EMPTY_PATH) < 0
			? -errno
			: STEP_DONE;
		close(ofd);
		return r;
	case JOURNAL_SETATTR:
		break;
	}
	return -EINVAL;
}

static bool same_parent(const struct journal_change *a,
			const struct journal_change *b)
{
	size_t la = a->parent != NULL ? a->parent_len : 0;
	size_t lb = b->parent != NULL ? b->parent_len : 0;

	return la == lb && (la == 0 || memcmp(a->parent, b->parent, la) == 0);
}

static const char *step_what(const struct journal_change *c)
{
	if (c->path != NULL)
		return c->path;
	return c->name != NULL ? c->name : "?";
}

int checkpoint_apply(const struct checkpoint_env *env, uint64_t txid,
		     const struct journal_change *c, size_t n, size_t from,
		     struct checkpoint_stats *stats)
{
	struct dirset dirs = { 0 };
	bool *marks;
	size_t i, pfrom = 0;
	int pfd = -1, ret = 0;

	marks = checkpoint_marks(c, n);
	if (marks == NULL)
		return -ENOMEM;
	for (i = from; i < n; i++) {
		/* Consecutive steps in one directory share its descriptor. */
		if (pfd < 0 || !same_parent(&c[pfrom], &c[i])) {
			if (pfd >= 0)
				close(pfd);
			pfd = open_handle(env, c[i].parent, c[i].parent_len,
					  O_PATH | O_DIRECTORY);
			pfrom = i;
		}
		if (pfd == -ESTALE || pfd == -ENOENT) {
			log_warn("transaction %" PRIu64 ": the directory of "
				 "%s is gone from the source; step %zu "
				 "skipped",
				 txid, step_what(&c[i]), i + 1);
			stats->skipped++;
			continue;
		}
		if (pfd < 0) {
			ret = pfd;
			goto out_fail;
		}
		ret = dirset_add(&dirs, c[i].parent, c[i].parent_len, NULL);
		if (ret == 0)
			ret = step(env, &c[i], pfd, &dirs);
		if (ret < 0)
			goto out_fail;
		if (ret == STEP_GONE) {
			log_warn("transaction %" PRIu64 ": the target of %s is "
				 "gone from the source; step %zu skipped",
				 txid, step_what(&c[i]), i + 1);
			stats->skipped++;
		} else if (ret == STEP_DONE) {
			stats->steps++;
		} else {
			stats->already++;
		}
		crash_point(env->recovery ? CRASH_RECOVERY_STEP
					  : CRASH_CHECKPOINT_STEP);
		if (marks[i] && i + 1 < n) {
			/* Invariant (1). */
			ret = dirset_sync(env, &dirs);
			if (ret == 0)
				ret = journal_mark_steps(env->journal, txid,
							 i + 1);
			if (ret < 0)
				goto out_fail_mark;
			stats->marks++;
		}
	}
	if (pfd >= 0)
		close(pfd);
	pfd = -1;
	/* Invariant (2). */
	ret = dirset_sync(env, &dirs);
	if (ret < 0)
		goto out_fail_mark;
	if (!env->recovery)
		crash_point(CRASH_CHECKPOINT_DONE);
	ret = journal_mark_applied(env->journal, txid);
	if (ret < 0)
		goto out_fail_mark;
	free(dirs.v);
	free(marks);
	return 0;

out_fail:
	log_err("transaction %" PRIu64 ": cannot apply step %zu of %zu (%s): "
		"%s; the journal keeps it for recovery",
		txid, i + 1, n, step_what(&c[i]), strerror(-ret));
	goto out_free;
out_fail_mark:
	log_err("transaction %" PRIu64 ": cannot make its applied steps "
		"durable: %s; the journal keeps it for recovery",
		txid, strerror(-ret));
out_free:
	if (pfd >= 0)
		close(pfd);
	free(dirs.v);
	free(marks);
	return ret;
}
