/*
 * txfs.c: libtxfs, the client side of the control protocol (txfs.h).
 *
 * A client is one connected, non-blocking unix socket plus a receive
 * buffer.  Each request is written and its reply read under one deadline,
 * waiting in poll(2), so a wedged daemon costs at most the timeout.
 *
 * Invariants of struct txfs_client:
 *   (1) fd is a connected socket with O_NONBLOCK set.
 *   (2) Between requests the receive buffer in is empty: the daemon
 *       sends nothing but replies, one per request, so bytes after a
 *       reply are a protocol error that breaks the connection.
 *   (3) err is 0, or the sticky negative errno of a transport failure;
 *       once set, requests fail with it without touching the socket.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "txfs.h"

struct txfs_client {
	int fd;
	int timeout_ms;
	int err;
	char *path;
	struct proto_buf in;
};

struct txfs_reply {
	struct proto_msg *msg;
};

/* Checks invariants (1) to (3) between requests. */
static bool client_invariants(const struct txfs_client *cl)
{
	return cl->fd >= 0 && cl->err <= 0 && cl->in.len == 0;
}

/* --- Finding a daemon ---------------------------------------------------- */

int txfs_default_socket(const char *mountpoint, char *buf, size_t len)
{
	return proto_default_socket(mountpoint, buf, len);
}

int txfs_find_mount(const char *path, char *mnt, size_t len)
{
	return proto_find_mount(path, mnt, len);
}

/* --- Connections --------------------------------------------------------- */

int txfs_connect(const char *socket_path, struct txfs_client **out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct txfs_client *cl;
	struct timeval tv;
	int rc;

	*out = NULL;
	if (strlen(socket_path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, socket_path);
	cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		return -ENOMEM;
	cl->timeout_ms = TXFS_DEFAULT_TIMEOUT_MS;
	proto_buf_init(&cl->in, PROTO_MAX_REPLY);
	cl->path = strdup(socket_path);
	if (cl->path == NULL) {
		rc = -ENOMEM;
		goto out_free_client;
	}
	cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cl->fd < 0) {
		rc = -errno;
		goto out_free_client;
	}
	/* A unix connect waits for room in the backlog at most this long. */
	tv.tv_sec = cl->timeout_ms / 1000;
	tv.tv_usec = (cl->timeout_ms % 1000) * 1000;
	(void)setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(cl->fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		rc = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT
							     : -errno;
		goto out_close_fd;
	}
	if (fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK) != 0) {
		rc = -errno;
		goto out_close_fd;
	}
	*out = cl;
	return 0;

out_close_fd:
	close(cl->fd);
out_free_client:
	free(cl->path);
	free(cl);
	return rc;
}

/* Copies s into buf when there is a buf. */
static void tell(char *buf, size_t len, const char *s)
{
	if (buf != NULL && len > 0)
		snprintf(buf, len, "%s", s);
}

