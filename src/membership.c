/*
 * membership.c: maps the calling thread of a FUSE request to the
 * transaction its process belongs to.
 *
 * RESPONSIBILITY
 *
 * This module owns the membership map: which processes are members of which
 * transaction (an opaque 64-bit id chosen by the transaction engine), a
 * cache of processes that are not members, and a cache from thread ids to
 * their processes.  It reads /proc and, when it can, the kernel's process
 * events (the proc connector).  It answers membership_classify() for every
 * request and must not be wrong in either direction: a non-member taken for
 * a member sees and writes uncommitted state; a member taken for a
 * non-member writes to the base.  Both break isolation, so when /proc
 * cannot be read it fails (-errno) rather than guess.
 *
 * MODEL
 *
 * A process is named by (pid, start time), the start time being field 22 of
 * /proc/PID/stat in clock ticks since boot.  Three maps live under the STM.
 * procs and threads are fixed arrays of bucket tvars holding chains of
 * immutable entries (replaced copy-on-write, freed with stm_retire):
 *
 *   procs    pid -> struct prec: a member record (naming the transaction)
 *            or a non-member record, valid for one bind generation.
 *   threads  tid -> struct thr: the thread's process.  Connector mode only.
 *   txs      the transactions that have members, each with a live flag.
 *
 * bind_gen counts binds.  A process becomes a member only by being bound or
 * by descending from a member, so a non-member record made at bind
 * generation g holds until the next bind: each bind bumps bind_gen, which
 * invalidates every non-member record at once.
 *
 * A classification resolves the thread to its process (/proc/TID/stat; for
 * a thread that is not its group's leader, also /proc/TID/status for the
 * Tgid and /proc/TGID/stat), then walks the ppid chain (/proc/PPID/stat)
 * until it meets a record that decides (a member record of a live
 * transaction, or a current non-member record) or the top of the tree.  It
 * then publishes what it learned: every process on the walked part of the
 * chain gets a record, so the next walk stops at once.  Member records are
 * sticky: re-parenting does not remove them; exit and release do.
 *
 * TWO MODES
 *
 * /proc mode.  Nothing says when a thread exits or a pid is reused, so the
 * thread -> process step is read from /proc on every classification (one
 * read for a group leader, three for another thread) and records are
 * matched by (pid, start time).  A record hit saves the walk.
 *
 * Connector mode.  A listener thread subscribes to the proc connector
 * (NETLINK_CONNECTOR, CN_IDX_PROC, PROC_CN_MCAST_LISTEN; it needs
 * CAP_NET_ADMIN and the initial pid namespace, whose pids the events carry;
 * membership_new() proves both by waiting for the FORK event of the
 * listener thread itself) and applies every FORK and EXIT event:
 *   FORK of process C by P: entries keyed C are stale (the number was free
 *     a moment ago) and are dropped.  If P is a member, C becomes one at
 *     once, so a double fork cannot escape even when the intermediate exits
 *     before the grandchild makes its first request.  If P is a current
 *     non-member, so is C.  In both cases C's thread entry is made.
 *   FORK of thread T in G: entries keyed T are dropped; T -> G is cached.
 *   EXIT of thread T: its thread entry is dropped.  EXIT of a group leader
 *     drops its non-member record; a member record goes once /proc shows
 *     the whole group gone (a leader may exit before its other threads;
 *     see proc_gone()).
 * Every change of owner of a thread id or pid is announced by a FORK event
 * before the new owner runs, so once every event queued before a request
 * has been applied, entries of the current epoch are exact, and a cache hit
 * needs no /proc read.  Measured on the development VM (2 vCPUs, busy): a
 * cached classification takes about 1.4 us, 1.1 us of it the poll(2) of
 * sync_events(); in /proc mode one takes about 8 us (one /proc/PID/stat
 * read); a walk over seven ancestors about 50 us.
 *
 * Only /proc/PID/stat and /proc/PID/status are read: unlike cmdline or
 * environ they do not take the target's mmap lock, so reading them for a
 * caller that is blocked in a page fault on our mount cannot deadlock.
 *
 * Alternatives rejected: re-reading /proc on a hit costs as much as a miss;
 * re-validating every N hits or after T ms leaves a window in which a
 * recycled tid is misclassified, and correctness wins over speed here; a
 * pidfd per cached thread is exact but costs a descriptor per thread, and
 * the daemon's descriptors are scarce (DESIGN.md, "no fd per node").
 *
 * THE RACES, AND HOW EACH IS CLOSED
 *
 * (R1) Tid reuse before the listener has applied the events: thread T
 *      exits, a new task gets T and makes a request before T's entry is
 *      dropped.  Closed by sync_events() on every classification.  The
 *      kernel queues FORK(new T) on our socket before new T first runs
 *      (copy_process() reports it before wake_up_new_task()), hence before
 *      its request reaches us, and applying it drops every entry keyed T.
 *      EXIT(old T) may come later still, because a task that is reaped at
 *      once frees its id before it reports its exit; a late EXIT only drops
 *      entries, and drops a member record only if /proc shows its process
 *      gone, so it cannot make an entry wrong.  The listener drains the
 *      socket in batches and bumps seq at the start and at the end of each
 *      (odd while draining); a batch ends only when a read finds the queue
 *      empty.  The classifier samples seq (s0), then polls the socket
 *      without blocking.  Nothing queued and no error pending: every event
 *      queued before the request was taken by a batch that began before the
 *      poll, so it waits only for a running batch (seq odd) to end.
 *      Something queued: it waits for a batch that found the queue empty
 *      after s0 was sampled, i.e. until seq >= s0 + 2 (s0 even) or s0 + 3
 *      (s0 odd: the running batch may have seen the queue empty before our
 *      events arrived).  Cost: one poll(2) per request.
 * (R2) Lost events.  The socket has a large buffer (SO_RCVBUFFORCE), but a
 *      listener that falls behind loses events, and its next read fails
 *      with ENOBUFS.  It then bumps the epoch: entries of an older epoch
 *      are not trusted by pid alone.  It drops every thread entry, every
 *      non-member record and every member record whose start time is
 *      unknown.  Member records with a start time stay and are re-validated
 *      (start time compared) when a walk meets them, which re-stamps them.
 *      A FORK whose parent's record is of an older epoch is propagated only
 *      after the parent's start time is re-read and matches.  The kernel
 *      reports the error before any later datagram, so before a read can
 *      find the queue empty: once sync_events() returns, an overflow that
 *      happened before the request has been handled.
 * (R3) A walk publishing what it read from /proc after that process exited,
 *      its pid was reused and the reuse was applied.  The listener counts
 *      FORK events per bucket (fgen).  A walk samples the counter before it
 *      reads /proc for a pid and publishes only if the counters (and the
 *      epoch) are unchanged, in the same STM transaction; otherwise it
 *      walks again.
 * (R4) A walk reading a parent that has exited and whose pid was reused.  A
 *      parent is never younger than its child, so a "parent" whose start
 *      time is later than the child's is an impostor and the walk starts
 *      over (by then the child has been re-parented).
 * (R5) A bind racing with a walk that concluded "not a member": non-member
 *      records are published only if bind_gen has not moved since the walk
 *      began, in the publishing transaction.  A bind checks the same way
 *      that the membership it found is still current.
 * (R6) A release racing with a fork or a walk that adds a member: records
 *      are inserted only by transactions that see the transaction live;
 *      membership_release() clears live first (from then on no
 *      classification returns the id), then sweeps the records.
 * (R7) The listener failing (socket error) while classifiers wait: it
 *      clears m->conn before it ends the batch it was in, a classifier
 *      checks conn after its wait, and the listener bumps the epoch; the
 *      module goes on in /proc mode.
 *
 * RESIDUAL RISKS (documented, not closed)
 *
 *  - Start times have a resolution of one clock tick (10 ms).  In /proc
 *    mode, and for records kept across an overflow, a pid reused within the
 *    tick in which its previous owner started would match that owner's
 *    record.  Cyclic pid allocation rules this out unless the whole pid
 *    space is used up within 10 ms, or a privileged process chooses pids
 *    (ns_last_pid, clone3 set_tid: CAP_SYS_ADMIN over the pid namespace).
 *    Connector mode without overflow does not rely on start times: the
 *    FORK event of the pid's new owner replaces the record.
 *  - The kernel drops an event silently when it cannot allocate it
 *    (GFP_NOWAIT, severe memory pressure).  As a backstop every
 *    AUDIT_EVERY-th cache hit of a thread is re-checked against /proc; a
 *    mismatch bumps the epoch (nothing cached is trusted) and is counted.
 *  - A walk follows ppid, so a process re-parented before anything saw it
 *    as a member is lost: in /proc mode always, in connector mode if it
 *    already existed when its ancestor was bound (its fork was not a
 *    member's fork).  `txctl run` binds before it starts the command and
 *    is a subreaper, which closes this for the common case.
 *  - CLONE_PARENT makes a sibling, not a child, and a member can ask any
 *    other process to act for it over IPC: membership is not a sandbox.
 *  - A request whose calling thread has exited (asynchronous requests) is
 *    classified by the id's present owner, or as a non-member.
 *  - A late EXIT (see R1) of a pid's previous owner, applied after the new
 *    owner has forked and itself exited, drops the new owner's record
 *    before the FORK events of its children are applied, so they are not
 *    made members.  This needs the new owner to live and fork within the
 *    microseconds between the old owner's release and its exit report.
 *
 * INVARIANTS
 *
 * (1) procs and threads hold at most one entry per key, in the chain of
 *     the bucket the key hashes to.  Published entries are immutable; a
 *     change replaces the entry (unlink, stm_retire, insert) in one STM
 *     transaction.
 * (2) A member record points to an mtx on the txs list.  An mtx leaves the
 *     list (and is retired) only after its live flag was cleared and every
 *     record naming it was removed; no transaction inserts a record naming
 *     an mtx whose live flag is clear.
 * (3) A non-member record's gen and every entry's epoch are <= the current
 *     bind_gen and epoch.
 * (4) In connector mode, once sync_events() has returned, an entry of the
 *     current epoch describes the present owner of its key (R1-R3).
 * (5) seq is odd exactly while the listener is inside drain(); it only
 *     grows.
 * (6) STM bodies do no I/O: /proc is read before, and what was read is
 *     published after, validated as in (R3).
 *
 * STATES of a process record (struct prec) and who moves it
 *
 *   (none)    -> MEMBER     [bind_body; fork_body: parent is a member;
 *                            publish_body: the walk met a member]
 *   (none)    -> NONMEMBER  [fork_body: parent is a non-member;
 *                            publish_body: the walk met none]
 *   NONMEMBER -> MEMBER     [bind_body; publish_body]
 *   NONMEMBER -> (stale)    [bind_body bumps bind_gen]
 *   NONMEMBER -> (none)     [exit_body; fork_body: pid reused; sweep_body:
 *                            lost events, too many non-member records]
 *   MEMBER    -> LEADER_GONE [exit_fix_body: the leader thread exited, some
 *                            other thread lives]
 *   MEMBER, LEADER_GONE -> (none)
 *                           [exit_fix_body: group gone; fork_body: pid
 *                            reused; sweep_body: release, or lost events
 *                            and start time unknown; drop_body: counted
 *                            as gone]
 *
 * STATES of the listener (m->lstate, under m->lock)
 *
 *   NONE     -> STARTING [conn_start]
 *   STARTING -> READY    [listener_main: saw its own FORK event]
 *   STARTING -> FAILED   [listener_main: none within SELFTEST_MS]
 *   READY    -> DEAD     [listener_main: socket error; m->conn cleared]
 *   READY, DEAD -> (joined) [membership_free]
 */
