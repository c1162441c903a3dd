/* Unit tests for handle.c (needs CAP_DAC_READ_SEARCH, i.e. root). */
#include "config.h"

#include "handle.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/txfs-handle-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Creates dir/name holding text; returns an O_PATH descriptor on it. */
static int make_file(const char *name, const char *text)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	fd = open(path, O_PATH);
	ck_assert_int_ge(fd, 0);
	return fd;
}

static bool root_only(void)
{
	return geteuid() == 0;
}

START_TEST(a_handle_reopens_its_object)
{
	struct handle *h;
	char buf[16] = { 0 };
	int fd, rfd;

	if (!root_only())
		return;
	fd = make_file("a", "hello");
	ck_assert_int_eq(handle_from_fd(fd, &h), 0);
	close(fd);
	rfd = handle_open(h, O_RDONLY);
	ck_assert_int_ge(rfd, 0);
	ck_assert_int_eq(read(rfd, buf, sizeof(buf)), 5);
	ck_assert_str_eq(buf, "hello");
	close(rfd);
	handle_free(h);
}
END_TEST

START_TEST(hard_links_share_a_handle_and_files_do_not)
{
	struct handle *a, *b, *c;
	char p1[128], p2[128];
	int fa, fb, fc;

	if (!root_only())
		return;
	fa = make_file("a", "1");
	fc = make_file("c", "2");
	snprintf(p1, sizeof(p1), "%s/a", dir);
	snprintf(p2, sizeof(p2), "%s/b", dir);
	ck_assert_int_eq(link(p1, p2), 0);
	fb = open(p2, O_PATH);
	ck_assert_int_eq(handle_from_fd(fa, &a), 0);
	ck_assert_int_eq(handle_from_fd(fb, &b), 0);
	ck_assert_int_eq(handle_from_fd(fc, &c), 0);
	ck_assert(handle_equal(a, b));
	ck_assert(!handle_equal(a, c));
	handle_free(a);
	handle_free(b);
	handle_free(c);
	close(fa);
	close(fb);
	close(fc);
}
END_TEST

START_TEST(a_removed_object_never_opens_another)
{
	struct handle *h;
	char path[128];
	int fd;

	if (!root_only())
		return;
	fd = make_file("gone", "x");
	ck_assert_int_eq(handle_from_fd(fd, &h), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/gone", dir);
	ck_assert_int_eq(unlink(path), 0);
	/*
	 * The kernel may still hold the inode in memory and reopen it, or may
	 * report it stale; either way it must never open another object.
	 */
	for (int i = 0; i < 50; i++) {
		char other[64];
		snprintf(other, sizeof(other), "new%d", i);
		close(make_file(other, "y"));
	}
	fd = handle_open(h, O_RDONLY);
	if (fd >= 0) {
		struct stat st;
		ck_assert_int_eq(fstat(fd, &st), 0);
		ck_assert_uint_eq(st.st_nlink, 0);
		close(fd);
	} else {
		ck_assert_int_eq(fd, -ESTALE);
	}
	handle_free(h);
}
END_TEST

START_TEST(directories_reopen_as_directories)
{
	struct handle *h;
	struct stat a, b;
	int fd, rfd;

	if (!root_only())
		return;
	fd = open(dir, O_PATH | O_DIRECTORY);
	ck_assert_int_eq(handle_from_fd(fd, &h), 0);
	rfd = handle_open(h, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(rfd, 0);
	ck_assert_int_eq(fstat(fd, &a), 0);
	ck_assert_int_eq(fstat(rfd, &b), 0);
	ck_assert_uint_eq(a.st_ino, b.st_ino);
	close(fd);
	close(rfd);
	handle_free(h);
	handle_shutdown();
}
END_TEST

static Suite *handle_suite(void)
{
	Suite *s = suite_create("handle");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, a_handle_reopens_its_object);
	tcase_add_test(tc, hard_links_share_a_handle_and_files_do_not);
	tcase_add_test(tc, a_removed_object_never_opens_another);
	tcase_add_test(tc, directories_reopen_as_directories);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(handle_suite());
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr,
			"test_handle: needs root (CAP_DAC_READ_SEARCH)\n");
		return 77;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
