/*
 * control.c: the control socket server (see control.h for the interface
 * and txfsd(8), CONTROL PROTOCOL, for the wire contract).
 *
 * One libuv loop, run by one thread (the loop thread), serves a listening
 * unix socket and every client connection.  All I/O is non-blocking, so a
 * slow or silent client costs a file descriptor and at most PROTO_MAX_LINE
 * bytes of buffer, never the attention of the loop.  Each connection
 * handles one request at a time: a line is read, parsed by proto.c,
 * dispatched through the verb table, and its reply written before the next
 * line is looked at.  Replies completed on other threads come back through
 * the done queue and a uv_async_t.
 *
 * Client states, and the function behind each transition:
 *
 *   IDLE    -> BUSY     [dispatch: the handler returned CONTROL_PENDING]
 *   IDLE    -> WRITING  [send_reply, send_error: a reply is being written]
 *   BUSY    -> WRITING  [on_async: control_reply_send() completed the call]
 *   WRITING -> IDLE     [on_write]
 *   any     -> CLOSING  [client_close: EOF, I/O error, bad framing, stop]
 *
 * Server states: RUNNING -> STOPPING [control_stop sets stopping; on_async
 * closes every handle and the loop ends] -> RELEASED [control_stop after
 * joining the thread; the memory goes with the last pending call].
 *
 * Invariants (checked by control_invariants on the loop thread):
 *   (1) nclients is the length of the client list, and every client on
 *       it has c as its server.
 *   (2) A client is BUSY exactly when it has a call, and that call points
 *       back to it.  Calls whose client went away point to NULL.
 *   (3) A client's input buffer holds at most PROTO_MAX_LINE bytes, and
 *       the client reads only while it is not CLOSING, has not seen EOF,
 *       is not to be closed after its reply, and is below that limit.
 *   (4) Only the loop thread touches clients and libuv handles; only the
 *       thread that owns a pending call (its handler's worker) touches its
 *       reply until control_reply_send() hands it back under the lock.
 *   (5) calls counts every call created and not yet freed; the server's
 *       memory is freed when it is RELEASED and calls is 0.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "control.h"
#include "log.h"
#include "proto.h"
#include "stm.h"

#ifndef TXFS_VERSION
#define TXFS_VERSION "unknown"
#endif

/* Room for the status line in front of a reply's fields. */
#define STATUS_ROOM (PROTO_MAX_MESSAGE + 64)

#define container_of(p, type, member)                                          \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

enum client_state { CLIENT_IDLE, CLIENT_BUSY, CLIENT_WRITING, CLIENT_CLOSING };

struct control_request {
	struct proto_msg *msg;
	struct control_peer peer;
};

struct control_reply {
	struct proto_buf body; /* the fields, in wire form */
	int err;	       /* 0 or a negative errno */
	char message[PROTO_MAX_MESSAGE + 1];
};

/* One request and its reply, from dispatch until the reply is written. */
struct control_call {
	struct control_request req;
	struct control_reply rep;
	struct control *c;
	struct client *client;		/* loop thread; NULL once it left */
	bool queued;			/* guarded by c->lock */
	struct control_call *next_done; /* guarded by c->lock */
};

/* One connection.  Owned by the loop thread. */
struct client {
	struct control *c;
	uv_pipe_t pipe;
	uv_write_t wreq;
	struct control_peer peer;
	enum client_state state;
	char *in; /* received bytes not yet consumed */
	size_t inlen;
	size_t incap;
	struct proto_buf out; /* the reply being written */
	struct control_call *call;
	bool eof;
	bool reading;
	bool close_after_write;
	struct client *prev, *next;
};

struct verb {
	char name[PROTO_MAX_VERB + 1];
	control_handler fn;
	void *arg;
};

struct control {
	/* Immutable once the loop thread runs. */
	char *source, *mountpoint, *state_dir, *socket_path;
	pid_t pid;
	struct timespec started;
	dev_t sock_dev;
	ino_t sock_ino;

