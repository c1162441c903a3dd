/* Unit tests for statedir.c. */
#include "config.h"

#include "statedir.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static char dir[64];
static char src[128];
static int src_fd;

static void setup(void)
{
	strcpy(dir, "/tmp/txfs-statedir-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/src", dir);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	src_fd = open(src, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(src_fd, 0);
}

static void teardown(void)
{
	char cmd[128];

	close(src_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(default_is_created_inside_source_and_hidden)
{
	struct statedir *sd;
	char why[512], want[160];
	struct stat st;

	ck_assert_int_eq(
	    statedir_open(src, src_fd, NULL, &sd, why, sizeof(why)), 0);
	snprintf(want, sizeof(want), "%s/.txfs", src);
	ck_assert_str_eq(statedir_path(sd), want);
	ck_assert_int_eq(stat(want, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert(statedir_hides(sd, ".txfs"));
	ck_assert(!statedir_hides(sd, "txfs"));
	ck_assert(!statedir_hides(sd, ".txfs2"));
	ck_assert_int_ge(statedir_fd(sd), 0);
	statedir_close(sd);
}
END_TEST

START_TEST(outside_source_hides_nothing)
{
	struct statedir *sd;
	char why[512], path[160];

	snprintf(path, sizeof(path), "%s/state", dir);
	ck_assert_int_eq(
	    statedir_open(src, src_fd, path, &sd, why, sizeof(why)), 0);
	ck_assert(!statedir_hides(sd, "state"));
	ck_assert(!statedir_hides(sd, ".txfs"));
	statedir_close(sd);
}
END_TEST

START_TEST(nested_inside_source_is_refused)
{
	struct statedir *sd = NULL;
	char why[512], path[160];

	snprintf(path, sizeof(path), "%s/a", src);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/state", src);
	ck_assert_int_eq(
	    statedir_open(src, src_fd, path, &sd, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "must be outside"));
}
END_TEST

START_TEST(another_file_system_is_refused)
{
	struct statedir *sd = NULL;
	struct statfs a, b;
	char why[512], path[160];

	/* /dev/shm is a tmpfs on Linux; skip if it shares our device. */
	ck_assert_int_eq(statfs(src, &a), 0);
	if (statfs("/dev/shm", &b) != 0 || a.f_type == b.f_type)
		return;
	snprintf(path, sizeof(path), "/dev/shm/txfs-unit-%d", (int)getpid());
	ck_assert_int_eq(
	    statedir_open(src, src_fd, path, &sd, why, sizeof(why)), -EXDEV);
	ck_assert_ptr_nonnull(strstr(why, "not on the same file system"));
	rmdir(path);
}
END_TEST

START_TEST(a_file_in_the_way_is_refused_with_a_reason)
{
	struct statedir *sd = NULL;
	char why[512], path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/.txfs", src);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_lt(
	    statedir_open(src, src_fd, NULL, &sd, why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, ".txfs"));
}
END_TEST

START_TEST(a_second_daemon_is_locked_out)
{
	struct statedir *a, *b = NULL;
	char why[512];

	ck_assert_int_eq(statedir_open(src, src_fd, NULL, &a, why, sizeof(why)),
			 0);
	/* flock conflicts between open file descriptions, even in one process. */
	ck_assert_int_lt(statedir_open(src, src_fd, NULL, &b, why, sizeof(why)),
			 0);
	ck_assert_ptr_nonnull(strstr(why, "in use by another txfsd"));
	statedir_close(a);
	ck_assert_int_eq(statedir_open(src, src_fd, NULL, &b, why, sizeof(why)),
			 0);
	statedir_close(b);
}
END_TEST

START_TEST(the_source_itself_is_refused)
{
	struct statedir *sd = NULL;
	char why[512];

	ck_assert_int_eq(statedir_open(src, src_fd, src, &sd, why, sizeof(why)),
			 -EINVAL);
}
END_TEST

static Suite *statedir_suite(void)
{
	Suite *s = suite_create("statedir");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, default_is_created_inside_source_and_hidden);
	tcase_add_test(tc, outside_source_hides_nothing);
	tcase_add_test(tc, nested_inside_source_is_refused);
	tcase_add_test(tc, another_file_system_is_refused);
	tcase_add_test(tc, a_file_in_the_way_is_refused_with_a_reason);
	tcase_add_test(tc, a_second_daemon_is_locked_out);
	tcase_add_test(tc, the_source_itself_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(statedir_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
