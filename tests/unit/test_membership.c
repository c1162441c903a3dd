/*
 * Unit tests for membership.c, with real processes.
 *
 * Test processes are "helpers": this program re-executed with the argument
 * "helper", which then obeys small commands on a pipe (fork a child,
 * start a thread, become a subreaper, exit, ...).  A checked fixture makes
 * a pool of NCHAN channels (a command pipe and a reply pipe each) before
 * any helper starts; every helper inherits the helper-side ends at fixed
 * descriptors, and a helper's forked child switches to the channel it is
 * told to use, so the test can talk to grandchildren directly.  The
 * test-side ends are close-on-exec: when the test process ends, every
 * helper reads end-of-file and exits.  Synchronisation is by pipes and
 * pidfds only.
 *
 * Most tests run twice (_i): 0 in /proc mode, 1 with the proc connector.
 */
#include "config.h"

#include "membership.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Channel k reaches a helper at POOL_FD + 2k (commands) and + 1 (replies). */
#define NCHAN	12
#define POOL_FD 200

enum { MODE_PROC = 0, MODE_CONNECTOR = 1 };

struct cmd {
	int op;
	int arg;
};

/* ---- the helper side ---------------------------------------------------- */

static int h_in, h_out;

static void h_reply(int64_t v)
{
	if (write(h_out, &v, sizeof(v)) != sizeof(v))
		_exit(3);
}

static void h_use(int chan)
{
	h_in = POOL_FD + 2 * chan;
	h_out = POOL_FD + 2 * chan + 1;
}

static void *h_idle_thread(void *arg)
{
	(void)arg;
	h_reply(gettid());
	for (;;)
		pause();
	return NULL;
}

static void h_loop(void) __attribute__((noreturn));

static void *h_successor(void *arg)
{
	(void)arg;
	h_reply(gettid());
	h_loop();
}

static void h_loop(void)
{
	for (;;) {
		struct cmd c;
		pthread_t t;
		pid_t pid;

		if (read(h_in, &c, sizeof(c)) != sizeof(c))
			_exit(0); /* end of file: the test is over */
		switch (c.op) {
		case 'p':
			h_reply(getpid());
			break;
		case 'f':
			/* Fork a child that obeys channel c.arg. */
			pid = fork();
			if (pid == 0) {
				h_use(c.arg);
				break;
			}
			h_reply(pid < 0 ? -errno : pid);
			break;
		case 't':
			/* A thread that replies with its tid and idles. */
			if (pthread_create(&t, NULL, h_idle_thread, NULL) != 0)
				h_reply(-1);
			break;
		case 'L':
			/* Hand the channel to a new thread; the leader exits. */
			if (pthread_create(&t, NULL, h_successor, NULL) != 0) {
				h_reply(-1);
				break;
			}
			pthread_exit(NULL);
		case 's':
			h_reply(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0
								      : -errno);
			break;
		case 'x':
			h_reply(0);
			_exit(0);
		default:
			h_reply(-EINVAL);
		}
	}
}

static int helper_main(int chan)
{
	signal(SIGCHLD, SIG_IGN); /* a helper's children are reaped at once */
	h_use(chan);
	h_loop();
}

/* ---- the test side -------------------------------------------------------- */

static int chan_cmd[NCHAN];   /* test side: write commands */
static int chan_reply[NCHAN]; /* test side: read replies */
static int chan_in[NCHAN];    /* helper side, inherited */
static int chan_out[NCHAN];
static int next_chan;
static uint64_t pid_max;

static void setup(void)
{
	for (int k = 0; k < NCHAN; k++) {
		int c[2], r[2];

		ck_assert_int_eq(pipe2(c, O_CLOEXEC), 0);
		ck_assert_int_eq(pipe2(r, O_CLOEXEC), 0);
		chan_in[k] = c[0];
		chan_cmd[k] = c[1];
		chan_reply[k] = r[0];
		chan_out[k] = r[1];
	}
	next_chan = 0;
}

static void teardown(void)
{
	for (int k = 0; k < NCHAN; k++) {
		close(chan_cmd[k]);
		close(chan_reply[k]);
		close(chan_in[k]);
		close(chan_out[k]);
	}
}

struct proc {
	pid_t pid;
	int chan;
};

