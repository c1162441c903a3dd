/*
 * fs_ops.c: the FUSE low-level callbacks (pass-through to SOURCE).
 *
 * Every callback works relative to descriptors: the O_PATH descriptor of the
 * node it names (node_fd_get) or the file handle of an open file, and the
 * *at() system calls.  No path string is ever built from names, so a rename
 * racing a lookup cannot redirect an operation outside SOURCE.  The only
 * paths used are /proc/self/fd/N, to reach an object through its own
 * descriptor where Linux has no AT_EMPTY_PATH variant.
 *
 * Invariants:
 *  (1) Every descriptor taken with node_fd_get is released with
 *      node_fd_put before the callback replies.
 *  (2) Every reply that hands the kernel a nodeid (entry, create) follows
 *      exactly one node reference; if the reply fails, or readdirplus
 *      cannot fit the entry, the reference is dropped again.
 *  (3) The state directory is never reachable: its name in the root is
 *      not listed, not found, and cannot be created, renamed or linked.
 *  (4) Objects created for a caller other than the daemon's own user are
 *      owned by the caller (and the parent's group for set-group-ID dirs).
 *  (5) An open file's descriptor is closed only when no request is using
 *      it (of_free waits for busy == 0).
 */
#include "config.h"

#include "fs_ops.h"

#include "handle.h"
#include "log.h"
#include "node.h"
#include "statedir.h"
#include "tx.h"
#include "view.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

struct open_file;

struct fs {
	struct fs_config cfg; /* immutable */
	/*
	 * Every open file, so shutdown can close those the kernel never
	 * released (a lazy unmount ends the session before their RELEASE).
	 * Guarded by files_lock, held only to link and unlink.
	 */
	pthread_mutex_t files_lock;
	struct open_file *files;
	/*
	 * CLOCK_MONOTONIC nanosecond until which the kernel may cache an
	 * entry or attributes replied with a positive timeout (atomic).
	 */
	_Atomic int64_t cache_deadline;
};

/*
 * An open file or directory (fi->fh).  busy counts the requests using it.
 * The kernel sends RELEASE only after every other request on the handle has
 * been answered; the release/acquire pair on busy (of_put, of_free) makes
 * that order visible to the C11 memory model, and so to ThreadSanitizer
 * (invariant 5).
 */
struct open_file {
	int fd;
	/* A base-view regular file open for writing: its writes are noted
	 * for the conflict check (tx_note_base_write).  Immutable. */
	bool base_write;
	struct node_key key;
	DIR *dp;	      /* directories: the stream over fd */
	struct dirent *entry; /* directories: read but not yet returned */
	off_t offset;	      /* directories: where the kernel last read */
	/*
	 * Directories opened in a transaction's view (or while a commit is
	 * being published) are listed from a snapshot of the merged view,
	 * taken at offset 0, with offsets that are indexes into it.
	 */
	bool merged;
	uint64_t view;
	struct dsnap *snap;
	_Atomic unsigned busy;
	struct fs *fs;
	struct open_file *prev, *next; /* fs->files; guarded by files_lock */
};

/* A snapshot of a directory as a view shows it. */
struct dsnap {
	struct dsnap_ent {
		char *name;
		ino_t ino;
		unsigned char type;
	} * v;
	size_t n, cap;
};

static void dsnap_free(struct dsnap *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	free(d);
}