	/* Used by control_start and control_stop only. */
	uv_thread_t thread;

	/* Owned by the loop thread. */
	uv_loop_t loop;
	uv_pipe_t server;
	uv_async_t async;
	struct client *clients;
	size_t nclients;
	bool closing;

	/* Guarded by lock. */
	pthread_mutex_t lock;
	struct verb *verbs;
	size_t nverbs, capverbs;
	struct control_call *done_head, *done_tail;
	size_t calls;
	uint64_t next_conn;
	control_close_fn on_close;
	void *on_close_arg;
	bool stopping;
	bool async_closed;
	bool released;
};

static void client_advance(struct client *cl);
static void client_close(struct client *cl);

/* ------------------------------------------------------------------------
 * Requests and replies
 */

const char *control_request_verb(const struct control_request *req)
{
	return proto_msg_verb(req->msg);
}

const struct control_peer *
control_request_peer(const struct control_request *req)
{
	return &req->peer;
}

const char *control_request_get(const struct control_request *req,
				const char *key, size_t *len)
{
	return proto_msg_get(req->msg, 0, key, len);
}

size_t control_request_count(const struct control_request *req)
{
	return proto_msg_count(req->msg);
}

int control_request_arg(const struct control_request *req, size_t i,
			const char **key, const char **val, size_t *len)
{
	return proto_msg_field(req->msg, i, key, val, len, NULL);
}

bool control_peer_may_manage(const struct control_peer *peer, uid_t owner)
{
	return peer->uid == 0 || peer->uid == owner;
}

int control_reply_addn(struct control_reply *rep, const char *key,
		       const void *value, size_t n)
{
	return proto_reply_field(&rep->body, key, value, n);
}

int control_reply_add(struct control_reply *rep, const char *key,
		      const char *value)
{
	return control_reply_addn(rep, key, value, strlen(value));
}

int control_reply_addf(struct control_reply *rep, const char *key,
		       const char *fmt, ...)
{
	struct proto_buf tmp;
	va_list ap;
	int rc;

	proto_buf_init(&tmp, PROTO_MAX_REPLY);
	va_start(ap, fmt);
	rc = proto_buf_vaddf(&tmp, fmt, ap);
	va_end(ap);
	if (rc == 0)
		rc = control_reply_addn(rep, key, tmp.data, tmp.len);
	proto_buf_release(&tmp);
	return rc;
}

int control_reply_record(struct control_reply *rep)
{
	return proto_reply_record(&rep->body);
}

int control_reply_error(struct control_reply *rep, int err, const char *fmt,
			...)
{
	va_list ap;

	rep->err = err < 0 ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
	va_end(ap);
	return 0;
}

const struct control_request *
control_reply_request(const struct control_reply *rep)
{
	return &container_of(rep, struct control_call, rep)->req;
}

/* Creates a call for msg (which it takes over).  Loop thread. */
static struct control_call *call_new(struct control *c, struct client *cl,
				     struct proto_msg *msg)
{
	struct control_call *call;

	call = calloc(1, sizeof(*call));
	if (call == NULL)
		return NULL;
	call->req.msg = msg;
	call->req.peer = cl->peer;
	proto_buf_init(&call->rep.body, PROTO_MAX_REPLY - STATUS_ROOM);
	call->c = c;
	call->client = cl;
	pthread_mutex_lock(&c->lock);
	c->calls++;
	pthread_mutex_unlock(&c->lock);
	return call;
}

/* Frees a call's memory; the caller has already uncounted it. */
static void call_release(struct control_call *call)
{
	proto_msg_free(call->req.msg);
	proto_buf_release(&call->rep.body);
	free(call);
}

/* Frees the server's memory (invariant (5) says when). */
static void control_free(struct control *c)
{
	pthread_mutex_destroy(&c->lock);
	free(c->verbs);
	free(c->source);
	free(c->mountpoint);
	free(c->state_dir);
	free(c->socket_path);
	free(c);
}