static int64_t call(int chan, int op, int arg)
{
	struct cmd c = { op, arg };
	struct pollfd p = { .fd = chan_reply[chan], .events = POLLIN };
	int64_t v;

	ck_assert_int_eq(write(chan_cmd[chan], &c, sizeof(c)), sizeof(c));
	ck_assert_msg(poll(&p, 1, 20000) == 1, "helper on channel %d is mute",
		      chan);
	ck_assert_int_eq(read(chan_reply[chan], &v, sizeof(v)), sizeof(v));
	return v;
}

/* Starts a helper as a child of the test process. */
static struct proc spawn(void)
{
	char arg[16];
	struct proc p = { .chan = next_chan++ };

	ck_assert_int_lt(p.chan, NCHAN);
	snprintf(arg, sizeof(arg), "%d", p.chan);
	p.pid = fork();
	ck_assert_int_ge(p.pid, 0);
	if (p.pid == 0) {
		for (int k = 0; k < NCHAN; k++) {
			if (dup2(chan_in[k], POOL_FD + 2 * k) < 0 ||
			    dup2(chan_out[k], POOL_FD + 2 * k + 1) < 0)
				_exit(126);
		}
		execl("/proc/self/exe", "test_membership", "helper", arg,
		      (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(call(p.chan, 'p', 0), p.pid);
	return p;
}

/* Makes parent fork a helper child that obeys channel chan. */
static struct proc fork_on(struct proc parent, int chan)
{
	struct proc p = { .chan = chan };

	p.pid = (pid_t)call(parent.chan, 'f', chan);
	ck_assert_int_gt(p.pid, 0);
	ck_assert_int_eq(call(chan, 'p', 0), p.pid);
	return p;
}

/* The same on a fresh channel. */
static struct proc fork_helper(struct proc parent)
{
	ck_assert_int_lt(next_chan, NCHAN);
	return fork_on(parent, next_chan++);
}

static int pidfd_of(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Tells p to exit and returns once it has (its pidfd is readable). */
static void exit_helper(struct proc p)
{
	int fd = pidfd_of(p.pid);
	struct pollfd q = { .fd = fd, .events = POLLIN };

	ck_assert_int_eq(call(p.chan, 'x', 0), 0);
	ck_assert_int_eq(poll(&q, 1, 20000), 1);
	close(fd);
}

/* Exits a child of the test process and reaps it: its pid is free. */
static void exit_and_reap(struct proc p)
{
	int status;

	ck_assert_int_eq(call(p.chan, 'x', 0), 0);
	ck_assert_int_eq(waitpid(p.pid, &status, 0), p.pid);
}

/* Classifies tid, which must succeed. */
static uint64_t classify(struct membership *m, pid_t tid)
{
	uint64_t txid = UINT64_MAX;

	ck_assert_int_eq(membership_classify(m, tid, &txid), 0);
	return txid;
}

static struct membership *new_map(int mode)
{
	struct membership *m;
	struct membership_stats st;

	ck_assert_int_eq(membership_new(mode == MODE_CONNECTOR, &m), 0);
	membership_stats(m, &st);
	ck_assert(st.connector == (mode == MODE_CONNECTOR));
	return m;
}

static void free_map(struct membership *m)
{
	ck_assert(membership_invariants(m));
	membership_free(m);
}

static uint64_t start_time(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long v = 0;
	const char *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	p += 2;
	for (int field = 3; field < 22; field++)
		p = strchr(p, ' ') + 1;
	ck_assert_int_eq(sscanf(p, "%llu", &v), 1);
	return v;
}

static bool waited_too_long(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec - t0->tv_sec > 20;
}

/* Waits until /proc shows pid (its leader thread) in state. */
static void wait_for_state(pid_t pid, char state)
{
	char path[64], buf[1024];
	struct timespec t0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		FILE *f = fopen(path, "r");
		const char *p;

		ck_assert_ptr_nonnull(f);
		ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
		fclose(f);
		p = strrchr(buf, ')');
		if (p != NULL && p[2] == state)
			return;
		ck_assert_msg(!waited_too_long(&t0), "%d never became %c",
			      (int)pid, state);
		sched_yield();
	}
}

/* Waits until the listener has read /proc more often than before. */
static void wait_for_listener_reads(struct membership *m, uint64_t before)
{
	struct membership_stats st;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		membership_stats(m, &st);
		if (st.listener_proc_reads > before)
			return;
		ck_assert_msg(!waited_too_long(&t0),
			      "the listener never checked the exit");
		sched_yield();
	}
}

/* Waits until a process started now would have a later start time. */
static void wait_for_tick_after(uint64_t start)
{
	long hz = sysconf(_SC_CLK_TCK);

	for (;;) {
		struct timespec t, d = { 0, 1000000 };

		clock_gettime(CLOCK_BOOTTIME, &t);
		if ((uint64_t)t.tv_sec * hz + t.tv_nsec / (1000000000 / hz) >
		    start)
			return;
		nanosleep(&d, NULL);
	}
}

/*
 * Creates a child of the test process with exactly pid want (clone3 with
 * set_tid, root only).  It waits for *release_fd to be closed, then exits.
 * Returns its pid, or -errno (-EEXIST if the pid is taken).
 */
static pid_t spawn_with_pid(pid_t want, int *release_fd)
{
	pid_t tid = want;
	struct clone_args ca = { .exit_signal = SIGCHLD,
				 .set_tid = (uintptr_t)&tid,
				 .set_tid_size = 1 };
	int p[2];
	long r;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0) {
		char c;

		/* Raw system calls only: this is a copy of a threaded process. */
		syscall(SYS_close, p[1]);
		syscall(SYS_read, p[0], &c, 1);
		syscall(SYS_exit_group, 0);
	}
	close(p[0]);
	if (r < 0) {
		r = -errno;
		close(p[1]);
		return (pid_t)r;
	}
	*release_fd = p[1];
	return (pid_t)r;
}

/* ---- behaviour, in both modes ------------------------------------------- */

START_TEST(an_unrelated_process_is_not_a_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn(), other = spawn();

	ck_assert_int_eq(membership_bind(m, leader.pid, 7), 0);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	ck_assert_uint_eq(classify(m, getpid()), 0);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	free_map(m);
}
END_TEST

START_TEST(the_leader_and_its_descendants_are_members)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct proc child, grandchild;