static int dsnap_add(struct dsnap *d, const char *name, ino_t ino,
		     unsigned char type)
{
	if (d->n == d->cap) {
		size_t cap = d->cap * 2 + 64;
		struct dsnap_ent *v = realloc(d->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].name = strdup(name);
	if (d->v[d->n].name == NULL)
		return -ENOMEM;
	d->v[d->n].ino = ino;
	d->v[d->n].type = type;
	d->n++;
	return 0;
}

/* Wraps a new descriptor (and directory stream) as an open file. */
static struct open_file *of_new(struct fs *fs, int fd, DIR *dp)
{
	struct open_file *of = calloc(1, sizeof(*of));

	if (of == NULL)
		return NULL;
	of->fd = fd;
	of->dp = dp;
	atomic_init(&of->busy, 0);
	of->fs = fs;
	pthread_mutex_lock(&fs->files_lock);
	of->next = fs->files;
	if (fs->files != NULL)
		fs->files->prev = of;
	fs->files = of;
	pthread_mutex_unlock(&fs->files_lock);
	return of;
}

/* Starts using the open file of a request. */
static struct open_file *of_get(struct fuse_file_info *fi)
{
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;

	atomic_fetch_add_explicit(&of->busy, 1, memory_order_relaxed);
	return of;
}

/* Stops using it; pairs with the acquire in of_free. */
static void of_put(struct open_file *of)
{
	atomic_fetch_sub_explicit(&of->busy, 1, memory_order_release);
}

/*
 * Closes an open file (RELEASE, or a failed reply).  The kernel sends
 * RELEASE once it has the last reply on the handle, which can be a moment
 * before the replying thread has left its handler (libfuse reads and
 * replies in one call): wait for it, so the close happens after its last
 * use of the descriptor in the C11 order as well as in fact.
 */
static void of_free(struct open_file *of)
{
	struct fs *fs = of->fs;

	while (atomic_load_explicit(&of->busy, memory_order_acquire) != 0)
		sched_yield();
	pthread_mutex_lock(&fs->files_lock);
	if (of->prev != NULL)
		of->prev->next = of->next;
	else
		fs->files = of->next;
	if (of->next != NULL)
		of->next->prev = of->prev;
	pthread_mutex_unlock(&fs->files_lock);
	dsnap_free(of->snap);
	if (of->dp != NULL)
		closedir(of->dp);
	else
		close(of->fd);
	free(of);
}

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct node *req_node(fuse_req_t req, fuse_ino_t ino)
{
	return node_from_id(req_fs(req)->cfg.nodes, ino);
}

/* Replies with a -errno (or 0) result. */
static void reply_status(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? -ret : 0);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The timeout for names and attributes replied now.  While a transaction
 * exists views differ, so the kernel must ask again every time (DESIGN.md,
 * kernel caches); otherwise the configured timeout is used and its end
 * remembered, so a transaction begins only once those entries expired.
 */
static double reply_timeout(struct fs *fs, double configured)
{
	if (configured <= 0 || tx_any(fs->cfg.tx))
		return 0;
	int64_t until = now_ns() + (int64_t)(configured * 1e9) + 10000000;
	int64_t cur =
	    atomic_load_explicit(&fs->cache_deadline, memory_order_relaxed);
	while (cur < until &&
	       !atomic_compare_exchange_weak(&fs->cache_deadline, &cur, until))
		;
	return configured;
}

int64_t fs_cache_deadline(void *arg)
{
	struct fs *fs = arg;
	return atomic_load(&fs->cache_deadline);
}

/*
 * The view of the request's caller: its transaction's id, or the base.
 * Returns 0 or -errno (membership could not be told: fail the request).
 */
static int req_view(fuse_req_t req, uint64_t *view)
{
	struct fs *fs = req_fs(req);

	return tx_view_of(fs->cfg.tx, fuse_req_ctx(req)->pid, view);
}

/* The caller's view for display purposes (the base when unknown). */
static uint64_t caller_view(fuse_req_t req)
{
	uint64_t view = NODE_VIEW_BASE;

	if (tx_any(req_fs(req)->cfg.tx) && req_view(req, &view) < 0)
		view = NODE_VIEW_BASE;
	return view;
}

/*
 * Fixes the attributes of a transaction's shadow for display: it shows the
 * base object's inode number and link count, so a copy-up is invisible.
 */
static void fix_attr(struct fs *fs, uint64_t view, struct node *n,
		     struct stat *st)
{
	struct tx_target tg;
	struct node_key key;

	node_get_key(n, &key);
	if (node_view(n) != NODE_VIEW_BASE) {
		st->st_ino = key.ino;
		if (tx_resolve(fs->cfg.tx, node_view(n), &key, &tg) == 0 &&
		    tg.kind == TX_SHOW_SHADOW && tg.nlink > 0)
			st->st_nlink = tg.nlink;
		handle_free(tg.handle);
	}
	/* Links the view's names add or remove (for a directory: its
	 * subdirectories). */
	long d = view_nlink_delta(fs->cfg.views, view, &key);
	if (d != 0 && (long)st->st_nlink + d >= 0)
		st->st_nlink = (nlink_t)((long)st->st_nlink + d);
}

static void proc_path(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* Returns true when name in parent is the hidden state directory. */
static bool is_hidden(struct fs *fs, struct node *parent, const char *name)
{
	return node_is_root(parent) && statedir_hides(fs->cfg.state, name);
}

static int check_name(const char *name)
{
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Checks a name a request wants to use in parent: too long, or the hidden
 * state directory (then hidden_err: ENOENT to find or remove it, EPERM to
 * create it, invariant 3).  Returns 0 or -errno.
 */
static int check_entry(struct fs *fs, struct node *parent, const char *name,
		       int hidden_err)
{
	int ret = check_name(name);

	if (ret == 0 && is_hidden(fs, parent, name))
		ret = hidden_err;
	return ret;
}

/*
 * Looks name up in parent (whose pinned O_PATH descriptor is pfd), takes a
 * node reference and fills e.  Returns 0 or -errno.
 */
static int stat_node(struct fs *fs, struct node *n, struct stat *st);

/*
 * Takes a reference on the node a transaction shows instead of a base
 * object (its shadow, or a committed shadow not yet in SOURCE) and fills
 * st with its attributes.
 */
static int ref_target(struct fs *fs, uint64_t view, const struct tx_target *tg,
		      struct stat *st, struct node **out)
{
	uint64_t nview = tg->kind == TX_SHOW_SHADOW ? view : NODE_VIEW_BASE;
	int fd, ret;

	ret = node_ref_view(fs->cfg.nodes, nview, &tg->key, out);
	if (ret == -ENOENT) {
		fd = handle_open(tg->handle, O_PATH | O_NOFOLLOW);
		if (fd < 0)
			return fd;
		ret = node_ref_fd_view(fs->cfg.nodes, nview, fd, &tg->key, out);
	}
	if (ret < 0)
		return ret;
	ret = stat_node(fs, *out, st);
	if (ret < 0) {
		node_forget(fs->cfg.nodes, *out, 1);
		return ret;
	}
	if (tg->kind == TX_SHOW_SHADOW)
		st->st_ino = tg->key.ino;
	if (tg->nlink > 0)
		st->st_nlink = tg->nlink;
	return 0;
}

/*
 * Takes a reference on the node for an object a view's names lead to.
 * Directories and objects the view created get nodes of that view (a
 * directory has one name per view, and the kernel allows a directory
 * inode one name); a base file is shown as in a plain lookup.
 */
static int ref_overlay(struct fs *fs, uint64_t view, const struct view_obj *obj,
		       struct stat *st, struct node **out)
{
	uint64_t nview = NODE_VIEW_BASE;
	int fd, ret;

	if (obj->key.type == S_IFREG && !obj->created) {
		struct tx_target tg;
		ret = tx_resolve(fs->cfg.tx, view, &obj->key, &tg);
		if (ret == 0 && tg.kind != TX_SHOW_BASE)
			ret = ref_target(fs, view, &tg, st, out);
		bool done = ret < 0 || tg.kind != TX_SHOW_BASE;
		handle_free(tg.handle);
		if (done)
			return ret;
	}
	if (obj->created || obj->key.type == S_IFDIR)
		nview = obj->from;
	ret = node_ref_view(fs->cfg.nodes, nview, &obj->key, out);
	if (ret == -ENOENT) {
		fd = handle_open(obj->handle, O_PATH | O_NOFOLLOW);
		if (fd < 0)
			return fd;
		ret =
		    node_ref_fd_view(fs->cfg.nodes, nview, fd, &obj->key, out);
	}
	if (ret < 0)
		return ret;
	ret = stat_node(fs, *out, st);
	if (ret < 0)
		node_forget(fs->cfg.nodes, *out, 1);
	return ret;
}

static int lookup_at(struct fs *fs, uint64_t view, struct node *parent, int pfd,
		     const char *name, struct fuse_entry_param *e)
{
	uint64_t gen;
	struct node_key key, pkey;
	struct view_obj obj;
	struct node *n;
	struct stat st;
	int ret;

	memset(e, 0, sizeof(*e));
	if (strcmp(name, "..") == 0 && node_is_root(parent))
		name = "."; /* ".." never leaves the mount */
again:
	gen = tx_generation(fs->cfg.tx);
	node_get_key(parent, &pkey);
	ret = view_lookup(fs->cfg.views, view, &pkey, name, &obj);
	if (ret < 0)
		return ret;
	if (ret == VIEW_GONE)
		return -ENOENT;
	if (ret == VIEW_FOUND) {
		ret = ref_overlay(fs, view, &obj, &st, &n);
		handle_free(obj.handle);
		if (ret < 0)
			return ret;
		goto out_fill;
	}
	ret = node_stat(pfd, name, AT_SYMLINK_NOFOLLOW, &st, &key);
	if (ret < 0)
		return ret;
	if (key.type == S_IFDIR && view != NODE_VIEW_BASE &&
	    strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
	    !(key.ino == pkey.ino && key.dev == pkey.dev)) {
		/* A member's directories are nodes of its view. */
		ret = node_ref_view(fs->cfg.nodes, view, &key, &n);
		if (ret == -ENOENT) {
			int fd =
			    openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				return -errno;
			ret =
			    node_ref_fd_view(fs->cfg.nodes, view, fd, &key, &n);
		}
		if (ret < 0)
			return ret;
		goto out_fill;
	}
	if (key.type == S_IFREG && tx_any(fs->cfg.tx)) {
		struct tx_target tg;
		ret = tx_resolve(fs->cfg.tx, view, &key, &tg);
		if (ret == 0 && tg.kind == TX_SHOW_BASE &&
		    gen != tx_generation(fs->cfg.tx)) {
			handle_free(tg.handle);
			goto again; /* see tx_generation */
		}
		if (ret == 0 && tg.kind != TX_SHOW_BASE)
			ret = ref_target(fs, view, &tg, &st, &n);
		handle_free(tg.handle);
		if (ret < 0)
			return ret;
		if (tg.kind != TX_SHOW_BASE)
			goto out_fill;
	}
	ret = node_ref_at(fs->cfg.nodes, pfd, name, &key, &st, &n);
	if (ret < 0)
		return ret;
	/* Remember the name, for a transaction that copies the file up. */
	ret = node_set_name(fs->cfg.nodes, n, parent, name);
	if (ret < 0) {
		node_forget(fs->cfg.nodes, n, 1);
		return ret;
	}
out_fill:
	fix_attr(fs, view, n, &st);
	e->ino = node_id(n);
	e->generation = node_generation(n);
	e->attr = st;
	e->attr_timeout = reply_timeout(fs, fs->cfg.attr_timeout);
	e->entry_timeout = reply_timeout(fs, fs->cfg.entry_timeout);
	return 0;
}

/* Replies with an entry, dropping the reference if the kernel is gone. */
static void reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) != 0)
		node_forget(req_fs(req)->cfg.nodes, req_node(req, e->ino), 1);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* See DESIGN.md: the kernel must not trust its own cached data. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_EXPLICIT_INVAL_DATA)
		conn->want |= FUSE_CAP_EXPLICIT_INVAL_DATA;
	/* Writes run as root, which keeps set-user-ID bits: let the kernel
	 * clear them with a setattr instead. */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->max_write = 1u << 20;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct fuse_entry_param e;
	uint64_t view;
	int pfd, ret;

	ret = check_entry(fs, p, name, -ENOENT);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret < 0)
		goto out_reply;
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0) {
		ret = pfd;
		goto out_reply;
	}
	ret = lookup_at(fs, view, p, pfd, name, &e);
	node_fd_put(fs->cfg.nodes, p);
	if (ret == 0) {
		reply_entry(req, &e);
		return;
	}
