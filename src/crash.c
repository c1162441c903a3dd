/*
 * crash.c: named crash points for fault-injection tests (see crash.h).
 *
 * State: g_armed and g_count are written once by crash_init(), before any
 * other thread exists, and only read afterwards; g_hits is an atomic
 * counter, so concurrent hits of the armed point count exactly once each.
 */
#include "config.h"

#include "crash.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
	const char *name;
	const char *outcome; /* what SOURCE holds after a restart */
	const char *what;
} points[CRASH_COUNT] = {
	[CRASH_COMMIT_FLUSHED] = { "commit-flushed", "none",
				   "shadows flushed, before the conflict "
				   "check and the commit record" },
	[CRASH_COMMIT_RECORDED] = { "commit-recorded", "all",
				    "commit record durable, before the views "
				    "flip" },
	[CRASH_COMMIT_FLIPPED] = { "commit-flipped", "all",
				   "views flipped, before the first "
				   "checkpoint step" },
	[CRASH_CHECKPOINT_STEP] = { "checkpoint-step", "all",
				    "after the K-th checkpoint step of a "
				    "commit, before it is made durable" },
	[CRASH_CHECKPOINT_DONE] = { "checkpoint-done", "all",
				    "every step applied and synced, before "
				    "the record is marked applied" },
	[CRASH_COMMIT_APPLIED] = { "commit-applied", "all",
				   "record marked applied, before the "
				   "shadows are removed and the client is "
				   "answered" },
	[CRASH_ABORT_STEP] = { "abort-step", "none",
			       "after the K-th file of an aborted "
			       "transaction is removed" },
	[CRASH_RECOVERY_STEP] = { "recovery-step", "all",
				  "after the K-th step recovery redoes" },
	[CRASH_RECOVERY_REDONE] = { "recovery-redone", "all",
				    "records redone, before the leftovers of "
				    "earlier runs are removed" },
};

static int g_armed = -1;      /* the armed point, or -1 */
static unsigned long g_count; /* crash at this hit */
static _Atomic unsigned long g_hits;

int crash_init(char *why, size_t whylen)
{
	const char *env = getenv("TXFS_CRASH");
	const char *colon;
	size_t len;

	if (env == NULL || *env == '\0')
		return 0;
#ifndef TXFS_CRASH_POINTS
	return 0;
#endif
	colon = strchr(env, ':');
	len = colon != NULL ? (size_t)(colon - env) : strlen(env);
	g_count = 1;
	if (colon != NULL) {
		char *end;

		errno = 0;
		g_count = strtoul(colon + 1, &end, 10);
		if (errno != 0 || end == colon + 1 || *end != '\0' ||
		    g_count == 0) {
			snprintf(why, whylen,
				 "bad count in TXFS_CRASH=%s: want NAME or "
				 "NAME:K with K >= 1",
				 env);
			return -EINVAL;
		}
	}
	for (int i = 0; i < CRASH_COUNT; i++) {
		if (strlen(points[i].name) == len &&
		    memcmp(points[i].name, env, len) == 0) {
			g_armed = i;
			return 0;
		}
	}
	snprintf(why, whylen,
		 "unknown crash point in TXFS_CRASH=%s (see txfsd "
		 "--crash-points)",
		 env);
	return -EINVAL;
}

void crash_point(enum crash_id id)
{
	static const char msg[] = "txfsd: crash point reached: ";

	if ((int)id != g_armed)
		return;
	if (atomic_fetch_add(&g_hits, 1) + 1 != g_count)
		return;
	/* Nothing that allocates or locks: write(2), then SIGKILL. */
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)!write(STDERR_FILENO, points[id].name, strlen(points[id].name));
	(void)!write(STDERR_FILENO, "\n", 1);
	kill(getpid(), SIGKILL);
	_exit(137);
}

void crash_list(FILE *f)
{
	for (int i = 0; i < CRASH_COUNT; i++)
		fprintf(f, "%s\t%s\t%s\n", points[i].name, points[i].outcome,
			points[i].what);
}