	ck_assert_int_eq(membership_bind(m, leader.pid, 7), 0);
	child = fork_helper(leader);
	grandchild = fork_helper(child);
	ck_assert_uint_eq(classify(m, leader.pid), 7);
	ck_assert_uint_eq(classify(m, grandchild.pid), 7);
	ck_assert_uint_eq(classify(m, child.pid), 7);
	ck_assert_uint_eq(membership_count(m, 7), 3);
	ck_assert_uint_eq(membership_count(m, 8), 0);
	free_map(m);
}
END_TEST

START_TEST(a_thread_of_a_member_is_a_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn(), other = spawn();
	pid_t tid, other_tid;

	ck_assert_int_eq(membership_bind(m, leader.pid, 3), 0);
	tid = (pid_t)call(leader.chan, 't', 0);
	other_tid = (pid_t)call(other.chan, 't', 0);
	ck_assert_int_gt(tid, 0);
	ck_assert_int_ne(tid, leader.pid);
	ck_assert_uint_eq(classify(m, tid), 3);
	ck_assert_uint_eq(classify(m, tid), 3);
	ck_assert_uint_eq(classify(m, other_tid), 0);
	free_map(m);
}
END_TEST

START_TEST(a_process_whose_leader_thread_exited_stays_a_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct membership_stats st;
	pid_t tid;

	ck_assert_int_eq(membership_bind(m, leader.pid, 4), 0);
	ck_assert_uint_eq(classify(m, leader.pid), 4);
	membership_stats(m, &st);
	/* The main thread exits; another thread serves the channel. */
	tid = (pid_t)call(leader.chan, 'L', 0);
	ck_assert_int_gt(tid, 0);
	ck_assert_int_eq(call(leader.chan, 'p', 0), leader.pid);
	wait_for_state(leader.pid, 'Z');
	/* With events, wait until the listener has looked at the exit. */
	if (_i == MODE_CONNECTOR)
		wait_for_listener_reads(m, st.listener_proc_reads);
	ck_assert_uint_eq(classify(m, tid), 4);
	ck_assert_uint_eq(membership_count(m, 4), 1);
	exit_and_reap(leader);
	ck_assert_uint_eq(membership_count(m, 4), 0);
	free_map(m);
}
END_TEST

START_TEST(a_member_seen_before_its_parent_exits_stays_a_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct proc mid, daemon;

	ck_assert_int_eq(membership_bind(m, leader.pid, 5), 0);
	mid = fork_helper(leader);
	daemon = fork_helper(mid);
	ck_assert_uint_eq(classify(m, daemon.pid), 5);
	exit_helper(mid); /* daemon is re-parented away from the leader */
	ck_assert_uint_eq(classify(m, daemon.pid), 5);
	ck_assert_uint_eq(classify(m, leader.pid), 5);
	free_map(m);
}
END_TEST

