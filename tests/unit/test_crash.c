/*
 * Unit tests for crash.c: TXFS_CRASH parsing, the K-th hit, and the table
 * that txfsd --crash-points prints.  Each test that arms a point does so in
 * a forked child, because crash_init reads the environment once and an
 * armed point kills the whole process.
 */
#include "config.h"

#include "crash.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Forks a child that arms TXFS_CRASH=spec and then hits point id `hits`
 * times, exiting 0 if it survives (or 3 if crash_init refused the spec).
 * Returns the child's wait status.
 */
static int run_child(const char *spec, enum crash_id id, int hits)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char why[256];
		int devnull = open("/dev/null", O_WRONLY);

		/* The crash message would clutter the test output. */
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		setenv("TXFS_CRASH", spec, 1);
		if (crash_init(why, sizeof(why)) < 0)
			_exit(3);
		for (int i = 0; i < hits; i++)
			crash_point(id);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static bool killed(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static bool survived(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

START_TEST(an_armed_point_kills_at_its_first_hit)
{
	ck_assert(
	    killed(run_child("commit-recorded", CRASH_COMMIT_RECORDED, 1)));
}
END_TEST

START_TEST(a_count_kills_at_exactly_the_kth_hit)
{
	ck_assert(
	    survived(run_child("checkpoint-step:3", CRASH_CHECKPOINT_STEP, 2)));
	ck_assert(
	    killed(run_child("checkpoint-step:3", CRASH_CHECKPOINT_STEP, 3)));
}
END_TEST

START_TEST(other_points_never_fire)
{
	ck_assert(
	    survived(run_child("commit-flushed", CRASH_COMMIT_RECORDED, 10)));
	ck_assert(
	    survived(run_child("recovery-step", CRASH_CHECKPOINT_STEP, 10)));
}
END_TEST

START_TEST(unknown_names_and_bad_counts_are_refused)
{
	static const char *const bad[] = {
		"no-such-point",
		"commit-recorded:",
		"commit-recorded:0",
		"commit-recorded:x",
		"commit-recorded:2x",
		"commit",
		"commit-recorded-and-more",
		":3",
	};
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = run_child(bad[i], CRASH_COMMIT_RECORDED, 1);

		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3,
			      "TXFS_CRASH=%s was not refused", bad[i]);
	}
	/* In this process: the message names the variable. */
	setenv("TXFS_CRASH", "no-such-point", 1);
	ck_assert_int_eq(crash_init(why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "TXFS_CRASH=no-such-point"));
	unsetenv("TXFS_CRASH");
}
END_TEST

START_TEST(unset_or_empty_arms_nothing)
{
	char why[64];

	unsetenv("TXFS_CRASH");
	ck_assert_int_eq(crash_init(why, sizeof(why)), 0);
	for (int i = 0; i < CRASH_COUNT; i++)
		crash_point((enum crash_id)i);
	ck_assert(survived(run_child("", CRASH_COMMIT_RECORDED, 5)));
}
END_TEST

START_TEST(the_list_has_every_point_once_with_an_outcome)
{
	char *buf = NULL, *line, *save;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int n = 0;

	ck_assert_ptr_nonnull(f);
	crash_list(f);
	fclose(f);
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save), n++) {
		char *tab1 = strchr(line, '\t');
		char *tab2 = tab1 != NULL ? strchr(tab1 + 1, '\t') : NULL;

		ck_assert_ptr_nonnull(tab2);
		*tab1 = '\0';
		*tab2 = '\0';
		ck_assert(strcmp(tab1 + 1, "all") == 0 ||
			  strcmp(tab1 + 1, "none") == 0);
		ck_assert_uint_gt(strlen(tab2 + 1), 0);
		/* Every listed name can be armed. */
		ck_assert(killed(run_child(line, (enum crash_id)n, 1)));
	}
	ck_assert_int_eq(n, CRASH_COUNT);
	free(buf);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, an_armed_point_kills_at_its_first_hit);
	tcase_add_test(tc, a_count_kills_at_exactly_the_kth_hit);
	tcase_add_test(tc, other_points_never_fire);
	tcase_add_test(tc, unknown_names_and_bad_counts_are_refused);
	tcase_add_test(tc, unset_or_empty_arms_nothing);
	tcase_add_test(tc, the_list_has_every_point_once_with_an_outcome);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

#ifndef TXFS_CRASH_POINTS
	puts("SKIP: configured with --disable-crash-points");
	return 77;
#endif
	sr = srunner_create(crash_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
