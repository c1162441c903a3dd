/*
 * test_control.c: unit tests of the control socket server (src/control.c)
 * driven through libtxfs and through raw sockets: the built-in verbs,
 * socket creation, malformed input, concurrency, stuck clients, the
 * asynchronous reply path, peer credentials, and the client library's
 * connection and timeout handling.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "proto.h"
#include "stm.h"
#include "txfs.h"

/* A server on a socket in a private temporary directory. */
struct fixture {
	char dir[64];
	char path[100];
	struct control *c;
	struct control_info info;
};

static void fixture_start(struct fixture *f)
{
	struct timespec now;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_control.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	clock_gettime(CLOCK_REALTIME, &now);
	now.tv_sec -= 5;
	f->info = (struct control_info){
		.source = "/srv/src",
		.mountpoint = "/mnt/x y",
		.state_dir = "/srv/src/.txfs",
		.socket_path = f->path,
		.pid = getpid(),
		.started = now,
	};
	ck_assert_int_eq(control_start(&f->info, 0600, &f->c), 0);
	ck_assert_ptr_nonnull(f->c);
}

static void fixture_stop(struct fixture *f)
{
	control_stop(f->c);
	f->c = NULL;
	ck_assert_int_eq(access(f->path, F_OK), -1);
	ck_assert_int_eq(rmdir(f->dir), 0);
}

/* Connects a raw socket to path. */
static int raw_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		ck_assert_int_gt(w, 0);
		s += w;
		n -= (size_t)w;
	}
}

/*
 * Reads one reply (up to its empty line) into buf, NUL-terminated; returns
 * its length.  Fails the test if the connection ends first.  The poll
 * bound only keeps a broken server from hanging the suite.
 */
static size_t raw_reply(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		size_t n;
		ssize_t r;

		buf[len] = '\0';
		n = proto_reply_length(buf, len);
		if (n != 0) {
			ck_assert_uint_eq(n, len);
			return len;
		}
		ck_assert_int_eq(poll(&p, 1, 20000), 1);
		ck_assert_uint_lt(len, cap - 1);
		r = recv(fd, buf + len, 1, 0); /* byte by byte: no over-read */
		ck_assert_msg(r == 1, "connection ended after '%s'", buf);
		len++;
	}
}

/* True when the peer has closed the connection (a read returns EOF). */
static bool raw_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	ck_assert_int_eq(poll(&p, 1, 20000), 1);
	return recv(fd, &c, 1, 0) <= 0;
}

/* Checks with a fresh libtxfs client that the server answers status. */
static void assert_serving(const struct fixture *f)
{
	struct txfs_client *cl;
	struct txfs_status st;

	ck_assert_int_eq(txfs_connect(f->path, &cl), 0);
	ck_assert_int_eq(txfs_status(cl, &st), 0);
	ck_assert_str_eq(st.source, "/srv/src");
	txfs_status_clear(&st);
	txfs_close(cl);
}