#include "config.h"

#include "membership.h"

#include "log.h"
#include "stm.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MB_BITS	      12
#define MB_BUCKETS    (1u << MB_BITS)
#define START_UNKNOWN UINT64_MAX

/* Hops of a walk that are remembered and published. */
#define WALK_HOPS 64
/* Longest ancestry followed before giving up. */
#define WALK_MAX 4096
/* Walks a classification or a bind starts before it settles. */
#define SLOW_TRIES 8
#define BIND_TRIES 8
/* Non-member records kept before the lot is dropped. */
#define NONMEMBER_MAX 65536
/* Every AUDIT_EVERY-th hit of a thread is re-checked against /proc. */
#define AUDIT_EVERY 256
/* How long a classification waits for the listener before reading /proc. */
#define SYNC_TIMEOUT_MS 1000
/* How long membership_new waits for the listener's own FORK event. */
#define SELFTEST_MS  1000
#define EVENT_RCVBUF (8 << 20)
#define RECV_BATCH   64
#define RECV_SIZE    512

#define COUNT(m, field)                                                        \
	atomic_fetch_add_explicit(&(m)->c.field, 1, memory_order_relaxed)

/* The head every map entry starts with. */
struct ent {
	struct stm_tvar next; /* hash chain; STM */
	pid_t key;	      /* immutable */
};

/* A transaction that has (or had) members. */
struct mtx {
	struct stm_tvar next; /* the txs list; STM */
	struct stm_tvar live; /* 1 until membership_release; STM */
	uint64_t txid;	      /* immutable, never 0 */
};

/* What is known about one process; immutable once published. */
struct prec {
	struct ent e;	  /* key: the pid (thread group id) */
	uint64_t serial;  /* unique over the module's life */
	uint64_t start;	  /* start time in ticks, or START_UNKNOWN */
	uint64_t epoch;	  /* the epoch it was made or re-validated in */
	struct mtx *tx;	  /* the transaction, or NULL: not a member */
	uint64_t gen;	  /* non-member: the bind generation it holds for */
	bool leader_gone; /* member: the leader thread exited before others */
};

/* A thread and its process; immutable once published. */
struct thr {
	struct ent e; /* key: the thread id */
	pid_t tgid;
	uint64_t epoch;
};

/* Statistics: relaxed atomics. */
struct counters {
	_Atomic uint64_t classified, hits, misses, proc_reads, listener_reads;
	_Atomic uint64_t events, overflows, sync_waits, sync_timeouts;
	_Atomic uint64_t audits, audit_mismatches, audit_reads;
	_Atomic int64_t threads, members, nonmembers;
};

enum lstate { L_NONE, L_STARTING, L_READY, L_FAILED, L_DEAD };

/* The listener's receive buffers. */
struct lbuf {
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
	struct sockaddr_nl from[RECV_BATCH];
	_Alignas(8) char data[RECV_BATCH][RECV_SIZE];
};

struct membership {
	/* Guarded by the STM. */
	struct stm_tvar *procs;	  /* MB_BUCKETS chains of struct prec */
	struct stm_tvar *threads; /* MB_BUCKETS chains of struct thr */
	struct stm_tvar *fgen;	  /* MB_BUCKETS counts of FORK events */
	struct stm_tvar txs;	  /* list of struct mtx */
	struct stm_tvar bind_gen;
	struct stm_tvar epoch;

	/* Atomics; seq and conn, read by every classification, get a line. */
	_Alignas(64) _Atomic uint64_t seq; /* odd while the listener drains */
	_Atomic bool conn;		   /* events are applied and trusted */
	_Atomic uint64_t serial;	   /* last prec serial handed out */
	_Atomic bool sweeping;		   /* a non-member flush is running */
	_Atomic bool stop; /* membership_free wants the listener out */
	_Alignas(64) struct counters c;

	/* Set by membership_new (or membership_free); immutable between. */
	int sock; /* the connector socket, or -1 */
	int efd;  /* wakes the listener, or -1 */
	bool listening;
	pthread_t listener;

	/* Guarded by lock: the start-up handshake and the stall hook. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum lstate lstate;
	bool stall_req;
	bool stalled;

	/* Owned by the listener thread. */
	pid_t ltid;
	struct lbuf *lbuf;
};

/* Entry count changes made by one transaction, applied after it commits. */
struct delta {
	int threads, members, nonmembers;
};

/* Thread-local: hits since the last audit. */
static __thread unsigned t_hits;

static size_t bucket_of(pid_t key)
{
	return ((uint32_t)key * 2654435761u) >> (32 - MB_BITS);
}

static void delta_apply(struct membership *m, const struct delta *d)
{
	atomic_fetch_add_explicit(&m->c.threads, d->threads,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&m->c.members, d->members,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&m->c.nonmembers, d->nonmembers,
				  memory_order_relaxed);
}

/* ---- /proc ------------------------------------------------------------ */

/* The fields of /proc/PID/stat this module uses. */
struct pstat {
	char state;
	pid_t ppid;
	long nthreads;
	uint64_t start;
	int exit_signal; /* -1 for a thread that is not its group's leader */
};

static int proc_read(pid_t pid, const char *name, char *buf, size_t size,
		     _Atomic uint64_t *reads)
{
	char path[48];
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	atomic_fetch_add_explicit(reads, 1, memory_order_relaxed);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, size - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return err == ENOENT ? -ESRCH : -err;
	buf[n] = '\0';
	return 0;
}

