/*
 * Unit tests for checkpoint.c: which steps need a mark, applying records
 * of every kind to a real SOURCE, and crash safety.
 *
 * Every test has a fresh SOURCE directory under /tmp holding the state
 * directory SOURCE/.txfs (its journal.db and the shadow directory tx-1/),
 * so handles, shadows and names all live on one file system, as in the
 * daemon; the crash tests empty and rebuild it for every run.  A
 * record is built by hand the way tx.c builds one: handles are the bytes
 * name_to_handle_at gives, identities come from stat, and shadows are
 * named "tx-1/N" relative to the state directory.
 *
 * The crash tests run the checkpoint in a child process with TXFS_CRASH
 * armed, so it dies by SIGKILL after its K-th step, then recover in the
 * test process the way txfsd does at start-up (journal_pending, then
 * checkpoint_apply from the recorded step) and compare SOURCE with the
 * tree an uncrashed run leaves.  Children never call ck_assert: they
 * report by exit status.  The child and the recovery share the node table
 * built before the fork (a restart would build a new one): the checkpoint
 * only takes the root from it and marks nodes dead.  Builds configured
 * with --disable-crash-points leave the crash tests out.
 */
#include "config.h"

#include "checkpoint.h"
#include "crash.h"
#include "journal.h"
#include "node.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TXID	  7
#define MAX_STEPS 40
#define HB_MAX	  (sizeof(struct file_handle) + MAX_HANDLE_SZ)

/* ---- SOURCE and its state directory ------------------------------------- */

struct source {
	char dir[PATH_MAX];	  /* SOURCE, resolved */
	char state[PATH_MAX + 8]; /* SOURCE/.txfs */
	int fd;			  /* SOURCE, O_RDONLY | O_DIRECTORY */
	int state_fd;		  /* SOURCE/.txfs, O_RDONLY | O_DIRECTORY */
	struct node_table *nodes; /* rooted at SOURCE */
};

static struct source src; /* the fixture's SOURCE */

