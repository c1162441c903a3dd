/*
 * checkpoint.h: applying committed journal records to SOURCE.
 *
 * A commit record (journal.h) lists a transaction's changes in order.  The
 * checkpoint performs them on SOURCE step by step, makes them durable and
 * marks the record applied.  The live commit (tx.c) and recovery at
 * start-up run the same code: checkpoint_apply() from step 0, or from the
 * step the journal says was reached before a crash.  See checkpoint.c for
 * why redoing a step is safe.
 */
#ifndef TXFS_CHECKPOINT_H
#define TXFS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"

struct node_table;

/* What applying needs; every pointer is borrowed. */
struct checkpoint_env {
	int statedir_fd;	  /* shadow names are relative to it */
	struct node_table *nodes; /* the root, and nodes to mark dead */
	struct journal *journal;
	bool recovery; /* which crash point counts steps (crash.h) */
};

/* What checkpoint_apply did, added to the caller's counters. */
struct checkpoint_stats {
	size_t steps;	/* steps performed now */
	size_t already; /* steps found done by an earlier run */
	size_t skipped; /* steps whose directory is gone from SOURCE */
	size_t marks;	/* journal_mark_steps calls */
};

/*
 * Applies changes[from..n) of txid's COMMITTED record to SOURCE, in order,
 * fsyncs what they touched and marks the record applied.  Returns 0, or
 * the -errno of the first step that failed: the steps before it are
 * durable and recorded, the record stays COMMITTED, and recovery resumes
 * it at the next start.  A step whose directory no longer exists in SOURCE
 * (removed while the daemon was down) is skipped with a warning.
 */
int checkpoint_apply(const struct checkpoint_env *env, uint64_t txid,
		     const struct journal_change *changes, size_t n,
		     size_t from, struct checkpoint_stats *stats);

/*
 * Whether step i must be recorded durable before step i + 1 runs: a name
 * operation whose names a later step of the record touches again.
 * Exposed for tests.  Returns a malloc'd array of n flags, or NULL.
 */
bool *checkpoint_marks(const struct journal_change *changes, size_t n);

#endif /* TXFS_CHECKPOINT_H */