static int proc_stat(pid_t pid, struct pstat *st, _Atomic uint64_t *reads)
{
	char buf[1024];
	const char *p;
	char *end;
	int ret;

	ret = proc_read(pid, "stat", buf, sizeof(buf), reads);
	if (ret < 0)
		return ret;
	/* The command name may hold anything, ')' included. */
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ' || p[2] == '\0')
		return -EIO;
	st->state = p[2];
	p += 3;
	for (int field = 4; field <= 38; field++) {
		long long v = strtoll(p, &end, 10);

		if (end == p)
			return -EIO;
		if (field == 4)
			st->ppid = (pid_t)v;
		else if (field == 20)
			st->nthreads = (long)v;
		else if (field == 22)
			st->start = strtoull(p, NULL, 10);
		else if (field == 38)
			st->exit_signal = (int)v;
		p = end;
	}
	return 0;
}

static int proc_tgid(pid_t tid, pid_t *tgid, _Atomic uint64_t *reads)
{
	char buf[512];
	const char *p;
	int ret;

	ret = proc_read(tid, "status", buf, sizeof(buf), reads);
	if (ret < 0)
		return ret;
	/* Name is escaped, so the first "\nTgid:" is the real one. */
	p = strstr(buf, "\nTgid:");
	if (p == NULL)
		return -EIO;
	*tgid = (pid_t)strtol(p + 6, NULL, 10);
	return *tgid > 0 ? 0 : -EIO;
}

/*
 * Returns true when the thread group pid, started at start (if known), has
 * certainly exited: /proc has no such process, a different one, or a zombie
 * leader with no other thread.  When in doubt it answers false.
 */
static bool proc_gone(pid_t pid, uint64_t start, _Atomic uint64_t *reads)
{
	struct pstat st;
	int ret = proc_stat(pid, &st, reads);

	if (ret == -ESRCH)
		return true;
	if (ret < 0)
		return false;
	if (start != START_UNKNOWN && st.start != start)
		return true;
	return (st.state == 'Z' || st.state == 'X') && st.nthreads <= 1;
}

/* ---- map primitives (inside STM bodies) ------------------------------- */

/* Finds key in the chain at head; *linkp is the tvar pointing to it. */
static int chain_find(struct stm_tx *tx, struct stm_tvar *head, pid_t key,
		      struct ent **out, struct stm_tvar **linkp)
{
	struct stm_tvar *link = head;
	struct ent *e;

	*out = NULL;
	for (;;) {
		STM_LOADP(tx, link, &e);
		if (e == NULL || e->key == key)
			break;
		link = &e->next;
	}
	*out = e;
	if (linkp != NULL)
		*linkp = link;
	return 0;
}

/* Unlinks e, which link points to, and retires it. */
static int chain_unlink(struct stm_tx *tx, struct stm_tvar *link, struct ent *e)
{
	struct ent *next;

	STM_LOADP(tx, &e->next, &next);
	stm_write(tx, link, (uintptr_t)next);
	stm_retire(tx, e, NULL);
	return 0;
}

/* Pushes the private entry e onto the chain at head. */
static int chain_push(struct stm_tx *tx, struct stm_tvar *head, struct ent *e)
{
	struct ent *first;

	STM_LOADP(tx, head, &first);
	stm_tvar_init(&e->next, (uintptr_t)first);
	stm_write(tx, head, (uintptr_t)e);
	return 0;
}

static int prec_find(struct stm_tx *tx, struct membership *m, pid_t pid,
		     struct prec **out, struct stm_tvar **linkp)
{
	struct ent *e;
	int ret = chain_find(tx, &m->procs[bucket_of(pid)], pid, &e, linkp);

	*out = (struct prec *)e;
	return ret;
}

static void count_prec(const struct prec *r, struct delta *d, int sign)
{
	if (r->tx != NULL)
		d->members += sign;
	else
		d->nonmembers += sign;
}

static int prec_unlink(struct stm_tx *tx, struct stm_tvar *link, struct prec *r,
		       struct delta *d)
{
	count_prec(r, d, -1);
	return chain_unlink(tx, link, &r->e);
}

static int prec_drop(struct stm_tx *tx, struct membership *m, pid_t pid,
		     struct delta *d)
{
	struct stm_tvar *link;
	struct prec *r;
	int ret = prec_find(tx, m, pid, &r, &link);

	if (ret != 0 || r == NULL)
		return ret;
	return prec_unlink(tx, link, r, d);
}