START_TEST(a_double_fork_under_a_subreaper_leader_stays_a_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct proc mid, daemon;

	ck_assert_int_eq(call(leader.chan, 's', 0), 0);
	ck_assert_int_eq(membership_bind(m, leader.pid, 6), 0);
	mid = fork_helper(leader);
	daemon = fork_helper(mid);
	exit_helper(mid); /* daemon now belongs to the leader */
	ck_assert_uint_eq(classify(m, daemon.pid), 6);
	free_map(m);
}
END_TEST

START_TEST(a_recycled_pid_does_not_inherit_membership)
{
	struct membership *m = new_map(_i);
	int release = -1, status;
	pid_t reused = -EEXIST;

	/* Another process may take the pid first: then try again. */
	for (int tries = 0; tries < 5 && reused == -EEXIST; tries++) {
		struct proc member = spawn();
		uint64_t start = start_time(member.pid);

		ck_assert_int_eq(membership_bind(m, member.pid, 9), 0);
		ck_assert_uint_eq(classify(m, member.pid), 9);
		ck_assert_uint_eq(classify(m, member.pid), 9);
		exit_and_reap(member);
		/*
		 * Without events, processes are told apart by start time,
		 * whose unit is a clock tick; the connector needs no wait.
		 */
		if (_i == MODE_PROC)
			wait_for_tick_after(start);
		reused = spawn_with_pid(member.pid, &release);
		if (reused >= 0)
			ck_assert_int_eq(reused, member.pid);
	}
	ck_assert_int_gt(reused, 0);
	ck_assert_uint_eq(classify(m, reused), 0);
	ck_assert_uint_eq(classify(m, reused), 0);
	ck_assert_uint_eq(membership_count(m, 9), 0);
	close(release);
	ck_assert_int_eq(waitpid(reused, &status, 0), reused);
	free_map(m);
}
END_TEST

START_TEST(binding_a_member_of_another_transaction_is_refused)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct proc child;

	ck_assert_int_eq(membership_bind(m, leader.pid, 1), 0);
	child = fork_helper(leader);
	ck_assert_int_eq(membership_bind(m, child.pid, 2), -EBUSY);
	ck_assert_int_eq(membership_bind(m, leader.pid, 2), -EBUSY);
	ck_assert_int_eq(membership_bind(m, leader.pid, 1), 0);
	ck_assert_int_eq(membership_bind(m, child.pid, 1), 0);
	ck_assert_uint_eq(classify(m, child.pid), 1);
	free_map(m);
}
END_TEST

START_TEST(release_drops_every_member)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn();
	struct proc child, grandchild;

	ck_assert_int_eq(membership_bind(m, leader.pid, 11), 0);
	child = fork_helper(leader);
	grandchild = fork_helper(child);
	ck_assert_uint_eq(classify(m, grandchild.pid), 11);
	ck_assert_uint_eq(classify(m, child.pid), 11);
	membership_release(m, 11);
	ck_assert_uint_eq(classify(m, leader.pid), 0);
	ck_assert_uint_eq(classify(m, child.pid), 0);
	ck_assert_uint_eq(classify(m, grandchild.pid), 0);
	ck_assert_uint_eq(membership_count(m, 11), 0);
	membership_release(m, 11);  /* twice: ignored */
	membership_release(m, 999); /* unknown: ignored */
	/* The processes are free to join another transaction. */
	ck_assert_int_eq(membership_bind(m, child.pid, 12), 0);
	ck_assert_uint_eq(classify(m, grandchild.pid), 12);
	ck_assert_uint_eq(classify(m, leader.pid), 0);
	free_map(m);
}
END_TEST

START_TEST(bad_arguments_are_rejected)
{
	struct membership *m = new_map(_i);
	struct proc p = spawn();

	ck_assert_uint_eq(classify(m, 0), 0);
	ck_assert_uint_eq(classify(m, -1), 0);
	ck_assert_int_eq(membership_bind(m, p.pid, 0), -EINVAL);
	/* Above pid_max: no process can have it. */
	ck_assert_int_eq(membership_bind(m, (pid_t)pid_max + 1, 1), -ESRCH);
	ck_assert_int_eq(membership_bind(m, 0, 1), -ESRCH);
	ck_assert_uint_eq(classify(m, (pid_t)pid_max + 1), 0);
	free_map(m);
}
END_TEST