/* Uncounts and frees a call; the server is not yet released. */
static void call_free(struct control_call *call)
{
	struct control *c = call->c;

	pthread_mutex_lock(&c->lock);
	assert(c->calls > 0 && !c->released);
	c->calls--;
	pthread_mutex_unlock(&c->lock);
	call_release(call);
}

void control_reply_send(struct control_reply *rep)
{
	struct control_call *call = container_of(rep, struct control_call, rep);
	struct control *c = call->c;
	bool last = false, drop = false;

	pthread_mutex_lock(&c->lock);
	assert(!call->queued);
	call->queued = true;
	if (c->released) {
		/* The server is gone; so is the client. */
		drop = true;
		last = --c->calls == 0;
	} else {
		call->next_done = NULL;
		if (c->done_tail != NULL)
			c->done_tail->next_done = call;
		else
			c->done_head = call;
		c->done_tail = call;
		if (!c->async_closed)
			uv_async_send(&c->async);
	}
	pthread_mutex_unlock(&c->lock);
	if (drop)
		call_release(call);
	if (last)
		control_free(c);
}

/* ------------------------------------------------------------------------
 * Clients (loop thread)
 */

/* Offers libuv the free end of the input buffer, growing it to the cap. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *cl = h->data;

	(void)suggested;
	if (cl->inlen == cl->incap && cl->incap < PROTO_MAX_LINE) {
		size_t cap = cl->incap != 0 ? cl->incap * 2 : 4096;
		char *p;

		if (cap > PROTO_MAX_LINE)
			cap = PROTO_MAX_LINE;
		p = realloc(cl->in, cap);
		if (p != NULL) {
			cl->in = p;
			cl->incap = cap;
		}
	}
	/* A zero-length buffer makes libuv report UV_ENOBUFS. */
	buf->base = cl->in != NULL ? cl->in + cl->inlen : NULL;
	buf->len = cl->incap - cl->inlen;
}

/* Takes in received bytes, EOF or a read error. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *cl = s->data;

	(void)buf;
	if (nread > 0) {
		cl->inlen += (size_t)nread;
		client_advance(cl);
	} else if (nread == UV_EOF) {
		cl->eof = true;
		client_advance(cl);
	} else if (nread < 0) {
		client_close(cl);
	}
}

/* Starts or stops reading so that invariant (3) holds. */
static void set_reading(struct client *cl)
{
	bool want = cl->state != CLIENT_CLOSING && !cl->eof &&
		    !cl->close_after_write && cl->inlen < PROTO_MAX_LINE;

	if (want && !cl->reading) {
		if (uv_read_start((uv_stream_t *)&cl->pipe, on_alloc,
				  on_read) != 0) {
			client_close(cl);
			return;
		}
	} else if (!want && cl->reading) {
		uv_read_stop((uv_stream_t *)&cl->pipe);
	}
	cl->reading = want;
}

/* Frees a client once libuv is done with its handle. */
static void on_client_closed(uv_handle_t *h)
{
	struct client *cl = h->data;
	struct control *c = cl->c;

	if (cl->prev != NULL)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next != NULL)
		cl->next->prev = cl->prev;
	c->nclients--;
	free(cl->in);
	proto_buf_release(&cl->out);
	free(cl);
}