/* Replaces pid's record (if any) with a new one. */
static int prec_put(struct stm_tx *tx, struct membership *m, pid_t pid,
		    uint64_t start, uint64_t epoch, struct mtx *x, uint64_t gen,
		    bool leader_gone, struct delta *d)
{
	struct prec *r;
	int ret = prec_drop(tx, m, pid, d);

	if (ret != 0)
		return ret;
	r = stm_alloc(tx, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->e.key = pid;
	r->serial = atomic_fetch_add(&m->serial, 1) + 1;
	r->start = start;
	r->epoch = epoch;
	r->tx = x;
	r->gen = x != NULL ? 0 : gen;
	r->leader_gone = leader_gone;
	count_prec(r, d, 1);
	return chain_push(tx, &m->procs[bucket_of(pid)], &r->e);
}

static int thr_drop(struct stm_tx *tx, struct membership *m, pid_t tid,
		    struct delta *d)
{
	struct stm_tvar *link;
	struct ent *e;
	int ret = chain_find(tx, &m->threads[bucket_of(tid)], tid, &e, &link);

	if (ret != 0 || e == NULL)
		return ret;
	d->threads--;
	return chain_unlink(tx, link, e);
}

static int thr_put(struct stm_tx *tx, struct membership *m, pid_t tid,
		   pid_t tgid, uint64_t epoch, struct delta *d)
{
	struct thr *t;
	int ret = thr_drop(tx, m, tid, d);

	if (ret != 0)
		return ret;
	t = stm_alloc(tx, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->e.key = tid;
	t->tgid = tgid;
	t->epoch = epoch;
	d->threads++;
	return chain_push(tx, &m->threads[bucket_of(tid)], &t->e);
}

static int mtx_find(struct stm_tx *tx, struct membership *m, uint64_t txid,
		    struct mtx **out, struct stm_tvar **linkp)
{
	struct stm_tvar *link = &m->txs;
	struct mtx *x;

	*out = NULL;
	for (;;) {
		STM_LOADP(tx, link, &x);
		if (x == NULL || x->txid == txid)
			break;
		link = &x->next;
	}
	*out = x;
	if (linkp != NULL)
		*linkp = link;
	return 0;
}

/*
 * Does record r describe the process (pid, start)?  Start times decide when
 * both are known; a record made from an event without one is trusted by
 * pid only in connector mode and in the current epoch (invariant 4).
 */
static bool prec_matches(const struct prec *r, uint64_t start, bool conn,
			 uint64_t epoch)
{
	if (r->start == start)
		return true;
	return conn && r->start == START_UNKNOWN && r->epoch == epoch;
}

/* A record that is right but should be re-stamped with the epoch/start. */
static bool prec_stale(const struct prec *r, uint64_t epoch)
{
	return r->epoch != epoch || r->start == START_UNKNOWN;
}

static int epoch_body(struct stm_tx *tx, void *arg)
{
	struct membership *m = arg;
	uintptr_t v;

	STM_LOAD(tx, &m->epoch, &v);
	stm_write(tx, &m->epoch, v + 1);
	return 0;
}

/* Makes every cached entry untrusted until it is re-validated. */
static void distrust(struct membership *m)
{
	(void)stm_atomically(epoch_body, m, 0);
}

/* ---- sweeping whole maps ---------------------------------------------- */

enum sweep_kind {
	SWEEP_LOST,	  /* events were lost: see (R2) */
	SWEEP_NONMEMBERS, /* too many non-member records */
	SWEEP_TX	  /* the transaction txid is released */
};

struct sweep_args {
	struct membership *m;
	enum sweep_kind kind;
	uint64_t txid;
	size_t b;
	struct delta d;
};

static bool sweep_drops(const struct sweep_args *a, const struct prec *r)
{
	switch (a->kind) {
	case SWEEP_LOST:
		return r->tx == NULL || r->start == START_UNKNOWN;
	case SWEEP_NONMEMBERS:
		return r->tx == NULL;
	case SWEEP_TX:
		return r->tx != NULL && r->tx->txid == a->txid;
	}
	return false;
}

static int sweep_body(struct stm_tx *tx, void *arg)
{
	struct sweep_args *a = arg;
	struct stm_tvar *link;
	struct ent *e;
	int ret;

	a->d = (struct delta){ 0 };
	if (a->kind == SWEEP_LOST) {
		link = &a->m->threads[a->b];
		for (;;) {
			STM_LOADP(tx, link, &e);
			if (e == NULL)
				break;
			a->d.threads--;
			ret = chain_unlink(tx, link, e);
			if (ret != 0)
				return ret;
		}
	}
	link = &a->m->procs[a->b];
	for (;;) {
		STM_LOADP(tx, link, &e);
		if (e == NULL)
			break;
		if (!sweep_drops(a, (struct prec *)e)) {
			link = &e->next;
			continue;
		}
		ret = prec_unlink(tx, link, (struct prec *)e, &a->d);
		if (ret != 0)
			return ret;
	}
	return 0;
}

/* Sweeps every bucket, one STM transaction each. */
static void sweep(struct membership *m, enum sweep_kind kind, uint64_t txid)
{
	struct sweep_args a = { .m = m, .kind = kind, .txid = txid };

	for (a.b = 0; a.b < MB_BUCKETS; a.b++) {
		if (stm_atomically(sweep_body, &a, 0) == 0)
			delta_apply(m, &a.d);
	}
}

/* Drops all non-member records when there are too many (a cache). */
static void trim_nonmembers(struct membership *m)
{
	if (atomic_load_explicit(&m->c.nonmembers, memory_order_relaxed) <=
	    NONMEMBER_MAX)
		return;
	if (atomic_exchange(&m->sweeping, true))
		return;
	sweep(m, SWEEP_NONMEMBERS, 0);
	atomic_store(&m->sweeping, false);
}

/* ---- walking the ancestry --------------------------------------------- */

struct hop {
	pid_t pid;
	uint64_t start;
	uint64_t fgen; /* fgen of pid's bucket before /proc was read */
};

/* One classification's view of the world, and what it concluded. */
struct walk {
	struct membership *m;
	_Atomic uint64_t *reads; /* where /proc reads are counted */
	bool conn;		 /* connector mode when the walk began */
	pid_t tid;
	uint64_t tid_fgen;
	uint64_t epoch, gen; /* sampled before the first /proc read */
	pid_t tgid;
	struct hop hops[WALK_HOPS];
	int nhops;	/* remembered hops, hops[0] is the process */
	int decided;	/* hop whose record decided, or -1: none did */
	bool refresh;	/* that record should be re-stamped */
	uint64_t txid;	/* the answer */
	struct delta d; /* of the publishing transaction */
};

struct snap_args {
	struct membership *m;
	pid_t pid;
	uint64_t epoch, gen, fgen;
};

static int snap_body(struct stm_tx *tx, void *arg)
{
	struct snap_args *a = arg;
	uintptr_t v;

	STM_LOAD(tx, &a->m->epoch, &v);
	a->epoch = v;
	STM_LOAD(tx, &a->m->bind_gen, &v);
	a->gen = v;
	STM_LOAD(tx, &a->m->fgen[bucket_of(a->pid)], &v);
	a->fgen = v;
	return 0;
}

static int fgen_snap(struct membership *m, pid_t pid, uint64_t *out)
{
	struct snap_args a = { .m = m, .pid = pid };
	int ret = stm_atomically(snap_body, &a, STM_RO);

	*out = a.fgen;
	return ret;
}

enum verdict { V_NONE, V_MEMBER, V_NONMEMBER };

struct look_args {
	struct membership *m;
	pid_t pid;
	uint64_t start;
	bool conn;
	uint64_t epoch, gen;
	enum verdict v;
	uint64_t txid;
	bool stale;
};

/* What does pid's record say about the process (pid, start)? */
static int look_body(struct stm_tx *tx, void *arg)
{
	struct look_args *a = arg;
	struct prec *r;
	uintptr_t live;
	int ret;

	a->v = V_NONE;
	a->txid = 0;
	ret = prec_find(tx, a->m, a->pid, &r, NULL);
	if (ret != 0 || r == NULL)
		return ret;
	if (!prec_matches(r, a->start, a->conn, a->epoch))
		return 0;
	a->stale = prec_stale(r, a->epoch);
	if (r->tx != NULL) {
		STM_LOAD(tx, &r->tx->live, &live);
		if (live) {
			a->v = V_MEMBER;
			a->txid = r->tx->txid;
		}
	} else if (r->gen == a->gen) {
		a->v = V_NONMEMBER;
	}
	return 0;
}

/*
 * Resolves w->tid to its process and walks up the ppid chain until a record
 * decides or the top is reached.  Returns 0, -ESRCH if the thread is gone,
 * -EAGAIN if the chain changed under the walk (R4), or another -errno.
 */
static int walk(struct walk *w)
{
	struct membership *m = w->m;
	struct snap_args sa = { .m = m, .pid = w->tid };
	struct look_args la;
	struct pstat st;
	struct hop cur;
	pid_t ppid;
	int ret;

	ret = stm_atomically(snap_body, &sa, STM_RO);
	if (ret < 0)
		return ret;
	w->epoch = sa.epoch;
	w->gen = sa.gen;
	w->tid_fgen = sa.fgen;
	ret = proc_stat(w->tid, &st, w->reads);
	if (ret < 0)
		return ret;
	if (st.exit_signal == -1) {
		/* Not its group's leader: find the process. */
		ret = proc_tgid(w->tid, &w->tgid, w->reads);
		if (ret < 0)
			return ret;
		ret = fgen_snap(m, w->tgid, &cur.fgen);
		if (ret < 0)
			return ret;
		ret = proc_stat(w->tgid, &st, w->reads);
		if (ret < 0)
			return ret;
	} else {
		w->tgid = w->tid;
		cur.fgen = w->tid_fgen;
	}
	cur.pid = w->tgid;
	cur.start = st.start;
	ppid = st.ppid;
	w->nhops = 0;
	w->decided = -1;
	w->refresh = false;
	w->txid = 0;
	for (int depth = 0;; depth++) {
		struct pstat pst;
		uint64_t fg;

		if (w->nhops < WALK_HOPS)
			w->hops[w->nhops++] = cur;
		la = (struct look_args){ .m = m,
					 .pid = cur.pid,
					 .start = cur.start,
					 .conn = w->conn,
					 .epoch = w->epoch,
					 .gen = w->gen };
		ret = stm_atomically(look_body, &la, STM_RO);
		if (ret < 0)
			return ret;
		if (la.v != V_NONE) {
			w->decided = depth;
			w->refresh = la.stale;
			w->txid = la.txid;
			return 0;
		}
		if (cur.pid == 1 || ppid <= 0)
			return 0; /* the top: nobody above is a member */
		if (depth + 1 >= WALK_MAX)
			return -ELOOP;
		ret = fgen_snap(m, ppid, &fg);
		if (ret < 0)
			return ret;
		ret = proc_stat(ppid, &pst, w->reads);
		if (ret == -ESRCH || (ret == 0 && pst.start > cur.start))
			return -EAGAIN; /* the parent exited: (R4) */
		if (ret < 0)
			return ret;
		cur =
		    (struct hop){ .pid = ppid, .start = pst.start, .fgen = fg };
		ppid = pst.ppid;
	}
}

/* How many hops, from hops[0], publish_body writes. */
static int walk_writes(const struct walk *w)
{
	int n = w->decided < 0 ? w->nhops : w->decided + (w->refresh ? 1 : 0);

	return n < w->nhops ? n : w->nhops;
}

/* Publishes a walk's conclusions, if nothing has moved since (R3, R5). */
static int publish_body(struct stm_tx *tx, void *arg)
{
	struct walk *w = arg;
	struct membership *m = w->m;
	struct mtx *x = NULL;
	uintptr_t v;
	int n = walk_writes(w);
	int ret;

	w->d = (struct delta){ 0 };
	STM_LOAD(tx, &m->epoch, &v);
	if (v != w->epoch)
		return -EAGAIN;
	if (w->txid != 0) {
		ret = mtx_find(tx, m, w->txid, &x, NULL);
		if (ret != 0)
			return ret;
		if (x == NULL)
			return -EAGAIN;
		STM_LOAD(tx, &x->live, &v);
		if (!v)
			return -EAGAIN;
	} else {
		STM_LOAD(tx, &m->bind_gen, &v);
		if (v != w->gen)
			return -EAGAIN;
	}
	for (int i = 0; i < n; i++) {
		const struct hop *h = &w->hops[i];
		bool gone = false;
		struct prec *r;

		if (w->conn) {
			STM_LOAD(tx, &m->fgen[bucket_of(h->pid)], &v);
			if (v != h->fgen)
				return -EAGAIN;
		}
		ret = prec_find(tx, m, h->pid, &r, NULL);
		if (ret != 0)
			return ret;
		if (r != NULL && r->tx != NULL &&
		    prec_matches(r, h->start, w->conn, w->epoch)) {
			STM_LOAD(tx, &r->tx->live, &v);
			if (v && r->tx != x)
				return -EAGAIN; /* it became a member meanwhile */
			if (v && !prec_stale(r, w->epoch))
				continue;
			gone = v && r->leader_gone;
		}
		ret = prec_put(tx, m, h->pid, h->start, w->epoch, x, w->gen,
			       gone, &w->d);
		if (ret != 0)
			return ret;
	}
	if (w->conn) {
		STM_LOAD(tx, &m->fgen[bucket_of(w->tid)], &v);
		if (v != w->tid_fgen)
			return -EAGAIN;
		return thr_put(tx, m, w->tid, w->tgid, w->epoch, &w->d);
	}
	return 0;
}

/*
 * Classifies w->tid by reading /proc, and caches what it learned.  Returns
 * 0 with the answer in w->txid and the process in w->tgid (0 if the thread
 * does not exist: not a member), or -errno if membership cannot be told.
 */
static int slow_classify(struct walk *w)
{
	struct membership *m = w->m;
	int ret = -EAGAIN;

	for (int tries = 0; tries < SLOW_TRIES; tries++) {
		w->conn = atomic_load(&m->conn);
		ret = walk(w);
		if (ret == -EAGAIN)
			continue;
		if (ret == -ESRCH) {
			w->txid = 0;
			w->tgid = 0;
			return 0;
		}
		if (ret < 0)
			break;
		if (walk_writes(w) == 0 && !w->conn)
			return 0; /* nothing new to remember */
		ret = stm_atomically(publish_body, w, 0);
		if (ret == 0) {
			delta_apply(m, &w->d);
			trim_nonmembers(m);
			return 0;
		}
		if (ret != -EAGAIN)
			return 0; /* right, just not cached */
	}
	log_warn("membership: cannot classify thread %d: %s", (int)w->tid,
		 strerror(-ret));
	return ret;
}

/* ---- the hot path ----------------------------------------------------- */

/* Waits until seq reaches target; -EPIPE if the listener has stopped. */
static int wait_seq(struct membership *m, uint64_t target)
{
	struct timespec t0, t1;

	for (unsigned i = 0;; i++) {
		if (atomic_load(&m->seq) >= target)
			return 0;
		if (!atomic_load(&m->conn))
			return -EPIPE;
		if (i % 64 == 0) {
			clock_gettime(CLOCK_MONOTONIC, i == 0 ? &t0 : &t1);
			if (i != 0 &&
			    (t1.tv_sec - t0.tv_sec) * 1000 +
				    (t1.tv_nsec - t0.tv_nsec) / 1000000 >=
				SYNC_TIMEOUT_MS) {
				COUNT(m, sync_timeouts);
				return -ETIMEDOUT;
			}
		}
		sched_yield();
	}
}

/*
 * Returns 0 once every event the kernel queued before the call has been
 * applied (R1, R2), or -errno if that cannot be known.
 */
static int sync_events(struct membership *m)
{
	struct pollfd p = { .fd = m->sock, .events = POLLIN };
	uint64_t s0 = atomic_load(&m->seq), s;
	int n, ret = 0;

	do
		n = poll(&p, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0) {
		s = atomic_load(&m->seq);
		if (s % 2 != 0) {
			COUNT(m, sync_waits);
			ret = wait_seq(m, s + 1);
		}
	} else {
		COUNT(m, sync_waits);
		ret = wait_seq(m, s0 + (s0 % 2 == 0 ? 2 : 3));
	}
	/* A batch cut short by a failure does not count (R7). */
	if (ret == 0 && !atomic_load(&m->conn))
		ret = -EPIPE;
	return ret;
}

struct hit_args {
	struct membership *m;
	pid_t tid;
	bool hit;
	uint64_t txid;
	pid_t tgid;
	uint64_t start;
};

static int hit_body(struct stm_tx *tx, void *arg)
{
	struct hit_args *a = arg;
	struct membership *m = a->m;
	uintptr_t epoch, v;
	struct ent *e;
	struct thr *t;
	struct prec *r;
	int ret;

	a->hit = false;
	STM_LOAD(tx, &m->epoch, &epoch);
	ret = chain_find(tx, &m->threads[bucket_of(a->tid)], a->tid, &e, NULL);
	t = (struct thr *)e;
	if (ret != 0 || t == NULL || t->epoch != epoch)
		return ret;
	ret = prec_find(tx, m, t->tgid, &r, NULL);
	if (ret != 0 || r == NULL || r->epoch != epoch)
		return ret;
	a->tgid = t->tgid;
	a->start = r->start;
	if (r->tx != NULL) {
		STM_LOAD(tx, &r->tx->live, &v);
		if (!v)
			return 0;
		a->txid = r->tx->txid;
		a->hit = true;
		return 0;
	}
	STM_LOAD(tx, &m->bind_gen, &v);
	if (r->gen != v)
		return 0;
	a->txid = 0;
	a->hit = true;
	return 0;
}

int membership_classify(struct membership *m, pid_t tid, uint64_t *txid)
{
	struct hit_args h = { .m = m, .tid = tid };
	struct walk w = { .m = m, .reads = &m->c.proc_reads, .tid = tid };
	int ret;

	*txid = 0;
	if (tid <= 0)
		return 0;
	COUNT(m, classified);
	if (atomic_load(&m->conn) && sync_events(m) == 0 &&
	    stm_atomically(hit_body, &h, STM_RO) == 0 && h.hit) {
		*txid = h.txid;
		if (++t_hits % AUDIT_EVERY != 0) {
			COUNT(m, hits);
			return 0;
		}
		/* Backstop against events the kernel dropped silently. */
		COUNT(m, audits);
		w.reads = &m->c.audit_reads;
		if (slow_classify(&w) < 0 || w.tgid == 0)
			return 0; /* cannot check now: trust the cache */
		if (w.tgid != h.tgid ||
		    (h.start != START_UNKNOWN && h.start != w.hops[0].start)) {
			COUNT(m, audit_mismatches);
			log_warn("membership: cached thread %d -> process %d "
				 "disagrees with /proc (process %d); "
				 "distrusting the cache",
				 (int)tid, (int)h.tgid, (int)w.tgid);
			distrust(m);
		}
		*txid = w.txid;
		return 0;
	}
	COUNT(m, misses);
	ret = slow_classify(&w);
	if (ret == 0)
		*txid = w.txid;
	return ret;
}

/* ---- bind, release, count --------------------------------------------- */

struct bind_args {
	struct walk *w;
	uint64_t txid;
	struct delta d;
};

static int bind_body(struct stm_tx *tx, void *arg)
{
	struct bind_args *a = arg;
	struct walk *w = a->w;
	struct membership *m = w->m;
	const struct hop *h = &w->hops[0];
	struct stm_tvar *link;
	struct mtx *x;
	struct prec *r;
	uintptr_t v;
	bool gone = false;
	int ret;

	a->d = (struct delta){ 0 };
	STM_LOAD(tx, &m->epoch, &v);
	if (v != w->epoch)
		return -EAGAIN;
	STM_LOAD(tx, &m->bind_gen, &v);
	if (v != w->gen)
		return -EAGAIN; /* another bind: walk again (R5) */
	stm_write(tx, &m->bind_gen, v + 1);
	if (w->conn) {
		STM_LOAD(tx, &m->fgen[bucket_of(h->pid)], &v);
		if (v != h->fgen)
			return -EAGAIN;
	}
	ret = mtx_find(tx, m, a->txid, &x, &link);
	if (ret != 0)
		return ret;
	if (x != NULL) {
		STM_LOAD(tx, &x->live, &v);
		if (!v)
			return -EINVAL; /* its release is under way */
	} else {
		struct mtx *first;

		x = stm_alloc(tx, sizeof(*x));
		if (x == NULL)
			return -ENOMEM;
		x->txid = a->txid;
		stm_tvar_init(&x->live, 1);
		STM_LOADP(tx, &m->txs, &first);
		stm_tvar_init(&x->next, (uintptr_t)first);
		stm_write(tx, &m->txs, (uintptr_t)x);
	}
	ret = prec_find(tx, m, h->pid, &r, NULL);
	if (ret != 0)
		return ret;
	if (r != NULL && r->tx != NULL &&
	    prec_matches(r, h->start, w->conn, w->epoch)) {
		STM_LOAD(tx, &r->tx->live, &v);
		if (v && r->tx != x)
			return -EBUSY;
		gone = v && r->leader_gone;
	}
	return prec_put(tx, m, h->pid, h->start, w->epoch, x, 0, gone, &a->d);
}

int membership_bind(struct membership *m, pid_t pid, uint64_t txid)
{
	struct walk w = { .m = m, .reads = &m->c.proc_reads, .tid = pid };
	struct bind_args a = { .w = &w, .txid = txid };
	int ret = -EAGAIN;

	if (txid == 0)
		return -EINVAL;
	if (pid <= 0)
		return -ESRCH;
	for (int tries = 0; tries < BIND_TRIES; tries++) {
		w.conn = atomic_load(&m->conn);
		if (w.conn)
			(void)sync_events(m);
		ret = walk(&w);
		if (ret == -EAGAIN)
			continue;
		if (ret < 0)
			return ret;
		if (w.txid != 0 && w.txid != txid)
			return -EBUSY;
		ret = stm_atomically(bind_body, &a, 0);
		if (ret == -EAGAIN)
			continue;
		if (ret == 0)
			delta_apply(m, &a.d);
		return ret;
	}
	return ret;
}

struct release_args {
	struct membership *m;
	uint64_t txid;
	bool found;
};

static int release_mark_body(struct stm_tx *tx, void *arg)
{
	struct release_args *a = arg;
	struct mtx *x;
	int ret = mtx_find(tx, a->m, a->txid, &x, NULL);

	if (ret != 0)
		return ret;
	a->found = x != NULL;
	if (x != NULL)
		stm_write(tx, &x->live, 0);
	return 0;
}

static int release_unlink_body(struct stm_tx *tx, void *arg)
{
	struct release_args *a = arg;
	struct stm_tvar *link;
	struct mtx *x, *next;
	uintptr_t live;
	int ret = mtx_find(tx, a->m, a->txid, &x, &link);

	if (ret != 0 || x == NULL)
		return ret;
	STM_LOAD(tx, &x->live, &live);
	if (live)
		return 0; /* bound anew after an earlier release finished */
	STM_LOADP(tx, &x->next, &next);
	stm_write(tx, link, (uintptr_t)next);
	stm_retire(tx, x, NULL);
	return 0;
}

void membership_release(struct membership *m, uint64_t txid)
{
	struct release_args a = { .m = m, .txid = txid };

	if (txid == 0 || stm_atomically(release_mark_body, &a, 0) != 0 ||
	    !a.found)
		return;
	sweep(m, SWEEP_TX, txid);
	(void)stm_atomically(release_unlink_body, &a, 0);
}

struct found {
	pid_t pid;
	uint64_t start;
	uint64_t serial;
};

struct collect_args {
	struct membership *m;
	uint64_t txid;
	size_t b;
	struct found *out;
	size_t n, cap;
};

/* Lists the live members of txid in bucket b. */
static int collect_body(struct stm_tx *tx, void *arg)
{
	struct collect_args *a = arg;
	struct stm_tvar *link = &a->m->procs[a->b];
	struct prec *r;
	uintptr_t live;

	a->n = 0;
	for (;;) {
		STM_LOADP(tx, link, &r);
		if (r == NULL)
			return 0;
		link = &r->e.next;
		if (r->tx == NULL || r->tx->txid != a->txid)
			continue;
		STM_LOAD(tx, &r->tx->live, &live);
		if (!live)
			continue;
		if (a->n == a->cap)
			return -ENOSPC;
		a->out[a->n++] =
		    (struct found){ r->e.key, r->start, r->serial };
	}
}

struct drop_args {
	struct membership *m;
	pid_t pid;
	uint64_t serial;
	struct delta d;
};

/* Drops pid's record if it is still the one with this serial. */
static int drop_body(struct stm_tx *tx, void *arg)
{
	struct drop_args *a = arg;
	struct stm_tvar *link;
	struct prec *r;
	int ret = prec_find(tx, a->m, a->pid, &r, &link);

	a->d = (struct delta){ 0 };
	if (ret != 0 || r == NULL || r->serial != a->serial)
		return ret;
	return prec_unlink(tx, link, r, &a->d);
}

size_t membership_count(struct membership *m, uint64_t txid)
{
	struct collect_args a = { .m = m, .txid = txid, .cap = 16 };
	size_t live = 0;
	int ret;

	if (txid == 0)
		return 0;
	a.out = malloc(a.cap * sizeof(*a.out));
	if (a.out == NULL)
		return 0;
	for (a.b = 0; a.b < MB_BUCKETS;) {
		ret = stm_atomically(collect_body, &a, STM_RO);
		if (ret == -ENOSPC) {
			struct found *bigger =
			    realloc(a.out, 2 * a.cap * sizeof(*a.out));
			if (bigger == NULL)
				break;
			a.out = bigger;
			a.cap *= 2;
			continue; /* the same bucket again */
		}
		a.b++;
		for (size_t i = 0; ret == 0 && i < a.n; i++) {
			struct drop_args d = { .m = m,
					       .pid = a.out[i].pid,
					       .serial = a.out[i].serial };

			if (!proc_gone(a.out[i].pid, a.out[i].start,
				       &m->c.proc_reads)) {
				live++;
				continue;
			}
			if (stm_atomically(drop_body, &d, 0) == 0)
				delta_apply(m, &d.d);
		}
	}
	free(a.out);
	return live;
}

/* ---- the event listener ----------------------------------------------- */

struct fork_args {
	struct membership *m;
	pid_t ptgid, cpid, ctgid;
	bool parent_member;    /* fork_peek_body: the parent is a member */
	bool parent_stale;     /* ... from an older epoch */
	uint64_t parent_start; /* ... with this start time */
	uint64_t parent_serial;
	bool parent_ok; /* the stale parent was re-validated */
	uint64_t start; /* the child's start time, or START_UNKNOWN */
	struct delta d;
};

static int fork_peek_body(struct stm_tx *tx, void *arg)
{
	struct fork_args *a = arg;
	struct prec *r;
	uintptr_t v;
	int ret;

	a->parent_member = false;
	ret = prec_find(tx, a->m, a->ptgid, &r, NULL);
	if (ret != 0 || r == NULL || r->tx == NULL)
		return ret;
	STM_LOAD(tx, &r->tx->live, &v);
	if (!v)
		return 0;
	a->parent_member = true;
	a->parent_start = r->start;
	a->parent_serial = r->serial;
	STM_LOAD(tx, &a->m->epoch, &v);
	a->parent_stale = r->epoch != v;
	return 0;
}

static int fork_body(struct stm_tx *tx, void *arg)
{
	struct fork_args *a = arg;
	struct membership *m = a->m;
	struct stm_tvar *fg = &m->fgen[bucket_of(a->cpid)];
	uintptr_t v, epoch, gen;
	struct prec *r;
	int ret;

	a->d = (struct delta){ 0 };
	STM_LOAD(tx, fg, &v);
	stm_write(tx, fg, v + 1);
	/* The id was free a moment ago: whatever we hold for it is stale. */
	ret = thr_drop(tx, m, a->cpid, &a->d);
	if (ret == 0)
		ret = prec_drop(tx, m, a->cpid, &a->d);
	if (ret != 0)
		return ret;
	STM_LOAD(tx, &m->epoch, &epoch);
	if (a->cpid != a->ctgid) {
		/* A new thread of an existing process. */
		ret = prec_find(tx, m, a->ctgid, &r, NULL);
		if (ret != 0 || r == NULL || r->epoch != epoch)
			return ret;
		return thr_put(tx, m, a->cpid, a->ctgid, epoch, &a->d);
	}
	ret = prec_find(tx, m, a->ptgid, &r, NULL);
	if (ret != 0 || r == NULL)
		return ret;
	if (r->tx != NULL) {
		STM_LOAD(tx, &r->tx->live, &v);
		if (!v)
			return 0;
		if (r->epoch != epoch &&
		    !(a->parent_ok && r->serial == a->parent_serial))
			return 0;
		ret = prec_put(tx, m, a->cpid, a->start, epoch, r->tx, 0, false,
			       &a->d);
	} else {
		STM_LOAD(tx, &m->bind_gen, &gen);
		if (r->epoch != epoch || r->gen != gen)
			return 0;
		ret = prec_put(tx, m, a->cpid, START_UNKNOWN, epoch, NULL, gen,
			       false, &a->d);
	}
	if (ret != 0)
		return ret;
	return thr_put(tx, m, a->cpid, a->cpid, epoch, &a->d);
}

static void lost_events(struct membership *m, const char *why);

static void on_fork(struct membership *m, pid_t ptgid, pid_t cpid, pid_t ctgid)
{
	struct fork_args a = { .m = m,
			       .ptgid = ptgid,
			       .cpid = cpid,
			       .ctgid = ctgid,
			       .start = START_UNKNOWN };
	struct pstat st;

	if (cpid == ctgid && stm_atomically(fork_peek_body, &a, STM_RO) == 0 &&
	    a.parent_member) {
		/* I/O before the transaction: see invariant (6). */
		if (a.parent_stale && a.parent_start != START_UNKNOWN &&
		    proc_stat(ptgid, &st, &m->c.listener_reads) == 0 &&
		    st.start == a.parent_start)
			a.parent_ok = true;
		if (proc_stat(cpid, &st, &m->c.listener_reads) == 0)
			a.start = st.start;
	}
	if (stm_atomically(fork_body, &a, 0) != 0) {
		lost_events(m, "cannot record a fork event");
		return;
	}
	delta_apply(m, &a.d);
	trim_nonmembers(m);
}

struct exit_args {
	struct membership *m;
	pid_t pid, tgid;
	bool check; /* exit_body: ask /proc whether the group is gone */
	uint64_t serial, start;
	bool gone;
	struct delta d;
};

static int exit_body(struct stm_tx *tx, void *arg)
{
	struct exit_args *a = arg;
	struct stm_tvar *link;
	struct prec *r;
	int ret;

	a->d = (struct delta){ 0 };
	a->check = false;
	ret = thr_drop(tx, a->m, a->pid, &a->d);
	if (ret == 0)
		ret = prec_find(tx, a->m, a->tgid, &r, &link);
	if (ret != 0 || r == NULL)
		return ret;
	if (a->pid == a->tgid && r->tx == NULL)
		return prec_unlink(tx, link, r, &a->d);
	if (r->tx == NULL || (a->pid != a->tgid && !r->leader_gone))
		return 0;
	a->check = true;
	a->serial = r->serial;
	a->start = r->start;
	return 0;
}

static int exit_fix_body(struct stm_tx *tx, void *arg)
{
	struct exit_args *a = arg;
	struct stm_tvar *link;
	struct prec *r;
	uintptr_t live;
	int ret;

	a->d = (struct delta){ 0 };
	ret = prec_find(tx, a->m, a->tgid, &r, &link);
	if (ret != 0 || r == NULL || r->serial != a->serial)
		return ret;
	if (a->gone)
		return prec_unlink(tx, link, r, &a->d);
	if (a->pid != a->tgid || r->leader_gone)
		return 0;
	STM_LOAD(tx, &r->tx->live, &live);
	if (!live)
		return 0; /* released: invariant (2) */
	return prec_put(tx, a->m, a->tgid, r->start, r->epoch, r->tx, 0, true,
			&a->d);
}

static void on_exit_event(struct membership *m, pid_t pid, pid_t tgid)
{
	struct exit_args a = { .m = m, .pid = pid, .tgid = tgid };

	if (stm_atomically(exit_body, &a, 0) != 0) {
		lost_events(m, "cannot record an exit event");
		return;
	}
	delta_apply(m, &a.d);
	if (!a.check)
		return;
	a.gone = proc_gone(tgid, a.start, &m->c.listener_reads);
	if (stm_atomically(exit_fix_body, &a, 0) == 0)
		delta_apply(m, &a.d);
}

/* Recovers from lost events: (R2). */
static void lost_events(struct membership *m, const char *why)
{
	COUNT(m, overflows);
	log_warn("membership: %s; dropping cached process information", why);
	distrust(m);
	sweep(m, SWEEP_LOST, 0);
}

static void handle_datagram(struct membership *m, const struct mmsghdr *mh,
			    const char *data, const struct sockaddr_nl *from,
			    bool *ready)
{
	int len = (int)mh->msg_len;

	if (from->nl_pid != 0)
		return; /* only the kernel speaks for processes */
	if (mh->msg_hdr.msg_flags & MSG_TRUNC) {
		lost_events(m, "a process event was truncated");
		return;
	}
	for (const struct nlmsghdr *nh = (const void *)data; NLMSG_OK(nh, len);
	     nh = NLMSG_NEXT(nh, len)) {
		struct proc_event ev;
		struct cn_msg cn;
		size_t n;

		if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(cn)))
			continue;
		/* The event is not 8-byte aligned in the datagram: copy. */
		memcpy(&cn, NLMSG_DATA(nh), sizeof(cn));
		if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC)
			continue;
		n = nh->nlmsg_len - NLMSG_LENGTH(sizeof(cn));
		if (cn.len < n)
			n = cn.len;
		if (n < offsetof(struct proc_event, event_data) +
			    sizeof(ev.event_data.fork))
			continue;
		memset(&ev, 0, sizeof(ev));
		memcpy(&ev, (const char *)NLMSG_DATA(nh) + sizeof(cn),
		       n < sizeof(ev) ? n : sizeof(ev));
		if (ev.what == PROC_EVENT_FORK) {
			const struct fork_proc_event *f = &ev.event_data.fork;

			on_fork(m, f->parent_tgid, f->child_pid, f->child_tgid);
			COUNT(m, events);
			if (f->child_pid == m->ltid &&
			    f->child_tgid == getpid())
				*ready = true;
		} else if (ev.what == PROC_EVENT_EXIT) {
			const struct exit_proc_event *x = &ev.event_data.exit;

			on_exit_event(m, x->process_pid, x->process_tgid);
			COUNT(m, events);
		}
	}
}