START_TEST(a_classification_that_cannot_read_proc_fails)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn(), other = spawn();
	struct rlimit old, none;
	uint64_t txid = 99;
	int lowest;

	ck_assert_int_eq(membership_bind(m, leader.pid, 18), 0);
	ck_assert_uint_eq(classify(m, leader.pid), 18);
	/* No descriptor can be opened any more. */
	lowest = dup(0);
	ck_assert_int_ge(lowest, 0);
	close(lowest);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	none = old;
	none.rlim_cur = (rlim_t)lowest;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
	ck_assert_int_eq(membership_classify(m, other.pid, &txid), -EMFILE);
	ck_assert_uint_eq(txid, 0);
	if (_i == MODE_CONNECTOR) {
		/* A cached answer needs no descriptor. */
		ck_assert_int_eq(membership_classify(m, leader.pid, &txid), 0);
		ck_assert_uint_eq(txid, 18);
	}
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	free_map(m);
}
END_TEST

START_TEST(binding_an_ancestor_invalidates_cached_non_members)
{
	struct membership *m = new_map(_i);
	struct proc parent = spawn();
	struct proc child = fork_helper(parent);
	struct membership_stats st;

	ck_assert_uint_eq(classify(m, child.pid), 0);
	ck_assert_uint_eq(classify(m, child.pid), 0);
	membership_stats(m, &st);
	ck_assert_uint_gt(st.nonmembers, 0);
	ck_assert_int_eq(membership_bind(m, parent.pid, 13), 0);
	ck_assert_uint_eq(classify(m, child.pid), 13);
	ck_assert_uint_eq(classify(m, parent.pid), 13);
	free_map(m);
}
END_TEST

START_TEST(repeated_classification_skips_the_walk)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn(), other = spawn();
	struct membership_stats a, b;
	const int n = 1000;

	ck_assert_int_eq(membership_bind(m, leader.pid, 14), 0);
	ck_assert_uint_eq(classify(m, leader.pid), 14);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	membership_stats(m, &a);
	for (int i = 0; i < n; i++) {
		ck_assert_uint_eq(classify(m, leader.pid), 14);
		ck_assert_uint_eq(classify(m, other.pid), 0);
	}
	membership_stats(m, &b);
	if (_i == MODE_CONNECTOR) {
		/* Cached: no /proc read at all (audits count apart). */
		ck_assert_uint_eq(b.proc_reads, a.proc_reads);
		ck_assert_uint_eq(b.misses, a.misses);
		ck_assert_uint_eq(b.hits + b.audits - a.hits - a.audits, 2 * n);
	} else {
		/* One read of /proc/TID/stat each; no ancestry walk. */
		ck_assert_uint_eq(b.proc_reads - a.proc_reads, 2 * n);
	}
	free_map(m);
}
END_TEST

/* ---- connector mode only ------------------------------------------------ */

