/*
 * txfs.h: libtxfs, the client API of txfs.
 *
 * Programs use it to find and talk to txfsd, the daemon that serves a txfs
 * mount, over its control socket; txctl(1) is built on it.  The wire
 * protocol is documented in txfsd(8), CONTROL PROTOCOL.
 *
 * Conventions: functions that can fail return 0 or a negative errno and
 * never print.  Objects returned through out-parameters are owned by the
 * caller, who frees them with the matching *_free / txfs_close function.
 * Strings obtained from a reply live as long as the reply.  A client is
 * not thread-safe: use one per thread, or serialise access to it.
 */
#ifndef TXFS_H
#define TXFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TXFS_SENTINEL __attribute__((sentinel))
#else
#define TXFS_SENTINEL
#endif

/* The protocol version this library speaks (status reports the daemon's). */
#define TXFS_PROTOCOL 1

/* How long a request may take before it fails with -ETIMEDOUT. */
#define TXFS_DEFAULT_TIMEOUT_MS 30000

/* A connection to one daemon. */
struct txfs_client;

/* A daemon's answer to one request. */
struct txfs_reply;

/* One argument of a request; value holds len bytes (any bytes). */
struct txfs_arg {
	const char *key;
	const void *value;
	size_t len;
};

/* --- Finding a daemon ---------------------------------------------------- */

/*
 * Writes into buf the default control socket for the daemon serving
 * mountpoint, as a daemon of this process's effective uid would create it:
 * /run/txfs/NAME.sock for root, else $XDG_RUNTIME_DIR/txfs/NAME.sock or
 * /tmp/txfs-UID/NAME.sock, where NAME is the mount point's last component
 * and a hash of its canonical path.  Returns 0, -ENAMETOOLONG if it does
 * not fit in len bytes, or the -errno of resolving mountpoint.
 */
int txfs_default_socket(const char *mountpoint, char *buf, size_t len);

/*
 * Finds the innermost txfs mount (file-system type fuse.txfs) that
 * contains path, from /proc/self/mountinfo, and writes its mount point
 * into mnt.  Returns 0, -ENOENT when path is in no txfs mount,
 * -ENAMETOOLONG when the mount point does not fit, or the -errno of
 * resolving path.
 */
int txfs_find_mount(const char *path, char *mnt, size_t len);

/* --- Connections --------------------------------------------------------- */

/*
 * Connects to the daemon listening on socket_path.  Returns 0 and stores a
 * new client in *out (free it with txfs_close), or -errno: -ENOENT when no
 * socket is there, -ECONNREFUSED when no daemon listens on it, -EACCES
 * without permission, -ETIMEDOUT when the daemon does not accept in time.
 */
int txfs_connect(const char *socket_path, struct txfs_client **out);

/*
 * Connects to the daemon serving mountpoint at its default socket
 * (txfs_default_socket); a caller that is not root also tries the
 * location a root daemon uses.  Returns as txfs_connect.  When tried is
 * not NULL it receives the socket path the result refers to (for error
 * messages), or "" if none could be computed.
 */
int txfs_connect_mount(const char *mountpoint, struct txfs_client **out,
		       char *tried, size_t triedlen);

/* Closes the connection and frees the client.  NULL-safe. */
void txfs_close(struct txfs_client *cl);

/*
 * Sets how long each later request may take, in milliseconds, from sending
 * to the end of the reply; a negative value waits forever.  The default is
 * TXFS_DEFAULT_TIMEOUT_MS.
 */
void txfs_set_timeout(struct txfs_client *cl, int timeout_ms);

/* The socket path the client is connected to; lives as long as cl. */
const char *txfs_socket_path(const struct txfs_client *cl);

/*
 * The message of the daemon's answer to the last request on cl when that
 * answer was "err" (possibly ""), or NULL when it was "ok" or when there
 * was no answer (a transport failure, or no request yet).  Typed requests
 * return only an errno; this says what the daemon added, for example which
 * transaction already holds a process.  Lives until the next request.
 */
