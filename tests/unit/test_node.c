/* Unit tests for node.c: the node table and its descriptor cache. */
#include "config.h"

#include "node.h"
#include "stm.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static int dir_fd;

static void setup(void)
{
	strcpy(dir, "/tmp/txfs-node-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dir_fd, 0);
}

static void teardown(void)
{
	char cmd[128];

	close(dir_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct node_table *new_table(size_t cache)
{
	struct node_table *t;

	ck_assert_int_eq(node_table_new(dup(dir_fd), cache, &t), 0);
	return t;
}

static void make_file(const char *name)
{
	int fd = openat(dir_fd, name, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, name, strlen(name)), (ssize_t)strlen(name));
	close(fd);
}

/* Looks name up the way fs_ops does: O_PATH open, fstat, node_ref_fd. */
static struct node *ref_name(struct node_table *t, const char *name)
{
	struct node_key key;
	struct node *n;
	struct stat st;
	int fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(node_stat(fd, "", AT_EMPTY_PATH, &st, &key), 0);
	ck_assert_int_eq(node_ref_fd(t, fd, &key, &n), 0);
	return n;
}

/* The key of dir/name. */
static struct node_key key_of(const char *name)
{
	struct node_key key;
	struct stat st;

	ck_assert_int_eq(
	    node_stat(dir_fd, name, AT_SYMLINK_NOFOLLOW, &st, &key), 0);
	return key;
}

START_TEST(root_is_fuse_root_id)
{
	struct node_table *t = new_table(1024);
	struct node *r = node_root(t);

	ck_assert_uint_eq(node_id(r), FUSE_ROOT_ID);
	ck_assert_ptr_eq(node_from_id(t, FUSE_ROOT_ID), r);
	ck_assert(node_is_root(r));
	ck_assert_uint_eq(node_type(r), S_IFDIR);
	node_table_free(t);
}
END_TEST

START_TEST(same_object_same_node_and_ids_round_trip)
{
	struct node_table *t = new_table(1024);
	struct node *a, *b, *c;

	make_file("a");
	make_file("c");
	ck_assert_int_eq(linkat(dir_fd, "a", dir_fd, "b", 0), 0);
	a = ref_name(t, "a");
	b = ref_name(t, "b"); /* a hard link: the same object */
	c = ref_name(t, "c");
	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_ne(a, c);
	ck_assert_ptr_eq(node_from_id(t, node_id(a)), a);
	ck_assert_uint_ne(node_generation(a), node_generation(c));
	ck_assert_uint_eq(node_count(t), 2);
	ck_assert(node_table_invariants(t));
	node_forget(t, a, 2);
	node_forget(t, c, 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	node_table_free(t);
}
END_TEST

START_TEST(forget_frees_only_at_zero)
{
	struct node_table *t = new_table(1024);
	struct node_key key;
	struct node *a;

	make_file("a");
	a = ref_name(t, "a");
	key = key_of("a");
	ck_assert_int_eq(node_ref(t, &key, &a), 0); /* second reference */
	node_forget(t, a, 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 1);
	ck_assert_int_eq(node_ref(t, &key, &a), 0);
	node_forget(t, a, 2);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	ck_assert_int_eq(node_ref(t, &key, &a), -ENOENT);
	node_table_free(t);
}
END_TEST

START_TEST(a_dead_node_is_not_found_again)
{
	struct node_table *t = new_table(1024);
	struct node_key key;
	struct node *a, *b;

	make_file("a");
	a = ref_name(t, "a");
	key = key_of("a");
	node_mark_dead(t, key.dev, key.ino);
	ck_assert_int_eq(node_ref(t, &key, &b), -ENOENT);
	b = ref_name(t, "a"); /* as if the inode number were reused */
	ck_assert_ptr_ne(a, b);
	ck_assert_uint_eq(node_count(t), 2);
	node_forget(t, a, 1);
	node_forget(t, b, 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	node_table_free(t);
}
END_TEST

START_TEST(freeing_the_table_frees_dead_nodes_still_referenced)
{
	struct node_table *t = new_table(1024);
	struct node_key key;

	make_file("a");
	make_file("b");
	(void)ref_name(t, "a");
	(void)ref_name(t, "b");
	key = key_of("a");
	node_mark_dead(t, key.dev, key.ino);
	ck_assert_uint_eq(node_count(t), 2);
	/* No forget: as at unmount.  LeakSanitizer checks the rest. */
	node_table_free(t);
}
END_TEST

START_TEST(a_type_mismatch_is_a_miss)
{
	struct node_table *t = new_table(1024);
	struct node_key key;
	struct node *a, *b;

	make_file("a");
	a = ref_name(t, "a");
	key = key_of("a");
	key.type = S_IFDIR;
	ck_assert_int_eq(node_ref(t, &key, &b), -ENOENT);
	node_forget(t, a, 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	node_table_free(t);
}
END_TEST

START_TEST(a_reused_inode_number_is_another_object)
{
	struct node_table *t = new_table(1024);
	struct node_key key;
	struct node *a, *b;

	make_file("a");
	a = ref_name(t, "a");
	key = key_of("a");
	if (key.birth == 0)
		goto out; /* this file system records no birth time */
	/* Same number, later birth: what a reused inode looks like. */
	key.birth += 1;
	ck_assert_int_eq(node_ref(t, &key, &b), -ENOENT);
	/* The old node left the table; a fresh lookup makes a new one. */
	b = ref_name(t, "a");
	ck_assert_ptr_ne(a, b);
	node_forget(t, b, 1);
out:
	node_forget(t, a, 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	node_table_free(t);
}
END_TEST

START_TEST(descriptor_cache_stays_bounded_and_reopens)
{
	enum { FILES = 3000, CACHE = 256 };
	struct node_table *t = new_table(CACHE);
	struct node **nodes = calloc(FILES, sizeof(*nodes));
	char name[32];

	for (int i = 0; i < FILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		make_file(name);
		nodes[i] = ref_name(t, name);
		int fd = node_fd_get(t, nodes[i]);
		ck_assert_int_ge(fd, 0);
		node_fd_put(t, nodes[i]);
	}
	ck_assert_uint_le(node_fd_count(t), CACHE + 1);
	/* Evicted nodes reopen through their handle, to the same object. */
	for (int i = 0; i < FILES; i += 97) {
		struct stat a, b;
		snprintf(name, sizeof(name), "f%d", i);
		int fd = node_fd_get(t, nodes[i]);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fstat(fd, &a), 0);
		ck_assert_int_eq(fstatat(dir_fd, name, &b, 0), 0);
		ck_assert_uint_eq(a.st_ino, b.st_ino);
		node_fd_put(t, nodes[i]);
	}
	ck_assert(node_table_invariants(t));
	for (int i = 0; i < FILES; i++)
		node_forget(t, nodes[i], 1);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	ck_assert_uint_eq(node_fd_count(t), 1); /* the root's */
	free(nodes);
	node_table_free(t);
}
END_TEST

START_TEST(lookups_alone_keep_the_cache_bounded)
{
	enum { FILES = 3000, CACHE = 128 };
	struct node_table *t = new_table(CACHE);
	struct node **nodes = calloc(FILES, sizeof(*nodes));
	char name[32];

	/* Lookups seed the cache with the descriptor they opened. */
	for (int i = 0; i < FILES; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		make_file(name);
		nodes[i] = ref_name(t, name);
	}
	ck_assert_uint_le(node_fd_count(t), CACHE + 1);
	for (int i = 0; i < FILES; i++)
		node_forget(t, nodes[i], 1);
	stm_quiesce();
	ck_assert_uint_eq(node_fd_count(t), 1);
	free(nodes);
	node_table_free(t);
}
END_TEST

START_TEST(pinned_descriptors_are_not_evicted)
{
	enum { FILES = 400 };
	struct node_table *t = new_table(64);
	struct node *pinned;
	int pfd;
	char name[32];

	make_file("keep");
	pinned = ref_name(t, "keep");
	pfd = node_fd_get(t, pinned);
	ck_assert_int_ge(pfd, 0);
	for (int i = 0; i < FILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		make_file(name);
		struct node *n = ref_name(t, name);
		ck_assert_int_ge(node_fd_get(t, n), 0);
		node_fd_put(t, n);
		node_forget(t, n, 1);
	}
	/* The pinned descriptor is still open and still the same file. */
	struct stat a, b;
	ck_assert_int_eq(fstat(pfd, &a), 0);
	ck_assert_int_eq(fstatat(dir_fd, "keep", &b, 0), 0);
	ck_assert_uint_eq(a.st_ino, b.st_ino);
	node_fd_put(t, pinned);
	node_forget(t, pinned, 1);
	stm_quiesce();
	node_table_free(t);
}
END_TEST

START_TEST(lookup_builds_once_then_refers)
{
	struct node_table *t = new_table(1024);
	struct node *a, *b;
	struct stat st;

	make_file("x");
	ck_assert_int_eq(node_lookup(t, dir_fd, "x", &st, &a), 0);
	ck_assert_uint_eq(node_count(t), 1);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 1);
	ck_assert_int_eq(node_lookup(t, dir_fd, "x", &st, &b), 0);
	ck_assert_ptr_eq(a, b);
	ck_assert_uint_eq(node_count(t), 1);
	ck_assert_int_eq(node_lookup(t, dir_fd, "missing", &st, &b), -ENOENT);
	node_forget(t, a, 2);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	node_table_free(t);
}
END_TEST

START_TEST(open_reads_the_object)
{
	struct node_table *t = new_table(1024);
	struct node *a;
	char buf[8] = { 0 };
	int fd;

	make_file("abc");
	a = ref_name(t, "abc");
	fd = node_open(t, a, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "abc");
	close(fd);
	fd = node_open(t, node_root(t), O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	close(fd);
	node_forget(t, a, 1);
	node_table_free(t);
}
END_TEST

struct race_arg {
	struct node_table *t;
	int rounds;
};

/* Looks up and forgets the same few names over and over. */
static void *race_thread(void *p)
{
	struct race_arg *a = p;
	char name[16];

	for (int i = 0; i < a->rounds; i++) {
		snprintf(name, sizeof(name), "r%d", i % 8);
		struct node *n = ref_name(a->t, name);
		int fd = node_fd_get(a->t, n);
		ck_assert_int_ge(fd, 0);
		node_fd_put(a->t, n);
		node_forget(a->t, n, 1);
	}
	return NULL;
}

START_TEST(concurrent_lookup_and_forget_keep_counts_exact)
{
	struct node_table *t = new_table(16 * 64);
	int threads = _i;
	pthread_t tid[8];
	struct race_arg arg = { .t = t, .rounds = 2000 };
	char name[16];

	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		make_file(name);
	}
	for (int i = 0; i < threads; i++)
		ck_assert_int_eq(
		    pthread_create(&tid[i], NULL, race_thread, &arg), 0);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	stm_quiesce();
	ck_assert_uint_eq(node_count(t), 0);
	ck_assert(node_table_invariants(t));
	node_table_free(t);
}
END_TEST

static Suite *node_suite(void)
{
	Suite *s = suite_create("node");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, root_is_fuse_root_id);
	tcase_add_test(tc, same_object_same_node_and_ids_round_trip);
	tcase_add_test(tc, forget_frees_only_at_zero);
	tcase_add_test(tc, a_dead_node_is_not_found_again);
	tcase_add_test(tc, freeing_the_table_frees_dead_nodes_still_referenced);
	tcase_add_test(tc, a_type_mismatch_is_a_miss);
	tcase_add_test(tc, a_reused_inode_number_is_another_object);
	tcase_add_test(tc, descriptor_cache_stays_bounded_and_reopens);
	tcase_add_test(tc, lookups_alone_keep_the_cache_bounded);
	tcase_add_test(tc, pinned_descriptors_are_not_evicted);
	tcase_add_test(tc, lookup_builds_once_then_refers);
	tcase_add_test(tc, open_reads_the_object);
	/* _i is the thread count: 1, 2, 4 and 8. */
	tcase_add_loop_test(tc, concurrent_lookup_and_forget_keep_counts_exact,
			    1, 9);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(node_suite());
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr,
			"test_node: needs root (CAP_DAC_READ_SEARCH)\n");
		return 77;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
