/*
 * membership.h: which transaction, if any, a FUSE request belongs to.
 *
 * Membership is per process.  A transaction binds a leader process; every
 * descendant of a member is a member, and stays one until it exits even if
 * it is re-parented.  A process is in at most one transaction.  This module
 * maps the calling thread of a request (its thread id) to an opaque 64-bit
 * transaction id, 0 meaning "not in a transaction"; it knows nothing else
 * about transactions.
 *
 * Processes are named by (pid, start time) so that a recycled pid never
 * inherits a transaction.  Classification is cached; with the kernel's
 * process-event connector (root, initial pid namespace) a cached answer
 * needs no /proc read and stays exact while pids are reused.  Without it,
 * every classification reads /proc/TID/stat.  See membership.c for the
 * design and the races it closes.
 *
 * Classification is exact for synchronous requests, whose calling thread
 * is blocked in the kernel until the reply, so its thread id cannot be
 * reused while the request is served.  Asynchronous requests (read-ahead,
 * writeback, RELEASE, FORGET) may carry the id of a thread that has exited
 * or 0: route those by file handle, not by caller.
 *
 * Thread-safety: every function except membership_new and membership_free
 * may be called from any thread at any time.
 */
#ifndef TXFS_MEMBERSHIP_H
#define TXFS_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct membership;

/* Counters for `txctl status` and tests; a snapshot, not atomic as a whole. */
struct membership_stats {
	bool connector;		      /* kernel process events in use */
	uint64_t classified;	      /* membership_classify calls, tid > 0 */
	uint64_t hits;		      /* answered from the cache, no /proc */
	uint64_t misses;	      /* answered by reading /proc */
	uint64_t proc_reads;	      /* /proc files read by classify/bind */
	uint64_t listener_proc_reads; /* /proc files read by the listener */
	uint64_t events;	      /* fork and exit events applied */
	uint64_t overflows;	      /* event losses recovered from */
	uint64_t sync_waits;	   /* classifications that waited for events */
	uint64_t sync_timeouts;	   /* ... and gave up waiting */
	uint64_t audits;	   /* cache hits re-checked against /proc */
	uint64_t audit_mismatches; /* ... that found the cache wrong */
	uint64_t audit_proc_reads; /* /proc files read by audits */
	size_t threads;		   /* cached thread -> process entries */
	size_t members;		   /* processes known to be members */
	size_t nonmembers;	   /* processes cached as non-members */
};

/* Lifecycle */

/*
 * Creates the membership map.  With use_connector, subscribes to the
 * kernel's process events and starts a listener thread; if that is not
 * possible (no CAP_NET_ADMIN, not in the initial pid namespace, no
 * CONFIG_PROC_EVENTS) it falls back to reading /proc, which
 * membership_stats reports.  Returns 0 or -errno.
 */
int membership_new(bool use_connector, struct membership **out);

/* Stops the listener and frees everything; no other call may be running. */
void membership_free(struct membership *m);

/* Transactions */

/*
 * Makes process pid (a thread id names its process) a member of txid.
 * Binding a member of txid again succeeds.  Returns 0, -EINVAL for txid 0
 * or a txid whose release is in progress, -ESRCH if there is no such
 * process, or -EBUSY if it is a member of another transaction.
 */
int membership_bind(struct membership *m, pid_t pid, uint64_t txid);

/*
 * Sets *txid to the transaction the thread tid belongs to, or to 0, and
 * returns 0.  tid 0 (kernel requests) and threads that no longer exist are
 * never members.  Returns -errno (-EMFILE, -ENOMEM, ...) when /proc cannot
 * be read and membership cannot be told: the request must then fail, not
 * proceed as a non-member's.
 */
int membership_classify(struct membership *m, pid_t tid, uint64_t *txid);

/* Drops every member of txid (commit or abort); unknown ids are ignored. */
void membership_release(struct membership *m, uint64_t txid);

/*
 * Returns how many live processes are known members of txid, forgetting
 * records of members that have exited.
 */
size_t membership_count(struct membership *m, uint64_t txid);

/* Introspection */

void membership_stats(struct membership *m, struct membership_stats *out);

/* Checks the structure of the maps; for assert() and tests. */
bool membership_invariants(struct membership *m);

/*
 * Test hooks.  membership_debug_stall(m, true) returns once the listener
 * has stopped reading events (so they queue up, and overflow); false lets
 * it go on.  membership_debug_rcvbuf sets the event socket's receive
 * buffer.  Both return -ENOTCONN without a listener.
 */
int membership_debug_stall(struct membership *m, bool stall);
int membership_debug_rcvbuf(struct membership *m, int bytes);

#endif /* TXFS_MEMBERSHIP_H */
