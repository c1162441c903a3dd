/*
 * txcmd.h: the transaction verbs of the control socket.
 *
 * Registers begin, commit, abort, bind, list and show with the control
 * server (their wire form is in txfsd(8), CONTROL PROTOCOL).  Verbs that
 * do I/O (begin, commit, abort, bind) are queued to one worker thread,
 * which runs them in order and answers when they are done; that thread
 * also serialises commits.  list and show only read STM metadata and
 * answer at once on the control thread.  A transaction begun with
 * abort_on_close=1 is aborted when its client's connection closes.
 */
#ifndef TXFS_TXCMD_H
#define TXFS_TXCMD_H

#include <stdint.h>

struct control;
struct tx_table;
struct txcmd;

struct txcmd_config {
	struct control *control;
	struct tx_table *tx;
	/*
	 * Returns the CLOCK_MONOTONIC nanosecond until which the kernel may
	 * still cache names or attributes looked up before a transaction
	 * existed; begin waits for it so members never meet such an entry.
	 * May be NULL.
	 */
	int64_t (*cache_deadline)(void *arg);
	void *cache_arg;
};

/* Registers the verbs and starts the worker.  Returns 0 or -errno. */
int txcmd_start(const struct txcmd_config *cfg, struct txcmd **out);

/*
 * Stops the worker after the jobs already queued; the control server must
 * be stopped first, so no new job arrives.  NULL-safe.
 */
void txcmd_stop(struct txcmd *tc);

#endif /* TXFS_TXCMD_H */