/* Blocks while the test hook asks the listener to stall. */
static void listener_check_stall(struct membership *m)
{
	pthread_mutex_lock(&m->lock);
	if (m->stall_req) {
		m->stalled = true;
		pthread_cond_broadcast(&m->cond);
		while (m->stall_req && !atomic_load(&m->stop))
			pthread_cond_wait(&m->cond, &m->lock);
		m->stalled = false;
	}
	pthread_mutex_unlock(&m->lock);
}

/*
 * Applies every queued event, until a read finds the queue empty: one
 * batch, during which seq is odd (invariant 5).
 */
static int drain(struct membership *m, bool *ready)
{
	struct lbuf *b = m->lbuf;
	int ret = 0;

	atomic_fetch_add(&m->seq, 1);
	while (!atomic_load(&m->stop)) {
		int n;

		listener_check_stall(m);
		for (int i = 0; i < RECV_BATCH; i++) {
			b->iov[i] = (struct iovec){ b->data[i], RECV_SIZE };
			b->msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &b->from[i],
				.msg_namelen = sizeof(b->from[i]),
				.msg_iov = &b->iov[i],
				.msg_iovlen = 1,
			};
		}
		n = recvmmsg(m->sock, b->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == ENOBUFS) {
				lost_events(m, "process events were lost");
				continue;
			}
			/*
			 * Fatal.  Clear conn before the batch ends, so that
			 * nobody takes the end for "all applied" (R7).
			 */
			ret = -errno;
			atomic_store(&m->conn, false);
			break;
		}
		for (int i = 0; i < n; i++)
			handle_datagram(m, &b->msgs[i], b->data[i], &b->from[i],
					ready);
	}
	atomic_fetch_add(&m->seq, 1);
	return ret;
}

