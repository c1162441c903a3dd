/*
 * Unit tests for view.c: the per-transaction overlay of names.
 *
 * The view module does no I/O, so the tests make up object and directory
 * identities (struct node_key with dev 1 and invented inode numbers) and
 * feed view_apply the changes a caller would have made.  The only real
 * objects are two files in a temporary directory whose kernel file
 * handles stand in for the handles a caller passes; handle_equal tells
 * whether the view handed back a copy of the right one.
 */
#include "config.h"

#include "handle.h"
#include "node.h"
#include "stm.h"
#include "view.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEV 1 /* the made-up device of every key */

static char dir[64];
static struct view_table *vt;
static struct handle *hfile; /* a regular file's handle */
static struct handle *hdir;  /* a directory's handle */

/* ---- fixture ------------------------------------------------------------ */

static struct handle *handle_of(const char *path, int flags)
{
	struct handle *h = NULL;
	int fd = open(path, O_PATH | O_CLOEXEC | flags);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(handle_from_fd(fd, &h), 0);
	ck_assert_ptr_nonnull(h);
	close(fd);
	return h;
}

static void setup(void)
{
	char path[128];
	int fd;

	ck_assert_int_eq(stm_init(), 0);
	strcpy(dir, "/tmp/txfs-view-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	hfile = handle_of(path, 0);
	snprintf(path, sizeof(path), "%s/d", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	hdir = handle_of(path, O_DIRECTORY);
	ck_assert(!handle_equal(hfile, hdir));
	ck_assert_int_eq(view_table_new(&vt), 0);
	ck_assert(view_table_invariants(vt));
}

static void teardown(void)
{
	char cmd[128];

	ck_assert(view_table_invariants(vt));
	view_table_free(vt);
	vt = NULL;
	stm_quiesce();
	ck_assert_uint_eq(stm_debug_retired_pending(), 0);
	handle_free(hfile);
	handle_free(hdir);
	hfile = hdir = NULL;
	handle_shutdown();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- helpers ------------------------------------------------------------ */

static struct node_key key(ino_t ino, mode_t type)
{
	struct node_key k = { .dev = DEV, .ino = ino, .type = type };

	return k;
}

static struct node_key dkey(ino_t ino)
{
	return key(ino, S_IFDIR);
}

static struct node_key fkey(ino_t ino)
{
	return key(ino, S_IFREG);
}

static bool key_eq(const struct node_key *a, const struct node_key *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->type == b->type;
}

/* An object for a change; h is borrowed (view_apply copies it). */
static struct view_obj obj(struct node_key k, struct handle *h, bool created)
{
	struct view_obj o = { .key = k, .handle = h, .created = created };

	return o;
}

static const struct view_base no_base = { .existed = false };

static struct view_base base_of(struct node_key k)
{
	struct view_base b = { .existed = true, .key = k };

	return b;
}

/* A CREATE of o at (d, name); base: nothing there. */
static struct view_change create_at(struct node_key d, struct handle *dh,
				    const char *name, struct view_obj o,
				    const char *leaf)
{
	struct view_change ch = { .op = { .kind = VIEW_CREATE } };

	ch.op.dir1 = d;
	ch.op.dh1 = dh;
	ch.op.name1 = (char *)name;
	ch.op.obj = o;
	snprintf(ch.op.leaf, sizeof(ch.op.leaf), "%s", leaf);
	ch.base1 = no_base;
	return ch;
}

/* A LINK of o (an existing object) at (d, name). */
static struct view_change link_at(struct node_key d, const char *name,
				  struct view_obj o)
{
	struct view_change ch = { .op = { .kind = VIEW_LINK } };

	ch.op.dir1 = d;
	ch.op.name1 = (char *)name;
	ch.op.obj = o;
	ch.base1 = no_base;
	return ch;
}

/* An UNLINK of (d, name), which leads to src. */
static struct view_change unlink_at(struct node_key d, const char *name,
				    struct view_obj src, struct view_base base)
{
	struct view_change ch = { .op = { .kind = VIEW_UNLINK } };

	ch.op.dir1 = d;
	ch.op.name1 = (char *)name;
	ch.op.flags = src.key.type == S_IFDIR ? AT_REMOVEDIR : 0;
	ch.src = src;
	ch.base1 = base;
	return ch;
}

/* A RENAME of (d1, n1), leading to src, to (d2, n2); dst if it exists. */
static struct view_change rename_to(struct node_key d1, const char *n1,
				    struct node_key d2, const char *n2,
				    struct view_obj src,
				    const struct view_obj *dst, unsigned flags)
{
	struct view_change ch = { .op = { .kind = VIEW_RENAME } };

	ch.op.dir1 = d1;
	ch.op.dir2 = d2;
	ch.op.name1 = (char *)n1;
	ch.op.name2 = (char *)n2;
	ch.op.flags = flags;
	ch.src = src;
	ch.base1 = no_base;
	ch.base2 = no_base;
	if (dst != NULL) {
		ch.dst = *dst;
		ch.dst_exists = true;
	}
	return ch;
}

static void apply(uint64_t view, const struct view_change *ch)
{
	ck_assert_int_eq(view_apply(vt, view, ch, NULL, NULL), 0);
}

/* Looks (d, name) up in view; checks the object when FOUND. */
static int lookup(uint64_t view, struct node_key d, const char *name,
		  struct view_obj *out)
{
	struct view_obj o;
	int ret;

	memset(&o, 0xa5, sizeof(o));
	ret = view_lookup(vt, view, &d, name, &o);
	ck_assert_int_ge(ret, 0);
	if (ret != VIEW_FOUND)
		ck_assert_ptr_null(o.handle);
	if (out != NULL)
		*out = o;
	else
		handle_free(o.handle);
	return ret;
}

/* Asserts (d, name) is FOUND in view as k, from view `from`. */
static void assert_found(uint64_t view, struct node_key d, const char *name,
			 struct node_key k, uint64_t from)
{
	struct view_obj o;

	ck_assert_int_eq(lookup(view, d, name, &o), VIEW_FOUND);
	ck_assert_msg(key_eq(&o.key, &k), "%s: ino %ju, want %ju", name,
		      (uintmax_t)o.key.ino, (uintmax_t)k.ino);
	ck_assert_uint_eq(o.from, from);
	handle_free(o.handle);
}

/* What view_list reported, in the order it reported it. */
struct listing {
	size_t n;
	struct {
		char name[32];
		bool found;
		struct node_key key;
	} v[16];
};

static void list_cb(const char *name, bool found, const struct node_key *k,
		    void *arg)
{
	struct listing *l = arg;

	ck_assert_uint_lt(l->n, 16);
	snprintf(l->v[l->n].name, sizeof(l->v[l->n].name), "%s", name);
	l->v[l->n].found = found;
	l->v[l->n].key = *k;
	l->n++;
}

static struct listing list(uint64_t view, struct node_key d)
{
	struct listing l = { .n = 0 };

	ck_assert_int_eq(view_list(vt, view, &d, list_cb, &l), 0);
	return l;
}

/* Asserts the listing has name exactly once, as found (with k) or gone. */
static void listed(const struct listing *l, const char *name, bool found,
		   struct node_key k)
{
	bool seen = false;

	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].name, name) != 0)
			continue;
		ck_assert_msg(!seen, "%s listed twice", name);
		seen = true;
		ck_assert_int_eq(l->v[i].found, found);
		if (found)
			ck_assert(key_eq(&l->v[i].key, &k));
	}
	ck_assert_msg(seen, "%s not listed", name);
}