/* Starts closing a client; closing it again does nothing. */
static void client_close(struct client *cl)
{
	control_close_fn fn;
	void *arg;

	if (cl->state == CLIENT_CLOSING)
		return;
	cl->state = CLIENT_CLOSING;
	pthread_mutex_lock(&cl->c->lock);
	fn = cl->c->on_close;
	arg = cl->c->on_close_arg;
	pthread_mutex_unlock(&cl->c->lock);
	if (fn != NULL && cl->peer.conn != 0)
		fn(&cl->peer, arg);
	if (cl->call != NULL) {
		/* The handler still owns the call; it will be dropped. */
		cl->call->client = NULL;
		cl->call = NULL;
	}
	cl->reading = false;
	uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

/* A reply has been written (or failed): go on with the next request. */
static void on_write(uv_write_t *req, int status)
{
	struct client *cl = req->data;

	if (cl->state == CLIENT_CLOSING)
		return;
	if (status < 0) {
		client_close(cl);
		return;
	}
	assert(control_invariants(cl->c));
	proto_buf_reset(&cl->out);
	cl->state = CLIENT_IDLE;
	if (cl->close_after_write) {
		client_close(cl);
		return;
	}
	client_advance(cl);
}

/* Writes cl->out, which holds a whole reply. */
static void client_write(struct client *cl)
{
	uv_buf_t buf;

	if (cl->out.err != 0) {
		/* Not even the error fitted: give up on this client. */
		client_close(cl);
		return;
	}
	buf = uv_buf_init(cl->out.data, (unsigned int)cl->out.len);
	cl->wreq.data = cl;
	cl->state = CLIENT_WRITING;
	if (uv_write(&cl->wreq, (uv_stream_t *)&cl->pipe, &buf, 1, on_write) !=
	    0)
		client_close(cl);
}

static void send_error(struct client *cl, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers "err" with no fields. */
static void send_error(struct client *cl, int err, const char *fmt, ...)
{
	char msg[PROTO_MAX_MESSAGE + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	proto_buf_reset(&cl->out);
	proto_reply_status(&cl->out, err, msg);
	proto_reply_end(&cl->out);
	client_write(cl);
}

/* Writes the reply of a finished call and frees the call. */
static void send_reply(struct client *cl, struct control_call *call)
{
	struct control_reply *rep = &call->rep;

	cl->call = NULL;
	proto_buf_reset(&cl->out);
	if (rep->body.err != 0) {
		proto_reply_status(&cl->out, rep->body.err,
				   rep->body.err == -EMSGSIZE
				       ? "reply too large to send"
				       : "out of memory for the reply");
	} else {
		proto_reply_status(&cl->out, rep->err, rep->message);
		proto_buf_add(&cl->out, rep->body.data, rep->body.len);
	}
	proto_reply_end(&cl->out);
	call_free(call);
	client_write(cl);
}

/* Capitalised strerror is for humans at a terminal; ours are lowercase. */
static void default_message(char *buf, size_t len, const char *verb, int err)
{
	size_t n = strlen(verb) + 2;

	snprintf(buf, len, "%s: %s", verb, strerror(-err));
	if (n < len && buf[n] >= 'A' && buf[n] <= 'Z')
		buf[n] = (char)(buf[n] - 'A' + 'a');
}

/* Parses and runs one request line of len bytes (without "\n"). */
static void dispatch(struct client *cl, const char *line, size_t len)
{
	struct control *c = cl->c;
	struct control_call *call;
	struct proto_msg *msg;
	control_handler fn = NULL;
	void *arg = NULL;
	char why[256];
	int rc;

	rc = proto_parse_request(line, len, &msg, why, sizeof(why));
	if (rc != 0) {
		send_error(cl, rc, "%s", why);
		return;
	}
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nverbs; i++) {
		if (strcmp(c->verbs[i].name, proto_msg_verb(msg)) == 0) {
			fn = c->verbs[i].fn;
			arg = c->verbs[i].arg;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (fn == NULL) {
		send_error(cl, -ENOSYS, "unknown request '%s'",
			   proto_msg_verb(msg));
		proto_msg_free(msg);
		return;
	}
	call = call_new(c, cl, msg);
	if (call == NULL) {
		proto_msg_free(msg);
		send_error(cl, -ENOMEM, "out of memory");
		return;
	}
	cl->call = call;
	cl->state = CLIENT_BUSY;
	rc = fn(&call->req, &call->rep, arg);
	if (rc == CONTROL_PENDING)
		return;
#ifndef NDEBUG
	pthread_mutex_lock(&c->lock);
	assert(!call->queued); /* a handler that sent must say PENDING */
	pthread_mutex_unlock(&c->lock);
#endif
	if (rc < 0 && call->rep.err == 0) {
		char msgbuf[PROTO_MAX_MESSAGE + 1];

		default_message(msgbuf, sizeof(msgbuf), proto_msg_verb(msg),
				rc);
		control_reply_error(&call->rep, rc, "%s", msgbuf);
	}
	if (cl->state == CLIENT_CLOSING)
		call_free(call);
	else
		send_reply(cl, call);
}

/*
 * Consumes complete lines while the client is idle, and deals with lines
 * that are too long and with input that ends without a newline.
 */
static void client_advance(struct client *cl)
{
	while (cl->state == CLIENT_IDLE) {
		char *nl =
		    cl->inlen > 0 ? memchr(cl->in, '\n', cl->inlen) : NULL;

		if (nl != NULL) {
			size_t len = (size_t)(nl - cl->in);

			dispatch(cl, cl->in, len);
			cl->inlen -= len + 1;
			memmove(cl->in, nl + 1, cl->inlen);
		} else if (cl->inlen >= PROTO_MAX_LINE) {
			cl->inlen = 0;
			cl->close_after_write = true;
			send_error(cl, -EMSGSIZE,
				   "request longer than %d bytes",
				   PROTO_MAX_LINE);
		} else if (cl->eof) {
			if (cl->inlen == 0) {
				client_close(cl);
				return;
			}
			cl->inlen = 0;
			cl->close_after_write = true;
			send_error(cl, -EINVAL,
				   "request not terminated by a newline");
		} else {
			break;
		}
	}
	set_reading(cl);
}

/* Accepts a client and records its credentials. */
static void on_connection(uv_stream_t *server, int status)
{
	struct control *c = server->data;
	struct client *cl;
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	uv_os_fd_t fd;

	if (status < 0) {
		log_warn("control: cannot accept a connection: %s",
			 uv_strerror(status));
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		log_warn("control: cannot accept a connection: %s",
			 strerror(ENOMEM));
		return;
	}
	cl->c = c;
	cl->state = CLIENT_IDLE;
	proto_buf_init(&cl->out, PROTO_MAX_REPLY);
	uv_pipe_init(&c->loop, &cl->pipe, 0);
	cl->pipe.data = cl;
	cl->next = c->clients;
	if (c->clients != NULL)
		c->clients->prev = cl;
	c->clients = cl;
	c->nclients++;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0 ||
	    uv_fileno((uv_handle_t *)&cl->pipe, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) != 0) {
		client_close(cl);
		return;
	}
	cl->peer.pid = cred.pid;
	cl->peer.uid = cred.uid;
	cl->peer.gid = cred.gid;
	pthread_mutex_lock(&c->lock);
	cl->peer.conn = ++c->next_conn;
	pthread_mutex_unlock(&c->lock);
	if (c->nclients > CONTROL_MAX_CLIENTS) {
		cl->close_after_write = true;
		send_error(cl, -EAGAIN, "too many clients (at most %d)",
			   CONTROL_MAX_CLIENTS);
		return;
	}
	client_advance(cl);
	assert(control_invariants(c));
}

/* ------------------------------------------------------------------------
 * The loop thread
 */

/* The server and async handles need no cleanup of their own. */
static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

/* Sends the replies completed on other threads, and acts on a stop. */
static void on_async(uv_async_t *h)
{
	struct control *c = h->data;
	struct control_call *list, *next;
	bool stopping;

	pthread_mutex_lock(&c->lock);
	list = c->done_head;
	c->done_head = c->done_tail = NULL;
	stopping = c->stopping;
	if (stopping)
		c->async_closed = true;
	pthread_mutex_unlock(&c->lock);

	for (; list != NULL; list = next) {
		struct client *cl = list->client;

		next = list->next_done;
		if (cl == NULL || stopping || cl->state == CLIENT_CLOSING) {
			if (cl != NULL)
				cl->call = NULL;
			call_free(list);
			continue;
		}
		assert(cl->state == CLIENT_BUSY && cl->call == list);
		send_reply(cl, list);
	}
	assert(control_invariants(c));
	if (stopping && !c->closing) {
		c->closing = true;
		for (struct client *cl = c->clients; cl != NULL; cl = cl->next)
			client_close(cl);
		uv_close((uv_handle_t *)&c->server, on_handle_closed);
		uv_close((uv_handle_t *)&c->async, on_handle_closed);
	}
}

/* The loop thread: runs until control_stop closes every handle. */
static void loop_main(void *arg)
{
	struct control *c = arg;

	uv_run(&c->loop, UV_RUN_DEFAULT);
}

bool control_invariants(const struct control *c)
{
	size_t n = 0;

	for (const struct client *cl = c->clients; cl != NULL; cl = cl->next) {
		n++;
		if (cl->c != c || cl->inlen > PROTO_MAX_LINE)
			return false;
		if ((cl->state == CLIENT_BUSY) != (cl->call != NULL))
			return false;
		if (cl->call != NULL && cl->call->client != cl)
			return false;
		if (cl->next != NULL && cl->next->prev != cl)
			return false;
		if (cl->reading &&
		    (cl->state == CLIENT_CLOSING || cl->eof ||
		     cl->close_after_write || cl->inlen >= PROTO_MAX_LINE))
			return false;
	}
	return n == c->nclients;
}

/* ------------------------------------------------------------------------
 * Built-in verbs
 */

/* status: what the daemon serves and since when. */
static int verb_status(const struct control_request *req,
		       struct control_reply *rep, void *arg)
{
	struct control *c = arg;
	struct timespec now;
	long long up;

	(void)req;
	clock_gettime(CLOCK_REALTIME, &now);
	up = (long long)now.tv_sec - (long long)c->started.tv_sec;
	if (up < 0)
		up = 0;
	control_reply_addf(rep, "protocol", "%d", PROTO_VERSION);
	control_reply_add(rep, "version", TXFS_VERSION);
	control_reply_add(rep, "source", c->source);
	control_reply_add(rep, "mountpoint", c->mountpoint);
	control_reply_add(rep, "state_dir", c->state_dir);
	control_reply_add(rep, "socket", c->socket_path);
	control_reply_addf(rep, "pid", "%ld", (long)c->pid);
	control_reply_addf(rep, "started", "%lld",
			   (long long)c->started.tv_sec);
	return control_reply_addf(rep, "uptime", "%lld", up);
}

/* ping: echoes the arguments. */
static int verb_ping(const struct control_request *req,
		     struct control_reply *rep, void *arg)
{
	const char *key, *val;
	size_t len;

	(void)arg;
	for (size_t i = 0; control_request_arg(req, i, &key, &val, &len) == 0;
	     i++)
		control_reply_addn(rep, key, val, len);
	return CONTROL_DONE;
}

/* Adds one STM call site as a record of the stm reply. */
static void stm_site_record(const struct stm_site *s, void *arg)
{
	struct control_reply *rep = arg;

	control_reply_record(rep);
	control_reply_add(rep, "site", s->name != NULL ? s->name : "");
#define STAT(f)                                                                \
	control_reply_addf(rep, #f, "%llu",                                    \
			   (unsigned long long)atomic_load_explicit(           \
			       &s->f, memory_order_relaxed))
	STAT(commits);
	STAT(aborts_locked);
	STAT(aborts_validate);
	STAT(aborts_user);
	STAT(waits);
	STAT(serial);
#undef STAT
}

/* stm: the STM clock and per-site statistics. */
static int verb_stm(const struct control_request *req,
		    struct control_reply *rep, void *arg)
{
	(void)req;
	(void)arg;
	control_reply_addf(rep, "clock", "%llu",
			   (unsigned long long)stm_clock());
	stm_sites_foreach(stm_site_record, rep);
	return CONTROL_DONE;
}

void control_on_close(struct control *c, control_close_fn fn, void *arg)
{
	pthread_mutex_lock(&c->lock);
	c->on_close = fn;
	c->on_close_arg = arg;
	pthread_mutex_unlock(&c->lock);
}

int control_register(struct control *c, const char *verb, control_handler fn,
		     void *arg)
{
	int rc = 0;

	if (!proto_verb_valid(verb) || fn == NULL)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nverbs; i++) {
		if (strcmp(c->verbs[i].name, verb) == 0) {
			rc = -EEXIST;
			goto out_unlock;
		}
	}
	if (c->nverbs == c->capverbs) {
		size_t cap = c->capverbs != 0 ? c->capverbs * 2 : 16;
		struct verb *v = realloc(c->verbs, cap * sizeof(*v));

		if (v == NULL) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		c->verbs = v;
		c->capverbs = cap;
	}
	snprintf(c->verbs[c->nverbs].name, sizeof(c->verbs[0].name), "%s",
		 verb);
	c->verbs[c->nverbs].fn = fn;
	c->verbs[c->nverbs].arg = arg;
	c->nverbs++;
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Starting and stopping
 */

/*
 * Creates the default socket directory if dir is it, and checks that it
 * is ours and private.  Other directories are the user's business.
 */
static int prepare_dir(const char *socket_path)
{
	char *copy, *dir, def[108];
	mode_t mode;
	struct stat st;
	int rc = 0;

	if (proto_socket_dir(geteuid(), getenv("XDG_RUNTIME_DIR"), def,
			     sizeof(def)) != 0)
		return 0;
	copy = strdup(socket_path);
	if (copy == NULL)
		return -ENOMEM;
	dir = dirname(copy);
	if (strcmp(dir, def) != 0)
		goto out_free_copy;
	mode = geteuid() == 0 ? 0755 : 0700;
	if (mkdir(dir, mode) == 0) {
		if (chmod(dir, mode) != 0)
			rc = -errno;
		goto out_free_copy;
	}
	if (errno != EEXIST) {
		rc = -errno;
		goto out_free_copy;
	}
	if (lstat(dir, &st) != 0) {
		rc = -errno;
		goto out_free_copy;
	}
	if (!S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	else if (st.st_uid != geteuid() || (st.st_mode & 022) != 0)
		rc = -EPERM;
	if (rc != 0)
		log_warn("control: %s must be a directory owned by uid %lu "
			 "and writable by it alone",
			 dir, (unsigned long)geteuid());
out_free_copy:
	free(copy);
	return rc;
}

/*
 * Deals with whatever is at the socket path: nothing is fine, a socket no
 * one answers on is removed, a live one is -EADDRINUSE.
 */
static int clear_stale(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, rc;

	if (lstat(sun->sun_path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS)
		rc = -EADDRINUSE;
	else if (errno == ECONNREFUSED)
		rc = unlink(sun->sun_path) == 0 || errno == ENOENT ? 0 : -errno;
	else
		rc = -errno;
	close(fd);
	return rc;
}

/* Binds and listens on a new socket created with at most mode. */
static int open_socket(struct control *c, mode_t mode, int *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (strlen(c->socket_path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, c->socket_path);
	rc = prepare_dir(c->socket_path);
	if (rc != 0)
		return rc;
	rc = clear_stale(&sun);
	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/*
	 * On Linux the socket inode's mode, less the umask, becomes the mode
	 * of the file bind() creates, so it is never wider than asked.
	 */
	(void)fchmod(fd, mode);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		rc = -errno;
		goto out_close_fd;
	}
	if (chmod(sun.sun_path, mode) != 0 || stat(sun.sun_path, &st) != 0) {
		rc = -errno;
		goto out_unlink;
	}
	c->sock_dev = st.st_dev;
	c->sock_ino = st.st_ino;
	if (listen(fd, 128) != 0) {
		rc = -errno;
		goto out_unlink;
	}
	*out = fd;
	return 0;

out_unlink:
	unlink(sun.sun_path);
out_close_fd:
	close(fd);
	return rc;
}

/* Copies s; *ok becomes false on failure. */
static char *dup_or_empty(const char *s, bool *ok)
{
	char *d = strdup(s != NULL ? s : "");

	if (d == NULL)
		*ok = false;
	return d;
}

int control_start(const struct control_info *info, mode_t mode,
		  struct control **out)
{
	struct control *c;
	sigset_t all, old;
	bool ok = true;
	int fd = -1, rc;

	*out = NULL;
	if (info == NULL || info->socket_path == NULL ||
	    info->socket_path[0] == '\0')
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->source = dup_or_empty(info->source, &ok);
	c->mountpoint = dup_or_empty(info->mountpoint, &ok);
	c->state_dir = dup_or_empty(info->state_dir, &ok);
	c->socket_path = dup_or_empty(info->socket_path, &ok);
	c->pid = info->pid;
	c->started = info->started;
	rc = pthread_mutex_init(&c->lock, NULL);
	if (rc != 0) {
		rc = -rc;
		goto out_free_strings;
	}
	if (!ok) {
		rc = -ENOMEM;
		goto out_free_control;
	}
	if ((rc = control_register(c, "status", verb_status, c)) != 0 ||
	    (rc = control_register(c, "ping", verb_ping, c)) != 0 ||
	    (rc = control_register(c, "stm", verb_stm, c)) != 0)
		goto out_free_control;

	rc = open_socket(c, mode, &fd);
	if (rc != 0)
		goto out_free_control;
	rc = uv_loop_init(&c->loop);
	if (rc != 0)
		goto out_close_socket;
	uv_pipe_init(&c->loop, &c->server, 0);
	c->server.data = c;
	uv_async_init(&c->loop, &c->async, on_async);
	c->async.data = c;
	rc = uv_pipe_open(&c->server, fd);
	if (rc != 0)
		goto out_close_loop;
	fd = -1; /* the server handle owns it now */
	rc = uv_listen((uv_stream_t *)&c->server, 128, on_connection);
	if (rc != 0)
		goto out_close_loop;

	/* The loop thread takes no signals: SIGPIPE becomes EPIPE there. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = uv_thread_create(&c->thread, loop_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		goto out_close_loop;
	*out = c;
	return 0;

out_close_loop:
	uv_close((uv_handle_t *)&c->server, NULL);
	uv_close((uv_handle_t *)&c->async, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_loop_close(&c->loop);
out_close_socket:
	if (fd >= 0)
		close(fd);
	unlink(c->socket_path);
out_free_control:
	control_free(c);
	return rc;
out_free_strings:
	free(c->source);
	free(c->mountpoint);
	free(c->state_dir);
	free(c->socket_path);
	free(c);
	return rc;
}

void control_stop(struct control *c)
{
	struct control_call *list, *next;
	struct stat st;
	bool last;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	if (!c->async_closed)
		uv_async_send(&c->async);
	pthread_mutex_unlock(&c->lock);
	uv_thread_join(&c->thread);
	uv_loop_close(&c->loop);

	/* Leave a socket that another daemon has put there since alone. */
	if (stat(c->socket_path, &st) == 0 && st.st_dev == c->sock_dev &&
	    st.st_ino == c->sock_ino)
		unlink(c->socket_path);

	/*
	 * Calls completed after the loop stopped wait in the done queue.  Take
	 * them and mark the server released in one critical section, so a
	 * call sent from now on finds it released and frees itself.
	 */
	pthread_mutex_lock(&c->lock);
	list = c->done_head;
	c->done_head = c->done_tail = NULL;
	for (struct control_call *p = list; p != NULL; p = p->next_done)
		c->calls--;
	c->released = true;
	last = c->calls == 0;
	pthread_mutex_unlock(&c->lock);
	for (; list != NULL; list = next) {
		next = list->next_done;
		call_release(list);
	}
	if (last)
		control_free(c);
}