static void listener_set_state(struct membership *m, enum lstate s)
{
	pthread_mutex_lock(&m->lock);
	m->lstate = s;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Resets the wake-up counter (nonblocking: it may be zero already). */
static void drain_wakeups(struct membership *m)
{
	uint64_t v;

	if (read(m->efd, &v, sizeof(v)) < 0)
		return;
}

static void *listener_main(void *arg)
{
	struct membership *m = arg;
	struct timespec t0, t1;
	bool ready = false;
	int ret = 0;

	m->ltid = gettid();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!atomic_load(&m->stop)) {
		struct pollfd p[2] = { { .fd = m->sock, .events = POLLIN },
				       { .fd = m->efd, .events = POLLIN } };
		int timeout = -1, n;
		if (!ready) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			timeout = SELFTEST_MS -
				  (int)((t1.tv_sec - t0.tv_sec) * 1000 +
					(t1.tv_nsec - t0.tv_nsec) / 1000000);
			if (timeout <= 0)
				break;
		}
		n = poll(p, 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (p[1].revents & POLLIN)
			drain_wakeups(m);
		if (ready)
			listener_check_stall(m);
		if (p[0].revents != 0) {
			bool was_ready = ready;

			ret = drain(m, &ready);
			if (ret < 0)
				break;
			if (ready && !was_ready)
				listener_set_state(m, L_READY);
		}
	}
	if (!ready) {
		listener_set_state(m, L_FAILED);
		return NULL;
	}
	if (!atomic_load(&m->stop)) {
		log_err("membership: process event listener failed: %s; "
			"reading /proc from now on",
			strerror(-ret));
		atomic_store(&m->conn, false);
		distrust(m);
		listener_set_state(m, L_DEAD);
	}
	return NULL;
}