/* ---- the empty table ---------------------------------------------------- */

START_TEST(empty_table_has_no_views_and_misses_every_name)
{
	struct node_key d = dkey(10);
	struct view_op *ops = NULL;
	struct view_name *names = NULL;
	struct listing l;
	size_t n = 99;

	ck_assert(!view_any(vt));
	ck_assert(!view_published(vt));
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(1, d, "a", NULL), VIEW_MISS);
	l = list(1, d);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_int_eq(view_nlink_delta(vt, 1, &d), 0);
	ck_assert_int_eq(view_log(vt, 1, &ops, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(ops);
	n = 99;
	ck_assert_int_eq(view_names(vt, 1, &names, &n), 0);
	ck_assert_uint_eq(n, 0);
	view_names_free(names, n);
	ck_assert(view_table_invariants(vt));
}
END_TEST

/* ---- name operations ---------------------------------------------------- */

START_TEST(created_name_is_found_only_in_its_own_view)
{
	struct node_key d = dkey(10), k = fkey(100);
	struct view_change ch =
	    create_at(d, hdir, "a", obj(k, hfile, true), "c-1");
	struct view_obj o;

	apply(7, &ch);
	ck_assert(view_any(vt));
	ck_assert_int_eq(lookup(7, d, "a", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &k));
	ck_assert(o.created);
	ck_assert_uint_eq(o.from, 7);
	ck_assert_ptr_nonnull(o.handle);
	ck_assert_ptr_ne(o.handle, hfile);
	ck_assert(handle_equal(o.handle, hfile));
	handle_free(o.handle);

	ck_assert_int_eq(lookup(8, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(7, d, "b", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(7, dkey(11), "a", NULL), VIEW_MISS);
	/* Only dev and ino name a directory; the same ino on another dev
	 * is another directory. */
	struct node_key other = { .dev = DEV + 1, .ino = 10, .type = S_IFDIR };
	ck_assert_int_eq(lookup(7, other, "a", NULL), VIEW_MISS);
}
END_TEST

START_TEST(object_without_handle_is_found_without_handle)
{
	struct node_key d = dkey(10), k = fkey(100);
	struct view_change ch = create_at(d, NULL, "a", obj(k, NULL, true), "");
	struct view_obj o;

	apply(7, &ch);
	ck_assert_int_eq(lookup(7, d, "a", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &k));
	ck_assert_ptr_null(o.handle);
}
END_TEST

START_TEST(unlink_leaves_a_whiteout)
{
	struct node_key d = dkey(10), k = fkey(100), kb = fkey(101);
	struct view_change ch =
	    create_at(d, hdir, "a", obj(k, hfile, true), "");

	apply(3, &ch);
	ch = unlink_at(d, "a", obj(k, hfile, true), no_base);
	apply(3, &ch);
	ck_assert_int_eq(lookup(3, d, "a", NULL), VIEW_GONE);
	/* A base name the view never created. */
	ch = unlink_at(d, "b", obj(kb, NULL, false), base_of(kb));
	apply(3, &ch);
	ck_assert_int_eq(lookup(3, d, "b", NULL), VIEW_GONE);
	ck_assert_int_eq(lookup(0, d, "b", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(4, d, "b", NULL), VIEW_MISS);
}
END_TEST

START_TEST(rename_moves_the_source_object_to_the_new_name)
{
	struct node_key d1 = dkey(10), d2 = dkey(20), k = fkey(100);
	struct view_change ch =
	    create_at(d1, hdir, "a", obj(k, hfile, true), "");
	struct view_obj src, o;

	apply(3, &ch);
	ck_assert_int_eq(lookup(3, d1, "a", &src), VIEW_FOUND);
	ch = rename_to(d1, "a", d2, "b", src, NULL, 0);
	apply(3, &ch);
	handle_free(src.handle);
	ck_assert_int_eq(lookup(3, d1, "a", NULL), VIEW_GONE);
	ck_assert_int_eq(lookup(3, d2, "b", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &k));
	ck_assert(o.created);
	ck_assert(handle_equal(o.handle, hfile));
	handle_free(o.handle);
	ck_assert_int_eq(lookup(0, d2, "b", NULL), VIEW_MISS);
}
END_TEST

START_TEST(rename_exchange_swaps_the_two_objects)
{
	struct node_key d = dkey(10), ka = fkey(100), kb = dkey(200);
	struct view_change ch =
	    create_at(d, NULL, "a", obj(ka, hfile, true), "");
	struct view_obj a, b, o;

	apply(3, &ch);
	ch = create_at(d, NULL, "b", obj(kb, hdir, true), "");
	apply(3, &ch);
	ck_assert_int_eq(lookup(3, d, "a", &a), VIEW_FOUND);
	ck_assert_int_eq(lookup(3, d, "b", &b), VIEW_FOUND);
	ch = rename_to(d, "a", d, "b", a, &b, RENAME_EXCHANGE);
	apply(3, &ch);
	handle_free(a.handle);
	handle_free(b.handle);

	ck_assert_int_eq(lookup(3, d, "a", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &kb));
	ck_assert(handle_equal(o.handle, hdir));
	handle_free(o.handle);
	ck_assert_int_eq(lookup(3, d, "b", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &ka));
	ck_assert(handle_equal(o.handle, hfile));
	handle_free(o.handle);
}
END_TEST

START_TEST(list_reports_one_directorys_names_in_one_view)
{
	struct node_key d1 = dkey(10), d2 = dkey(20);
	struct node_key ka = fkey(100), kb = fkey(101), kc = fkey(102);
	struct view_change ch;
	struct listing l;

	ch = create_at(d1, NULL, "a", obj(ka, NULL, true), "");
	apply(5, &ch);
	ch = create_at(d1, NULL, "b", obj(kb, NULL, true), "");
	apply(5, &ch);
	ch = unlink_at(d1, "c", obj(kc, NULL, false), base_of(kc));
	apply(5, &ch);
	ch = create_at(d2, NULL, "x", obj(fkey(103), NULL, true), "");
	apply(5, &ch);
	ch = create_at(d1, NULL, "z", obj(fkey(104), NULL, true), "");
	apply(6, &ch);

	l = list(5, d1);
	ck_assert_uint_eq(l.n, 3);
	listed(&l, "a", true, ka);
	listed(&l, "b", true, kb);
	listed(&l, "c", false, kc);

	l = list(5, d2);
	ck_assert_uint_eq(l.n, 1);
	listed(&l, "x", true, fkey(103));

	l = list(6, d1);
	ck_assert_uint_eq(l.n, 1);
	listed(&l, "z", true, fkey(104));

	ck_assert_uint_eq(list(0, d1).n, 0);
	ck_assert_uint_eq(list(9, d1).n, 0);
	ck_assert_uint_eq(list(5, dkey(30)).n, 0);
}
END_TEST

/* ---- link counts -------------------------------------------------------- */

START_TEST(link_adds_one_link_to_the_object)
{
	struct node_key d = dkey(10), k = fkey(100);
	struct view_change ch = link_at(d, "l", obj(k, hfile, false));
	struct view_obj o;

	ck_assert_int_eq(view_nlink_delta(vt, 3, &k), 0);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &k), 1);
	ch = link_at(dkey(11), "m", obj(k, hfile, false));
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &k), 2);
	ck_assert_int_eq(view_nlink_delta(vt, 4, &k), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 0, &k), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &d), 0);

	ck_assert_int_eq(lookup(3, d, "l", &o), VIEW_FOUND);
	ck_assert(key_eq(&o.key, &k));
	ck_assert(!o.created);
	handle_free(o.handle);
}
END_TEST

