/* Unit tests for log.c. */
#include "config.h"

#include "log.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs log_msg with stderr redirected into a pipe; returns what it wrote. */
static char *capture(int max_level, int level, const char *text)
{
	static char buf[4096];
	int pfd[2], saved;
	ssize_t n;

	ck_assert_int_eq(pipe(pfd), 0);
	saved = dup(STDERR_FILENO);
	dup2(pfd[1], STDERR_FILENO);
	log_setup("unit", LOG_TARGET_STDERR, max_level);
	log_msg(level, "%s", text);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(pfd[1]);
	n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

START_TEST(message_is_one_line_with_ident_and_level)
{
	char *out = capture(LOG_DEBUG, LOG_WARNING, "disk is full");

	ck_assert_ptr_nonnull(strstr(out, "unit["));
	ck_assert_ptr_nonnull(strstr(out, "warning: disk is full\n"));
	/* Exactly one line: the only newline is the last byte. */
	ck_assert_ptr_eq(strchr(out, '\n'), out + strlen(out) - 1);
}
END_TEST

START_TEST(levels_above_the_maximum_are_dropped)
{
	ck_assert_str_eq(capture(LOG_INFO, LOG_DEBUG, "noise"), "");
	ck_assert_int_eq(log_enabled(LOG_DEBUG), 0);
	ck_assert_int_eq(log_enabled(LOG_ERR), 1);
}
END_TEST

START_TEST(long_messages_are_truncated_not_overflowed)
{
	char big[4000];
	char *out;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	out = capture(LOG_DEBUG, LOG_ERR, big);
	ck_assert_uint_le(strlen(out), 1024);
	ck_assert_int_eq(out[strlen(out) - 1], '\n');
}
END_TEST

START_TEST(logging_preserves_errno)
{
	errno = EXDEV;
	capture(LOG_DEBUG, LOG_ERR, "x");
	ck_assert_int_eq(errno, EXDEV);
}
END_TEST

START_TEST(level_names_parse)
{
	ck_assert_int_eq(log_level_parse("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_parse("info"), LOG_INFO);
	ck_assert_int_eq(log_level_parse("warn"), LOG_WARNING);
	ck_assert_int_eq(log_level_parse("err"), LOG_ERR);
	ck_assert_int_eq(log_level_parse("loud"), -EINVAL);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, message_is_one_line_with_ident_and_level);
	tcase_add_test(tc, levels_above_the_maximum_are_dropped);
	tcase_add_test(tc, long_messages_are_truncated_not_overflowed);
	tcase_add_test(tc, logging_preserves_errno);
	tcase_add_test(tc, level_names_parse);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
