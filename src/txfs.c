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
 *   (4) has_message is true exactly when the last request was answered
 *       "err", and message then holds that answer's message.
 *
 * The typed requests at the end build on txfs_requestv and parse replies
 * strictly: a field they need that is missing or malformed makes them
 * fail with -EPROTO rather than report a guess.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
	bool has_message;
	char message[PROTO_MAX_MESSAGE + 1];
};

struct txfs_reply {
	struct proto_msg *msg;
};

/* Checks invariants (1) to (4) between requests. */
static bool client_invariants(const struct txfs_client *cl)
{
	return cl->fd >= 0 && cl->err <= 0 && cl->in.len == 0 &&
	       (cl->has_message || cl->message[0] == '\0');
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

const char *txfs_last_message(const struct txfs_client *cl)
{
	return cl->has_message ? cl->message : NULL;
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
	cl->has_message = false;
	cl->message[0] = '\0';
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
	if (rc != 0) {
		snprintf(cl->message, sizeof(cl->message), "%s",
			 proto_msg_message(msg));
		cl->has_message = true;
	}
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
			cl->has_message = false;
			cl->message[0] = '\0';
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

/*
 * Parses the decimal value of key in record rec of r into *out; -EPROTO
 * when it is absent or not a plain run of digits that fits.
 */
static int get_u64(const struct txfs_reply *r, size_t rec, const char *key,
		   uint64_t *out)
{
	size_t len;
	const char *s = txfs_reply_record_get(r, rec, key, &len);
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EPROTO;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || (size_t)(end - s) != len)
		return -EPROTO;
	return 0;
}

/*
 * Copies the value of key in record rec of r into *out; -EPROTO when it
 * is absent or holds a NUL byte, which no string of the protocol may.
 */
static int get_str(const struct txfs_reply *r, size_t rec, const char *key,
		   char **out)
{
	size_t len;
	const char *s = txfs_reply_record_get(r, rec, key, &len);

	if (s == NULL || strlen(s) != len)
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
	if ((rc = get_u64(r, 0, "protocol", &protocol)) != 0 ||
	    (rc = get_u64(r, 0, "pid", &pid)) != 0 ||
	    (rc = get_u64(r, 0, "started", &started)) != 0 ||
	    (rc = get_u64(r, 0, "uptime", &st->uptime)) != 0 ||
	    (rc = get_str(r, 0, "version", &st->version)) != 0 ||
	    (rc = get_str(r, 0, "source", &st->source)) != 0 ||
	    (rc = get_str(r, 0, "mountpoint", &st->mountpoint)) != 0 ||
	    (rc = get_str(r, 0, "state_dir", &st->state_dir)) != 0 ||
	    (rc = get_str(r, 0, "socket", &st->socket)) != 0)
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

int txfs_recovery(struct txfs_client *cl, struct txfs_recovery *out)
{
	struct txfs_reply *r;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = txfs_request(cl, &r, "recovery", (char *)NULL);
	if (rc == 0 &&
	    ((rc = get_u64(r, 0, "records", &out->records)) != 0 ||
	     (rc = get_u64(r, 0, "steps", &out->steps)) != 0 ||
	     (rc = get_u64(r, 0, "already", &out->already)) != 0 ||
	     (rc = get_u64(r, 0, "skipped", &out->skipped)) != 0 ||
	     (rc = get_u64(r, 0, "discarded", &out->discarded)) != 0 ||
	     (rc = get_u64(r, 0, "ms", &out->ms)) != 0))
		memset(out, 0, sizeof(*out));
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

/* --- Transactions -------------------------------------------------------- */

/* A decimal number as a request argument; buf must outlive the request. */
static struct txfs_arg num_arg(const char *key, uint64_t v, char *buf,
			       size_t len)
{
	snprintf(buf, len, "%" PRIu64, v);
	return (
	    struct txfs_arg){ .key = key, .value = buf, .len = strlen(buf) };
}

/* Sends verb with the argument txid=N, or none when txid is 0. */
static int tx_request(struct txfs_client *cl, struct txfs_reply **out,
		      const char *verb, uint64_t txid)
{
	char num[24];
	struct txfs_arg arg = num_arg("txid", txid, num, sizeof(num));

	return txfs_requestv(cl, out, verb, &arg, txid != 0 ? 1 : 0);
}

int txfs_begin(struct txfs_client *cl, pid_t pid, const char *label,
	       unsigned flags, uint64_t *txid)
{
	struct txfs_reply *r;
	struct txfs_arg args[3];
	char num[24];
	size_t n = 0;
	uint64_t id = 0;
	int rc;

	*txid = 0;
	if ((flags & ~TXFS_BEGIN_ABORT_ON_CLOSE) != 0 || pid < 0)
		return -EINVAL;
	if (pid > 0)
		args[n++] = num_arg("pid", (uint64_t)pid, num, sizeof(num));
	if (label != NULL)
		args[n++] = (struct txfs_arg){ .key = "label",
					       .value = label,
					       .len = strlen(label) };
	if (flags & TXFS_BEGIN_ABORT_ON_CLOSE)
		args[n++] = (struct txfs_arg){ .key = "abort_on_close",
					       .value = "1",
					       .len = 1 };
	rc = txfs_requestv(cl, &r, "begin", args, n);
	if (rc == 0 && (rc = get_u64(r, 0, "txid", &id)) == 0 && id == 0)
		rc = -EPROTO;
	if (rc == 0)
		*txid = id;
	txfs_reply_free(r);
	return rc;
}

/*
 * Collects the path of every record of a conflict reply into res.  A
 * record without a usable path is skipped: the transaction has been
 * aborted either way, and that is what the caller must learn.
 */
static int collect_conflicts(const struct txfs_reply *r,
			     struct txfs_commit_result *res)
{
	size_t n = txfs_reply_records(r);

	if (n == 0)
		return 0;
	res->conflicts = calloc(n, sizeof(*res->conflicts));
	if (res->conflicts == NULL)
		return -ENOMEM;
	for (size_t i = 1; i <= n; i++) {
		char *path;
		int rc = get_str(r, i, "path", &path);

		if (rc == -ENOMEM)
			return rc;
		if (rc == 0)
			res->conflicts[res->nconflicts++] = path;
	}
	return 0;
}

int txfs_commit(struct txfs_client *cl, uint64_t txid,
		struct txfs_commit_result *res)
{
	struct txfs_reply *r;
	int rc, rc2;

	memset(res, 0, sizeof(*res));
	rc = tx_request(cl, &r, "commit", txid);
	if (rc == 0) {
		if ((rc = get_u64(r, 0, "txid", &res->txid)) != 0 ||
		    (rc = get_u64(r, 0, "changes", &res->changes)) != 0 ||
		    (rc = get_u64(r, 0, "ms", &res->ms)) != 0 || res->txid == 0)
			goto out_clear_result;
	} else if (r != NULL && rc == -ECANCELED) {
		if (get_u64(r, 0, "txid", &res->txid) != 0)
			res->txid = txid;
		rc2 = collect_conflicts(r, res);
		if (rc2 != 0) {
			rc = rc2;
			goto out_clear_result;
		}
	}
	txfs_reply_free(r);
	return rc;

out_clear_result:
	rc = rc != 0 ? rc : -EPROTO;
	txfs_commit_result_clear(res);
	txfs_reply_free(r);
	return rc;
}

void txfs_commit_result_clear(struct txfs_commit_result *res)
{
	if (res == NULL)
		return;
	for (size_t i = 0; i < res->nconflicts; i++)
		free(res->conflicts[i]);
	free(res->conflicts);
	memset(res, 0, sizeof(*res));
}

int txfs_abort(struct txfs_client *cl, uint64_t txid)
{
	return tx_request(cl, NULL, "abort", txid);
}

int txfs_bind(struct txfs_client *cl, uint64_t txid, pid_t pid)
{
	char num1[24], num2[24];
	struct txfs_arg args[2];

	if (txid == 0 || pid < 0)
		return -EINVAL;
	args[0] = num_arg("txid", txid, num1, sizeof(num1));
	args[1] = num_arg("pid", (uint64_t)(pid > 0 ? pid : getpid()), num2,
			  sizeof(num2));
	return txfs_requestv(cl, NULL, "bind", args, 2);
}

/* Fills *info from the fields of record rec; on failure it holds nothing. */
static int parse_tx_info(const struct txfs_reply *r, size_t rec,
			 struct txfs_tx_info *info)
{
	uint64_t uid, leader, started;
	int rc;

	memset(info, 0, sizeof(*info));
	if ((rc = get_u64(r, rec, "txid", &info->txid)) != 0 ||
	    (rc = get_u64(r, rec, "uid", &uid)) != 0 ||
	    (rc = get_u64(r, rec, "leader", &leader)) != 0 ||
	    (rc = get_u64(r, rec, "started", &started)) != 0 ||
	    (rc = get_u64(r, rec, "age", &info->age)) != 0 ||
	    (rc = get_u64(r, rec, "changes", &info->changes)) != 0 ||
	    (rc = get_u64(r, rec, "members", &info->members)) != 0 ||
	    (rc = get_str(r, rec, "label", &info->label)) != 0 ||
	    (rc = get_str(r, rec, "state", &info->state)) != 0)
		goto out_clear_info;
	if (info->txid == 0 || uid > UINT32_MAX || leader > LONG_MAX ||
	    started > INT64_MAX) {
		rc = -EPROTO;
		goto out_clear_info;
	}
	info->uid = (uint32_t)uid;
	info->leader = (long)leader;
	info->started = (int64_t)started;
	return 0;

out_clear_info:
	txfs_tx_info_clear(info);
	return rc;
}

int txfs_list(struct txfs_client *cl, struct txfs_tx_info **out, size_t *n)
{
	struct txfs_tx_info *list = NULL;
	struct txfs_reply *r;
	size_t count, done = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = txfs_request(cl, &r, "list", (char *)NULL);
	if (rc != 0)
		goto out_free_reply;
	count = txfs_reply_records(r);
	if (count > 0) {
		list = calloc(count, sizeof(*list));
		if (list == NULL) {
			rc = -ENOMEM;
			goto out_free_reply;
		}
	}
	for (; done < count; done++) {
		rc = parse_tx_info(r, done + 1, &list[done]);
		if (rc != 0)
			goto out_free_list;
	}
	txfs_reply_free(r);
	*out = list;
	*n = count;
	return 0;

out_free_list:
	txfs_tx_list_free(list, done);
out_free_reply:
	txfs_reply_free(r);
	return rc;
}

int txfs_show(struct txfs_client *cl, uint64_t txid, struct txfs_tx_info *out)
{
	struct txfs_reply *r;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = tx_request(cl, &r, "show", txid);
	if (rc != 0)
		goto out_free_reply;
	rc = parse_tx_info(r, 0, out);
	if (rc != 0)
		goto out_free_reply;
	n = txfs_reply_records(r);
	if (n > 0) {
		out->paths = calloc(n, sizeof(*out->paths));
		out->kinds = calloc(n, sizeof(*out->kinds));
		if (out->paths == NULL || out->kinds == NULL) {
			rc = -ENOMEM;
			goto out_clear_info;
		}
	}
	for (size_t i = 1; i <= n; i++) {
		char *path, *kind;

		if ((rc = get_str(r, i, "path", &path)) != 0)
			goto out_clear_info;
		if ((rc = get_str(r, i, "change", &kind)) != 0) {
			free(path);
			goto out_clear_info;
		}
		out->paths[out->npaths] = path;
		out->kinds[out->npaths++] = kind;
	}
	txfs_reply_free(r);
	return 0;

out_clear_info:
	txfs_tx_info_clear(out);
out_free_reply:
	txfs_reply_free(r);
	return rc;
}

void txfs_tx_info_clear(struct txfs_tx_info *info)
{
	if (info == NULL)
		return;
	for (size_t i = 0; i < info->npaths; i++) {
		free(info->paths[i]);
		free(info->kinds[i]);
	}
	free(info->paths);
	free(info->kinds);
	free(info->label);
	free(info->state);
	memset(info, 0, sizeof(*info));
}

void txfs_tx_list_free(struct txfs_tx_info *list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		txfs_tx_info_clear(&list[i]);
	free(list);
}

/* --- Diff ---------------------------------------------------------------- */

/*
 * Copies the value of key in record rec of r into *out, or sets it to
 * NULL when there is none; -EPROTO when it holds a NUL byte.
 */
static int get_opt_str(const struct txfs_reply *r, size_t rec, const char *key,
		       char **out)
{
	*out = NULL;
	if (txfs_reply_record_get(r, rec, key, NULL) == NULL)
		return 0;
	return get_str(r, rec, key, out);
}

/*
 * Reads the one-letter value of key in record rec of r into *out; -EPROTO
 * when it is absent or is not exactly one of the letters in allowed.
 */
static int get_letter(const struct txfs_reply *r, size_t rec, const char *key,
		      const char *allowed, char *out)
{
	size_t len;
	const char *s = txfs_reply_record_get(r, rec, key, &len);

	if (s == NULL || len != 1 || s[0] == '\0' ||
	    strchr(allowed, s[0]) == NULL)
		return -EPROTO;
	*out = s[0];
	return 0;
}

static void change_clear(struct txfs_change *c)
{
	free(c->path);
	free(c->old);
	free(c->old_file);
	free(c->new_file);
	memset(c, 0, sizeof(*c));
}

/*
 * Fills *c from record rec of a diff reply; on failure it holds nothing.
 * Besides a missing or malformed field, a contradictory one is -EPROTO:
 * an old path on anything but a rename (or none on a rename), a base
 * version of an added object, a new version of a deleted one, or a
 * version that is not an absolute path.
 */
static int parse_change(const struct txfs_reply *r, size_t rec,
			struct txfs_change *c)
{
	const char *mode;
	size_t len;
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = get_letter(r, rec, "change", "AMDRT", &c->change)) != 0 ||
	    (rc = get_letter(r, rec, "type", "fdlpscb", &c->type)) != 0 ||
	    (rc = get_str(r, rec, "path", &c->path)) != 0 ||
	    (rc = get_opt_str(r, rec, "old", &c->old)) != 0 ||
	    (rc = get_opt_str(r, rec, "old_file", &c->old_file)) != 0 ||
	    (rc = get_opt_str(r, rec, "new_file", &c->new_file)) != 0)
		goto out_clear_change;
	mode = txfs_reply_record_get(r, rec, "mode_changed", &len);
	if (mode != NULL && (len != 1 || (mode[0] != '0' && mode[0] != '1')))
		rc = -EPROTO;
	c->mode_changed = mode != NULL && mode[0] == '1';
	if (c->path[0] == '\0' || (c->change == 'R') != (c->old != NULL) ||
	    (c->old != NULL && c->old[0] == '\0') ||
	    (c->change == 'A' && c->old_file != NULL) ||
	    (c->change == 'D' && c->new_file != NULL) ||
	    (c->old_file != NULL && c->old_file[0] != '/') ||
	    (c->new_file != NULL && c->new_file[0] != '/'))
		rc = -EPROTO;
	if (rc != 0)
		goto out_clear_change;
	return 0;

out_clear_change:
	change_clear(c);
	return rc;
}

int txfs_diff(struct txfs_client *cl, uint64_t txid, struct txfs_change **out,
	      size_t *n)
{
	struct txfs_change *list = NULL;
	struct txfs_reply *r;
	size_t count, done = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = tx_request(cl, &r, "diff", txid);
	if (rc != 0)
		goto out_free_reply;
	count = txfs_reply_records(r);
	if (count > 0) {
		list = calloc(count, sizeof(*list));
		if (list == NULL) {
			rc = -ENOMEM;
			goto out_free_reply;
		}
	}
	for (; done < count; done++) {
		rc = parse_change(r, done + 1, &list[done]);
		if (rc != 0)
			goto out_free_list;
	}
	txfs_reply_free(r);
	*out = list;
	*n = count;
	return 0;

out_free_list:
	txfs_changes_free(list, done);
out_free_reply:
	txfs_reply_free(r);
	return rc;
}

void txfs_changes_free(struct txfs_change *changes, size_t n)
{
	if (changes == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		change_clear(&changes[i]);
	free(changes);
}