START_TEST(unlink_of_a_file_subtracts_one_link)
{
	struct node_key d = dkey(10), k = fkey(100), kl = fkey(101);
	struct view_change ch =
	    unlink_at(d, "f", obj(k, NULL, false), base_of(k));

	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &k), -1);
	/* A link the view made and then removed again nets to zero. */
	ch = link_at(d, "l", obj(kl, NULL, false));
	apply(3, &ch);
	ch = unlink_at(d, "l", obj(kl, NULL, false), no_base);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &kl), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &k), -1);
}
END_TEST

START_TEST(rename_over_a_file_subtracts_one_from_the_replaced_object)
{
	struct node_key d = dkey(10), ks = fkey(100), kd = fkey(101);
	struct view_obj dst = obj(kd, NULL, false);
	struct view_change ch =
	    rename_to(d, "s", d, "t", obj(ks, NULL, false), &dst, 0);

	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &kd), -1);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &ks), 0);
	ck_assert_int_eq(lookup(3, d, "s", NULL), VIEW_GONE);
	assert_found(3, d, "t", ks, 3);
	/* A rename to a free name replaces nothing. */
	ch = rename_to(d, "t", d, "u", obj(ks, NULL, false), NULL, 0);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &ks), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &kd), -1);
}
END_TEST

