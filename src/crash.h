/*
 * crash.h: named crash points for fault-injection tests.
 *
 * The daemon calls crash_point() at named moments of commit, checkpoint,
 * abort and recovery.  A point is armed by the environment variable
 * TXFS_CRASH=NAME or NAME:K (the K-th time the point is reached, default
 * 1); an armed point kills the daemon on the spot with SIGKILL, as kill -9
 * would, after one line on stderr.  Unarmed points cost one branch.
 * `txfsd --crash-points` prints the table below, one point per line:
 * NAME, a tab, what SOURCE must hold after a restart ("all" of the
 * transaction being committed, or "none" of it), a tab, a description.
 * Builds configured with --disable-crash-points ignore TXFS_CRASH.
 */
#ifndef TXFS_CRASH_H
#define TXFS_CRASH_H

#include <stdio.h>

/* The crash points; crash.c holds their names, outcomes and descriptions. */
enum crash_id {
	CRASH_COMMIT_FLUSHED,
	CRASH_COMMIT_RECORDED,
	CRASH_COMMIT_FLIPPED,
	CRASH_CHECKPOINT_STEP,
	CRASH_CHECKPOINT_DONE,
	CRASH_COMMIT_APPLIED,
	CRASH_ABORT_STEP,
	CRASH_RECOVERY_STEP,
	CRASH_RECOVERY_REDONE,
	CRASH_COUNT
};

/*
 * Reads TXFS_CRASH once; call before any thread starts.  Returns 0, or
 * -EINVAL (with a message in why) for an unknown name or a bad count.
 */
int crash_init(char *why, size_t whylen);

/* Kills the process if id is armed and this is its K-th hit. */
void crash_point(enum crash_id id);

/* Prints the table of points (see above) to f. */
void crash_list(FILE *f);

#endif /* TXFS_CRASH_H */