const char *txfs_last_message(const struct txfs_client *cl);

/* --- Requests ------------------------------------------------------------ */

/*
 * Sends the request "verb key=value ..." and waits for its reply.  The
 * variadic arguments are pairs of C strings (key, value) ended by NULL.
 * Returns 0 when the daemon answered "ok".  When it answered "err",
 * returns that negative errno (-EPROTO for a name this library does not
 * know) and still stores the reply, whose message says more.  In both
 * cases *out receives the reply, which the caller frees with
 * txfs_reply_free (out may be NULL to discard it).  When the daemon could
 * not be talked to, returns -errno (-ETIMEDOUT, -ECONNRESET, -EPROTO for
 * an unreadable reply, -EINVAL for a bad verb or key, -EMSGSIZE for a
 * request over 64 KiB) and sets *out to NULL; after such a failure the
 * connection is unusable and every later request returns the same error.
 */
int txfs_request(struct txfs_client *cl, struct txfs_reply **out,
		 const char *verb, ...) TXFS_SENTINEL;

/* As txfs_request, with nargs arguments that may hold any bytes. */
int txfs_requestv(struct txfs_client *cl, struct txfs_reply **out,
		  const char *verb, const struct txfs_arg *args, size_t nargs);

/* --- Replies ------------------------------------------------------------- */

/* Frees a reply and every string obtained from it.  NULL-safe. */
void txfs_reply_free(struct txfs_reply *r);

/* 0 for an "ok" reply, else the negative errno the daemon named. */
int txfs_reply_error(const struct txfs_reply *r);

/* For an "err" reply, the errno name ("EPERM") and message; "" if ok. */
const char *txfs_reply_errname(const struct txfs_reply *r);
const char *txfs_reply_message(const struct txfs_reply *r);

/*
 * The value of the first top-level field named key (NUL-terminated), or
 * NULL when there is none.
 */
const char *txfs_reply_get(const struct txfs_reply *r, const char *key);

/*
 * Replies may carry repeated records after their top-level fields (for
 * example one per STM site).  txfs_reply_records returns how many;
 * txfs_reply_record_get looks key up in record n, where record 0 is the
 * top level and records are numbered from 1; len (may be NULL) receives
 * the value's length, as values may contain NUL bytes.
 */
size_t txfs_reply_records(const struct txfs_reply *r);
const char *txfs_reply_record_get(const struct txfs_reply *r, size_t n,
				  const char *key, size_t *len);

/*
 * Iterates over every field in wire order: txfs_reply_count gives the
 * number, txfs_reply_field field i with the record it belongs to.  Any
 * out-pointer may be NULL.  Returns 0, or -ERANGE when i is too large.
 */
size_t txfs_reply_count(const struct txfs_reply *r);
int txfs_reply_field(const struct txfs_reply *r, size_t i, const char **key,
		     const char **value, size_t *len, size_t *record);

/* --- Typed requests ------------------------------------------------------ */

/* What the status request reports.  The strings belong to the struct. */
struct txfs_status {
	unsigned protocol; /* the daemon's protocol version */
	char *version;	   /* the daemon's package version */
	char *source;	   /* the backing directory */
	char *mountpoint;  /* where the file system is mounted */
	char *state_dir;   /* where transaction state is kept */
	char *socket;	   /* the control socket */
	long pid;	   /* the daemon's process id */
	int64_t started;   /* start time, seconds since the Epoch */
	uint64_t uptime;   /* seconds since the start */
};

/*
 * Asks the daemon for its status and fills *st, which the caller later
 * empties with txfs_status_clear.  Returns 0, the daemon's negative errno,
 * -EPROTO when the reply lacks a field or has a malformed one, or a
 * transport error as txfs_request.  On failure *st holds no memory.
 */
int txfs_status(struct txfs_client *cl, struct txfs_status *st);