START_TEST(a_subdirectory_counts_in_its_parent)
{
	struct node_key d = dkey(10), e = dkey(11), sub = dkey(20);
	struct view_obj f = obj(fkey(100), NULL, false);
	struct view_change ch;

	/* A new subdirectory adds its ".." to the parent's count. */
	ch = create_at(d, NULL, "sub", obj(sub, NULL, true), "n1");
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &d), 1);
	/* Moving it to another directory moves the link. */
	ch = rename_to(d, "sub", e, "sub", obj(sub, NULL, true), NULL, 0);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &d), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &e), 1);
	/* Exchanging it with a file in d moves it back. */
	ch = rename_to(e, "sub", d, "f", obj(sub, NULL, true), &f,
		       RENAME_EXCHANGE);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &d), 1);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &e), 0);
	/* Removing it takes the link away; other views never saw it. */
	ch = unlink_at(d, "f", obj(sub, NULL, true), no_base);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &d), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 4, &d), 0);
}
END_TEST

START_TEST(directories_and_exchanges_are_not_counted)
{
	struct node_key d = dkey(10), sub = dkey(11), sub2 = dkey(12);
	struct node_key ka = fkey(100), kb = fkey(101);
	struct view_obj dst = obj(sub2, NULL, false), b = obj(kb, NULL, false);
	struct view_change ch;

	ch = unlink_at(d, "sub", obj(sub, NULL, false), base_of(sub));
	ck_assert_uint_eq(ch.op.flags, AT_REMOVEDIR);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &sub), 0);
	ch = rename_to(d, "x", d, "sub2", obj(dkey(13), NULL, false), &dst, 0);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &sub2), 0);
	ch = rename_to(d, "a", d, "b", obj(ka, NULL, false), &b,
		       RENAME_EXCHANGE);
	apply(3, &ch);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &ka), 0);
	ck_assert_int_eq(view_nlink_delta(vt, 3, &kb), 0);
}
END_TEST

/* ---- the log ------------------------------------------------------------ */