START_TEST(a_double_forked_daemon_stays_a_member)
{
	struct membership *m = new_map(MODE_CONNECTOR);
	struct proc leader = spawn();
	struct proc mid, daemon;
	char path[64], buf[512];
	const char *p;
	FILE *f;

	ck_assert_int_eq(membership_bind(m, leader.pid, 15), 0);
	mid = fork_helper(leader);
	daemon = fork_helper(mid);
	exit_helper(mid);
	/* The daemon was never classified, and its parent is not mid. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)daemon.pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	ck_assert_int_ne(atoi(p + 4), mid.pid);
	ck_assert_uint_eq(classify(m, daemon.pid), 15);
	free_map(m);
}
END_TEST

START_TEST(a_member_child_is_known_from_its_fork_event)
{
	struct membership *m = new_map(MODE_CONNECTOR);
	struct proc leader = spawn();
	struct membership_stats a, b;
	struct proc child;
	pid_t tid;

	ck_assert_int_eq(membership_bind(m, leader.pid, 16), 0);
	ck_assert_uint_eq(classify(m, leader.pid), 16);
	child = fork_helper(leader);
	tid = (pid_t)call(child.chan, 't', 0);
	membership_stats(m, &a);
	ck_assert_uint_eq(classify(m, child.pid), 16);
	ck_assert_uint_eq(classify(m, tid), 16);
	membership_stats(m, &b);
	ck_assert_uint_eq(b.proc_reads, a.proc_reads);
	ck_assert_uint_gt(b.events, 0);
	free_map(m);
}
END_TEST

START_TEST(lost_events_are_recovered_from)
{
	struct membership *m = new_map(MODE_CONNECTOR);
	struct proc leader = spawn(), other = spawn();
	struct membership_stats st;
	struct proc child;

	ck_assert_int_eq(membership_bind(m, leader.pid, 17), 0);
	child = fork_helper(leader);
	ck_assert_uint_eq(classify(m, child.pid), 17);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	/* Let events pile up in a tiny buffer until some are dropped. */
	ck_assert_int_eq(membership_debug_stall(m, true), 0);
	ck_assert_int_eq(membership_debug_rcvbuf(m, 4096), 0);
	for (int i = 0; i < 40; i++) {
		int status;
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			_exit(0);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	}
	ck_assert_int_eq(membership_debug_rcvbuf(m, 8 << 20), 0);
	ck_assert_int_eq(membership_debug_stall(m, false), 0);
	ck_assert_uint_eq(classify(m, child.pid), 17);
	ck_assert_uint_eq(classify(m, leader.pid), 17);
	ck_assert_uint_eq(classify(m, other.pid), 0);
	membership_stats(m, &st);
	ck_assert_uint_ge(st.overflows, 1);
	ck_assert(st.connector);
	/* After re-validation the cache serves hits again. */
	ck_assert_uint_eq(classify(m, child.pid), 17);
	free_map(m);
}
END_TEST

struct unstaller {
	struct membership *m;
	uint64_t waits;
};

/* Lets the listener go on once a classification is waiting for it. */
static void *unstall_when_waited_for(void *arg)
{
	struct unstaller *u = arg;
	struct membership_stats st;

	do {
		sched_yield();
		membership_stats(u->m, &st);
	} while (st.sync_waits == u->waits);
	membership_debug_stall(u->m, false);
	return NULL;
}

START_TEST(a_classification_waits_for_pending_exit_events)
{
	struct membership *m = new_map(MODE_CONNECTOR);
	struct membership_stats a, b;
	struct unstaller u = { .m = m };
	int release = -1, status;
	pid_t reused = -EEXIST;
	pthread_t t;

	for (int tries = 0; tries < 5 && reused == -EEXIST; tries++) {
		struct proc member = spawn();

		ck_assert_int_eq(membership_bind(m, member.pid, 23), 0);
		ck_assert_uint_eq(classify(m, member.pid), 23);
		ck_assert_uint_eq(classify(m, member.pid), 23);
		/* Its exit and the pid's reuse are not applied yet... */
		ck_assert_int_eq(membership_debug_stall(m, true), 0);
		exit_and_reap(member);
		reused = spawn_with_pid(member.pid, &release);
		if (reused < 0)
			ck_assert_int_eq(membership_debug_stall(m, false), 0);
	}
	ck_assert_int_gt(reused, 0);
	/* ...so the cache must not answer before they are. */
	membership_stats(m, &a);
	u.waits = a.sync_waits;
	ck_assert_int_eq(pthread_create(&t, NULL, unstall_when_waited_for, &u),
			 0);
	ck_assert_uint_eq(classify(m, reused), 0);
	pthread_join(t, NULL);
	membership_stats(m, &b);
	ck_assert_uint_gt(b.sync_waits, a.sync_waits);
	ck_assert_uint_eq(b.sync_timeouts, a.sync_timeouts);
	close(release);
	ck_assert_int_eq(waitpid(reused, &status, 0), reused);
	free_map(m);
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

struct hammer {
	struct membership *m;
	const pid_t *pids;
	const uint64_t *want;
	int n;
	_Atomic bool stop;
	_Atomic int wrong;
	_Atomic long calls;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;

	while (!atomic_load(&h->stop)) {
		for (int i = 0; i < h->n; i++) {
			uint64_t txid;

			if (membership_classify(h->m, h->pids[i], &txid) != 0 ||
			    txid != h->want[i])
				atomic_fetch_add(&h->wrong, 1);
			atomic_fetch_add(&h->calls, 1);
		}
	}
	return NULL;
}

START_TEST(classification_stays_right_while_processes_come_and_go)
{
	struct membership *m = new_map(_i);
	struct proc leader = spawn(), other = spawn(), loner = spawn();
	struct proc kid = fork_helper(leader), stranger = fork_helper(other);
	int churn_in = next_chan++, churn_out = next_chan++;
	pid_t pids[4] = { leader.pid, kid.pid, other.pid, stranger.pid };
	uint64_t want[4] = { 21, 21, 0, 0 };
	struct hammer h = { .m = m, .pids = pids, .want = want, .n = 4 };
	pthread_t t[3];

	ck_assert_int_lt(next_chan, NCHAN + 1);
	ck_assert_int_eq(membership_bind(m, leader.pid, 21), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_main, &h),
				 0);
	for (int round = 0; round < 15; round++) {
		struct proc in = fork_on(leader, churn_in);
		struct proc out = fork_on(other, churn_out);

		ck_assert_uint_eq(classify(m, in.pid), 21);
		ck_assert_uint_eq(classify(m, out.pid), 0);
		/* Binds and releases of an unrelated transaction. */
		ck_assert_int_eq(membership_bind(m, loner.pid, 22), 0);
		ck_assert_uint_eq(classify(m, loner.pid), 22);
		exit_helper(in);
		exit_helper(out);
		membership_release(m, 22);
		ck_assert_uint_eq(classify(m, loner.pid), 0);
	}
	atomic_store(&h.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&h.wrong), 0);
	ck_assert_int_gt(atomic_load(&h.calls), 0);
	ck_assert_uint_eq(membership_count(m, 21), 2);
	free_map(m);
}
END_TEST