static void wake_listener(struct membership *m)
{
	uint64_t one = 1;

	/* A full counter means a wake-up is pending anyway. */
	if (write(m->efd, &one, sizeof(one)) < 0)
		return;
}

/* Sends a PROC_CN_MCAST_* operation to the kernel. */
static int conn_send(int fd, enum proc_cn_mcast_op op)
{
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		uint32_t op;
	} __attribute__((packed)) req;

	memset(&req, 0, sizeof(req));
	req.nl.nlmsg_len = sizeof(req);
	req.nl.nlmsg_type = NLMSG_DONE;
	req.cn.id.idx = CN_IDX_PROC;
	req.cn.id.val = CN_VAL_PROC;
	req.cn.len = sizeof(req.op);
	req.op = op;
	if (send(fd, &req, sizeof(req), 0) < 0)
		return -errno;
	return 0;
}

static int conn_start(struct membership *m)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK,
				  .nl_groups = CN_IDX_PROC };
	int size = EVENT_RCVBUF;
	sigset_t all, old;
	enum lstate state;
	int ret;

	m->lbuf = malloc(sizeof(*m->lbuf));
	if (m->lbuf == NULL)
		return -ENOMEM;
	m->sock =
	    socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (m->sock < 0) {
		ret = -errno;
		goto out_free_lbuf;
	}
	if (setsockopt(m->sock, SOL_SOCKET, SO_RCVBUFFORCE, &size,
		       sizeof(size)) < 0)
		(void)setsockopt(m->sock, SOL_SOCKET, SO_RCVBUF, &size,
				 sizeof(size));
	if (bind(m->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto out_close_sock;
	}
	ret = conn_send(m->sock, PROC_CN_MCAST_LISTEN);
	if (ret < 0)
		goto out_close_sock;
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->efd < 0) {
		ret = -errno;
		goto out_ignore;
	}
	m->lstate = L_STARTING;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&m->listener, NULL, listener_main, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0)
		goto out_close_efd;
	pthread_mutex_lock(&m->lock);
	while (m->lstate == L_STARTING)
		pthread_cond_wait(&m->cond, &m->lock);
	state = m->lstate;
	pthread_mutex_unlock(&m->lock);
	if (state != L_READY) {
		pthread_join(m->listener, NULL);
		ret = -ETIMEDOUT; /* no event for our own thread arrived */
		goto out_close_efd;
	}
	m->listening = true;
	atomic_store(&m->conn, true);
	return 0;