START_TEST(status_reports_the_daemon)
{
	struct txfs_client *cl;
	struct txfs_status st;
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_str_eq(txfs_socket_path(cl), f.path);
	ck_assert_int_eq(txfs_status(cl, &st), 0);
	ck_assert_uint_eq(st.protocol, PROTO_VERSION);
	ck_assert_uint_eq(st.protocol, TXFS_PROTOCOL);
	ck_assert_str_eq(st.version, TXFS_VERSION);
	ck_assert_str_eq(st.source, "/srv/src");
	ck_assert_str_eq(st.mountpoint, "/mnt/x y");
	ck_assert_str_eq(st.state_dir, "/srv/src/.txfs");
	ck_assert_str_eq(st.socket, f.path);
	ck_assert_int_eq(st.pid, getpid());
	ck_assert_int_eq(st.started, f.info.started.tv_sec);
	/* started lies five seconds back, and the clock only moves on. */
	ck_assert_uint_ge(st.uptime, 5);
	txfs_status_clear(&st);
	ck_assert_ptr_null(st.source);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

START_TEST(status_is_plain_text_on_the_wire)
{
	struct fixture f;
	char buf[4096];
	int fd;

	fixture_start(&f);
	fd = raw_connect(f.path);
	raw_send(fd, "status\n", 7);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_int_eq(strncmp(buf, "ok\nprotocol=1\n", 14), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\nmountpoint=/mnt/x%20y\n"));
	ck_assert_ptr_nonnull(strstr(buf, "\nversion=" TXFS_VERSION "\n"));
	close(fd);
	fixture_stop(&f);
}
END_TEST

START_TEST(socket_has_the_requested_mode_whatever_the_umask)
{
	struct fixture f;
	struct stat st;
	struct control *c2;
	char path2[200];

	umask(0);
	fixture_start(&f);
	ck_assert_int_eq(stat(f.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0600);

	umask(077);
	snprintf(path2, sizeof(path2), "%s/other.sock", f.dir);
	f.info.socket_path = path2;
	ck_assert_int_eq(control_start(&f.info, 0660, &c2), 0);
	ck_assert_int_eq(stat(path2, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0660);
	control_stop(c2);
	ck_assert_int_eq(access(path2, F_OK), -1);
	fixture_stop(&f);
}
END_TEST

START_TEST(ping_echoes_any_bytes)
{
	static const char bin[] = "a\0b\nc d=%\xff";
	struct txfs_client *cl;
	struct txfs_reply *r;
	struct txfs_arg args[] = {
		{ "bin", bin, sizeof(bin) - 1 },
		{ "empty", "", 0 },
		{ "bin", "second", 6 },
	};
	const char *v, *k;
	size_t len, rec;
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_int_eq(txfs_requestv(cl, &r, "ping", args, 3), 0);
	ck_assert_int_eq(txfs_reply_error(r), 0);
	ck_assert_uint_eq(txfs_reply_count(r), 3);
	v = txfs_reply_record_get(r, 0, "bin", &len);
	ck_assert_uint_eq(len, sizeof(bin) - 1);
	ck_assert_mem_eq(v, bin, len);
	ck_assert_str_eq(txfs_reply_get(r, "empty"), "");
	ck_assert_int_eq(txfs_reply_field(r, 2, &k, &v, &len, &rec), 0);
	ck_assert_str_eq(k, "bin");
	ck_assert_str_eq(v, "second");
	ck_assert_uint_eq(rec, 0);
	ck_assert_int_eq(txfs_reply_field(r, 3, &k, &v, &len, &rec), -ERANGE);
	txfs_reply_free(r);

	/* The variadic form, with string pairs. */
	ck_assert_int_eq(
	    txfs_request(cl, &r, "ping", "x", "1", "y", "two", (char *)NULL),
	    0);
	ck_assert_str_eq(txfs_reply_get(r, "y"), "two");
	txfs_reply_free(r);
	ck_assert_int_eq(txfs_request(cl, NULL, "ping", (char *)NULL), 0);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

static int stm_body(struct stm_tx *tx, void *arg)
{
	uintptr_t v;

	STM_LOAD(tx, (struct stm_tvar *)arg, &v);
	stm_write(tx, arg, v + 1);
	return 0;
}

static void ignore_site(const struct stm_site *site, void *arg)
{
	(void)site;
	(void)arg;
}

START_TEST(stm_reports_one_record_per_site)
{
	struct stm_tvar tv = STM_TVAR_INIT(0);
	struct txfs_client *cl;
	struct txfs_reply *r;
	struct fixture f;
	bool seen = false;

	ck_assert_int_eq(stm_init(), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(stm_atomically(stm_body, &tv, 0), 0);
	/* Commit counts are batched per thread; this flushes this thread's. */
	stm_sites_foreach(ignore_site, NULL);
	fixture_start(&f);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_int_eq(txfs_request(cl, &r, "stm", (char *)NULL), 0);
	ck_assert_ptr_nonnull(txfs_reply_get(r, "clock"));
	ck_assert_uint_ge(txfs_reply_records(r), 1);
	for (size_t n = 1; n <= txfs_reply_records(r); n++) {
		const char *site = txfs_reply_record_get(r, n, "site", NULL);
		static const char *const keys[] = {
			"commits",     "aborts_locked", "aborts_validate",
			"aborts_user", "waits",		"serial",
		};

		ck_assert_ptr_nonnull(site);
		for (size_t k = 0; k < 6; k++)
			ck_assert_ptr_nonnull(
			    txfs_reply_record_get(r, n, keys[k], NULL));
		if (strcmp(site, "stm_body") == 0) {
			seen = true;
			ck_assert_str_eq(
			    txfs_reply_record_get(r, n, "commits", NULL), "3");
		}
	}
	ck_assert(seen);
	txfs_reply_free(r);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

/* One malformed line and the reply it earns. */
static const struct {
	const char *in;
	size_t len;
	const char *reply;
} malformed[] = {
#define LINE(s) s, sizeof(s) - 1
	{ LINE("frob\n"), "err ENOSYS unknown request 'frob'\n\n" },
	{ LINE("\x01\x02\xff garbage\n"), "err EINVAL bad verb '\?\?\?'" },
	{ LINE("ping a=\0b\n"), "err EINVAL NUL byte in request\n\n" },
	{ LINE("ping a=%zz\n"),
	  "err EINVAL bad percent escape in value of 'a'\n\n" },
	{ LINE("ping a\n"), "err EINVAL bad argument 'a': expected key=value" },
	{ LINE("\n"), "err EINVAL empty request\n\n" },
	{ LINE("Status\n"), "err EINVAL bad verb 'Status'" },
#undef LINE
};

START_TEST(malformed_lines_get_errors_and_the_line_goes_on)
{
	struct fixture f;
	char buf[4096];
	int fd;

	fixture_start(&f);
	fd = raw_connect(f.path);
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		raw_send(fd, malformed[i].in, malformed[i].len);
		raw_reply(fd, buf, sizeof(buf));
		ck_assert_msg(strncmp(buf, malformed[i].reply,
				      strlen(malformed[i].reply)) == 0,
			      "case %zu: got '%s'", i, buf);
		/* The same connection still serves a good request. */
		raw_send(fd, "ping n=1\n", 9);
		raw_reply(fd, buf, sizeof(buf));
		ck_assert_str_eq(buf, "ok\nn=1\n\n");
	}
	close(fd);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(unterminated_request_then_eof_gets_einval)
{
	struct fixture f;
	char buf[4096];
	int fd;

	fixture_start(&f);
	fd = raw_connect(f.path);
	raw_send(fd, "status", 6);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf,
			 "err EINVAL request not terminated by a newline\n\n");
	ck_assert(raw_eof(fd));
	close(fd);

	/* A complete request before the shutdown is still answered. */
	fd = raw_connect(f.path);
	raw_send(fd, "ping a=1\n", 9);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok\na=1\n\n");
	ck_assert(raw_eof(fd));
	close(fd);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(oversized_line_gets_emsgsize_and_is_closed)
{
	struct fixture f;
	char *big, buf[4096];
	size_t n = PROTO_MAX_LINE + 5000;
	int fd;

	big = malloc(n);
	ck_assert_ptr_nonnull(big);
	memcpy(big, "ping a=", 7);
	memset(big + 7, 'x', n - 7);
	fixture_start(&f);

	/* Without a newline. */
	fd = raw_connect(f.path);
	raw_send(fd, big, n);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "err EMSGSIZE request longer than 65536 "
			      "bytes\n\n");
	ck_assert(raw_eof(fd));
	close(fd);

	/* With a newline just past the limit. */
	fd = raw_connect(f.path);
	big[PROTO_MAX_LINE] = '\n';
	raw_send(fd, big, PROTO_MAX_LINE + 1);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_int_eq(strncmp(buf, "err EMSGSIZE", 12), 0);
	ck_assert(raw_eof(fd));
	close(fd);

	/* A line of exactly the limit is accepted. */
	fd = raw_connect(f.path);
	big[PROTO_MAX_LINE - 1] = '\n';
	raw_send(fd, big, PROTO_MAX_LINE);
	raw_send(fd, "ping b=2\n", 9);
	{
		char *rep = malloc(2 * PROTO_MAX_LINE);

		ck_assert_ptr_nonnull(rep);
		raw_reply(fd, rep, 2 * PROTO_MAX_LINE);
		ck_assert_int_eq(strncmp(rep, "ok\na=xxx", 8), 0);
		/* "ok\n", "a=", the value, "\n\n". */
		ck_assert_uint_eq(strlen(rep),
				  3 + 2 + (PROTO_MAX_LINE - 8) + 2);
		free(rep);
	}
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok\nb=2\n\n");
	close(fd);
	free(big);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(client_that_vanishes_mid_request_is_cleaned_up)
{
	struct fixture f;
	int fd;

	fixture_start(&f);
	for (int i = 0; i < 20; i++) {
		fd = raw_connect(f.path);
		raw_send(fd, "ping a=half", 11);
		close(fd);
	}
	/* Requests whose replies nobody reads. */
	for (int i = 0; i < 20; i++) {
		fd = raw_connect(f.path);
		raw_send(fd, "status\nstatus\nstatus\n", 21);
		close(fd);
	}
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

static void *status_thread(void *arg)
{
	const struct fixture *f = arg;

	for (int i = 0; i < 10; i++)
		assert_serving(f);
	return NULL;
}

START_TEST(fifty_concurrent_clients_are_served)
{
	pthread_t t[50];
	int fds[50];
	struct fixture f;
	char buf[4096];

	fixture_start(&f);
	/* Fifty connections open at once, all asking before any reads. */
	for (int i = 0; i < 50; i++) {
		fds[i] = raw_connect(f.path);
		raw_send(fds[i], "ping i=1\n", 9);
	}
	for (int i = 49; i >= 0; i--) {
		raw_reply(fds[i], buf, sizeof(buf));
		ck_assert_str_eq(buf, "ok\ni=1\n\n");
		close(fds[i]);
	}
	/* Fifty threads, each with its own libtxfs client. */
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, status_thread, &f),
				 0);
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	fixture_stop(&f);
}
END_TEST

START_TEST(stuck_clients_do_not_block_others)
{
	struct fixture f;
	int silent, partial, deaf;
	char line[] = "status\n";

	fixture_start(&f);
	silent = raw_connect(f.path);
	partial = raw_connect(f.path);
	raw_send(partial, "sta", 3);
	/*
	 * A client that sends requests and never reads: its replies fill the
	 * socket buffers until the server stops reading from it.
	 */
	deaf = raw_connect(f.path);
	ck_assert_int_eq(fcntl(deaf, F_SETFL, O_NONBLOCK), 0);
	for (int i = 0; i < 20000; i++) {
		if (send(deaf, line, 7, MSG_NOSIGNAL) != 7)
			break;
	}
	assert_serving(&f);
	close(silent);
	close(partial);
	close(deaf);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(too_many_clients_are_told_eagain)
{
	static int fds[CONTROL_MAX_CLIENTS];
	struct fixture f;
	char buf[4096];
	int extra;

	fixture_start(&f);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		fds[i] = raw_connect(f.path);
	extra = raw_connect(f.path);
	raw_reply(extra, buf, sizeof(buf));
	ck_assert_str_eq(buf, "err EAGAIN too many clients (at most 512)\n\n");
	ck_assert(raw_eof(extra));
	close(extra);
	/*
	 * Every client admitted before is fully served.  The ping also makes
	 * the loop see the closes that precede it, so the slots are free
	 * again before the next connection is accepted.
	 */
	for (int i = 1; i < CONTROL_MAX_CLIENTS; i++)
		close(fds[i]);
	raw_send(fds[0], "ping a=1\n", 9);
	raw_reply(fds[0], buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok\na=1\n\n");
	close(fds[0]);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(second_start_on_a_live_socket_is_eaddrinuse)
{
	struct fixture f;
	struct control *c2 = (struct control *)1;

	fixture_start(&f);
	ck_assert_int_eq(control_start(&f.info, 0600, &c2), -EADDRINUSE);
	ck_assert_ptr_null(c2);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(stale_socket_is_replaced_and_other_files_are_not)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct txfs_client *cl;
	struct fixture f;
	struct control *c;
	struct stat st;
	int fd;

	fixture_start(&f);
	control_stop(f.c);

	/* A socket file with no listener: what a crashed daemon leaves. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f.path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	ck_assert_int_eq(txfs_connect(f.path, &cl), -ECONNREFUSED);
	ck_assert_ptr_null(cl);
	ck_assert_int_eq(control_start(&f.info, 0600, &f.c), 0);
	assert_serving(&f);
	control_stop(f.c);

	/* A regular file is nobody's socket: leave it alone. */
	fd = open(f.path, O_CREAT | O_WRONLY, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(control_start(&f.info, 0600, &c), -EEXIST);
	ck_assert_int_eq(stat(f.path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(unlink(f.path), 0);
	ck_assert_int_eq(txfs_connect(f.path, &cl), -ENOENT);
	ck_assert_int_eq(rmdir(f.dir), 0);
}
END_TEST

START_TEST(stop_leaves_a_replaced_socket_alone)
{
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(unlink(f.path), 0);
	ck_assert_int_eq(mkdir(f.path, 0700), 0);
	control_stop(f.c);
	ck_assert_int_eq(rmdir(f.path), 0);
	ck_assert_int_eq(rmdir(f.dir), 0);
}
END_TEST

START_TEST(start_refuses_bad_arguments)
{
	struct control_info info = { .socket_path = NULL };
	struct control *c;
	char longpath[200];

	ck_assert_int_eq(control_start(&info, 0600, &c), -EINVAL);
	memset(longpath, 'a', sizeof(longpath));
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	info.socket_path = longpath;
	ck_assert_int_eq(control_start(&info, 0600, &c), -ENAMETOOLONG);
	info.socket_path = "/nonexistent-dir-for-test/ctl.sock";
	ck_assert_int_eq(control_start(&info, 0600, &c), -ENOENT);
}
END_TEST

/* --- Handlers registered by the tests ---------------------------------- */

/* A worker thread that completes pending replies when told to. */
struct worker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct control_reply *rep; /* the pending reply, guarded by lock */
	bool release;		   /* the test lets the worker finish */
	bool done;
	pthread_t loop_thread; /* the thread the handler ran on */
	pthread_t thread;
};

static int slow_handler(const struct control_request *req,
			struct control_reply *rep, void *arg)
{
	struct worker *w = arg;

	(void)req;
	pthread_mutex_lock(&w->lock);
	w->rep = rep;
	w->loop_thread = pthread_self();
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return CONTROL_PENDING;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct control_reply *rep;
	const char *v;

	pthread_mutex_lock(&w->lock);
	while (w->rep == NULL || !w->release)
		pthread_cond_wait(&w->cond, &w->lock);
	rep = w->rep;
	ck_assert(!pthread_equal(w->loop_thread, pthread_self()));
	pthread_mutex_unlock(&w->lock);

	v = control_request_get(control_reply_request(rep), "tag", NULL);
	control_reply_add(rep, "tag", v != NULL ? v : "");
	control_reply_add(rep, "from", "worker");
	control_reply_send(rep);

	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void worker_start(struct worker *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	ck_assert_int_eq(pthread_create(&w->thread, NULL, worker_main, w), 0);
}

/* Waits until the handler has handed its reply to the worker. */
static void worker_wait_pending(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->rep == NULL)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static void worker_finish(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->release = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
	ck_assert(w->done);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

START_TEST(pending_reply_completes_from_another_thread)
{
	struct worker w;
	struct fixture f;
	char buf[4096];
	int fd;

	fixture_start(&f);
	worker_start(&w);
	ck_assert_int_eq(control_register(f.c, "slow", slow_handler, &w), 0);
	fd = raw_connect(f.path);
	raw_send(fd, "slow tag=t%201\n", 15);
	worker_wait_pending(&w);
	/* While the request is pending, the loop serves everyone else. */
	assert_serving(&f);
	worker_finish(&w);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok\ntag=t%201\nfrom=worker\n\n");
	/* The connection serves the next request as usual. */
	raw_send(fd, "ping a=b\n", 9);
	raw_reply(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok\na=b\n\n");
	close(fd);
	fixture_stop(&f);
}
END_TEST

START_TEST(pending_reply_to_a_departed_client_is_dropped)
{
	struct worker w;
	struct fixture f;
	int fd;

	fixture_start(&f);
	worker_start(&w);
	ck_assert_int_eq(control_register(f.c, "slow", slow_handler, &w), 0);
	fd = raw_connect(f.path);
	raw_send(fd, "slow\n", 5);
	worker_wait_pending(&w);
	close(fd);
	assert_serving(&f); /* the loop has seen the EOF by now */
	worker_finish(&w);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(stop_with_a_reply_pending_is_safe)
{
	struct worker w;
	struct fixture f;
	int fd;

	fixture_start(&f);
	worker_start(&w);
	ck_assert_int_eq(control_register(f.c, "slow", slow_handler, &w), 0);
	fd = raw_connect(f.path);
	raw_send(fd, "slow\n", 5);
	worker_wait_pending(&w);
	fixture_stop(&f);
	ck_assert(raw_eof(fd));
	/* The reply is sent into a stopped server: dropped, memory freed. */
	worker_finish(&w);
	close(fd);
}
END_TEST

static int whoami_handler(const struct control_request *req,
			  struct control_reply *rep, void *arg)
{
	const struct control_peer *p = control_request_peer(req);

	(void)arg;
	control_reply_addf(rep, "pid", "%ld", (long)p->pid);
	control_reply_addf(rep, "uid", "%lu", (unsigned long)p->uid);
	control_reply_addf(rep, "gid", "%lu", (unsigned long)p->gid);
	control_reply_addf(rep, "manage_own", "%d",
			   control_peer_may_manage(p, p->uid));
	return CONTROL_DONE;
}

START_TEST(peer_credentials_reach_the_handler)
{
	struct txfs_client *cl;
	struct txfs_reply *r;
	struct fixture f;
	char want[32];

	fixture_start(&f);
	ck_assert_int_eq(control_register(f.c, "whoami", whoami_handler, NULL),
			 0);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_int_eq(txfs_request(cl, &r, "whoami", (char *)NULL), 0);
	snprintf(want, sizeof(want), "%ld", (long)getpid());
	ck_assert_str_eq(txfs_reply_get(r, "pid"), want);
	snprintf(want, sizeof(want), "%lu", (unsigned long)geteuid());
	ck_assert_str_eq(txfs_reply_get(r, "uid"), want);
	snprintf(want, sizeof(want), "%lu", (unsigned long)getegid());
	ck_assert_str_eq(txfs_reply_get(r, "gid"), want);
	ck_assert_str_eq(txfs_reply_get(r, "manage_own"), "1");
	txfs_reply_free(r);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

START_TEST(only_the_owner_or_root_may_manage)
{
	struct control_peer user = { .pid = 10, .uid = 1000, .gid = 1000 };
	struct control_peer other = { .pid = 11, .uid = 1001, .gid = 1000 };
	struct control_peer root = { .pid = 12, .uid = 0, .gid = 0 };

	ck_assert(control_peer_may_manage(&user, 1000));
	ck_assert(!control_peer_may_manage(&other, 1000));
	ck_assert(control_peer_may_manage(&root, 1000));
}
END_TEST

static int deny_handler(const struct control_request *req,
			struct control_reply *rep, void *arg)
{
	const char *id = control_request_get(req, "id", NULL);

	(void)arg;
	if (id == NULL)
		return -EBUSY;
	control_reply_add(rep, "id", id);
	control_reply_error(rep, -EPERM, "not the owner of transaction %s", id);
	return -EPERM;
}

START_TEST(handler_errors_become_err_replies)
{
	struct txfs_client *cl;
	struct txfs_reply *r;
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(control_register(f.c, "deny", deny_handler, NULL), 0);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_int_eq(txfs_request(cl, &r, "deny", "id", "12", (char *)NULL),
			 -EPERM);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(txfs_reply_error(r), -EPERM);
	ck_assert_str_eq(txfs_reply_errname(r), "EPERM");
	ck_assert_str_eq(txfs_reply_message(r),
			 "not the owner of transaction 12");
	ck_assert_str_eq(txfs_reply_get(r, "id"), "12");
	txfs_reply_free(r);
	ck_assert_int_eq(txfs_request(cl, &r, "deny", (char *)NULL), -EBUSY);
	ck_assert_str_eq(txfs_reply_message(r),
			 "deny: device or resource busy");
	txfs_reply_free(r);
	ck_assert_int_eq(txfs_request(cl, &r, "frob", (char *)NULL), -ENOSYS);
	ck_assert_str_eq(txfs_reply_message(r), "unknown request 'frob'");
	txfs_reply_free(r);
	/* An error reply does not break the connection. */
	ck_assert_int_eq(txfs_request(cl, NULL, "ping", (char *)NULL), 0);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

START_TEST(register_refuses_bad_and_duplicate_verbs)
{
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(control_register(f.c, "Bad", deny_handler, NULL),
			 -EINVAL);
	ck_assert_int_eq(control_register(f.c, "", deny_handler, NULL),
			 -EINVAL);
	ck_assert_int_eq(control_register(f.c, "ok", NULL, NULL), -EINVAL);
	ck_assert_int_eq(control_register(f.c, "status", deny_handler, NULL),
			 -EEXIST);
	for (int i = 0; i < 40; i++) {
		char verb[16];

		snprintf(verb, sizeof(verb), "v-%c%c", 'a' + i / 26,
			 'a' + i % 26);
		ck_assert_int_eq(
		    control_register(f.c, verb, deny_handler, NULL), 0);
	}
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

/* --- The client library ----------------------------------------------- */

START_TEST(client_times_out_on_a_wedged_daemon)
{
	struct txfs_client *cl;
	struct txfs_reply *r = (struct txfs_reply *)1;
	struct worker w;
	struct fixture f;

	fixture_start(&f);
	worker_start(&w);
	ck_assert_int_eq(control_register(f.c, "slow", slow_handler, &w), 0);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	txfs_set_timeout(cl, 100);
	ck_assert_int_eq(txfs_request(cl, &r, "slow", (char *)NULL),
			 -ETIMEDOUT);
	ck_assert_ptr_null(r);
	/* The connection is now out of step: the error sticks. */
	ck_assert_int_eq(txfs_request(cl, NULL, "ping", (char *)NULL),
			 -ETIMEDOUT);
	worker_finish(&w);
	txfs_close(cl);
	assert_serving(&f);
	fixture_stop(&f);
}
END_TEST

START_TEST(client_refuses_bad_requests_without_sending)
{
	struct txfs_client *cl;
	struct txfs_reply *r;
	struct fixture f;

	fixture_start(&f);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	ck_assert_int_eq(txfs_request(cl, &r, "Bad", (char *)NULL), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(txfs_request(cl, &r, "ping", "Key", "v", (char *)NULL),
			 -EINVAL);
	/* Nothing went out, so the connection is still good. */
	ck_assert_int_eq(txfs_request(cl, &r, "ping", "k", "v", (char *)NULL),
			 0);
	txfs_reply_free(r);
	txfs_close(cl);
	fixture_stop(&f);
}
END_TEST

START_TEST(client_sees_a_stopped_daemon_as_reset)
{
	struct txfs_client *cl;
	struct fixture f;
	int rc;

	fixture_start(&f);
	ck_assert_int_eq(txfs_connect(f.path, &cl), 0);
	fixture_stop(&f);
	/* Writing to a closed peer is EPIPE; reading from it, a reset. */
	rc = txfs_request(cl, NULL, "ping", (char *)NULL);
	ck_assert_msg(rc == -EPIPE || rc == -ECONNRESET, "rc %d", rc);
	txfs_close(cl);
	txfs_close(NULL);
}
END_TEST

START_TEST(connect_mount_finds_the_default_socket)
{
	char dir[] = "/tmp/test_control_mnt.XXXXXX", sock[108], tried[108];
	char sockdir[108], rt[64];
	struct control_info info = { .source = "/s", .state_dir = "/s/.t" };
	struct txfs_client *cl;
	struct txfs_status st;
	struct control *c;
	bool existed;

	/* Keep the default location inside a private runtime directory. */
	snprintf(rt, sizeof(rt), "/tmp/test_control_rt.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(rt));
	setenv("XDG_RUNTIME_DIR", rt, 1);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(txfs_default_socket(dir, sock, sizeof(sock)), 0);
	ck_assert_int_eq(txfs_connect_mount(dir, &cl, tried, sizeof(tried)),
			 -ENOENT);
	ck_assert_str_eq(tried, sock);
	ck_assert_int_eq(
	    proto_socket_dir(geteuid(), rt, sockdir, sizeof(sockdir)), 0);
	/* For root that is /run/txfs: remove it afterwards if we made it. */
	existed = access(sockdir, F_OK) == 0;
	info.mountpoint = dir;
	info.socket_path = sock;
	info.pid = getpid();
	ck_assert_int_eq(control_start(&info, 0600, &c), 0);
	ck_assert_int_eq(txfs_connect_mount(dir, &cl, tried, sizeof(tried)), 0);
	ck_assert_str_eq(tried, sock);
	ck_assert_int_eq(txfs_status(cl, &st), 0);
	ck_assert_str_eq(st.mountpoint, dir);
	txfs_status_clear(&st);
	txfs_close(cl);
	control_stop(c);
	/* A daemon started meanwhile may have put its socket there. */
	if (!existed && rmdir(sockdir) != 0)
		ck_assert_int_eq(errno, ENOTEMPTY);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_int_eq(rmdir(rt), 0);
}
END_TEST

START_TEST(default_socket_directory_is_created_private)
{
	char rt[64], sockdir[108], sock[160];
	struct control_info info = { .source = "/s" };
	struct control *c;
	struct stat st;

	if (geteuid() == 0) {
		/* Root's default is /run/txfs; exercise a user's instead. */
		ck_assert_int_eq(
		    proto_socket_dir(0, NULL, sockdir, sizeof(sockdir)), 0);
		ck_assert_str_eq(sockdir, "/run/txfs");
		return;
	}
	snprintf(rt, sizeof(rt), "/tmp/test_control_rt.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(rt));
	setenv("XDG_RUNTIME_DIR", rt, 1);
	ck_assert_int_eq(
	    proto_socket_dir(geteuid(), rt, sockdir, sizeof(sockdir)), 0);
	snprintf(sock, sizeof(sock), "%s/m.sock", sockdir);
	info.socket_path = sock;
	ck_assert_int_eq(control_start(&info, 0600, &c), 0);
	ck_assert_int_eq(lstat(sockdir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	control_stop(c);
	/* A default directory open to others is refused. */
	ck_assert_int_eq(chmod(sockdir, 0777), 0);
	ck_assert_int_eq(control_start(&info, 0600, &c), -EPERM);
	ck_assert_int_eq(rmdir(sockdir), 0);
	ck_assert_int_eq(rmdir(rt), 0);
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc;

	tc = tcase_create("verbs");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, status_reports_the_daemon);
	tcase_add_test(tc, status_is_plain_text_on_the_wire);
	tcase_add_test(tc, ping_echoes_any_bytes);
	tcase_add_test(tc, stm_reports_one_record_per_site);
	tcase_add_test(tc, handler_errors_become_err_replies);
	tcase_add_test(tc, register_refuses_bad_and_duplicate_verbs);
	suite_add_tcase(s, tc);

	tc = tcase_create("socket");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, socket_has_the_requested_mode_whatever_the_umask);
	tcase_add_test(tc, second_start_on_a_live_socket_is_eaddrinuse);
	tcase_add_test(tc, stale_socket_is_replaced_and_other_files_are_not);
	tcase_add_test(tc, stop_leaves_a_replaced_socket_alone);
	tcase_add_test(tc, start_refuses_bad_arguments);
	tcase_add_test(tc, default_socket_directory_is_created_private);
	tcase_add_test(tc, connect_mount_finds_the_default_socket);
	suite_add_tcase(s, tc);

	tc = tcase_create("robustness");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, malformed_lines_get_errors_and_the_line_goes_on);
	tcase_add_test(tc, unterminated_request_then_eof_gets_einval);
	tcase_add_test(tc, oversized_line_gets_emsgsize_and_is_closed);
	tcase_add_test(tc, client_that_vanishes_mid_request_is_cleaned_up);
	tcase_add_test(tc, fifty_concurrent_clients_are_served);
	tcase_add_test(tc, stuck_clients_do_not_block_others);
	tcase_add_test(tc, too_many_clients_are_told_eagain);
	suite_add_tcase(s, tc);

	tc = tcase_create("async");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, pending_reply_completes_from_another_thread);
	tcase_add_test(tc, pending_reply_to_a_departed_client_is_dropped);
	tcase_add_test(tc, stop_with_a_reply_pending_is_safe);
	tcase_add_test(tc, peer_credentials_reach_the_handler);
	tcase_add_test(tc, only_the_owner_or_root_may_manage);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, client_times_out_on_a_wedged_daemon);
	tcase_add_test(tc, client_refuses_bad_requests_without_sending);
	tcase_add_test(tc, client_sees_a_stopped_daemon_as_reset);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