/* Makes SOURCE/.txfs/tx-1, empty, and opens the state directory. */
static void state_new(struct source *s)
{
	ck_assert_int_eq(mkdirat(s->fd, ".txfs", 0700), 0);
	ck_assert_int_eq(mkdirat(s->fd, ".txfs/tx-1", 0700), 0);
	s->state_fd = open(s->state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(s->state_fd, 0);
}

/*
 * An empty SOURCE with its state directory, and a node table rooted at
 * it.  A node table is costly to build (its buckets), so a test that needs
 * many fresh trees empties one SOURCE with source_reset instead.
 */
static void source_new(struct source *s)
{
	char tmpl[] = "/tmp/txfs-checkpoint-XXXXXX";
	int root;

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	ck_assert_ptr_nonnull(realpath(tmpl, s->dir));
	snprintf(s->state, sizeof(s->state), "%s/.txfs", s->dir);
	s->fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(s->fd, 0);
	root = open(s->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
	ck_assert_int_eq(node_table_new(root, 64, &s->nodes), 0);
	state_new(s);
}

static int remove_one(const char *path, const struct stat *st, int type,
		      struct FTW *ftw)
{
	(void)st;
	if (ftw->level == 0)
		return 0; /* SOURCE itself stays */
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void source_free(struct source *s)
{
	close(s->state_fd);
	ck_assert_int_eq(
	    nftw(s->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT), 0);
	ck_assert_int_eq(rmdir(s->dir), 0);
	node_table_free(s->nodes);
	close(s->fd);
}

static void setup(void)
{
	source_new(&src);
}

static void teardown(void)
{
	source_free(&src);
}

/* Opens SOURCE's journal; returns 0 or -errno (for children too). */
static int jopen(const struct source *s, struct journal **j)
{
	char why[512] = "";
	int ret = journal_open(s->state_fd, s->state, j, why, sizeof(why));

	if (ret < 0)
		fprintf(stderr, "journal_open: %s\n", why);
	return ret;
}

/* ---- files -------------------------------------------------------------- */

static void put(const struct source *s, const char *path, const char *data)
{
	int fd =
	    openat(s->fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	ck_assert_msg(fd >= 0, "create %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	ck_assert_int_eq(close(fd), 0);
}

static void mkd(const struct source *s, const char *path)
{
	ck_assert_msg(mkdirat(s->fd, path, 0755) == 0, "mkdir %s: %s", path,
		      strerror(errno));
}

static void lnk(const struct source *s, const char *from, const char *to)
{
	ck_assert_msg(linkat(s->fd, from, s->fd, to, 0) == 0, "link %s %s: %s",
		      from, to, strerror(errno));
}

static bool exists(const struct source *s, const char *path)
{
	struct stat st;

	return fstatat(s->fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The whole content of a small file, in a static buffer. */
static const char *content(const struct source *s, const char *path)
{
	static char buf[256];
	int fd = openat(s->fd, path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* ---- a tree as text ----------------------------------------------------- */

struct seen {
	dev_t dev;
	ino_t ino;
	char path[256];
};

struct snap {
	char *buf;
	size_t len, cap;
	struct seen v[256];
	size_t n;
};

static void snap_printf(struct snap *sn, const char *fmt, ...)
{
	va_list ap;
	int need;

	for (;;) {
		va_start(ap, fmt);
		need = vsnprintf(sn->buf + sn->len, sn->cap - sn->len, fmt, ap);
		va_end(ap);
		ck_assert_int_ge(need, 0);
		if ((size_t)need < sn->cap - sn->len)
			break;
		sn->cap = 2 * sn->cap + (size_t)need;
		sn->buf = realloc(sn->buf, sn->cap);
		ck_assert_ptr_nonnull(sn->buf);
	}
	sn->len += (size_t)need;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One line per object under dfd, sorted by path: type, permissions, and
 * for a file its link count and content, or "=PATH" when an object met
 * before (its first path) has the same inode.  The state directory is left
 * out.
 */
static void walk(struct snap *sn, int dfd, const char *prefix)
{
	char *names[256];
	size_t n = 0;
	struct dirent *e;
	DIR *d;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	d = fdopendir(fd);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (*prefix == '\0' && strcmp(e->d_name, ".txfs") == 0)
			continue;
		ck_assert_uint_lt(n, 256);
		names[n] = strdup(e->d_name);
		ck_assert_ptr_nonnull(names[n]);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char path[256];
		struct stat st;
		size_t k;

		snprintf(path, sizeof(path), "%s%s", prefix, names[i]);
		ck_assert_int_eq(
		    fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
		for (k = 0; k < sn->n; k++)
			if (sn->v[k].dev == st.st_dev &&
			    sn->v[k].ino == st.st_ino)
				break;
		if (k < sn->n) {
			snap_printf(sn, "%s =%s\n", path, sn->v[k].path);
		} else if (S_ISDIR(st.st_mode)) {
			char sub[260];
			int cfd = openat(dfd, names[i],
					 O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			ck_assert_int_ge(cfd, 0);
			snap_printf(sn, "%s dir %04o\n", path,
				    (unsigned)(st.st_mode & 07777));
			snprintf(sub, sizeof(sub), "%s/", path);
			walk(sn, cfd, sub);
			close(cfd);
		} else if (S_ISREG(st.st_mode)) {
			char data[128];
			int ffd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC);
			ssize_t len;

			ck_assert_int_ge(ffd, 0);
			len = read(ffd, data, sizeof(data));
			ck_assert_int_ge(len, 0);
			close(ffd);
			snap_printf(sn, "%s file %04o links %ju '%.*s'\n", path,
				    (unsigned)(st.st_mode & 07777),
				    (uintmax_t)st.st_nlink, (int)len, data);
		} else {
			snap_printf(sn, "%s other %o\n", path,
				    (unsigned)st.st_mode);
		}
		if (k == sn->n) {
			ck_assert_uint_lt(sn->n, 256);
			sn->v[sn->n].dev = st.st_dev;
			sn->v[sn->n].ino = st.st_ino;
			snprintf(sn->v[sn->n].path, sizeof(sn->v[0].path), "%s",
				 path);
			sn->n++;
		}
		free(names[i]);
	}
}

/* SOURCE as text (see walk); the caller frees it. */
static char *tree(const struct source *s)
{
	struct snap *sn = calloc(1, sizeof(*sn));
	char *out;

	ck_assert_ptr_nonnull(sn);
	sn->cap = 1024;
	sn->buf = malloc(sn->cap);
	ck_assert_ptr_nonnull(sn->buf);
	sn->buf[0] = '\0';
	walk(sn, s->fd, "");
	out = sn->buf;
	free(sn);
	return out;
}

/* ---- records built by hand ---------------------------------------------- */

struct hbytes {
	size_t len;
	unsigned char b[HB_MAX];
};

struct rec {
	struct journal_change c[MAX_STEPS];
	size_t n;
	struct hbytes h[2 * MAX_STEPS];
	size_t nh;
	char shadow[MAX_STEPS][32]; /* "tx-1/N", relative to the state dir */
	char spath[MAX_STEPS][40];  /* ".txfs/tx-1/N", relative to SOURCE */
	size_t nshadow;
	char path[MAX_STEPS][80];
};

static struct rec *rec_new(void)
{
	struct rec *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	return r;
}

/* The handle bytes of path (relative to SOURCE), kept in r; NULL: root. */
static const void *handle_of(struct rec *r, const struct source *s,
			     const char *path, size_t *len)
{
	union {
		struct file_handle fh;
		unsigned char b[HB_MAX];
	} u;
	struct hbytes *h;
	int mount_id;

	*len = 0;
	if (path == NULL)
		return NULL;
	ck_assert_uint_lt(r->nh, 2 * MAX_STEPS);
	u.fh.handle_bytes = MAX_HANDLE_SZ;
	ck_assert_msg(name_to_handle_at(s->fd, path, &u.fh, &mount_id, 0) == 0,
		      "name_to_handle_at %s: %s", path, strerror(errno));
	h = &r->h[r->nh++];
	h->len = sizeof(u.fh) + u.fh.handle_bytes;
	memcpy(h->b, u.b, h->len);
	*len = h->len;
	return h->b;
}

/* A new shadow file (or directory when data is NULL); returns its index. */
static size_t shadow(struct rec *r, const struct source *s, const char *data)
{
	size_t k = r->nshadow++;

	ck_assert_uint_lt(k, MAX_STEPS);
	snprintf(r->shadow[k], sizeof(r->shadow[k]), "tx-1/%zu", k + 1);
	snprintf(r->spath[k], sizeof(r->spath[k]), ".txfs/tx-1/%zu", k + 1);
	if (data != NULL)
		put(s, r->spath[k], data);
	else
		mkd(s, r->spath[k]);
	return k;
}

/*
 * Appends a step.  dir is the directory of name (NULL: the root); for
 * RENAME p2 is the directory of name2 (NULL: the root), for LINK and
 * WRITE_INTO the object itself; obj is the object whose identity the step
 * carries.  Paths are relative to SOURCE and must exist now.
 */
static void add(struct rec *r, const struct source *s, enum journal_kind kind,
		const char *shadow_name, const char *dir, const char *name,
		const char *p2, const char *name2, const char *obj,
		uint32_t flags)
{
	struct journal_change *c;
	struct stat st;

	ck_assert_uint_lt(r->n, MAX_STEPS);
	c = &r->c[r->n];
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->shadow = shadow_name;
	c->parent = handle_of(r, s, dir, &c->parent_len);
	c->name = name;
	c->parent2 = handle_of(r, s, p2, &c->parent2_len);
	c->name2 = name2;
	ck_assert_msg(fstatat(s->fd, obj, &st, AT_SYMLINK_NOFOLLOW) == 0,
		      "stat %s: %s", obj, strerror(errno));
	c->base_dev = (uint64_t)st.st_dev;
	c->base_ino = (uint64_t)st.st_ino;
	c->mode = (uint32_t)st.st_mode;
	c->flags = flags;
	snprintf(r->path[r->n], sizeof(r->path[0]), "/%s%s%s",
		 dir != NULL ? dir : "", dir != NULL ? "/" : "", name);
	c->path = r->path[r->n];
	r->n++;
}

/* Shorthands for the kinds; paths as for add. */
static void replace(struct rec *r, const struct source *s, const char *dir,
		    const char *name, const char *obj, const char *data)
{
	size_t k = shadow(r, s, data);

	add(r, s, JOURNAL_REPLACE, r->shadow[k], dir, name, NULL, NULL, obj, 0);
}

static void write_into(struct rec *r, const struct source *s, const char *dir,
		       const char *name, const char *obj, const char *data)
{
	size_t k = shadow(r, s, data);

	add(r, s, JOURNAL_WRITE_INTO, r->shadow[k], dir, name, obj, NULL, obj,
	    0);
}

/* CREATE (data) or MKDIR (data NULL); returns the new object's path now. */
static const char *create(struct rec *r, const struct source *s,
			  const char *dir, const char *name, const char *data)
{
	size_t k = shadow(r, s, data);

	add(r, s, data != NULL ? JOURNAL_CREATE : JOURNAL_MKDIR, r->shadow[k],
	    dir, name, NULL, NULL, r->spath[k], 0);
	return r->spath[k];
}

static void unlink_(struct rec *r, const struct source *s, const char *dir,
		    const char *name, const char *obj)
{
	add(r, s, JOURNAL_UNLINK, NULL, dir, name, NULL, NULL, obj, 0);
}

static void rmdir_(struct rec *r, const struct source *s, const char *dir,
		   const char *name, const char *obj)
{
	add(r, s, JOURNAL_RMDIR, NULL, dir, name, NULL, NULL, obj, 0);
}

static void rename_(struct rec *r, const struct source *s, const char *dir,
		    const char *name, const char *dir2, const char *name2,
		    const char *obj, uint32_t flags)
{
	add(r, s, JOURNAL_RENAME, NULL, dir, name, dir2, name2, obj, flags);
}

static void link_(struct rec *r, const struct source *s, const char *dir,
		  const char *name, const char *obj)
{
	add(r, s, JOURNAL_LINK, NULL, dir, name, obj, NULL, obj, 0);
}

/* Commits r as TXID to SOURCE's journal and closes it again. */
static void commit(const struct source *s, const struct rec *r)
{
	struct journal *j = NULL;

	ck_assert_int_eq(jopen(s, &j), 0);
	ck_assert_int_eq(journal_commit(j, TXID, 0, "test", r->c, r->n), 0);
	journal_close(j);
}

/* ---- applying, recovering ----------------------------------------------- */

/* Applies r from step 0 in this process, as tx_commit does. */
static int apply(const struct source *s, const struct rec *r,
		 struct checkpoint_stats *cs)
{
	struct journal *j = NULL;
	int ret;

	ck_assert_int_eq(jopen(s, &j), 0);
	struct checkpoint_env env = {
		.statedir_fd = s->state_fd,
		.nodes = s->nodes,
		.journal = j,
	};
	memset(cs, 0, sizeof(*cs));
	ret = checkpoint_apply(&env, TXID, r->c, r->n, 0, cs);
	ck_assert(journal_invariants(j));
	journal_close(j);
	return ret;
}

/* What a recovery run met in the journal and did. */
struct recovery {
	struct checkpoint_env env;
	size_t records;	 /* pending records visited */
	size_t left;	 /* pending records after the run */
	uint64_t txid;	 /* the last one */
	size_t n, steps; /* its size and recorded steps */
	int ret;	 /* what checkpoint_apply returned */
	bool apply;	 /* redo the record, or only look */
	struct checkpoint_stats cs;
};

static int redo(uint64_t txid, const struct journal_change *c, size_t n,
		size_t steps, void *arg)
{
	struct recovery *rv = arg;

	rv->records++;
	rv->txid = txid;
	rv->n = n;
	rv->steps = steps;
	if (!rv->apply)
		return 0;
	rv->ret = checkpoint_apply(&rv->env, txid, c, n, steps, &rv->cs);
	return rv->ret;
}

/*
 * Runs recovery as txfsd's start-up does (apply true), or only reads the
 * pending records (apply false).  Returns journal_pending's result; safe
 * in a child (no ck_assert on the way).
 */
static int recover(const struct source *s, bool apply_, struct recovery *rv)
{
	struct journal *j = NULL;
	int ret;

	memset(rv, 0, sizeof(*rv));
	ret = jopen(s, &j);
	if (ret < 0)
		return ret;
	rv->env = (struct checkpoint_env){
		.statedir_fd = s->state_fd,
		.nodes = s->nodes,
		.journal = j,
		.recovery = true,
	};
	rv->apply = apply_;
	ret = journal_pending(j, redo, rv);
	if (ret == 0 && !journal_invariants(j))
		ret = -EUCLEAN;
	if (ret == 0 && apply_) {
		struct recovery after = { 0 };

		ret = journal_pending(j, redo, &after);
		rv->left = after.records;
	}
	journal_close(j);
	return ret;
}

/* Asserts that SOURCE's journal holds no pending record. */
static void assert_nothing_pending(const struct source *s)
{
	struct recovery rv;

	ck_assert_int_eq(recover(s, false, &rv), 0);
	ck_assert_uint_eq(rv.records, 0);
}

/* Asserts that TXID is pending with steps recorded; returns them. */
static size_t pending_steps(const struct source *s, size_t n)
{
	struct recovery rv;

	ck_assert_int_eq(recover(s, false, &rv), 0);
	ck_assert_uint_eq(rv.records, 1);
	ck_assert_uint_eq(rv.txid, TXID);
	ck_assert_uint_eq(rv.n, n);
	ck_assert_uint_le(rv.steps, n);
	return rv.steps;
}

/* ---- 1. checkpoint_marks ------------------------------------------------ */

/*
 * Fake handle bytes (R() leaves out the terminating NUL): contents matter,
 * not validity.  H1_SHORT is H1 less its last byte.
 */
static const char H1[] = "\x08\0\0\0\x01\0\0\0abcd";
static const char H1_COPY[] = "\x08\0\0\0\x01\0\0\0abcd";
static const char H2[] = "\x08\0\0\0\x01\0\0\0abce";
static const char H1_SHORT[] = "\x08\0\0\0\x01\0\0\0abc";

static struct journal_change ch(enum journal_kind kind, const void *dir,
				size_t dirlen, const char *name)
{
	struct journal_change c = {
		.kind = kind,
		.parent = dir,
		.parent_len = dirlen,
		.name = name,
		.base_ino = 1,
	};
	return c;
}

static struct journal_change ren(const void *dir, size_t dirlen,
				 const char *name, const void *dir2,
				 size_t dir2len, const char *name2)
{
	struct journal_change c = ch(JOURNAL_RENAME, dir, dirlen, name);

	c.parent2 = dir2;
	c.parent2_len = dir2len;
	c.name2 = name2;
	return c;
}

/* Asserts checkpoint_marks(c, n) equals want, a string of '0' and '1'. */
static void assert_marks(const struct journal_change *c, size_t n,
			 const char *want)
{
	bool *marks = checkpoint_marks(c, n);
	char got[64];

	ck_assert_ptr_nonnull(marks);
	ck_assert_uint_lt(n, sizeof(got));
	for (size_t i = 0; i < n; i++)
		got[i] = marks[i] ? '1' : '0';
	got[n] = '\0';
	ck_assert_str_eq(got, want);
	free(marks);
}

#define R(x) (x), sizeof(x) - 1

START_TEST(distinct_names_need_no_mark)
{
	struct journal_change c[] = {
		ch(JOURNAL_CREATE, NULL, 0, "a"),
		ch(JOURNAL_UNLINK, NULL, 0, "b"),
		ch(JOURNAL_MKDIR, R(H1), "c"),
		ch(JOURNAL_RMDIR, R(H1), "d"),
		ren(NULL, 0, "e", R(H1), "f"),
		ch(JOURNAL_LINK, R(H2), "g"),
		ch(JOURNAL_UNLINK, NULL, 0, "h"),
	};

	assert_marks(c, sizeof(c) / sizeof(c[0]), "0000000");
}
END_TEST

START_TEST(an_empty_record_has_an_array_of_marks)
{
	bool *marks = checkpoint_marks(NULL, 0);

	ck_assert_ptr_nonnull(marks);
	free(marks);
}
END_TEST

START_TEST(a_name_a_later_create_reuses_is_marked)
{
	struct journal_change c[] = {
		ren(NULL, 0, "a", NULL, 0, "b"),
		ch(JOURNAL_CREATE, NULL, 0, "a"),
	};

	assert_marks(c, 2, "10");
}
END_TEST

START_TEST(the_second_name_of_a_rename_counts_both_ways)
{
	/* b is the second name of step 0 and the first of step 1. */
	struct journal_change c1[] = {
		ren(NULL, 0, "a", NULL, 0, "b"),
		ren(NULL, 0, "b", NULL, 0, "c"),
	};
	/* c is the first name of step 0 and the second of step 1. */
	struct journal_change c2[] = {
		ren(R(H1), "c", R(H2), "d"),
		ren(R(H2), "e", R(H1), "c"),
	};
	/* Second name against second name. */
	struct journal_change c3[] = {
		ren(R(H1), "a", R(H2), "z"),
		ren(R(H1), "b", R(H2), "z"),
		ch(JOURNAL_UNLINK, R(H1), "q"),
	};

	assert_marks(c1, 2, "10");
	assert_marks(c2, 2, "10");
	assert_marks(c3, 3, "100");
}
END_TEST

START_TEST(only_the_last_step_on_a_name_goes_unmarked)
{
	struct journal_change c[] = {
		ren(NULL, 0, "x", NULL, 0, "y"),
		ren(NULL, 0, "y", NULL, 0, "x"),
		ch(JOURNAL_UNLINK, NULL, 0, "a"),
		ch(JOURNAL_LINK, NULL, 0, "a"),
		ch(JOURNAL_UNLINK, NULL, 0, "other"),
		ren(NULL, 0, "x", NULL, 0, "y"),
	};

	assert_marks(c, 6, "111000");
}
END_TEST

START_TEST(create_and_mkdir_are_never_marked)
{
	struct journal_change c[] = {
		ch(JOURNAL_CREATE, NULL, 0, "a"), /* a is renamed later */
		ch(JOURNAL_MKDIR, R(H1), "d"),	  /* d is removed later */
		ren(NULL, 0, "a", NULL, 0, "b"),  /* b is removed later */
		ch(JOURNAL_RMDIR, R(H1), "d"),
		ch(JOURNAL_UNLINK, NULL, 0, "b"),
	};
	/* A name op before the create is still marked by it. */
	struct journal_change c2[] = {
		ch(JOURNAL_UNLINK, NULL, 0, "a"),
		ch(JOURNAL_CREATE, NULL, 0, "a"),
		ch(JOURNAL_RMDIR, R(H1), "d"),
		ch(JOURNAL_MKDIR, R(H1), "d"),
	};

	assert_marks(c, 5, "00100");
	assert_marks(c2, 4, "1010");
}
END_TEST

START_TEST(content_steps_are_never_marked)
{
	struct journal_change c[] = {
		ch(JOURNAL_REPLACE, NULL, 0, "a"),
		ch(JOURNAL_WRITE_INTO, NULL, 0, "b"),
		ren(NULL, 0, "a", NULL, 0, "c"),
		ch(JOURNAL_UNLINK, NULL, 0, "b"),
	};

	c[1].parent2 = H1;
	c[1].parent2_len = sizeof(H1) - 1;
	assert_marks(c, 4, "0000");
}
END_TEST

START_TEST(a_link_object_handle_is_not_a_name)
{
	/* LINK's parent2 is the object; even with a name2 it is not touched. */
	struct journal_change c[] = {
		ch(JOURNAL_LINK, NULL, 0, "a"),
		ch(JOURNAL_UNLINK, R(H1), "z"),
		ren(R(H1), "w", NULL, 0, "v"),
	};
	/* LINK's own name is one. */
	struct journal_change c2[] = {
		ch(JOURNAL_LINK, R(H2), "a"),
		ch(JOURNAL_UNLINK, R(H2), "a"),
	};

	c[0].parent2 = H1;
	c[0].parent2_len = sizeof(H1) - 1;
	c[0].name2 = "z";
	assert_marks(c, 3, "000");
	c[0].name2 = "w";
	assert_marks(c, 3, "000");
	c2[0].parent2 = H2;
	c2[0].parent2_len = sizeof(H2) - 1;
	assert_marks(c2, 2, "10");
}
END_TEST

START_TEST(names_in_different_directories_do_not_collide)
{
	struct journal_change c[] = {
		ch(JOURNAL_UNLINK, R(H1), "a"),
		ch(JOURNAL_UNLINK, R(H2), "a"),
		ch(JOURNAL_UNLINK, R(H1_SHORT), "a"),
		ch(JOURNAL_UNLINK, NULL, 0, "a"),
		ren(R(H2), "b", NULL, 0, "c"),
		ch(JOURNAL_CREATE, R(H1), "b"),
		ch(JOURNAL_CREATE, R(H2), "c"),
	};

	assert_marks(c, 7, "0000000");
}
END_TEST

START_TEST(equal_handle_bytes_are_one_directory)
{
	/* Handles are compared by their bytes, not by their address. */
	struct journal_change c[] = {
		ren(R(H1), "a", R(H1), "b"),
		ch(JOURNAL_UNLINK, R(H1_COPY), "b"),
	};

	assert_marks(c, 2, "10");
}
END_TEST

START_TEST(the_root_is_a_directory_of_its_own)
{
	/* No bytes name the root: NULL, or zero bytes. */
	struct journal_change c[] = {
		ren(NULL, 0, "a", NULL, 0, "b"),
		ch(JOURNAL_UNLINK, H1, 0, "b"),
		ch(JOURNAL_UNLINK, R(H1), "a"),
		ch(JOURNAL_CREATE, NULL, 0, "x"),
		ch(JOURNAL_UNLINK, R(H2), "x"),
	};

	assert_marks(c, 5, "10000");
}
END_TEST

START_TEST(long_records_mark_exactly)
{
	enum { N = 5000 };
	struct journal_change *c = calloc(N, sizeof(*c));
	static char names[N + 1][16];
	bool *marks;

	ck_assert_ptr_nonnull(c);
	/* A chain n0 -> n1 -> ... : every step but the last is marked. */
	for (size_t i = 0; i <= N; i++)
		snprintf(names[i], sizeof(names[i]), "n%zu", i);
	for (size_t i = 0; i < N; i++)
		c[i] = ren(R(H1), names[i], R(H1), names[i + 1]);
	marks = checkpoint_marks(c, N);
	ck_assert_ptr_nonnull(marks);
	for (size_t i = 0; i < N; i++)
		ck_assert_msg(marks[i] == (i + 1 < N), "step %zu", i);
	free(marks);
	/* Distinct unlinks: no mark at all. */
	for (size_t i = 0; i < N; i++)
		c[i] = ch(JOURNAL_UNLINK, R(H1), names[i]);
	marks = checkpoint_marks(c, N);
	ck_assert_ptr_nonnull(marks);
	for (size_t i = 0; i < N; i++)
		ck_assert_msg(!marks[i], "step %zu", i);
	free(marks);
	free(c);
}
END_TEST

/* ---- 2. applying every kind --------------------------------------------- */

/*
 * A record of every kind, revisiting names: content changes first, then the
 * name operations in the order a transaction made them.
 *
 *   before: a A, f F0 (= g), r R, s S, u U, d/p P, e/, old/
 *   after:  a = r R2, f F1 (= dd/f2), s S, x X, y Y, m/q Q,
 *           dd/ (was d) with p P, u U, e/ and f2
 */
static void build_mixed(const struct source *s, struct rec *r)
{
	const char *x, *m;

	put(s, "a", "A");
	put(s, "f", "F0");
	lnk(s, "f", "g");
	put(s, "r", "R");
	put(s, "s", "S");
	put(s, "u", "U");
	mkd(s, "d");
	put(s, "d/p", "P");
	mkd(s, "e");
	mkd(s, "old");

	replace(r, s, NULL, "r", "r", "R2");			   /* 0 */
	write_into(r, s, NULL, "f", "f", "F1");			   /* 1 */
	x = create(r, s, NULL, "x", "X");			   /* 2 */
	rename_(r, s, NULL, "x", NULL, "y", x, 0);		   /* 3 */
	rename_(r, s, NULL, "y", NULL, "x", x, 0);		   /* 4 */
	create(r, s, NULL, "y", "Y");				   /* 5 */
	unlink_(r, s, NULL, "a", "a");				   /* 6 */
	link_(r, s, NULL, "a", r->spath[0]);			   /* 7 */
	rename_(r, s, NULL, "s", NULL, "u", "s", RENAME_EXCHANGE); /* 8 */
	rename_(r, s, NULL, "s", NULL, "u", "u", RENAME_EXCHANGE); /* 9 */
	rename_(r, s, NULL, "u", "d", "u", "u", RENAME_NOREPLACE); /* 10 */
	m = create(r, s, NULL, "m", NULL);			   /* 11 */
	create(r, s, m, "q", "Q");				   /* 12 */
	rename_(r, s, NULL, "d", NULL, "dd", "d", 0);		   /* 13 */
	rmdir_(r, s, NULL, "old", "old");			   /* 14 */
	rename_(r, s, NULL, "e", "d", "e", "e", 0);		   /* 15 */
	unlink_(r, s, NULL, "g", "f");				   /* 16 */
	link_(r, s, "d", "f2", "f");				   /* 17 */
}

static const char mixed_after[] = "a file 0644 links 2 'R2'\n"
				  "dd dir 0755\n"
				  "dd/e dir 0755\n"
				  "dd/f2 file 0644 links 2 'F1'\n"
				  "dd/p file 0644 links 1 'P'\n"
				  "dd/u file 0644 links 1 'U'\n"
				  "f =dd/f2\n"
				  "m dir 0755\n"
				  "m/q file 0644 links 1 'Q'\n"
				  "r =a\n"
				  "s file 0644 links 1 'S'\n"
				  "x file 0644 links 1 'X'\n"
				  "y file 0644 links 1 'Y'\n";

START_TEST(every_kind_of_step_is_applied_in_order)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	struct stat f0, f1, x0, x1, u0, u1, r0, r1, d0, d1;
	char *t;

	build_mixed(&src, r);
	ck_assert_uint_eq(r->n, 18);
	assert_marks(r->c, r->n, "000110101100000000");
	ck_assert_int_eq(fstatat(src.fd, "f", &f0, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, ".txfs/tx-1/3", &x0, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "u", &u0, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, ".txfs/tx-1/1", &r0, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "d", &d0, 0), 0);
	commit(&src, r);

	ck_assert_int_eq(apply(&src, r, &cs), 0);
	ck_assert_uint_eq(cs.steps, r->n);
	ck_assert_uint_eq(cs.already, 0);
	ck_assert_uint_eq(cs.skipped, 0);
	ck_assert_uint_eq(cs.marks, 5); /* after steps 3, 4, 6, 8 and 9 */
	t = tree(&src);
	ck_assert_str_eq(t, mixed_after);
	free(t);

	/* Objects keep their identity: the record moved them, not copies. */
	ck_assert_int_eq(fstatat(src.fd, "f", &f1, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "x", &x1, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "dd/u", &u1, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "r", &r1, 0), 0);
	ck_assert_int_eq(fstatat(src.fd, "dd", &d1, 0), 0);
	ck_assert_uint_eq(f1.st_ino, f0.st_ino);
	ck_assert_uint_eq(x1.st_ino, x0.st_ino);
	ck_assert_uint_eq(u1.st_ino, u0.st_ino);
	ck_assert_uint_eq(r1.st_ino, r0.st_ino);
	ck_assert_uint_eq(d1.st_ino, d0.st_ino);
	/* The moved shadows left the state directory; WRITE_INTO's stays. */
	for (size_t k = 0; k < r->nshadow; k++)
		ck_assert_msg(exists(&src, r->spath[k]) == (k == 1), "%s",
			      r->spath[k]);
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

START_TEST(a_rename_exchange_swaps_two_names)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;

	put(&src, "a", "A");
	mkd(&src, "d");
	put(&src, "d/b", "B");
	rename_(r, &src, NULL, "a", "d", "b", "a", RENAME_EXCHANGE);
	commit(&src, r);
	ck_assert_int_eq(apply(&src, r, &cs), 0);
	ck_assert_uint_eq(cs.steps, 1);
	ck_assert_str_eq(content(&src, "a"), "B");
	ck_assert_str_eq(content(&src, "d/b"), "A");
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

START_TEST(write_into_keeps_the_inode_and_its_other_links)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	struct stat before, after;

	put(&src, "f", "old content, longer than the new");
	mkd(&src, "d");
	lnk(&src, "f", "d/g");
	ck_assert_int_eq(fstatat(src.fd, "f", &before, 0), 0);
	write_into(r, &src, NULL, "f", "f", "new");
	ck_assert_int_eq(fchmodat(src.fd, r->spath[0], 0600, 0), 0);
	commit(&src, r);
	ck_assert_int_eq(apply(&src, r, &cs), 0);
	ck_assert_int_eq(fstatat(src.fd, "d/g", &after, 0), 0);
	ck_assert_uint_eq(after.st_ino, before.st_ino);
	ck_assert_uint_eq(after.st_nlink, 2);
	ck_assert_uint_eq(after.st_mode & 07777, 0600);
	ck_assert_str_eq(content(&src, "f"), "new");
	ck_assert_str_eq(content(&src, "d/g"), "new");
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

/* ---- 3. crash safety ---------------------------------------------------- */

#ifdef TXFS_CRASH_POINTS

/* Empties SOURCE, journal included, and makes a new state directory. */
static void source_reset(struct source *s)
{
	close(s->state_fd);
	ck_assert_int_eq(
	    nftw(s->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT), 0);
	state_new(s);
}

/* What a child runs once TXFS_CRASH is armed. */
enum child_job { JOB_APPLY, JOB_RECOVER };

/*
 * Runs job in a child with TXFS_CRASH=crash and returns its wait status:
 * exit 0 when the job succeeded, 2 or more when it failed.
 */
static int in_child(const struct source *s, const struct rec *r,
		    const char *crash, enum child_job job)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct checkpoint_stats cs = { 0 };
		struct journal *j = NULL;
		struct recovery rv;
		char why[256];
		int ret;

		if (setenv("TXFS_CRASH", crash, 1) < 0 ||
		    crash_init(why, sizeof(why)) < 0)
			_exit(2);
		if (job == JOB_RECOVER) {
			ret = recover(s, true, &rv);
			_exit(ret == 0 && rv.records == 1 ? 0 : 3);
		}
		if (jopen(s, &j) < 0)
			_exit(4);
		struct checkpoint_env env = {
			.statedir_fd = s->state_fd,
			.nodes = s->nodes,
			.journal = j,
		};
		ret = checkpoint_apply(&env, TXID, r->c, r->n, 0, &cs);
		_exit(ret == 0 ? 0 : 5);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static bool killed(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static bool exited_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * The steps the journal records when the checkpoint dies after its k-th
 * step (k counting from 1): the mark after step i is written after step
 * i's crash point, so only marks of steps before the k-th count.
 */
static size_t recorded_after(const struct rec *r, size_t k)
{
	bool *marks = checkpoint_marks(r->c, r->n);
	size_t steps = 0;

	ck_assert_ptr_nonnull(marks);
	for (size_t i = 0; i + 1 < k && i + 1 < r->n; i++)
		if (marks[i])
			steps = i + 1;
	free(marks);
	return steps;
}

typedef void (*build_fn)(const struct source *s, struct rec *r);

/* The tree an uncrashed checkpoint of build's record leaves. */
static char *reference(struct source *s, build_fn build, size_t *n)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	char *t;

	source_reset(s);
	build(s, r);
	commit(s, r);
	ck_assert_int_eq(apply(s, r, &cs), 0);
	ck_assert_uint_eq(cs.steps, r->n);
	assert_nothing_pending(s);
	t = tree(s);
	*n = r->n;
	free(r);
	return t;
}

/*
 * Recovers SOURCE as txfsd's start-up would and asserts that it converged
 * to want with the record applied.  Returns the steps the journal had
 * recorded.
 */
static size_t recover_to(const struct source *s, const struct rec *r,
			 const char *want, const char *what)
{
	struct recovery rv;
	char *t;
	int ret;

	ret = recover(s, true, &rv);
	ck_assert_msg(ret == 0, "%s: recovery failed: %s", what,
		      strerror(-ret));
	ck_assert_msg(rv.records == 1 && rv.txid == TXID,
		      "%s: %zu record(s) pending", what, rv.records);
	ck_assert_uint_eq(rv.n, r->n);
	ck_assert_msg(rv.steps <= r->n, "%s: %zu steps recorded", what,
		      rv.steps);
	ck_assert_uint_eq(rv.cs.steps + rv.cs.already, r->n - rv.steps);
	ck_assert_uint_eq(rv.cs.skipped, 0);
	ck_assert_msg(rv.left == 0, "%s: the record is still pending", what);
	t = tree(s);
	ck_assert_msg(strcmp(t, want) == 0, "%s: got\n%s\nwant\n%s", what, t,
		      want);
	free(t);
	return rv.steps;
}

/*
 * For every K: the checkpoint dies after its K-th step, recovery redoes
 * the record from the step the journal recorded, and SOURCE ends as the
 * uncrashed run left it.  K = n + 1 does not crash.
 */
static void crash_every_step(struct source *s, build_fn build)
{
	size_t n;
	char *want = reference(s, build, &n);

	for (size_t k = 1; k <= n + 1; k++) {
		struct rec *r = rec_new();
		char crash[64], what[96];
		int status;

		source_reset(s);
		build(s, r);
		commit(s, r);
		snprintf(crash, sizeof(crash), "checkpoint-step:%zu", k);
		snprintf(what, sizeof(what), "crash after step %zu of %zu", k,
			 n);
		status = in_child(s, r, crash, JOB_APPLY);
		if (k <= n) {
			ck_assert_msg(killed(status), "%s: status %#x", what,
				      status);
			ck_assert_uint_eq(recover_to(s, r, want, what),
					  recorded_after(r, k));
		} else {
			ck_assert_msg(exited_ok(status), "%s: status %#x", what,
				      status);
			char *t = tree(s);
			ck_assert_str_eq(t, want);
			free(t);
			assert_nothing_pending(s);
		}
		free(r);
	}
	free(want);
}

/*
 * The first crash of one crash_in_recovery round: after the k-th step, or
 * (k = n + 1) after the last one, before the record is marked applied.
 * Returns the steps the journal recorded.
 */
static size_t first_crash(struct source *s, struct rec *r, build_fn build,
			  size_t k)
{
	char crash[64];
	size_t steps;
	int status;

	source_reset(s);
	build(s, r);
	commit(s, r);
	if (k <= r->n)
		snprintf(crash, sizeof(crash), "checkpoint-step:%zu", k);
	else
		snprintf(crash, sizeof(crash), "checkpoint-done");
	status = in_child(s, r, crash, JOB_APPLY);
	ck_assert_msg(killed(status), "%s: status %#x", crash, status);
	steps = pending_steps(s, r->n);
	ck_assert_uint_eq(steps, recorded_after(r, k));
	return steps;
}

/*
 * For every K2: the checkpoint dies after its K-th step, the first
 * recovery dies after its K2-th step, and a second recovery still
 * converges.  K is 1 (recovery redoes nearly everything), the first crash
 * that leaves a marked step in doubt after an earlier mark was recorded
 * (recovery starts in the middle and finds steps done), and n + 1 (every
 * step done, only the applied mark missing).
 */
static void crash_in_recovery(struct source *s, build_fn build)
{
	size_t n, ks[3], nks = 0;
	char *want = reference(s, build, &n);
	struct rec *r = rec_new();
	bool *marks;

	source_reset(s);
	build(s, r);
	marks = checkpoint_marks(r->c, r->n);
	ck_assert_ptr_nonnull(marks);
	ks[nks++] = 1;
	for (size_t k = 2; k <= n; k++) {
		if (marks[k - 1] && recorded_after(r, k) > 0) {
			ks[nks++] = k;
			break;
		}
	}
	ks[nks++] = n + 1;
	free(marks);
	free(r);

	for (size_t i = 0; i < nks; i++) {
		size_t k = ks[i];

		for (size_t k2 = 1;; k2++) {
			char crash[64], what[128];
			size_t before, after, redo;
			int status;

			r = rec_new();
			before = first_crash(s, r, build, k);
			redo = n - before;
			snprintf(crash, sizeof(crash), "recovery-step:%zu", k2);
			snprintf(what, sizeof(what),
				 "crash after step %zu of %zu, then after "
				 "recovery step %zu of %zu",
				 k, n, k2, redo);
			status = in_child(s, r, crash, JOB_RECOVER);
			if (k2 <= redo) {
				ck_assert_msg(killed(status), "%s: status %#x",
					      what, status);
				after = recover_to(s, r, want, what);
				ck_assert_uint_ge(after, before);
			} else {
				ck_assert_msg(exited_ok(status),
					      "%s: status %#x", what, status);
				char *t = tree(s);
				ck_assert_msg(strcmp(t, want) == 0,
					      "%s: got\n%s\nwant\n%s", what, t,
					      want);
				free(t);
				assert_nothing_pending(s);
			}
			free(r);
			if (k2 > redo)
				break; /* the recovery ran to its end */
		}
	}
	free(want);
}

START_TEST(a_crash_after_any_step_is_recovered)
{
	crash_every_step(&src, build_mixed);
}
END_TEST

START_TEST(a_crash_during_recovery_is_recovered_again)
{
	crash_in_recovery(&src, build_mixed);
}
END_TEST

/*
 * Names revisited again and again: a swap through a temporary name, a
 * RENAME_EXCHANGE pair, a link and unlink of one name, a directory rename
 * and a file created, removed and created again.
 *
 *   before: a A, b B, d/, e/
 *   after:  a A, b B, e/d/, x X2
 */
static void build_churn(const struct source *s, struct rec *r)
{
	const char *x;

	put(s, "a", "A");
	put(s, "b", "B");
	mkd(s, "d");
	mkd(s, "e");

	rename_(r, s, NULL, "a", NULL, "t", "a", 0);		   /* 0 */
	rename_(r, s, NULL, "b", NULL, "a", "b", 0);		   /* 1 */
	rename_(r, s, NULL, "t", NULL, "b", "a", 0);		   /* 2 */
	rename_(r, s, NULL, "a", NULL, "b", "b", RENAME_EXCHANGE); /* 3 */
	rename_(r, s, NULL, "a", NULL, "b", "a", RENAME_EXCHANGE); /* 4 */
	rename_(r, s, NULL, "a", "d", "a", "b", 0);		   /* 5 */
	link_(r, s, NULL, "a", "a");				   /* 6 */
	unlink_(r, s, NULL, "b", "a");				   /* 7 */
	rename_(r, s, "d", "a", NULL, "b", "b", 0);		   /* 8 */
	rename_(r, s, NULL, "d", "e", "d", "d", 0);		   /* 9 */
	x = create(r, s, NULL, "x", "X");			   /* 10 */
	unlink_(r, s, NULL, "x", x);				   /* 11 */
	create(r, s, NULL, "x", "X2");				   /* 12 */
}

START_TEST(a_record_that_revisits_names_survives_any_crash)
{
	size_t n;
	char *want = reference(&src, build_churn, &n);

	struct rec *r = rec_new();

	source_reset(&src);
	build_churn(&src, r);
	assert_marks(r->c, r->n, "1111110100010");
	free(r);
	ck_assert_str_eq(want, "a file 0644 links 1 'A'\n"
			       "b file 0644 links 1 'B'\n"
			       "e dir 0755\n"
			       "e/d dir 0755\n"
			       "x file 0644 links 1 'X2'\n");
	free(want);
	crash_every_step(&src, build_churn);
	crash_in_recovery(&src, build_churn);
}
END_TEST

/*
 * A file with two links gets new content, then both its names are
 * removed: the redone WRITE_INTO finds no inode to write into.
 *
 *   before: f F0 (= g), h H
 *   after:  h H
 */
static void build_write_into_then_unlink(const struct source *s, struct rec *r)
{
	put(s, "f", "F0");
	lnk(s, "f", "g");
	put(s, "h", "H");

	write_into(r, s, NULL, "f", "f", "F1"); /* 0 */
	unlink_(r, s, NULL, "f", "f");		/* 1 */
	unlink_(r, s, NULL, "g", "g");		/* 2 */
}

START_TEST(a_file_written_into_and_then_removed_survives_any_crash)
{
	crash_every_step(&src, build_write_into_then_unlink);
	crash_in_recovery(&src, build_write_into_then_unlink);
}
END_TEST

START_TEST(recovery_skips_a_directory_removed_after_the_crash)
{
	struct rec *r = rec_new();
	char *t;
	struct recovery rv;

	put(&src, "a", "A");
	mkd(&src, "d");
	put(&src, "d/p", "P");
	put(&src, "d/q", "Q");
	unlink_(r, &src, NULL, "a", "a");
	unlink_(r, &src, "d", "p", "d/p");
	unlink_(r, &src, "d", "q", "d/q");
	commit(&src, r);
	ck_assert(killed(in_child(&src, r, "checkpoint-step:1", JOB_APPLY)));
	ck_assert_int_eq(unlinkat(src.fd, "d/p", 0), 0);
	ck_assert_int_eq(unlinkat(src.fd, "d/q", 0), 0);
	ck_assert_int_eq(unlinkat(src.fd, "d", AT_REMOVEDIR), 0);
	ck_assert_int_eq(recover(&src, true, &rv), 0);
	ck_assert_int_eq(rv.ret, 0);
	ck_assert_uint_eq(rv.cs.skipped, 2);
	t = tree(&src);
	ck_assert_str_eq(t, "");
	free(t);
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

#endif /* TXFS_CRASH_POINTS */

/* ---- 4. a directory gone from SOURCE ------------------------------------ */

START_TEST(a_step_whose_directory_is_gone_is_skipped)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	char *t;

	put(&src, "a", "A");
	put(&src, "b", "B");
	mkd(&src, "d");
	put(&src, "d/p", "P");
	mkd(&src, "d/sub");
	unlink_(r, &src, NULL, "a", "a");
	unlink_(r, &src, "d", "p", "d/p");
	create(r, &src, "d", "n", "N");
	rmdir_(r, &src, "d", "sub", "d/sub");
	rename_(r, &src, NULL, "b", NULL, "c", "b", 0);
	commit(&src, r);
	/* Removed while the daemon was down. */
	ck_assert_int_eq(unlinkat(src.fd, "d/p", 0), 0);
	ck_assert_int_eq(unlinkat(src.fd, "d/sub", AT_REMOVEDIR), 0);
	ck_assert_int_eq(unlinkat(src.fd, "d", AT_REMOVEDIR), 0);

	ck_assert_int_eq(apply(&src, r, &cs), 0);
	ck_assert_uint_eq(cs.skipped, 3);
	ck_assert_uint_eq(cs.steps, 2);
	ck_assert_uint_eq(cs.already, 0);
	t = tree(&src);
	ck_assert_str_eq(t, "c file 0644 links 1 'B'\n");
	free(t);
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

/*
 * The other end of a step can be gone too: a rename into a directory, or a
 * link of a file, removed while the daemon was down.  Those steps are
 * skipped as well, so that recovery can still finish the record.
 */
START_TEST(a_step_whose_target_is_gone_is_skipped)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	char *t;

	put(&src, "a", "A");
	put(&src, "f", "F");
	mkd(&src, "d");
	rename_(r, &src, NULL, "a", "d", "a", "a", 0);
	link_(r, &src, NULL, "g", "f");
	commit(&src, r);
	/* Removed while the daemon was down. */
	ck_assert_int_eq(unlinkat(src.fd, "d", AT_REMOVEDIR), 0);
	ck_assert_int_eq(unlinkat(src.fd, "f", 0), 0);

	ck_assert_int_eq(apply(&src, r, &cs), 0);
	ck_assert_uint_eq(cs.skipped, 2);
	ck_assert_uint_eq(cs.steps, 0);
	t = tree(&src);
	ck_assert_str_eq(t, "a file 0644 links 1 'A'\n");
	free(t);
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

/* ---- 5. a failing step -------------------------------------------------- */

START_TEST(a_failing_step_keeps_the_record_committed)
{
	struct rec *r = rec_new();
	struct checkpoint_stats cs;
	char *t;

	put(&src, "a", "A");
	put(&src, "b", "B");
	put(&src, "z", "Z");
	rename_(r, &src, NULL, "a", NULL, "t", "a", 0);		       /* 0 */
	rename_(r, &src, NULL, "t", NULL, "a2", "a", 0);	       /* 1 */
	rename_(r, &src, NULL, "b", NULL, "c", "b", RENAME_NOREPLACE); /* 2 */
	unlink_(r, &src, NULL, "z", "z");			       /* 3 */
	commit(&src, r);
	/* A name the record did not expect, made outside. */
	put(&src, "c", "C");

	ck_assert_int_eq(apply(&src, r, &cs), -EEXIST);
	ck_assert_uint_eq(cs.steps, 2);
	ck_assert_uint_eq(cs.marks, 1);
	ck_assert_uint_le(pending_steps(&src, r->n), 2);
	ck_assert_uint_eq(pending_steps(&src, r->n), 1);
	/* Steps before the failing one are done, the ones after are not. */
	t = tree(&src);
	ck_assert_str_eq(t, "a2 file 0644 links 1 'A'\n"
			    "b file 0644 links 1 'B'\n"
			    "c file 0644 links 1 'C'\n"
			    "z file 0644 links 1 'Z'\n");
	free(t);

	/* Recovery fails the same way while the name is in the way... */
	struct recovery rv;
	ck_assert_int_eq(recover(&src, true, &rv), -EEXIST);
	ck_assert_uint_eq(pending_steps(&src, r->n), 1);
	/* ... and completes once it is gone. */
	ck_assert_int_eq(unlinkat(src.fd, "c", 0), 0);
	ck_assert_int_eq(recover(&src, true, &rv), 0);
	ck_assert_uint_eq(rv.cs.already, 1);
	ck_assert_uint_eq(rv.cs.steps, 2);
	t = tree(&src);
	ck_assert_str_eq(t, "a2 file 0644 links 1 'A'\n"
			    "c file 0644 links 1 'B'\n");
	free(t);
	assert_nothing_pending(&src);
	free(r);
}
END_TEST

static Suite *checkpoint_suite(void)
{
	Suite *s = suite_create("checkpoint");
	TCase *tm = tcase_create("marks");
	TCase *ta = tcase_create("apply");

	tcase_add_test(tm, distinct_names_need_no_mark);
	tcase_add_test(tm, an_empty_record_has_an_array_of_marks);
	tcase_add_test(tm, a_name_a_later_create_reuses_is_marked);
	tcase_add_test(tm, the_second_name_of_a_rename_counts_both_ways);
	tcase_add_test(tm, only_the_last_step_on_a_name_goes_unmarked);
	tcase_add_test(tm, create_and_mkdir_are_never_marked);
	tcase_add_test(tm, content_steps_are_never_marked);
	tcase_add_test(tm, a_link_object_handle_is_not_a_name);
	tcase_add_test(tm, names_in_different_directories_do_not_collide);
	tcase_add_test(tm, equal_handle_bytes_are_one_directory);
	tcase_add_test(tm, the_root_is_a_directory_of_its_own);
	tcase_add_test(tm, long_records_mark_exactly);
	suite_add_tcase(s, tm);

	tcase_add_checked_fixture(ta, setup, teardown);
	tcase_set_timeout(ta, 120);
	tcase_add_test(ta, every_kind_of_step_is_applied_in_order);
	tcase_add_test(ta, a_rename_exchange_swaps_two_names);
	tcase_add_test(ta, write_into_keeps_the_inode_and_its_other_links);
	tcase_add_test(ta, a_step_whose_directory_is_gone_is_skipped);
	tcase_add_test(ta, a_step_whose_target_is_gone_is_skipped);
	tcase_add_test(ta, a_failing_step_keeps_the_record_committed);
	suite_add_tcase(s, ta);

#ifdef TXFS_CRASH_POINTS
	TCase *tc = tcase_create("crash");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, a_crash_after_any_step_is_recovered);
	tcase_add_test(tc, a_crash_during_recovery_is_recovered_again);
	tcase_add_test(tc, a_record_that_revisits_names_survives_any_crash);
	tcase_add_test(tc,
		       a_file_written_into_and_then_removed_survives_any_crash);
	tcase_add_test(tc, recovery_skips_a_directory_removed_after_the_crash);
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(checkpoint_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