START_TEST(log_is_oldest_first_and_its_copies_outlive_the_view)
{
	struct node_key d1 = dkey(10), d2 = dkey(20), k = fkey(100);
	struct view_obj dst = obj(fkey(101), NULL, false);
	char n1[] = "new", n2[] = "other";
	struct view_change ch;
	struct view_op *ops;
	size_t n;

	ch = create_at(d1, hdir, n1, obj(k, hfile, true), "c-1-2");
	apply(9, &ch);
	ch = link_at(d2, "link", obj(k, hfile, false));
	ch.op.dh1 = hdir;
	apply(9, &ch);
	ch =
	    unlink_at(d1, "sub", obj(dkey(11), NULL, false), base_of(dkey(11)));
	apply(9, &ch);
	ch = rename_to(d1, n1, d2, n2, obj(k, hfile, true), &dst,
		       RENAME_NOREPLACE);
	ch.op.dh1 = hdir;
	ch.op.dh2 = NULL;
	apply(9, &ch);
	/* The view copied the names: changing the caller's buffers now
	 * must not change the log. */
	memset(n1, 'X', sizeof(n1) - 1);
	memset(n2, 'X', sizeof(n2) - 1);

	ck_assert_int_eq(view_log(vt, 9, &ops, &n), 0);
	view_drop(vt, 9);
	stm_quiesce(); /* frees the view's records: the copies must not care */
	ck_assert_uint_eq(stm_debug_retired_pending(), 0);
	ck_assert_uint_eq(n, 4);

	ck_assert_int_eq(ops[0].kind, VIEW_CREATE);
	ck_assert(key_eq(&ops[0].dir1, &d1));
	ck_assert_str_eq(ops[0].name1, "new");
	ck_assert_ptr_null(ops[0].name2);
	ck_assert_ptr_nonnull(ops[0].dh1);
	ck_assert_ptr_ne(ops[0].dh1, hdir);
	ck_assert(handle_equal(ops[0].dh1, hdir));
	ck_assert(key_eq(&ops[0].obj.key, &k));
	ck_assert(ops[0].obj.created);
	ck_assert_ptr_ne(ops[0].obj.handle, hfile);
	ck_assert(handle_equal(ops[0].obj.handle, hfile));
	ck_assert_str_eq(ops[0].leaf, "c-1-2");

	ck_assert_int_eq(ops[1].kind, VIEW_LINK);
	ck_assert(key_eq(&ops[1].dir1, &d2));
	ck_assert_str_eq(ops[1].name1, "link");
	ck_assert(handle_equal(ops[1].dh1, hdir));
	ck_assert(!ops[1].obj.created);
	ck_assert(handle_equal(ops[1].obj.handle, hfile));

	ck_assert_int_eq(ops[2].kind, VIEW_UNLINK);
	ck_assert_str_eq(ops[2].name1, "sub");
	ck_assert_uint_eq(ops[2].flags, AT_REMOVEDIR);
	ck_assert_ptr_null(ops[2].dh1);
	ck_assert_ptr_null(ops[2].obj.handle);

	ck_assert_int_eq(ops[3].kind, VIEW_RENAME);
	ck_assert(key_eq(&ops[3].dir1, &d1));
	ck_assert(key_eq(&ops[3].dir2, &d2));
	ck_assert_str_eq(ops[3].name1, "new");
	ck_assert_str_eq(ops[3].name2, "other");
	ck_assert_uint_eq(ops[3].flags, RENAME_NOREPLACE);
	ck_assert(handle_equal(ops[3].dh1, hdir));
	ck_assert_ptr_null(ops[3].dh2);
	view_ops_free(ops, n);

	/* The dropped view has no log any more. */
	ck_assert_int_eq(view_log(vt, 9, &ops, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(ops);
}
END_TEST

/* ---- changed names ------------------------------------------------------ */

START_TEST(names_keep_the_base_state_of_their_first_change)
{
	struct node_key d = dkey(10), d2 = dkey(20);
	struct node_key ka = fkey(100), kb = fkey(101), kc = fkey(102);
	struct node_key kl = fkey(103);
	struct view_change ch;
	struct view_name *v;
	size_t n;

	ch = create_at(d, hdir, "a", obj(ka, hfile, true), "");
	apply(4, &ch);
	ch = unlink_at(d, "b", obj(kb, NULL, false), base_of(kb));
	ch.op.dh1 = hdir;
	apply(4, &ch);
	ch = rename_to(d, "c", d2, "d", obj(kc, hfile, false), NULL, 0);
	ch.op.dh1 = hdir;
	ch.base1 = base_of(kc);
	apply(4, &ch);
	/* Second changes: a caller passing other base states must not
	 * change what the first change recorded. */
	ch = link_at(d, "b", obj(kl, NULL, false));
	ch.op.dh1 = hdir;
	ch.base1 = no_base;
	apply(4, &ch);
	ch = unlink_at(d, "a", obj(ka, NULL, true), base_of(fkey(999)));
	ch.op.dh1 = hdir;
	apply(4, &ch);

	ck_assert_int_eq(view_names(vt, 4, &v, &n), 0);
	ck_assert_uint_eq(n, 4);

	ck_assert(key_eq(&v[0].dir, &d));
	ck_assert_str_eq(v[0].name, "a");
	ck_assert(handle_equal(v[0].dh, hdir));
	ck_assert(!v[0].base.existed);
	ck_assert(!v[0].found);
	ck_assert_ptr_null(v[0].obj.handle);

	ck_assert(key_eq(&v[1].dir, &d));
	ck_assert_str_eq(v[1].name, "b");
	ck_assert(v[1].base.existed);
	ck_assert(key_eq(&v[1].base.key, &kb));
	ck_assert(v[1].found);
	ck_assert(key_eq(&v[1].obj.key, &kl));

	ck_assert(key_eq(&v[2].dir, &d));
	ck_assert_str_eq(v[2].name, "c");
	ck_assert(v[2].base.existed);
	ck_assert(key_eq(&v[2].base.key, &kc));
	ck_assert(!v[2].found);

	ck_assert(key_eq(&v[3].dir, &d2));
	ck_assert_str_eq(v[3].name, "d");
	ck_assert_ptr_null(v[3].dh);
	ck_assert(!v[3].base.existed);
	ck_assert(v[3].found);
	ck_assert(key_eq(&v[3].obj.key, &kc));
	ck_assert(handle_equal(v[3].obj.handle, hfile));
	view_names_free(v, n);

	ck_assert_int_eq(view_names(vt, 5, &v, &n), 0);
	ck_assert_uint_eq(n, 0);
	view_names_free(v, n);
}
END_TEST

/* ---- publishing --------------------------------------------------------- */

START_TEST(published_names_are_seen_by_every_view_under_its_own)
{
	struct node_key d = dkey(10), ka = fkey(100), kb = fkey(101);
	struct node_key kown = fkey(110);
	struct view_change ch;
	struct listing l;

	ch = create_at(d, NULL, "a", obj(ka, hfile, true), "");
	apply(10, &ch);
	ch = unlink_at(d, "b", obj(kb, NULL, false), base_of(kb));
	apply(10, &ch);
	ch = create_at(d, NULL, "a", obj(kown, NULL, true), "");
	apply(11, &ch);

	ck_assert(!view_published(vt));
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(11, d, "b", NULL), VIEW_MISS);

	ck_assert_int_eq(view_publish(vt, 10), 0);
	ck_assert(view_published(vt));
	ck_assert(view_table_invariants(vt));
	assert_found(0, d, "a", ka, 10);
	ck_assert_int_eq(lookup(0, d, "b", NULL), VIEW_GONE);
	assert_found(12, d, "a", ka, 10); /* a view with no names at all */
	assert_found(10, d, "a", ka, 10);
	/* View 11's own name hides the published one; its other names do
	 * not. */
	assert_found(11, d, "a", kown, 11);
	ck_assert_int_eq(lookup(11, d, "b", NULL), VIEW_GONE);
	ck_assert_int_eq(view_nlink_delta(vt, 0, &kb), -1);

	l = list(11, d);
	ck_assert_uint_eq(l.n, 2);
	listed(&l, "a", true, kown);
	listed(&l, "b", false, kb);
	l = list(0, d);
	ck_assert_uint_eq(l.n, 2);
	listed(&l, "a", true, ka);
	listed(&l, "b", false, kb);

	/* Publishing 0 ends it. */
	ck_assert_int_eq(view_publish(vt, 0), 0);
	ck_assert(!view_published(vt));
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(11, d, "b", NULL), VIEW_MISS);
	ck_assert_uint_eq(list(0, d).n, 0);
	ck_assert_int_eq(view_nlink_delta(vt, 0, &kb), 0);
	assert_found(10, d, "a", ka, 10);
}
END_TEST