out_close_efd:
	close(m->efd);
	m->efd = -1;
out_ignore:
	(void)conn_send(m->sock, PROC_CN_MCAST_IGNORE);
out_close_sock:
	close(m->sock);
	m->sock = -1;
out_free_lbuf:
	free(m->lbuf);
	m->lbuf = NULL;
	m->lstate = L_NONE;
	return ret;
}

/* ---- lifecycle and introspection -------------------------------------- */

int membership_new(bool use_connector, struct membership **out)
{
	struct membership *m;
	int ret;

	ret = stm_init();
	if (ret < 0)
		return ret;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->procs = calloc(MB_BUCKETS, sizeof(*m->procs));
	m->threads = calloc(MB_BUCKETS, sizeof(*m->threads));
	m->fgen = calloc(MB_BUCKETS, sizeof(*m->fgen));
	if (m->procs == NULL || m->threads == NULL || m->fgen == NULL) {
		ret = -ENOMEM;
		goto out_free_maps;
	}
	for (size_t i = 0; i < MB_BUCKETS; i++) {
		stm_tvar_init(&m->procs[i], 0);
		stm_tvar_init(&m->threads[i], 0);
		stm_tvar_init(&m->fgen[i], 0);
	}
	stm_tvar_init(&m->txs, 0);
	stm_tvar_init(&m->bind_gen, 1);
	stm_tvar_init(&m->epoch, 1);
	m->sock = -1;
	m->efd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	if (use_connector) {
		ret = conn_start(m);
		if (ret < 0)
			log_info("membership: process events unavailable "
				 "(%s); reading /proc instead",
				 strerror(-ret));
	}
	*out = m;
	return 0;

out_free_maps:
	free(m->procs);
	free(m->threads);
	free(m->fgen);
	free(m);
	return ret;
}

static void free_chain(struct stm_tvar *head)
{
	struct ent *e = (struct ent *)stm_peek(head);

	while (e != NULL) {
		struct ent *next = (struct ent *)stm_peek(&e->next);

		free(e);
		e = next;
	}
}

void membership_free(struct membership *m)
{
	if (m == NULL)
		return;
	assert(membership_invariants(m));
	if (m->listening) {
		atomic_store(&m->stop, true);
		pthread_mutex_lock(&m->lock);
		m->stall_req = false;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		wake_listener(m);
		pthread_join(m->listener, NULL);
		m->listening = false;
	}
	if (m->sock >= 0) {
		(void)conn_send(m->sock, PROC_CN_MCAST_IGNORE);
		close(m->sock);
	}
	if (m->efd >= 0)
		close(m->efd);
	free(m->lbuf);
	stm_quiesce();
	for (size_t i = 0; i < MB_BUCKETS; i++) {
		free_chain(&m->procs[i]);
		free_chain(&m->threads[i]);
	}
	for (struct mtx *x = (struct mtx *)stm_peek(&m->txs); x != NULL;) {
		struct mtx *next = (struct mtx *)stm_peek(&x->next);

		free(x);
		x = next;
	}
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m->procs);
	free(m->threads);
	free(m->fgen);
	free(m);
}

void membership_stats(struct membership *m, struct membership_stats *out)
{
#define GET(f) atomic_load_explicit(&m->c.f, memory_order_relaxed)
	int64_t v;

	out->connector = atomic_load(&m->conn);
	out->classified = GET(classified);
	out->hits = GET(hits);
	out->misses = GET(misses);
	out->proc_reads = GET(proc_reads);
	out->listener_proc_reads = GET(listener_reads);
	out->events = GET(events);
	out->overflows = GET(overflows);
	out->sync_waits = GET(sync_waits);
	out->sync_timeouts = GET(sync_timeouts);
	out->audits = GET(audits);
	out->audit_mismatches = GET(audit_mismatches);
	out->audit_proc_reads = GET(audit_reads);
	v = GET(threads);
	out->threads = v > 0 ? (size_t)v : 0;
	v = GET(members);
	out->members = v > 0 ? (size_t)v : 0;
	v = GET(nonmembers);
	out->nonmembers = v > 0 ? (size_t)v : 0;
#undef GET
}

struct inv_args {
	struct membership *m;
	size_t b;
	bool ok;
};

/* Checks one bucket of both maps: invariants (1) and (3). */
static int inv_bucket_body(struct stm_tx *tx, void *arg)
{
	struct inv_args *a = arg;
	uintptr_t epoch, gen;
	struct ent *e, *o;
	uintptr_t v;

	a->ok = true;
	STM_LOAD(tx, &a->m->epoch, &epoch);
	STM_LOAD(tx, &a->m->bind_gen, &gen);
	for (int map = 0; map < 2; map++) {
		struct stm_tvar *head =
		    map == 0 ? &a->m->threads[a->b] : &a->m->procs[a->b];

		STM_LOADP(tx, head, &e);
		while (e != NULL) {
			if (e->key <= 0 || bucket_of(e->key) != a->b)
				a->ok = false;
			if (map == 0) {
				const struct thr *t = (const struct thr *)e;

				if (t->tgid <= 0 || t->epoch > epoch)
					a->ok = false;
			} else {
				const struct prec *r = (const struct prec *)e;

				if (r->epoch > epoch || r->serial == 0)
					a->ok = false;
				if (r->tx != NULL ? r->tx->txid == 0
						  : r->gen > gen)
					a->ok = false;
			}
			STM_LOADP(tx, &e->next, &o);
			for (struct ent *dup = o; dup != NULL;) {
				if (dup->key == e->key)
					a->ok = false;
				STM_LOADP(tx, &dup->next, &dup);
			}
			e = o;
		}
	}
	if (a->b != 0)
		return 0;
	STM_LOADP(tx, &a->m->txs, &e);
	for (struct mtx *x = (struct mtx *)e; x != NULL;) {
		if (x->txid == 0)
			a->ok = false;
		STM_LOAD(tx, &x->next, &v);
		for (struct mtx *y = (struct mtx *)v; y != NULL;) {
			if (y->txid == x->txid)
				a->ok = false;
			STM_LOADP(tx, &y->next, &y);
		}
		x = (struct mtx *)v;
	}
	return 0;
}

bool membership_invariants(struct membership *m)
{
	struct inv_args a = { .m = m };

	if (!m->listening && atomic_load(&m->seq) % 2 != 0)
		return false;
	if (atomic_load(&m->conn) && m->sock < 0)
		return false;
	for (a.b = 0; a.b < MB_BUCKETS; a.b++) {
		if (stm_atomically(inv_bucket_body, &a, STM_RO) != 0 || !a.ok)
			return false;
	}
	return true;
}

int membership_debug_stall(struct membership *m, bool stall)
{
	if (!m->listening)
		return -ENOTCONN;
	pthread_mutex_lock(&m->lock);
	m->stall_req = stall;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (!stall)
		return 0;
	wake_listener(m);
	pthread_mutex_lock(&m->lock);
	while (!m->stalled && m->lstate == L_READY)
		pthread_cond_wait(&m->cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int membership_debug_rcvbuf(struct membership *m, int bytes)
{
	if (!m->listening)
		return -ENOTCONN;
	if (setsockopt(m->sock, SOL_SOCKET, SO_RCVBUFFORCE, &bytes,
		       sizeof(bytes)) < 0)
		return -errno;
	return 0;
}