static Suite *membership_suite(bool connector)
{
	Suite *s = suite_create("membership");
	TCase *tc = tcase_create("core");
	int modes = connector ? 2 : 1;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, an_unrelated_process_is_not_a_member, 0, modes);
	tcase_add_loop_test(tc, the_leader_and_its_descendants_are_members, 0,
			    modes);
	tcase_add_loop_test(tc, a_thread_of_a_member_is_a_member, 0, modes);
	tcase_add_loop_test(
	    tc, a_process_whose_leader_thread_exited_stays_a_member, 0, modes);
	tcase_add_loop_test(
	    tc, a_member_seen_before_its_parent_exits_stays_a_member, 0, modes);
	tcase_add_loop_test(
	    tc, a_double_fork_under_a_subreaper_leader_stays_a_member, 0,
	    modes);
	tcase_add_loop_test(tc, a_recycled_pid_does_not_inherit_membership, 0,
			    modes);
	tcase_add_loop_test(
	    tc, binding_a_member_of_another_transaction_is_refused, 0, modes);
	tcase_add_loop_test(tc, release_drops_every_member, 0, modes);
	tcase_add_loop_test(tc, bad_arguments_are_rejected, 0, modes);
	tcase_add_loop_test(tc, a_classification_that_cannot_read_proc_fails, 0,
			    modes);
	tcase_add_loop_test(
	    tc, binding_an_ancestor_invalidates_cached_non_members, 0, modes);
	tcase_add_loop_test(tc, repeated_classification_skips_the_walk, 0,
			    modes);
	tcase_add_loop_test(
	    tc, classification_stays_right_while_processes_come_and_go, 0,
	    modes);
	if (connector) {
		tcase_add_test(tc, a_double_forked_daemon_stays_a_member);
		tcase_add_test(tc, a_member_child_is_known_from_its_fork_event);
		tcase_add_test(tc, lost_events_are_recovered_from);
		tcase_add_test(tc,
			       a_classification_waits_for_pending_exit_events);
	}
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	struct membership_stats st;
	struct membership *m;
	SRunner *sr;
	FILE *f;
	int failed;

	if (argc == 3 && strcmp(argv[1], "helper") == 0)
		return helper_main(atoi(argv[2]));
	if (geteuid() != 0) {
		fprintf(stderr, "test_membership: needs root (clone3 set_tid, "
				"the proc connector)\n");
		return 77;
	}
	f = fopen("/proc/sys/kernel/pid_max", "r");
	if (f == NULL || fscanf(f, "%" SCNu64, &pid_max) != 1) {
		fprintf(stderr, "test_membership: cannot read pid_max\n");
		return EXIT_FAILURE;
	}
	fclose(f);
	if (membership_new(true, &m) != 0)
		return EXIT_FAILURE;
	membership_stats(m, &st);
	membership_free(m);
	if (!st.connector)
		fprintf(stderr, "test_membership: the proc connector is "
				"unavailable; testing /proc mode only\n");
	sr = srunner_create(membership_suite(st.connector));
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