int txfs_connect_mount(const char *mountpoint, struct txfs_client **out,
		       char *tried, size_t triedlen)
{
	char own[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char sys[sizeof(own)];
	char *canonical;
	int rc, rc2;

	*out = NULL;
	tell(tried, triedlen, "");
	rc = proto_default_socket(mountpoint, own, sizeof(own));
	if (rc != 0)
		return rc;
	tell(tried, triedlen, own);
	rc = txfs_connect(own, out);
	if (rc != -ENOENT || geteuid() == 0)
		return rc;

	/* Not root, and no daemon of ours: try where root's would be. */
	canonical = realpath(mountpoint, NULL);
	if (canonical == NULL)
		return rc;
	rc2 = proto_socket_name(canonical, 0, NULL, sys, sizeof(sys));
	free(canonical);
	if (rc2 != 0)
		return rc;
	rc2 = txfs_connect(sys, out);
	if (rc2 == -ENOENT)
		return rc;
	tell(tried, triedlen, sys);
	return rc2;
}

void txfs_close(struct txfs_client *cl)
{
	if (cl == NULL)
		return;
	if (cl->fd >= 0)
		close(cl->fd);
	proto_buf_release(&cl->in);
	free(cl->path);
	free(cl);
}

void txfs_set_timeout(struct txfs_client *cl, int timeout_ms)
{
	cl->timeout_ms = timeout_ms;
}

const char *txfs_socket_path(const struct txfs_client *cl)
{
	return cl->path;
}

/* --- Requests ------------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until fd is ready for events or the deadline (-1: none) passes.
 * Returns 0, -ETIMEDOUT or -errno.
 */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int rc, ms;

	for (;;) {
		ms = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		rc = poll(&p, 1, ms);
		if (rc > 0)
			return 0;
		if (rc == 0)
			continue; /* the loop re-checks the deadline */
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(struct txfs_client *cl, const char *p, size_t n,
		    int64_t deadline)
{
	while (n > 0) {
		ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
		int rc;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		rc = wait_fd(cl->fd, POLLOUT, deadline);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/*
 * Reads until cl->in holds a complete reply; returns its length or -errno.
 * Only what fits in one read can follow the reply in the buffer.
 */
static ssize_t recv_reply(struct txfs_client *cl, int64_t deadline)
{
	size_t scanned = 0, len;
	char chunk[65536];

	for (;;) {
		ssize_t r;
		int rc;

		len = cl->in.len == 0
			  ? 0
			  : proto_reply_length(cl->in.data + scanned,
					       cl->in.len - scanned);
		if (len != 0)
			return (ssize_t)(scanned + len);
		scanned = cl->in.len > 0 ? cl->in.len - 1 : 0;
		r = recv(cl->fd, chunk, sizeof(chunk), 0);
		if (r > 0) {
			rc = proto_buf_add(&cl->in, chunk, (size_t)r);
			if (rc != 0)
				return rc;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		rc = wait_fd(cl->fd, POLLIN, deadline);
		if (rc != 0)
			return rc;
	}
}

int txfs_requestv(struct txfs_client *cl, struct txfs_reply **out,
		  const char *verb, const struct txfs_arg *args, size_t nargs)
{
	struct txfs_reply *r = NULL;
	struct proto_msg *msg = NULL;
	struct proto_buf req;
	int64_t deadline;
	ssize_t n;
	int rc;

	if (out != NULL)
		*out = NULL;
	assert(client_invariants(cl));
	if (cl->err != 0)
		return cl->err;
	proto_buf_init(&req, PROTO_MAX_LINE);
	rc = proto_request_begin(&req, verb);
	for (size_t i = 0; rc == 0 && i < nargs; i++)
		rc = proto_request_add(&req, args[i].key, args[i].value,
				       args[i].len);
	if (rc == 0)
		rc = proto_request_end(&req);
	if (rc != 0)
		goto out_release_req; /* nothing was sent: not sticky */

	deadline = cl->timeout_ms < 0 ? -1 : now_ms() + cl->timeout_ms;
	rc = send_all(cl, req.data, req.len, deadline);
	if (rc != 0)
		goto out_broken;
	n = recv_reply(cl, deadline);
	if (n < 0) {
		rc = (int)n;
		goto out_broken;
	}
	rc = proto_parse_reply(cl->in.data, (size_t)n, &msg, NULL, 0);
	if (rc != 0) {
		rc = rc == -ENOMEM ? rc : -EPROTO;
		goto out_broken;
	}
	if ((size_t)n != cl->in.len)
		cl->err = -EPROTO; /* unasked-for bytes: see invariant (2) */
	proto_buf_reset(&cl->in);
	r = malloc(sizeof(*r));
	if (r == NULL) {
		proto_msg_free(msg);
		rc = -ENOMEM;
		goto out_release_req;
	}
	r->msg = msg;
	rc = proto_msg_error(msg);
	if (out != NULL)
		*out = r;
	else
		txfs_reply_free(r);
	goto out_release_req;

out_broken:
	cl->err = rc;
	proto_buf_reset(&cl->in);
out_release_req:
	proto_buf_release(&req);
	assert(client_invariants(cl));
	return rc;
}

int txfs_request(struct txfs_client *cl, struct txfs_reply **out,
		 const char *verb, ...)
{
	struct txfs_arg args[PROTO_MAX_ARGS + 1];
	const char *key;
	size_t n = 0;
	va_list ap;

	va_start(ap, verb);
	while ((key = va_arg(ap, const char *)) != NULL) {
		const char *val = va_arg(ap, const char *);

		if (n == PROTO_MAX_ARGS || val == NULL) {
			va_end(ap);
			if (out != NULL)
				*out = NULL;
			return n == PROTO_MAX_ARGS ? -E2BIG : -EINVAL;
		}
		args[n].key = key;
		args[n].value = val;
		args[n].len = strlen(val);
		n++;
	}
	va_end(ap);
	return txfs_requestv(cl, out, verb, args, n);
}

/* --- Replies ------------------------------------------------------------- */

void txfs_reply_free(struct txfs_reply *r)
{
	if (r == NULL)
		return;
	proto_msg_free(r->msg);
	free(r);
}

int txfs_reply_error(const struct txfs_reply *r)
{
	return proto_msg_error(r->msg);
}

const char *txfs_reply_errname(const struct txfs_reply *r)
{
	return proto_msg_errname(r->msg);
}

const char *txfs_reply_message(const struct txfs_reply *r)
{
	return proto_msg_message(r->msg);
}

const char *txfs_reply_get(const struct txfs_reply *r, const char *key)
{
	return proto_msg_get(r->msg, 0, key, NULL);
}

size_t txfs_reply_records(const struct txfs_reply *r)
{
	return proto_msg_records(r->msg);
}

const char *txfs_reply_record_get(const struct txfs_reply *r, size_t n,
				  const char *key, size_t *len)
{
	return proto_msg_get(r->msg, n, key, len);
}

size_t txfs_reply_count(const struct txfs_reply *r)
{
	return proto_msg_count(r->msg);
}

int txfs_reply_field(const struct txfs_reply *r, size_t i, const char **key,
		     const char **value, size_t *len, size_t *record)
{
	return proto_msg_field(r->msg, i, key, value, len, record);
}

/* --- Typed requests ------------------------------------------------------ */

/* Parses a decimal field of r into *out; -EPROTO if absent or bad. */
static int get_u64(const struct txfs_reply *r, const char *key, uint64_t *out)
{
	const char *s = txfs_reply_get(r, key);
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EPROTO;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EPROTO;
	return 0;
}

/* Copies a string field of r into *out; -EPROTO if absent. */
static int get_str(const struct txfs_reply *r, const char *key, char **out)
{
	const char *s = txfs_reply_get(r, key);

	if (s == NULL)
		return -EPROTO;
	*out = strdup(s);
	return *out != NULL ? 0 : -ENOMEM;
}

int txfs_status(struct txfs_client *cl, struct txfs_status *st)
{
	struct txfs_reply *r;
	uint64_t protocol = 0, pid = 0, started = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	rc = txfs_request(cl, &r, "status", (char *)NULL);
	if (rc != 0)
		goto out_free_reply;
	if ((rc = get_u64(r, "protocol", &protocol)) != 0 ||
	    (rc = get_u64(r, "pid", &pid)) != 0 ||
	    (rc = get_u64(r, "started", &started)) != 0 ||
	    (rc = get_u64(r, "uptime", &st->uptime)) != 0 ||
	    (rc = get_str(r, "version", &st->version)) != 0 ||
	    (rc = get_str(r, "source", &st->source)) != 0 ||
	    (rc = get_str(r, "mountpoint", &st->mountpoint)) != 0 ||
	    (rc = get_str(r, "state_dir", &st->state_dir)) != 0 ||
	    (rc = get_str(r, "socket", &st->socket)) != 0)
		goto out_clear_status;
	if (protocol > UINT32_MAX || pid > LONG_MAX || started > INT64_MAX) {
		rc = -EPROTO;
		goto out_clear_status;
	}
	st->protocol = (unsigned)protocol;
	st->pid = (long)pid;
	st->started = (int64_t)started;
	txfs_reply_free(r);
	return 0;

out_clear_status:
	txfs_status_clear(st);
out_free_reply:
	txfs_reply_free(r);
	return rc;
}

void txfs_status_clear(struct txfs_status *st)
{
	if (st == NULL)
		return;
	free(st->version);
	free(st->source);
	free(st->mountpoint);
	free(st->state_dir);
	free(st->socket);
	memset(st, 0, sizeof(*st));
}