START_TEST(dropping_the_published_view_ends_publishing)
{
	struct node_key d = dkey(10), ka = fkey(100);
	struct view_change ch =
	    create_at(d, NULL, "a", obj(ka, NULL, true), "");

	apply(10, &ch);
	ck_assert_int_eq(view_publish(vt, 10), 0);
	assert_found(0, d, "a", ka, 10);
	view_drop(vt, 10);
	ck_assert(!view_published(vt));
	ck_assert(view_table_invariants(vt));
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(11, d, "a", NULL), VIEW_MISS);
}
END_TEST

struct pub_in {
	uint64_t view;
	int ret;
};

static int publish_then(struct stm_tx *tx, void *arg)
{
	struct pub_in *p = arg;
	int ret = view_publish_in(tx, vt, p->view);

	return ret != 0 ? ret : p->ret;
}

START_TEST(publish_in_takes_effect_only_if_its_transaction_commits)
{
	struct node_key d = dkey(10), ka = fkey(100);
	struct view_change ch =
	    create_at(d, NULL, "a", obj(ka, NULL, true), "");
	struct pub_in p = { .view = 10, .ret = -EBUSY };

	apply(10, &ch);
	ck_assert_int_eq(stm_atomically(publish_then, &p, 0), -EBUSY);
	ck_assert(!view_published(vt));
	ck_assert_int_eq(lookup(0, d, "a", NULL), VIEW_MISS);
	p.ret = 0;
	ck_assert_int_eq(stm_atomically(publish_then, &p, 0), 0);
	ck_assert(view_published(vt));
	assert_found(0, d, "a", ka, 10);
}
END_TEST

/* ---- dropping ----------------------------------------------------------- */