/* Frees the strings of *st and zeroes it.  NULL-safe. */
void txfs_status_clear(struct txfs_status *st);

/* What the daemon's crash recovery did when it started. */
struct txfs_recovery {
	uint64_t records;   /* committed transactions finished */
	uint64_t steps;	    /* their steps performed by recovery */
	uint64_t already;   /* their steps the crashed daemon had done */
	uint64_t skipped;   /* steps whose directory was gone */
	uint64_t discarded; /* unfinished transactions thrown away */
	uint64_t ms;	    /* how long recovery took */
};

/*
 * Asks the daemon what recovery did at its start.  Returns 0, the daemon's
 * negative errno (-ENOSYS from a daemon too old to say), -EPROTO for a
 * malformed reply, or a transport error as txfs_request.
 */
int txfs_recovery(struct txfs_client *cl, struct txfs_recovery *out);

/* --- Transactions -------------------------------------------------------- */

/*
 * Transaction ids are decimal numbers greater than 0, never reused.  The
 * daemon lets only a transaction's owner (the uid that began it) or root
 * commit, abort, join or inspect it.  Where a txid argument may be 0, 0
 * means the transaction the calling process itself belongs to.
 */

/* txfs_begin flag: abort the transaction when this connection closes. */
#define TXFS_BEGIN_ABORT_ON_CLOSE 0x1u

/*
 * Begins a transaction owned by the caller's uid, with process pid (0: the
 * calling process) as its leader: the leader and its descendants become
 * members.  label (NULL: none) is free text shown by txfs_list.  With
 * TXFS_BEGIN_ABORT_ON_CLOSE the daemon aborts the transaction when cl is
 * closed (or its process dies) before a commit or abort.  Stores the new
 * id in *txid and returns 0, or -EINVAL (unknown flags, bad argument),
 * -ESRCH (no such process), -EPERM (the process belongs to another user),
 * -EBUSY (the process is already in a transaction; txfs_last_message says
 * which), -EPROTO (a reply without a valid txid) or a transport error.
 */
int txfs_begin(struct txfs_client *cl, pid_t pid, const char *label,
	       unsigned flags, uint64_t *txid);

/* What a commit did; the strings belong to the struct. */
struct txfs_commit_result {
	uint64_t txid;	   /* the transaction (0 if the daemon did not say) */
	uint64_t changes;  /* objects published */
	uint64_t ms;	   /* how long the commit took, in milliseconds */
	size_t nconflicts; /* on -ECANCELED: the conflicting paths... */
	char **conflicts;  /* ...relative to the mount root, from "/" */
};

/*
 * Commits transaction txid (0: the caller's own) and fills *res, which the
 * caller later empties with txfs_commit_result_clear.  Returns 0 when the
 * changes are published and durable.  Returns -ECANCELED when they
 * conflict with changes made since: the transaction has been aborted, and
 * res->conflicts lists the paths.  Else -ENOENT (no such transaction, or
 * the caller is in none), -EPERM (not the owner), -EBUSY (a commit or
 * abort of it is running), -EIO, -ENOSPC..., -EPROTO (a malformed reply)
 * or a transport error, and *res holds no memory.  A commit may take long:
 * consider txfs_set_timeout(cl, -1).
 */
int txfs_commit(struct txfs_client *cl, uint64_t txid,
		struct txfs_commit_result *res);

/* Frees the strings of *res and zeroes it.  NULL-safe. */
void txfs_commit_result_clear(struct txfs_commit_result *res);

/*
 * Aborts transaction txid (0: the caller's own): every change it made
 * vanishes.  Returns 0, or the errors of txfs_commit but -ECANCELED.
 */
int txfs_abort(struct txfs_client *cl, uint64_t txid);

/*
 * Makes process pid (0: the calling process) and its future descendants
 * members of transaction txid, which must not be 0.  Returns 0, -EINVAL,
 * -ENOENT (no such transaction), -EPERM (not the owner, or pid belongs to
 * another user), -ESRCH (no such process), -EBUSY (pid is in another
 * transaction) or a transport error.
 */
