/*
 * control.h: txfsd's control socket, served on a libuv loop in a thread of
 * its own.
 *
 * Clients speak the line protocol of proto.h.  Requests are dispatched by
 * verb through a table: control_start() registers the built-in verbs
 * (status, ping, stm) and later modules add theirs with control_register().
 * Every request carries the peer's credentials, taken with SO_PEERCRED when
 * the connection was accepted, so handlers can authorise it.
 *
 * Threads: control_start(), control_stop() and control_register() are
 * called from the main thread (any thread, but not concurrently with
 * control_stop()).  Handlers run on the loop thread and must not block;
 * one that has slow work to do returns CONTROL_PENDING and completes the
 * reply later, from any thread, with control_reply_send().
 */
#ifndef TXFS_CONTROL_H
#define TXFS_CONTROL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The most clients served at once; more are told EAGAIN and closed. */
#define CONTROL_MAX_CLIENTS 512

struct control;
struct control_request;
struct control_reply;

/* What the status verb reports.  control_start() copies every string. */
struct control_info {
	const char *source;
	const char *mountpoint;
	const char *state_dir;
	const char *socket_path;
	pid_t pid;
	struct timespec started; /* CLOCK_REALTIME */
};

/* The credentials of a connected client, from SO_PEERCRED at accept. */
struct control_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t
	    conn; /* the connection's number, unique for the server's life */
};

/* What a handler returns besides 0 (reply now) and a negative errno. */
enum {
	CONTROL_DONE = 0,   /* the reply is complete: send it now */
	CONTROL_PENDING = 1 /* control_reply_send() will be called later */
};

/*
 * A request handler.  It reads req, builds the reply in rep and returns
 * CONTROL_DONE to send it, CONTROL_PENDING to finish it later with
 * control_reply_send() (from any thread, exactly once), or a negative
 * errno to answer "err" with that errno (and the message given to
 * control_reply_error(), if it was called, else strerror's).  It runs on
 * the loop thread and must not block; arg is the pointer registered.
 */
typedef int (*control_handler)(const struct control_request *req,
			       struct control_reply *rep, void *arg);

/* Lifecycle */

/*
 * Creates the socket at info->socket_path with the given mode and starts
 * serving it on a new thread.  When the socket's directory is the default
 * one (proto_socket_dir() for this euid) it is created if missing (0755
 * for /run/txfs, else 0700) and must belong to this user and not be
 * writable by others.  A socket file already there is removed when no
 * daemon answers on it; if one does the call fails with -EADDRINUSE, and
 * a file of another type gives -EEXIST.  Returns 0 and stores the new
 * server in *out, or -errno.
 */
int control_start(const struct control_info *info, mode_t mode,
		  struct control **out);

/*
 * Stops the loop thread, closes every client, and unlinks the socket if it
 * is still the one created.  Replies still pending are dropped when their
 * handlers send them; the memory of c lives until the last one is sent.
 * NULL-safe.  Call from an ordinary thread (not a signal handler) and
 * never from a handler.
 */
void control_stop(struct control *c);

/*
 * Adds a verb to the dispatch table: requests "verb ..." go to fn(req,
 * rep, arg).  Returns 0, -EINVAL for a verb proto_verb_valid() refuses,
 * -EEXIST when the verb is taken, or -ENOMEM.  Thread-safe.
 */
int control_register(struct control *c, const char *verb, control_handler fn,
		     void *arg);

/*
 * Calls fn(peer, arg) on the loop thread whenever a client connection
 * closes (EOF, error or server stop), so that state bound to a connection
 * (a transaction to abort when its txctl dies) can be released.  fn must
 * not block.  One callback per server; NULL removes it.  Thread-safe.
 */
typedef void (*control_close_fn)(const struct control_peer *peer, void *arg);
void control_on_close(struct control *c, control_close_fn fn, void *arg);

/*
 * Checks the server's internal invariants (see control.c).  Call only on
 * the loop thread, e.g. assert(control_invariants(c)) in a handler.
 */
bool control_invariants(const struct control *c);

/* Requests.  A request lives until its reply has been sent. */

/* The request's verb. */
const char *control_request_verb(const struct control_request *req);

/* The credentials of the client that sent the request. */
const struct control_peer *
control_request_peer(const struct control_request *req);

/*
 * The value of the first argument named key, NUL-terminated, or NULL if
 * absent; len (may be NULL) receives its length, as values may hold NULs.
 */
const char *control_request_get(const struct control_request *req,
				const char *key, size_t *len);

/* The number of arguments, and argument i in wire order (0 or -ERANGE). */
size_t control_request_count(const struct control_request *req);
int control_request_arg(const struct control_request *req, size_t i,
			const char **key, const char **val, size_t *len);

/*
 * True when the peer may manage an object owned by uid: it is that user
 * or root.  The authorisation rule for begin/commit/abort and friends.
 */
bool control_peer_may_manage(const struct control_peer *peer, uid_t owner);

/*
 * Replies.  A reply is owned by its handler until it is sent: only one
 * thread may build it at a time.  The builders return 0, -EINVAL for a
 * key proto_key_valid() refuses, or the sticky -EMSGSIZE/-ENOMEM of an
 * over-long reply (which is then sent as that error).
 */

/* Appends the field key=value; value is a C string. */
int control_reply_add(struct control_reply *rep, const char *key,
		      const char *value);

/* Appends the field key=value with n bytes of value (any bytes). */
int control_reply_addn(struct control_reply *rep, const char *key,
		       const void *value, size_t n);

/* Appends a field whose value is formatted like printf. */
int control_reply_addf(struct control_reply *rep, const char *key,
		       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Starts a new record: the fields after it belong to it. */
int control_reply_record(struct control_reply *rep);

/*
 * Makes the reply "err NAME message" for the negative errno err; the
 * message is formatted like printf, lowercase, with no full stop.  Fields
 * already added are still sent.  Returns 0.
 */
int control_reply_error(struct control_reply *rep, int err, const char *fmt,
			...) __attribute__((format(printf, 3, 4)));

/* The request this reply answers. */
const struct control_request *
control_reply_request(const struct control_reply *rep);

/*
 * Completes a reply whose handler returned CONTROL_PENDING; callable from
 * any thread, exactly once, after which rep and its request are gone.  If
 * the client has disconnected or the server stopped, the reply is dropped.
 */
void control_reply_send(struct control_reply *rep);

#endif /* TXFS_CONTROL_H */