out_reply:
	reply_status(req, ret);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_forget(req_fs(req)->cfg.nodes, req_node(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct node_table *t = req_fs(req)->cfg.nodes;

	for (size_t i = 0; i < count; i++)
		node_forget(t, node_from_id(t, forgets[i].ino),
			    forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Stats the node's object. */
static int stat_node(struct fs *fs, struct node *n, struct stat *st)
{
	int fd, ret = 0;

	fd = node_fd_get(fs->cfg.nodes, n);
	if (fd < 0)
		return fd;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		ret = -errno;
	node_fd_put(fs->cfg.nodes, n);
	return ret;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct stat st;
	int ret;

	if (fi != NULL && node_type(n) != S_IFDIR) {
		struct open_file *of = of_get(fi);
		ret = fstat(of->fd, &st) < 0 ? -errno : 0;
		of_put(of);
	} else {
		ret = stat_node(fs, n, &st);
	}
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	fix_attr(fs, caller_view(req), n, &st);
	fuse_reply_attr(req, &st, reply_timeout(fs, fs->cfg.attr_timeout));
}

/* Applies the requested attribute changes; returns 0 or -errno. */
static int setattr_apply(int pfd, struct stat *attr, int valid,
			 struct open_file *of)
{
	bool have_fh = of != NULL;
	int fh = have_fh ? of->fd : -1;
	char path[64];

	proc_path(pfd, path, sizeof(path));
	if (valid & FUSE_SET_ATTR_MODE) {
		int r = have_fh ? fchmod(fh, attr->st_mode)
				: chmod(path, attr->st_mode);
		if (r < 0)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid =
		    (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid =
		    (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (fchownat(pfd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		int r = have_fh ? ftruncate(fh, attr->st_size)
				: truncate(path, attr->st_size);
		if (r < 0)
			return -errno;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = {
			{ .tv_nsec = UTIME_OMIT },
			{ .tv_nsec = UTIME_OMIT },
		};
		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		int r = have_fh ? futimens(fh, tv)
				: utimensat(pfd, "", tv, AT_EMPTY_PATH);
		if (r < 0)
			return -errno;
	}
	return 0;
}

/*
 * A member changes the attributes of a base object: copies it up into the
 * member's transaction and opens the shadow (O_PATH) into *fd.  Only
 * regular files have shadows so far.  Returns 0 or -errno.
 */
static int shadow_for(struct fs *fs, uint64_t view, struct node *n, int *fd)
{
	struct tx_target tg;
	struct node_key key;
	int ret;

	if (node_type(n) != S_IFREG) {
		log_info("transaction %" PRIu64 ": changing the attributes of "
			 "a directory, symlink or special file is not "
			 "supported inside transactions yet",
			 view);
		return -EOPNOTSUPP;
	}
	ret = tx_copy_up(fs->cfg.tx, view, n, false);
	if (ret < 0)
		return ret;
	node_get_key(n, &key);
	ret = tx_resolve(fs->cfg.tx, view, &key, &tg);
	if (ret == 0 && tg.kind != TX_SHOW_SHADOW)
		ret = -ESTALE; /* ended meanwhile */
	if (ret == 0) {
		*fd = handle_open(tg.handle, O_PATH | O_NOFOLLOW);
		ret = *fd < 0 ? *fd : 0;
	}
	handle_free(tg.handle);
	return ret;
}

/*
 * Which object a request that changes node n works on: -1 for the node's
 * own, or a descriptor (in *fd) of the caller's shadow of it.  Notes
 * changes of base objects by non-members for the conflict check.
 */
static int change_target(fuse_req_t req, struct node *n, int *fd)
{
	struct fs *fs = req_fs(req);
	uint64_t view;
	int ret;

	*fd = -1;
	ret = req_view(req, &view);
	if (ret < 0 || node_view(n) != NODE_VIEW_BASE)
		return ret;
	if (view != NODE_VIEW_BASE)
		return shadow_for(fs, view, n, fd);
	return 0;
}

/* After a successful change of node n's own object (not a shadow). */
static void note_change(struct fs *fs, struct node *n)
{
	struct node_key key;

	if (node_view(n) != NODE_VIEW_BASE || node_type(n) != S_IFREG)
		return;
	node_get_key(n, &key);
	tx_note_base_write(fs->cfg.tx, &key);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int valid, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct open_file *of = NULL;
	struct stat st;
	int pfd, sfd = -1, ret;

	if (fi != NULL && node_type(n) != S_IFDIR)
		of = of_get(fi);
	/* Through a file handle the change goes to the handle's object. */
	ret = of != NULL ? 0 : change_target(req, n, &sfd);
	if (ret < 0)
		goto out_put;
	pfd = node_fd_get(fs->cfg.nodes, n);
	if (pfd < 0) {
		ret = pfd;
		goto out_put;
	}
	ret = setattr_apply(sfd >= 0 ? sfd : pfd, attr, valid, of);
	if (ret == 0 && sfd < 0 && (of == NULL || of->base_write))
		note_change(fs, n);
	/* A member's change shows through the shadow's node, which the
	 * member finds by its next lookup; this node keeps the base's. */
	if (ret == 0 &&
	    fstatat(pfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		ret = -errno;
	node_fd_put(fs->cfg.nodes, n);
out_put:
	if (of != NULL)
		of_put(of);
	if (sfd >= 0)
		close(sfd);
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	fix_attr(fs, caller_view(req), n, &st);
	fuse_reply_attr(req, &st, reply_timeout(fs, fs->cfg.attr_timeout));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	char buf[PATH_MAX + 1];
	ssize_t len;
	int fd;

	fd = node_fd_get(fs->cfg.nodes, n);
	if (fd < 0) {
		reply_status(req, fd);
		return;
	}
	len = readlinkat(fd, "", buf, sizeof(buf));
	int err = errno;
	node_fd_put(fs->cfg.nodes, n);
	if (len < 0) {
		reply_status(req, -err);
		return;
	}
	if ((size_t)len == sizeof(buf)) {
		reply_status(req, -ENAMETOOLONG);
		return;
	}
	buf[len] = '\0';
	fuse_reply_readlink(req, buf);
}

/*
 * Gives a newly created object, name in the directory open at dfd, the
 * caller's ownership, see invariant (4).  pfd is the directory it is
 * created in as the caller sees it (for the set-group-ID rule).
 */
static int set_owner_in(fuse_req_t req, int dfd, const char *name, mode_t mode,
			int pfd)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	gid_t gid = ctx->gid;

	if (ctx->uid == geteuid() && ctx->gid == getegid())
		return 0;
	if (fstat(pfd, &pst) < 0)
		return -errno;
	if (pst.st_mode & S_ISGID)
		gid = pst.st_gid;
	if (fchownat(dfd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	/* chown clears set-ID bits the caller asked for; put them back. */
	if ((mode & (S_ISUID | S_ISGID)) && !S_ISLNK(mode) && !S_ISDIR(mode) &&
	    fchmodat(dfd, name, mode & 07777, 0) < 0)
		return -errno;
	return 0;
}

static int set_owner(fuse_req_t req, int pfd, const char *name, mode_t mode)
{
	return set_owner_in(req, pfd, name, mode, pfd);
}

/* The kinds of name a creating callback makes. */
enum make_kind { MAKE_NODE, MAKE_DIR, MAKE_SYMLINK };

/* ---- names inside a transaction's view ---------------------------------
 *
 * A member's name operations never touch SOURCE: new objects are made in
 * the transaction's directory, and every change of a name is recorded in
 * the view (view.h), which lookups and readdir consult before the base.
 * Each function here checks the operation against the view the way the
 * kernel's file system would (EEXIST, ENOENT, ENOTEMPTY, EISDIR, ...),
 * does its I/O, then records it with tx_apply_names, and replies.
 */

/*
 * What name in parent (open at pfd) leads to in view.  Returns 0 and the
 * object (free obj->handle), or -ENOENT.
 */
static int vget(struct fs *fs, uint64_t view, struct node *parent, int pfd,
		const char *name, struct view_obj *obj)
{
	struct node_key pkey;
	struct stat st;
	int fd, ret;

	node_get_key(parent, &pkey);
	ret = view_lookup(fs->cfg.views, view, &pkey, name, obj);
	if (ret < 0)
		return ret;
	if (ret == VIEW_GONE)
		return -ENOENT;
	if (ret == VIEW_FOUND)
		return 0;
	if (is_hidden(fs, parent, name))
		return -ENOENT;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = node_stat(fd, "", AT_EMPTY_PATH, &st, &obj->key);
	if (ret == 0)
		ret = handle_from_fd(fd, &obj->handle);
	close(fd);
	obj->created = false;
	obj->from = NODE_VIEW_BASE;
	return ret;
}

/* The base state of name in the directory open at pfd. */
static void vbase(int pfd, const char *name, struct view_base *b)
{
	struct stat st;

	memset(b, 0, sizeof(*b));
	b->existed =
	    node_stat(pfd, name, AT_SYMLINK_NOFOLLOW, &st, &b->key) == 0;
	if (b->existed) {
		b->size = st.st_size;
		b->mtime = st.st_mtim;
		b->ctime = st.st_ctim;
	}
}

/* Is the directory obj empty in view?  0: empty, -ENOTEMPTY, -errno. */
struct empty_args {
	bool found;
};

static void empty_cb(const char *name, bool found, const struct node_key *k,
		     void *arg)
{
	struct empty_args *a = arg;

	(void)name;
	(void)k;
	if (found)
		a->found = true;
}

static int vempty(struct fs *fs, uint64_t view, const struct view_obj *dir)
{
	struct empty_args ea = { false };
	struct view_obj o;
	struct dirent *e;
	int fd, ret = 0;
	DIR *d;

	fd = handle_open(dir->handle, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd;
	d = fdopendir(fd);
	if (d == NULL) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while (ret == 0 && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		int r =
		    view_lookup(fs->cfg.views, view, &dir->key, e->d_name, &o);
		handle_free(o.handle);
		if (r < 0)
			ret = r;
		else if (r != VIEW_GONE)
			ret = -ENOTEMPTY;
	}
	closedir(d);
	if (ret == 0)
		ret = view_list(fs->cfg.views, view, &dir->key, empty_cb, &ea);
	if (ret == 0 && ea.found)
		ret = -ENOTEMPTY;
	return ret;
}

static void change_init(struct view_change *ch, enum view_op_kind kind,
			struct node *p1, const char *n1)
{
	memset(ch, 0, sizeof(*ch));
	ch->op.kind = kind;
	node_get_key(p1, &ch->op.dir1);
	ch->op.dh1 = (struct handle *)node_handle(p1);
	ch->op.name1 = (char *)n1;
}

/*
 * Makes a new object for a member: in the transaction's directory, then
 * named in the view.  For create, *fdp receives the open file.
 */
static int vmake(fuse_req_t req, uint64_t view, struct node *p,
		 const char *name, enum make_kind kind, mode_t mode, dev_t rdev,
		 const char *target, int oflags, int *fdp,
		 struct fuse_entry_param *e)
{
	struct fs *fs = req_fs(req);
	struct view_change ch;
	struct view_obj old = { 0 };
	struct stat st;
	struct node *n;
	char leaf[24];
	bool made = false;
	int pfd, dfd, fd = -1, ofd = -1, ret;

	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0)
		return pfd;
	ret = vget(fs, view, p, pfd, name, &old);
	handle_free(old.handle);
	if (ret == 0) {
		ret = -EEXIST;
		goto out_put;
	}
	if (ret != -ENOENT)
		goto out_put;
	ret = tx_new_object(fs->cfg.tx, view, &dfd, leaf);
	if (ret < 0)
		goto out_put;
	switch (kind) {
	case MAKE_NODE:
		if (S_ISREG(mode) && fdp != NULL) {
			ofd = openat(
			    dfd, leaf,
			    (oflags | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY) &
				~(O_NOFOLLOW | O_DIRECT | O_TRUNC),
			    mode & 07777);
			ret = ofd < 0 ? -errno : 0;
		} else {
			ret = mknodat(dfd, leaf, mode, rdev) < 0 ? -errno : 0;
		}
		break;
	case MAKE_DIR:
		ret = mkdirat(dfd, leaf, mode) < 0 ? -errno : 0;
		mode |= S_IFDIR;
		break;
	case MAKE_SYMLINK:
		ret = symlinkat(target, dfd, leaf) < 0 ? -errno : 0;
		mode = S_IFLNK | 0777;
		break;
	}
	made = ret == 0;
	if (ret == 0)
		ret = set_owner_in(req, dfd, leaf, mode, pfd);
	if (ret == 0) {
		fd = openat(dfd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		ret = fd < 0 ? -errno : 0;
	}
	change_init(&ch, VIEW_CREATE, p, name);
	snprintf(ch.op.leaf, sizeof(ch.op.leaf), "%s", leaf);
	ch.op.obj.created = true;
	if (ret == 0)
		ret = node_stat(fd, "", AT_EMPTY_PATH, &st, &ch.op.obj.key);
	if (ret == 0)
		ret = handle_from_fd(fd, &ch.op.obj.handle);
	if (ret == 0) {
		vbase(pfd, name, &ch.base1);
		ret = tx_apply_names(fs->cfg.tx, view, &ch);
	}
	if (ret == 0) {
		/* fd goes to the node table, which keeps or closes it. */
		ret = node_ref_fd_view(fs->cfg.nodes, view, fd, &ch.op.obj.key,
				       &n);
		fd = -1;
	}
	handle_free(ch.op.obj.handle);
	if (ret < 0 && made)
		unlinkat(dfd, leaf, kind == MAKE_DIR ? AT_REMOVEDIR : 0);
	close(dfd);
	tx_end_object(fs->cfg.tx, view);
	if (fd >= 0)
		close(fd);
	if (ret == 0) {
		memset(e, 0, sizeof(*e));
		e->ino = node_id(n);
		e->generation = node_generation(n);
		e->attr = st;
		if (fdp != NULL)
			*fdp = ofd;
		ofd = -1;
	}
	if (ofd >= 0)
		close(ofd);
out_put:
	node_fd_put(fs->cfg.nodes, p);
	return ret;
}

/* Removes a name in a member's view (flags: 0 or AT_REMOVEDIR). */
static int vremove(fuse_req_t req, uint64_t view, struct node *p,
		   const char *name, int flags)
{
	struct fs *fs = req_fs(req);
	struct view_change ch;
	int pfd, ret;

	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0)
		return pfd;
	change_init(&ch, VIEW_UNLINK, p, name);
	ch.op.flags = (unsigned)flags;
	ret = vget(fs, view, p, pfd, name, &ch.src);
	if (ret < 0)
		goto out_put;
	bool dir = S_ISDIR(ch.src.key.type);
	if (flags == AT_REMOVEDIR && !dir)
		ret = -ENOTDIR;
	else if (flags == 0 && dir)
		ret = -EISDIR;
	else if (dir)
		ret = vempty(fs, view, &ch.src);
	if (ret == 0) {
		ch.op.obj = ch.src; /* commit checks a removed base dir */
		vbase(pfd, name, &ch.base1);
		ret = tx_apply_names(fs->cfg.tx, view, &ch);
	}
	handle_free(ch.src.handle);
out_put:
	node_fd_put(fs->cfg.nodes, p);
	return ret;
}

/* Renames in a member's view, with renameat2's flags. */
static int vrename(fuse_req_t req, uint64_t view, struct node *p,
		   const char *name, struct node *np, const char *newname,
		   unsigned flags)
{
	struct fs *fs = req_fs(req);
	struct view_change ch;
	int pfd, npfd, ret;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0)
		return pfd;
	npfd = node_fd_get(fs->cfg.nodes, np);
	if (npfd < 0) {
		node_fd_put(fs->cfg.nodes, p);
		return npfd;
	}
	change_init(&ch, VIEW_RENAME, p, name);
	node_get_key(np, &ch.op.dir2);
	ch.op.dh2 = (struct handle *)node_handle(np);
	ch.op.name2 = (char *)newname;
	ch.op.flags = flags;
	ret = vget(fs, view, p, pfd, name, &ch.src);
	if (ret < 0)
		goto out_put;
	ret = vget(fs, view, np, npfd, newname, &ch.dst);
	ch.dst_exists = ret == 0;
	if (ret == -ENOENT)
		ret = 0;
	if (ret < 0)
		goto out_free;
	bool sdir = S_ISDIR(ch.src.key.type), ddir = S_ISDIR(ch.dst.key.type);
	if ((flags & RENAME_NOREPLACE) && ch.dst_exists)
		ret = -EEXIST;
	else if ((flags & RENAME_EXCHANGE) && !ch.dst_exists)
		ret = -ENOENT;
	else if (ch.dst_exists && !(flags & RENAME_EXCHANGE) &&
		 ch.dst.key.ino == ch.src.key.ino &&
		 ch.dst.key.dev == ch.src.key.dev)
		goto out_free; /* two names of one object: nothing to do */
	else if (ch.dst_exists && !(flags & RENAME_EXCHANGE) && sdir && !ddir)
		ret = -ENOTDIR;
	else if (ch.dst_exists && !(flags & RENAME_EXCHANGE) && !sdir && ddir)
		ret = -EISDIR;
	else if (ch.dst_exists && !(flags & RENAME_EXCHANGE) && ddir)
		ret = vempty(fs, view, &ch.dst);
	if (ret == 0) {
		/* The commit checks that this object is what it moves. */
		ch.op.obj = ch.src;
		vbase(pfd, name, &ch.base1);
		vbase(npfd, newname, &ch.base2);
		ret = tx_apply_names(fs->cfg.tx, view, &ch);
	}
out_free:
	handle_free(ch.dst.handle);
	handle_free(ch.src.handle);
out_put:
	node_fd_put(fs->cfg.nodes, np);
	node_fd_put(fs->cfg.nodes, p);
	return ret;
}

/* Links node n under newname in np, in a member's view. */
static int vlink(fuse_req_t req, uint64_t view, struct node *n, struct node *np,
		 const char *newname, struct fuse_entry_param *e)
{
	struct fs *fs = req_fs(req);
	struct view_change ch;
	struct view_obj old = { 0 };
	int fd, npfd, ret;

	if (node_type(n) == S_IFDIR)
		return -EPERM;
	npfd = node_fd_get(fs->cfg.nodes, np);
	if (npfd < 0)
		return npfd;
	ret = vget(fs, view, np, npfd, newname, &old);
	handle_free(old.handle);
	if (ret == 0)
		ret = -EEXIST;
	else if (ret == -ENOENT)
		ret = 0;
	change_init(&ch, VIEW_LINK, np, newname);
	node_get_key(n, &ch.op.obj.key);
	if (ret == 0 && node_view(n) != NODE_VIEW_BASE) {
		/* A view's node is a content shadow (keyed by the base
		 * object it stands for) or an object the view created. */
		struct tx_target tg;
		ret = tx_resolve(fs->cfg.tx, node_view(n), &ch.op.obj.key, &tg);
		ch.op.obj.created = ret == 0 && tg.kind != TX_SHOW_SHADOW;
		handle_free(tg.handle);
	}
	fd = ret == 0 ? node_fd_get(fs->cfg.nodes, n) : -1;
	if (ret == 0 && fd < 0)
		ret = fd;
	if (ret == 0) {
		/* For a shadow, commit links what the shadow became. */
		ret = handle_from_fd(fd, &ch.op.obj.handle);
		node_fd_put(fs->cfg.nodes, n);
	}
	if (ret == 0) {
		vbase(npfd, newname, &ch.base1);
		ret = tx_apply_names(fs->cfg.tx, view, &ch);
	}
	handle_free(ch.op.obj.handle);
	if (ret == 0)
		ret = lookup_at(fs, view, np, npfd, newname, e);
	node_fd_put(fs->cfg.nodes, np);
	return ret;
}

static void make_name(fuse_req_t req, fuse_ino_t parent, const char *name,
		      enum make_kind kind, mode_t mode, dev_t rdev,
		      const char *target)
{
	struct fs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct fuse_entry_param e;
	uint64_t view;
	int pfd, ret;

	ret = check_entry(fs, p, name, -EPERM);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret < 0)
		goto out_reply;
	if (view != NODE_VIEW_BASE) {
		ret = vmake(req, view, p, name, kind, mode, rdev, target, 0,
			    NULL, &e);
		if (ret == 0) {
			e.attr_timeout = e.entry_timeout = 0;
			reply_entry(req, &e);
			return;
		}
		goto out_reply;
	}
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0) {
		ret = pfd;
		goto out_reply;
	}
	switch (kind) {
	case MAKE_NODE:
		ret = mknodat(pfd, name, mode, rdev);
		break;
	case MAKE_DIR:
		ret = mkdirat(pfd, name, mode);
		break;
	case MAKE_SYMLINK:
		ret = symlinkat(target, pfd, name);
		mode = S_IFLNK | 0777;
		break;
	}
	ret = ret < 0 ? -errno : 0;
	if (ret == 0)
		ret = set_owner(req, pfd, name,
				kind == MAKE_DIR ? (mode | S_IFDIR) : mode);
	if (ret == 0)
		ret = lookup_at(fs, view, p, pfd, name, &e);
	node_fd_put(fs->cfg.nodes, p);
	if (ret == 0) {
		reply_entry(req, &e);
		return;
	}
out_reply:
	reply_status(req, ret);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	make_name(req, parent, name, MAKE_NODE, mode, rdev, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make_name(req, parent, name, MAKE_DIR, mode, 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	make_name(req, parent, name, MAKE_SYMLINK, 0, 0, link);
}

/* Removes name from parent; flags is 0 or AT_REMOVEDIR. */
static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
			int flags)
{
	struct fs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct stat st;
	uint64_t view;
	int pfd, ret;

	ret = check_entry(fs, p, name, -ENOENT);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret == 0 && view != NODE_VIEW_BASE) {
		ret = vremove(req, view, p, name, flags);
		goto out_reply;
	}
	if (ret < 0)
		goto out_reply;
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0) {
		ret = pfd;
		goto out_reply;
	}
	ret = 0;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		ret = -errno;
	if (ret == 0 && unlinkat(pfd, name, flags) < 0)
		ret = -errno;
	node_fd_put(fs->cfg.nodes, p);
	if (ret == 0 && (S_ISDIR(st.st_mode) || st.st_nlink <= 1))
		node_mark_dead(fs->cfg.nodes, st.st_dev, st.st_ino);
out_reply:
	reply_status(req, ret);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, AT_REMOVEDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct fs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct node *np = req_node(req, newparent);
	struct stat src, dst;
	bool replaced = false;
	uint64_t view;
	int pfd, npfd, ret;

	ret = check_entry(fs, p, name, -ENOENT);
	if (ret == 0)
		ret = check_entry(fs, np, newname, -EPERM);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret == 0 && view != NODE_VIEW_BASE) {
		ret = vrename(req, view, p, name, np, newname, flags);
		goto out_reply;
	}
	if (ret < 0)
		goto out_reply;
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0) {
		ret = pfd;
		goto out_reply;
	}
	npfd = node_fd_get(fs->cfg.nodes, np);
	if (npfd < 0) {
		ret = npfd;
		goto out_put_parent;
	}
	if (!(flags & RENAME_EXCHANGE) &&
	    fstatat(npfd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
	    fstatat(pfd, name, &src, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (src.st_ino != dst.st_ino || src.st_dev != dst.st_dev))
		replaced = S_ISDIR(dst.st_mode) || dst.st_nlink <= 1;
	ret = renameat2(pfd, name, npfd, newname, flags) < 0 ? -errno : 0;
	if (ret == 0 && replaced)
		node_mark_dead(fs->cfg.nodes, dst.st_dev, dst.st_ino);
	node_fd_put(fs->cfg.nodes, np);
out_put_parent:
	node_fd_put(fs->cfg.nodes, p);
out_reply:
	reply_status(req, ret);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct node *np = req_node(req, newparent);
	struct fuse_entry_param e;
	uint64_t view;
	int fd, npfd, ret;

	ret = check_entry(fs, np, newname, -EPERM);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret == 0 && view != NODE_VIEW_BASE) {
		ret = vlink(req, view, n, np, newname, &e);
		if (ret == 0) {
			reply_entry(req, &e);
			return;
		}
		goto out_reply;
	}
	if (ret < 0)
		goto out_reply;
	fd = node_fd_get(fs->cfg.nodes, n);
	if (fd < 0) {
		ret = fd;
		goto out_reply;
	}
	npfd = node_fd_get(fs->cfg.nodes, np);
	if (npfd < 0) {
		ret = npfd;
		goto out_put_node;
	}
	ret = linkat(fd, "", npfd, newname, AT_EMPTY_PATH) < 0 ? -errno : 0;
	if (ret == 0)
		ret = lookup_at(fs, view, np, npfd, newname, &e);
	node_fd_put(fs->cfg.nodes, np);
out_put_node:
	node_fd_put(fs->cfg.nodes, n);
	if (ret == 0) {
		reply_entry(req, &e);
		return;
	}
out_reply:
	reply_status(req, ret);
}

/* True when an open with these flags may change the file. */
static bool open_writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	bool base_write = false;
	uint64_t view;
	int fd, ret;

	if (node_view(n) == NODE_VIEW_BASE && node_type(n) == S_IFREG &&
	    open_writes(fi->flags)) {
		ret = req_view(req, &view);
		if (ret == 0 && view != NODE_VIEW_BASE) {
			/*
			 * A member writes a base file: copy it up, then send
			 * the kernel back to look the name up again, which
			 * finds the shadow's node (DESIGN.md: an open through
			 * a stale dentry answers ESTALE, and the kernel retries
			 * once with a forced lookup).  The base node's page
			 * cache never sees the member's data.
			 */
			ret = tx_copy_up(fs->cfg.tx, view, n,
					 (fi->flags & O_TRUNC) != 0);
			if (ret == 0)
				ret = -ESTALE;
		}
		if (ret < 0) {
			reply_status(req, ret);
			return;
		}
		base_write = true;
	}

	/*
	 * The kernel gives O_DIRECT its meaning on the FUSE side; passing it
	 * on would impose the backing file system's alignment rules on
	 * requests the kernel has already split its own way.
	 */
	fd = node_open(fs->cfg.nodes, n, fi->flags & ~(O_NOFOLLOW | O_DIRECT));
	if (fd < 0) {
		reply_status(req, fd);
		return;
	}
	struct open_file *of = of_new(fs, fd, NULL);
	if (of == NULL) {
		close(fd);
		reply_status(req, -ENOMEM);
		return;
	}
	if (base_write) {
		of->base_write = true;
		node_get_key(n, &of->key);
		if (fi->flags & O_TRUNC)
			tx_note_base_write(fs->cfg.tx, &of->key);
	}
	fi->fh = (uint64_t)(uintptr_t)of;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) != 0)
		of_free(of);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct fuse_entry_param e;
	uint64_t view;
	int pfd, fd = -1, ret;

	ret = check_entry(fs, p, name, -EPERM);
	if (ret == 0)
		ret = req_view(req, &view);
	if (ret < 0)
		goto out_reply;
	if (view != NODE_VIEW_BASE) {
		ret = vmake(req, view, p, name, MAKE_NODE, mode | S_IFREG, 0,
			    NULL, fi->flags, &fd, &e);
		if (ret < 0)
			goto out_reply;
		goto out_open;
	}
	pfd = node_fd_get(fs->cfg.nodes, p);
	if (pfd < 0) {
		ret = pfd;
		goto out_reply;
	}
	fd = openat(pfd, name,
		    (fi->flags | O_CREAT | O_CLOEXEC | O_NOCTTY) &
			~(O_NOFOLLOW | O_DIRECT),
		    mode);
	ret = fd < 0 ? -errno : 0;
	if (ret == 0)
		ret = set_owner(req, pfd, name, mode);
	if (ret == 0)
		ret = lookup_at(fs, view, p, pfd, name, &e);
	node_fd_put(fs->cfg.nodes, p);
	if (ret < 0)
		goto out_close_fd;
out_open:;
	struct open_file *of = of_new(fs, fd, NULL);
	if (of == NULL) {
		node_forget(fs->cfg.nodes, req_node(req, e.ino), 1);
		ret = -ENOMEM;
		goto out_close_fd;
	}
	fi->fh = (uint64_t)(uintptr_t)of;
	fi->keep_cache = 0;
	if (fuse_reply_create(req, &e, fi) != 0) {
		node_forget(fs->cfg.nodes, req_node(req, e.ino), 1);
		of_free(of);
	}
	return;

out_close_fd:
	if (fd >= 0)
		close(fd);
out_reply:
	reply_status(req, ret);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	struct open_file *of = of_get(fi);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = of->fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	of_put(of);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in,
			 off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	struct open_file *of = of_get(fi);
	ssize_t n;

	(void)ino;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = of->fd;
	out.buf[0].pos = off;
	n = fuse_buf_copy(&out, in, 0);
	if (n > 0 && of->base_write)
		tx_note_base_write(req_fs(req)->cfg.tx, &of->key);
	of_put(of);
	if (n < 0)
		reply_status(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct open_file *of = of_get(fi);
	int fd;

	(void)ino;
	/* Closing a duplicate gives the backing file system its close(). */
	fd = dup(of->fd);
	of_put(of);
	if (fd < 0) {
		reply_status(req, -errno);
		return;
	}
	reply_status(req, close(fd) < 0 ? -errno : 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	of_free((struct open_file *)(uintptr_t)fi->fh);
	reply_status(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct open_file *of = of_get(fi);
	int r;

	(void)ino;
	r = datasync ? fdatasync(of->fd) : fsync(of->fd);
	r = r < 0 ? -errno : 0;
	of_put(of);
	reply_status(req, r);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct open_file *of;
	DIR *dp;
	int fd, ret;

	fd = node_open(fs->cfg.nodes, req_node(req, ino),
		       O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		reply_status(req, fd);
		return;
	}
	dp = fdopendir(fd);
	if (dp == NULL) {
		ret = -errno;
		close(fd);
		reply_status(req, ret);
		return;
	}
	of = of_new(fs, fd, dp);
	if (of == NULL) {
		closedir(dp);
		reply_status(req, -ENOMEM);
		return;
	}
	ret = req_view(req, &of->view);
	if (ret < 0) {
		of_free(of);
		reply_status(req, ret);
		return;
	}
	of->merged =
	    of->view != NODE_VIEW_BASE || view_published(fs->cfg.views);
	fi->fh = (uint64_t)(uintptr_t)of;
	if (fuse_reply_open(req, fi) != 0)
		of_free(of);
}

struct snap_args {
	struct fs *fs;
	struct dsnap *d;
	int dirfd;
	int err;
};

/* Adds the names only the view's overlay has. */
static void snap_overlay(const char *name, bool found,
			 const struct node_key *obj, void *arg)
{
	struct snap_args *a = arg;
	struct stat st;

	if (!found || a->err != 0)
		return;
	/* A name the base has too was listed with the base's entries. */
	if (fstatat(a->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return;
	a->err =
	    dsnap_add(a->d, name, obj->ino, (unsigned char)IFTODT(obj->type));
}

/* Lists directory node dn as view of shows it, into of->snap. */
static int build_snap(struct fs *fs, struct node *dn, struct open_file *of)
{
	struct snap_args a = { .fs = fs };
	struct node_key dkey;
	struct view_obj o;
	struct dirent *e;
	int ret = 0;

	dsnap_free(of->snap);
	of->snap = calloc(1, sizeof(*of->snap));
	if (of->snap == NULL)
		return -ENOMEM;
	a.d = of->snap;
	a.dirfd = of->fd;
	node_get_key(dn, &dkey);
	rewinddir(of->dp);
	while (ret == 0) {
		errno = 0;
		e = readdir(of->dp);
		if (e == NULL) {
			ret = -errno;
			break;
		}
		if (is_hidden(fs, dn, e->d_name))
			continue;
		if (strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0) {
			ret = dsnap_add(a.d, e->d_name, e->d_ino, e->d_type);
			continue;
		}
		int r =
		    view_lookup(fs->cfg.views, of->view, &dkey, e->d_name, &o);
		if (r == VIEW_MISS)
			ret = dsnap_add(a.d, e->d_name, e->d_ino, e->d_type);
		else if (r == VIEW_FOUND)
			ret = dsnap_add(a.d, e->d_name, o.key.ino,
					(unsigned char)IFTODT(o.key.type));
		else if (r < 0)
			ret = r;
		handle_free(o.handle);
	}
	if (ret == 0)
		ret =
		    view_list(fs->cfg.views, of->view, &dkey, snap_overlay, &a);
	return ret < 0 ? ret : a.err;
}

/* Fills one readdir reply from a merged snapshot; offsets are indexes. */
static void fill_snap(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		      struct open_file *d, bool plus)
{
	struct fs *fs = req_fs(req);
	struct node *dn = req_node(req, ino);
	size_t rem = size;
	char *buf, *p;
	int pfd = -1, ret = 0;

	if (offset == 0 || d->snap == NULL)
		ret = build_snap(fs, dn, d);
	if (ret == 0 && plus) {
		pfd = node_fd_get(fs->cfg.nodes, dn);
		ret = pfd < 0 ? pfd : 0;
	}
	buf = ret == 0 ? malloc(size) : NULL;
	if (ret == 0 && buf == NULL)
		ret = -ENOMEM;
	if (ret < 0) {
		if (pfd >= 0)
			node_fd_put(fs->cfg.nodes, dn);
		reply_status(req, ret);
		return;
	}
	p = buf;
	for (size_t i = (size_t)offset; i < d->snap->n; i++) {
		struct dsnap_ent *ent = &d->snap->v[i];
		struct fuse_entry_param e;
		size_t entsize;
		bool dot =
		    strcmp(ent->name, ".") == 0 || strcmp(ent->name, "..") == 0;
		if (plus) {
			if (dot) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = ent->ino;
				e.attr.st_mode = (mode_t)ent->type << 12;
			} else if (lookup_at(fs, d->view, dn, pfd, ent->name,
					     &e) < 0) {
				continue; /* gone since the snapshot */
			}
			entsize = fuse_add_direntry_plus(req, p, rem, ent->name,
							 &e, (off_t)i + 1);
			if (entsize > rem) {
				if (!dot)
					node_forget(fs->cfg.nodes,
						    req_node(req, e.ino), 1);
				break;
			}
		} else {
			struct stat st = {
				.st_ino = ent->ino,
				.st_mode = (mode_t)ent->type << 12,
			};
			entsize = fuse_add_direntry(req, p, rem, ent->name, &st,
						    (off_t)i + 1);
			if (entsize > rem)
				break;
		}
		p += entsize;
		rem -= entsize;
	}
	if (pfd >= 0)
		node_fd_put(fs->cfg.nodes, dn);
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

/* Fills one readdir reply from the open directory d; plus: readdirplus. */
static void fill_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		     struct open_file *d, bool plus)
{
	struct fs *fs = req_fs(req);
	struct node *dn = req_node(req, ino);
	char *buf, *p;
	size_t rem = size;
	uint64_t view = NODE_VIEW_BASE;
	int pfd = -1, err = 0;

	buf = malloc(size);
	if (buf == NULL) {
		reply_status(req, -ENOMEM);
		return;
	}
	if (plus) {
		int r = req_view(req, &view);
		pfd = r < 0 ? r : node_fd_get(fs->cfg.nodes, dn);
		if (pfd < 0) {
			free(buf);
			reply_status(req, pfd);
			return;
		}
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	p = buf;
	for (;;) {
		struct fuse_entry_param e;
		const char *name;
		size_t entsize;
		off_t next;

		if (d->entry == NULL) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (d->entry == NULL) {
				err = errno;
				break;
			}
		}
		name = d->entry->d_name;
		next = d->entry->d_off;
		if (is_hidden(fs, dn, name)) {
			d->entry = NULL;
			d->offset = next;
			continue;
		}
		if (plus) {
			bool dot =
			    strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
			if (dot) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else if (lookup_at(fs, view, dn, pfd, name, &e) < 0) {
				/* Gone since readdir saw it: skip it. */
				d->entry = NULL;
				d->offset = next;
				continue;
			}
			entsize =
			    fuse_add_direntry_plus(req, p, rem, name, &e, next);
			if (entsize > rem) {
				if (!dot)
					node_forget(fs->cfg.nodes,
						    req_node(req, e.ino), 1);
				break;
			}
		} else {
			struct stat st = {
				.st_ino = d->entry->d_ino,
				.st_mode = (mode_t)d->entry->d_type << 12,
			};
			entsize =
			    fuse_add_direntry(req, p, rem, name, &st, next);
			if (entsize > rem)
				break;
		}
		p += entsize;
		rem -= entsize;
		d->entry = NULL;
		d->offset = next;
	}
	if (pfd >= 0)
		node_fd_put(fs->cfg.nodes, dn);
	/* An error after some entries is reported on the next call. */
	if (err != 0 && rem == size)
		reply_status(req, -err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t offset, struct fuse_file_info *fi, bool plus)
{
	struct open_file *d = of_get(fi);

	if (d->merged)
		fill_snap(req, ino, size, offset, d, plus);
	else
		fill_dir(req, ino, size, offset, d, plus);
	of_put(d);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t offset, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t offset, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	of_free((struct open_file *)(uintptr_t)fi->fh);
	reply_status(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	struct open_file *of = of_get(fi);
	int r;

	(void)ino;
	r = datasync ? fdatasync(of->fd) : fsync(of->fd);
	r = r < 0 ? -errno : 0;
	of_put(of);
	reply_status(req, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct statvfs sv;
	int fd, ret;

	fd = node_fd_get(fs->cfg.nodes, n);
	if (fd < 0) {
		reply_status(req, fd);
		return;
	}
	ret = fstatvfs(fd, &sv) < 0 ? -errno : 0;
	node_fd_put(fs->cfg.nodes, n);
	if (ret < 0)
		reply_status(req, ret);
	else
		fuse_reply_statfs(req, &sv);
}

/* The kinds of extended-attribute request. */
enum xattr_op { XATTR_SET, XATTR_GET, XATTR_LIST, XATTR_REMOVE };

/*
 * Runs one xattr call on the node's object through its /proc/self/fd
 * link.  Returns the call's result (a size or 0) or -errno.
 */
static ssize_t xattr_call(fuse_req_t req, struct node *n, enum xattr_op op,
			  const char *name, void *value, size_t size, int flags)
{
	struct fs *fs = req_fs(req);
	bool change = op == XATTR_SET || op == XATTR_REMOVE;
	char path[64];
	ssize_t r = -1;
	int fd, sfd = -1;

	if (change) {
		r = change_target(req, n, &sfd);
		if (r < 0)
			return r;
	}
	fd = sfd >= 0 ? sfd : node_fd_get(fs->cfg.nodes, n);
	if (fd < 0)
		return fd;
	proc_path(fd, path, sizeof(path));
	switch (op) {
	case XATTR_SET:
		r = setxattr(path, name, value, size, flags);
		break;
	case XATTR_GET:
		r = getxattr(path, name, value, size);
		break;
	case XATTR_LIST:
		r = listxattr(path, value, size);
		break;
	case XATTR_REMOVE:
		r = removexattr(path, name);
		break;
	}
	if (r < 0)
		r = -errno;
	if (sfd >= 0) {
		close(sfd);
		return r;
	}
	if (r >= 0 && change)
		note_change(fs, n);
	node_fd_put(fs->cfg.nodes, n);
	return r;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	ssize_t r = xattr_call(req, req_node(req, ino), XATTR_SET, name,
			       (void *)value, size, flags);
	reply_status(req, (int)r);
}

/* Replies to a get or list request with size 0 (probe) or the data. */
static void reply_xattr_data(fuse_req_t req, struct node *n, enum xattr_op op,
			     const char *name, size_t size)
{
	ssize_t r;
	char *buf = NULL;

	if (size > 0) {
		buf = malloc(size);
		if (buf == NULL) {
			reply_status(req, -ENOMEM);
			return;
		}
	}
	r = xattr_call(req, n, op, name, buf, size, 0);
	if (r < 0)
		reply_status(req, (int)r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	reply_xattr_data(req, req_node(req, ino), XATTR_GET, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr_data(req, req_node(req, ino), XATTR_LIST, NULL, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	ssize_t r =
	    xattr_call(req, req_node(req, ino), XATTR_REMOVE, name, NULL, 0, 0);
	reply_status(req, (int)r);
}

/* Returns true when the caller is in group gid. */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[64];
	int n = fuse_req_getgroups(req, 64, groups);

	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	unsigned bits;
	int ret;

	ret = stat_node(req_fs(req), req_node(req, ino), &st);
	if (ret < 0 || mask == F_OK)
		goto out_reply;
	if (ctx->uid == 0) {
		/* Root may execute only what someone may execute. */
		if ((mask & X_OK) && !S_ISDIR(st.st_mode) &&
		    !(st.st_mode & 0111))
			ret = -EACCES;
		goto out_reply;
	}
	if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (ctx->gid == st.st_gid || caller_in_group(req, st.st_gid))
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	if (((unsigned)mask & bits) != (unsigned)mask)
		ret = -EACCES;
out_reply:
	reply_status(req, ret);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	struct open_file *of = of_get(fi);
	int r;

	(void)ino;
	r = fallocate(of->fd, mode, offset, length) < 0 ? -errno : 0;
	if (r == 0 && of->base_write)
		tx_note_base_write(req_fs(req)->cfg.tx, &of->key);
	of_put(of);
	reply_status(req, r);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct open_file *in = of_get(fi_in);
	struct open_file *out = of_get(fi_out);
	ssize_t n;

	(void)ino_in;
	(void)ino_out;
	n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len,
			    (unsigned)flags);
	if (n < 0)
		n = -errno;
	if (n > 0 && out->base_write)
		tx_note_base_write(req_fs(req)->cfg.tx, &out->key);
	of_put(out);
	of_put(in);
	if (n < 0)
		reply_status(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct open_file *of = of_get(fi);
	off_t r;

	(void)ino;
	r = lseek(of->fd, off, whence);
	if (r < 0)
		r = -errno;
	of_put(of);
	if (r < 0)
		reply_status(req, (int)r);
	else
		fuse_reply_lseek(req, r);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.access = op_access,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};

const struct fuse_lowlevel_ops *fs_ops_table(void)
{
	return &ops;
}

int fs_new(const struct fs_config *cfg, struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));

	if (fs == NULL)
		return -ENOMEM;
	fs->cfg = *cfg;
	pthread_mutex_init(&fs->files_lock, NULL);
	*out = fs;
	return 0;
}

void fs_free(struct fs *fs)
{
	if (fs == NULL)
		return;
	/* The session is over: no request can use these any more. */
	while (fs->files != NULL)
		of_free(fs->files);
	pthread_mutex_destroy(&fs->files_lock);
	free(fs);
}