int txfs_bind(struct txfs_client *cl, uint64_t txid, pid_t pid);

/* One open transaction, as txfs_list and txfs_show report it. */
struct txfs_tx_info {
	uint64_t txid;
	uint32_t uid;	  /* the owner */
	long leader;	  /* the leader's process id */
	char *label;	  /* "" when none was given */
	int64_t started;  /* seconds since the Epoch */
	uint64_t age;	  /* seconds since it began */
	char *state;	  /* "open", "committing" or "aborting" */
	uint64_t changes; /* changed objects */
	uint64_t members; /* live member processes */
	size_t npaths;	  /* txfs_show only: the changed objects... */
	char **paths;	  /* ...their paths, relative to the mount root... */
	char **kinds;	  /* ...and how each changed ("modified") */
};

/*
 * Lists the open transactions the caller may inspect (all, for root), in
 * txid order, into a new array of *n entries stored in *out (NULL when
 * there are none), which the caller frees with txfs_tx_list_free.  The
 * entries have no paths.  Returns 0, -EPROTO when a record lacks a field
 * or has a malformed one, or a transport error; on failure *out is NULL
 * and *n is 0.
 */
int txfs_list(struct txfs_client *cl, struct txfs_tx_info **out, size_t *n);

/*
 * Describes transaction txid (0: the caller's own), with the paths it has
 * changed, into *out, which the caller empties with txfs_tx_info_clear.
 * Returns 0, -ENOENT, -EPERM, -EPROTO or a transport error; on failure
 * *out holds no memory.
 */
int txfs_show(struct txfs_client *cl, uint64_t txid, struct txfs_tx_info *out);

/* Frees the strings of *info and zeroes it.  NULL-safe. */
void txfs_tx_info_clear(struct txfs_tx_info *info);

/* Frees an array of n entries from txfs_list.  NULL-safe. */
void txfs_tx_list_free(struct txfs_tx_info *list, size_t n);

/*
 * One object a transaction changed, as txfs_diff reports it.  The strings
 * belong to the struct.
 */
struct txfs_change {
	char change;	   /* 'A' added, 'M' modified (content and/or
			      attributes), 'D' deleted, 'R' renamed, 'T'
			      type changed (the name leads to an object of
			      another type) */
	char type;	   /* the object's type now (for 'D': before): 'f'
			      regular, 'd' directory, 'l' symbolic link, 'p'
			      fifo, 's' socket, 'c' or 'b' device */
	bool mode_changed; /* its permission bits differ from the base */
	char *path;	   /* its path in the mount, from "/"; for 'D' the
			      removed path, for 'R' the new one */
	char *old;	   /* for 'R' the old path, else NULL */
	char *old_file;	   /* the base version's absolute path in SOURCE;
			      NULL for 'A', or when the daemon cannot name it */
	char *new_file;	   /* the transaction's version's absolute path;
			      NULL for 'D', or when the daemon cannot name it */
};

/*
 * Lists what transaction txid (0: the caller's own) changed compared with
 * its base, like `git status`: one entry per changed path, sorted by path,
 * in a new array of *n entries stored in *out (NULL when there are none),
 * which the caller frees with txfs_changes_free.  old_file and new_file
 * may be read (by root, or whoever may read them) to compare the contents.
 * Returns 0, -ENOENT (no such transaction, or the caller is in none),
 * -EPERM (not the owner), -EPROTO when an entry lacks a field or has a
 * malformed or contradictory one, or a transport error; on failure *out
 * is NULL and *n is 0.
 */
int txfs_diff(struct txfs_client *cl, uint64_t txid, struct txfs_change **out,
	      size_t *n);

/* Frees an array of n entries from txfs_diff.  NULL-safe. */
void txfs_changes_free(struct txfs_change *changes, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TXFS_H */