START_TEST(drop_forgets_every_name_log_and_link_of_the_view)
{
	struct node_key d = dkey(10), ka = fkey(100), kb = fkey(101);
	struct view_change ch;
	struct view_name *v;
	struct view_op *ops;
	size_t n;

	ch = create_at(d, hdir, "a", obj(ka, hfile, true), "");
	apply(1, &ch);
	ch = unlink_at(d, "b", obj(kb, NULL, false), base_of(kb));
	apply(1, &ch);
	ch = create_at(d, NULL, "a", obj(fkey(200), NULL, true), "");
	apply(2, &ch);

	view_drop(vt, 1);
	ck_assert(view_any(vt));
	ck_assert(view_table_invariants(vt));
	ck_assert_int_eq(lookup(1, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(lookup(1, d, "b", NULL), VIEW_MISS);
	ck_assert_uint_eq(list(1, d).n, 0);
	ck_assert_int_eq(view_nlink_delta(vt, 1, &kb), 0);
	ck_assert_int_eq(view_log(vt, 1, &ops, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(view_names(vt, 1, &v, &n), 0);
	ck_assert_uint_eq(n, 0);
	view_names_free(v, n);
	assert_found(2, d, "a", fkey(200), 2);

	/* Dropping a view that has nothing changes nothing. */
	view_drop(vt, 77);
	ck_assert(view_any(vt));
	assert_found(2, d, "a", fkey(200), 2);

	view_drop(vt, 2);
	ck_assert(!view_any(vt));
	ck_assert(view_table_invariants(vt));
	ck_assert_int_eq(lookup(2, d, "a", NULL), VIEW_MISS);

	/* The same view id starts afresh, with the new base state. */
	ch = create_at(d, NULL, "b", obj(ka, NULL, true), "");
	ch.base1 = base_of(kb);
	apply(1, &ch);
	ck_assert_int_eq(view_names(vt, 1, &v, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(v[0].name, "b");
	ck_assert(v[0].base.existed);
	ck_assert(key_eq(&v[0].base.key, &kb));
	view_names_free(v, n);
	ck_assert_int_eq(view_log(vt, 1, &ops, &n), 0);
	ck_assert_uint_eq(n, 1);
	view_ops_free(ops, n);
	ck_assert_int_eq(view_nlink_delta(vt, 1, &kb), 0);
}
END_TEST

/* ---- guards ------------------------------------------------------------- */

struct guard_arg {
	int ret;
	int calls;
};

static int guard(struct stm_tx *tx, void *arg)
{
	struct guard_arg *g = arg;

	ck_assert_ptr_nonnull(tx);
	g->calls++;
	return g->ret;
}

START_TEST(guard_refusal_fails_the_apply_and_records_nothing)
{
	struct node_key d = dkey(10), ka = fkey(100);
	struct view_change ch =
	    create_at(d, hdir, "a", obj(ka, hfile, true), "");
	struct guard_arg g = { .ret = -EBUSY };
	struct view_op *ops;
	size_t n;

	/* The view's first change: refused, the view does not come to be. */
	ck_assert_int_eq(view_apply(vt, 6, &ch, guard, &g), -EBUSY);
	ck_assert_int_ge(g.calls, 1);
	ck_assert(!view_any(vt));
	ck_assert_int_eq(lookup(6, d, "a", NULL), VIEW_MISS);
	ck_assert_int_eq(view_log(vt, 6, &ops, &n), 0);
	ck_assert_uint_eq(n, 0);

	/* Accepted. */
	g.ret = 0;
	g.calls = 0;
	ck_assert_int_eq(view_apply(vt, 6, &ch, guard, &g), 0);
	ck_assert_int_ge(g.calls, 1);
	assert_found(6, d, "a", ka, 6);

	/* A later change refused: the name, links and log stay. */
	g.ret = -EBUSY;
	ch = unlink_at(d, "a", obj(ka, NULL, true), no_base);
	ck_assert_int_eq(view_apply(vt, 6, &ch, guard, &g), -EBUSY);
	assert_found(6, d, "a", ka, 6);
	ck_assert_int_eq(view_nlink_delta(vt, 6, &ka), 0);
	ck_assert_int_eq(view_log(vt, 6, &ops, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(ops[0].kind, VIEW_CREATE);
	view_ops_free(ops, n);
	ck_assert(view_table_invariants(vt));
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

/*
 * NWRITERS threads apply NOPS operations each to ONE view, each in its own
 * directory, cycling through CREATE n<j>, RENAME n<j> -> m<j>, UNLINK m<j>.
 * So in any snapshot, for one directory, triple j is in one of four
 * states, and triples start in order:
 *
 *	state   n<j>    m<j>
 *	before  -       -
 *	created found   -
 *	renamed gone    found
 *	removed gone    gone
 *
 * NREADERS threads check that every lookup and listing shows such a state.
 */
#define NWRITERS 4
#define NREADERS 2
#define NOPS	 2000
#define NTRIPLES ((NOPS + 2) / 3)
#define CVIEW	 42

static atomic_int writers_left;
static atomic_int apply_failures; /* view_apply calls that failed */
static atomic_int bad_reads;	  /* lookups and listings of no state */
static atomic_long reads;

static struct node_key wdir(int t)
{
	return dkey(100 + t);
}

static struct node_key wobj(int t, int j)
{
	return fkey(1000000 * (ino_t)(t + 1) + j);
}

static void wname(char *buf, size_t size, char c, int j)
{
	snprintf(buf, size, "%c%d", c, j);
}

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	struct node_key d = wdir(t);
	char n[16], m[16];

	for (int k = 0; k < NOPS; k++) {
		int j = k / 3;
		struct view_change ch;
		struct view_obj o = obj(wobj(t, j), hfile, true);

		wname(n, sizeof(n), 'n', j);
		wname(m, sizeof(m), 'm', j);
		switch (k % 3) {
		case 0:
			ch = create_at(d, hdir, n, o, "leaf");
			break;
		case 1:
			ch = rename_to(d, n, d, m, o, NULL, 0);
			break;
		default:
			ch = unlink_at(d, m, o, no_base);
			break;
		}
		if (view_apply(vt, CVIEW, &ch, NULL, NULL) != 0)
			atomic_fetch_add(&apply_failures, 1);
	}
	atomic_fetch_sub(&writers_left, 1);
	return NULL;
}

/* State of one triple in one listing: 0 absent, 1 found, 2 gone. */
struct wlist {
	unsigned char n[NTRIPLES], m[NTRIPLES];
	int t;
	bool broken;
};

static void wlist_cb(const char *name, bool found, const struct node_key *k,
		     void *arg)
{
	struct wlist *w = arg;
	char c;
	int j;

	if (sscanf(name, "%c%d", &c, &j) != 2 || (c != 'n' && c != 'm') ||
	    j < 0 || j >= NTRIPLES) {
		w->broken = true;
		return;
	}
	unsigned char *s = c == 'n' ? &w->n[j] : &w->m[j];
	struct node_key want = wobj(w->t, j);
	if (*s != 0 || (found && !key_eq(k, &want)))
		w->broken = true;
	*s = found ? 1 : 2;
}

/* True when the listing is a state the writer went through. */
static bool wlist_valid(const struct wlist *w)
{
	bool started_later = false;

	if (w->broken)
		return false;
	for (int j = NTRIPLES - 1; j >= 0; j--) {
		int n = w->n[j], m = w->m[j];
		bool before = n == 0 && m == 0;
		bool ok = before || (n == 1 && m == 0) || (n == 2 && m == 1) ||
			  (n == 2 && m == 2);

		if (!ok)
			return false;
		/* Every triple before a started one is removed. */
		if (started_later && !(n == 2 && m == 2))
			return false;
		if (!before)
			started_later = true;
	}
	return true;
}

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	struct wlist *w = malloc(sizeof(*w));

	if (w == NULL) {
		atomic_fetch_add(&bad_reads, 1);
		return NULL;
	}
	do {
		int t = (int)(rand_r(&seed) % NWRITERS);
		int j = (int)(rand_r(&seed) % NTRIPLES);
		struct node_key d = wdir(t), want = wobj(t, j);
		struct view_obj om, on;
		char n[16], m[16];
		int rm, rn;

		/* m<j> first: once it exists, n<j> is gone for good. */
		wname(n, sizeof(n), 'n', j);
		wname(m, sizeof(m), 'm', j);
		rm = view_lookup(vt, CVIEW, &d, m, &om);
		rn = view_lookup(vt, CVIEW, &d, n, &on);
		if (rm < 0 || rn < 0 || (rm != VIEW_MISS && rn != VIEW_GONE) ||
		    (rm == VIEW_FOUND &&
		     (!key_eq(&om.key, &want) || om.from != CVIEW)) ||
		    (rn == VIEW_FOUND &&
		     (!key_eq(&on.key, &want) || !on.created)))
			atomic_fetch_add(&bad_reads, 1);
		if (rm == VIEW_FOUND)
			handle_free(om.handle);
		if (rn == VIEW_FOUND)
			handle_free(on.handle);

		if (rand_r(&seed) % 16 == 0) {
			memset(w, 0, sizeof(*w));
			w->t = t;
			if (view_list(vt, CVIEW, &d, wlist_cb, w) != 0 ||
			    !wlist_valid(w))
				atomic_fetch_add(&bad_reads, 1);
		}
		atomic_fetch_add(&reads, 1);
	} while (atomic_load(&writers_left) > 0);
	free(w);
	return NULL;
}

START_TEST(concurrent_writers_and_readers_of_one_view)
{
	pthread_t w[NWRITERS], r[NREADERS];
	struct view_name *names;
	struct view_op *ops;
	int next[NWRITERS] = { 0 };
	size_t n;

	atomic_store(&writers_left, NWRITERS);
	atomic_store(&apply_failures, 0);
	atomic_store(&bad_reads, 0);
	atomic_store(&reads, 0);
	for (int i = 0; i < NREADERS; i++)
		ck_assert_int_eq(pthread_create(&r[i], NULL, reader,
						(void *)(uintptr_t)(i + 1)),
				 0);
	for (int i = 0; i < NWRITERS; i++)
		ck_assert_int_eq(
		    pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i),
		    0);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(r[i], NULL);
	ck_assert_msg(atomic_load(&apply_failures) == 0, "%d applies failed",
		      atomic_load(&apply_failures));
	ck_assert_msg(atomic_load(&bad_reads) == 0,
		      "%d of %ld reads saw a state no writer went through",
		      atomic_load(&bad_reads), atomic_load(&reads));
	ck_assert_int_ge(atomic_load(&reads), NREADERS);
	ck_assert(view_table_invariants(vt));

	/* Every operation is in the log once, each writer's in its order. */
	ck_assert_int_eq(view_log(vt, CVIEW, &ops, &n), 0);
	ck_assert_uint_eq(n, NWRITERS * NOPS);
	for (size_t i = 0; i < n; i++) {
		int t = (int)(ops[i].dir1.ino - 100), k, j;
		char want[16];

		ck_assert_int_ge(t, 0);
		ck_assert_int_lt(t, NWRITERS);
		k = next[t]++;
		j = k / 3;
		ck_assert_int_eq(ops[i].kind, k % 3 == 0   ? VIEW_CREATE
					      : k % 3 == 1 ? VIEW_RENAME
							   : VIEW_UNLINK);
		wname(want, sizeof(want), k % 3 == 2 ? 'm' : 'n', j);
		ck_assert_str_eq(ops[i].name1, want);
	}
	for (int t = 0; t < NWRITERS; t++)
		ck_assert_int_eq(next[t], NOPS);
	view_ops_free(ops, n);

	/* Each triple left two names; the last one is renamed. */
	ck_assert_int_eq(view_names(vt, CVIEW, &names, &n), 0);
	ck_assert_uint_eq(n, NWRITERS * 2 * NTRIPLES);
	view_names_free(names, n);
	for (int t = 0; t < NWRITERS; t++) {
		struct node_key d = wdir(t), first = wobj(t, 0);
		struct node_key last = wobj(t, NTRIPLES - 1);
		char name[16];

		wname(name, sizeof(name), 'm', 0);
		ck_assert_int_eq(lookup(CVIEW, d, name, NULL), VIEW_GONE);
		wname(name, sizeof(name), 'n', NTRIPLES - 1);
		ck_assert_int_eq(lookup(CVIEW, d, name, NULL), VIEW_GONE);
		wname(name, sizeof(name), 'm', NTRIPLES - 1);
		assert_found(CVIEW, d, name, last, CVIEW);
		ck_assert_int_eq(view_nlink_delta(vt, CVIEW, &first), -1);
		ck_assert_int_eq(view_nlink_delta(vt, CVIEW, &last), 0);
	}
}
END_TEST

static Suite *view_suite(void)
{
	Suite *s = suite_create("view");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, empty_table_has_no_views_and_misses_every_name);
	tcase_add_test(tc, created_name_is_found_only_in_its_own_view);
	tcase_add_test(tc, object_without_handle_is_found_without_handle);
	tcase_add_test(tc, unlink_leaves_a_whiteout);
	tcase_add_test(tc, rename_moves_the_source_object_to_the_new_name);
	tcase_add_test(tc, rename_exchange_swaps_the_two_objects);
	tcase_add_test(tc, list_reports_one_directorys_names_in_one_view);
	tcase_add_test(tc, link_adds_one_link_to_the_object);
	tcase_add_test(tc, unlink_of_a_file_subtracts_one_link);
	tcase_add_test(tc, a_subdirectory_counts_in_its_parent);
	tcase_add_test(
	    tc, rename_over_a_file_subtracts_one_from_the_replaced_object);
	tcase_add_test(tc, directories_and_exchanges_are_not_counted);
	tcase_add_test(tc, log_is_oldest_first_and_its_copies_outlive_the_view);
	tcase_add_test(tc, names_keep_the_base_state_of_their_first_change);
	tcase_add_test(tc,
		       published_names_are_seen_by_every_view_under_its_own);
	tcase_add_test(tc, dropping_the_published_view_ends_publishing);
	tcase_add_test(tc,
		       publish_in_takes_effect_only_if_its_transaction_commits);
	tcase_add_test(tc, drop_forgets_every_name_log_and_link_of_the_view);
	tcase_add_test(tc, guard_refusal_fails_the_apply_and_records_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, concurrent_writers_and_readers_of_one_view);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(view_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
