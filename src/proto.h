/*
 * proto.h: the control protocol spoken between txfsd and its clients.
 *
 * Shared by the daemon (control.c) and the client library (txfs.c).  The
 * functions here are pure: they build and parse byte strings and never do
 * I/O, except the three socket-location helpers at the end, which read the
 * environment and the file system and say so.
 *
 * Framing (the CONTROL PROTOCOL section of txfsd(8) is the full contract):
 *
 *   request  = VERB *( " " KEY "=" VALUE ) "\n"
 *   reply    = STATUS "\n" *( FIELD "\n" / "record\n" ) "\n"
 *   STATUS   = "ok" / "err " ERRNAME [ " " MESSAGE ]
 *   FIELD    = KEY "=" VALUE
 *   VERB     = 1*32( "a"-"z" / "-" )
 *   KEY      = ( "a"-"z" ) *63( "a"-"z" / "0"-"9" / "_" / "-" )
 *   VALUE    = *( UNRESERVED / "%" HEXDIG HEXDIG )
 *
 * Values are percent-encoded, so any byte (NUL included) can be carried.
 * A reply ends at its first empty line.  A bare "record" line starts a new
 * record: fields before the first one belong to record 0 (the top level),
 * fields after the n-th one to record n.
 */
#ifndef TXFS_PROTO_H
#define TXFS_PROTO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The protocol version, reported as `protocol=` by the status verb. */
#define PROTO_VERSION 1

/* Limits.  Every parser and builder enforces them. */
#define PROTO_MAX_LINE	  65536	     /* one request, newline included */
#define PROTO_MAX_VERB	  32	     /* bytes in a verb */
#define PROTO_MAX_KEY	  64	     /* bytes in a key */
#define PROTO_MAX_ARGS	  64	     /* key=value pairs in one request */
#define PROTO_MAX_ERRNAME 31	     /* bytes in an errno name */
#define PROTO_MAX_MESSAGE 1024	     /* bytes in an error message */
#define PROTO_MAX_REPLY	  (4u << 20) /* one whole reply */
#define PROTO_MAX_FIELDS  65536	     /* fields in one reply */
#define PROTO_MAX_RECORDS 65536	     /* records in one reply */

/*
 * A growable byte buffer with a size cap and a sticky error, in the manner
 * of git's strbuf.  Invariants: data is NULL or NUL-terminated at len;
 * len <= max; once err is set (-ENOMEM or -EMSGSIZE) every append fails
 * with it and changes nothing.  The struct is transparent so callers can
 * embed it; touch the fields only through these functions, and read
 * data/len.
 */
struct proto_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	int err;
};

/* Initialises an empty buffer that may grow to max bytes. */
void proto_buf_init(struct proto_buf *b, size_t max);

/* Frees the storage and leaves b empty, as proto_buf_init left it. */
void proto_buf_release(struct proto_buf *b);

/* Empties b and clears its sticky error; keeps the storage. */
void proto_buf_reset(struct proto_buf *b);

/* Appends n bytes; returns 0 or the (sticky) -ENOMEM/-EMSGSIZE. */
int proto_buf_add(struct proto_buf *b, const void *p, size_t n);

/* Appends formatted text; returns 0 or the sticky error. */
int proto_buf_addf(struct proto_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int proto_buf_vaddf(struct proto_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Syntax predicates. */
bool proto_verb_valid(const char *verb);
bool proto_key_valid(const char *key);

/*
 * Appends the percent-encoding of n bytes of val.  Bytes in the unreserved
 * set [A-Za-z0-9] and "-._~/:,@+" stay as they are, all others become %XX
 * (upper-case hex).  Returns 0 or the sticky error.
 */
int proto_encode(struct proto_buf *b, const void *val, size_t n);

/*
 * Decodes n bytes of percent-encoded text into out, which must hold n + 1
 * bytes; the result is NUL-terminated and its length stored in *outlen.
 * Accepts printable ASCII (0x21-0x7e) and %XX with either case of hex
 * digit.  Returns 0, or -EINVAL with *bad set to the offset of the first
 * offending byte.
 */
int proto_decode(const char *in, size_t n, char *out, size_t *outlen,
		 size_t *bad);

/*
 * Building a request: proto_request_begin(), any number of
 * proto_request_add(), proto_request_end().  The result in b is one line
 * ending in "\n", at most PROTO_MAX_LINE bytes.  Each returns 0, -EINVAL
 * for a bad verb or key, -E2BIG for too many arguments, -EMSGSIZE when the
 * line would exceed PROTO_MAX_LINE, or -ENOMEM.
 */
int proto_request_begin(struct proto_buf *b, const char *verb);
int proto_request_add(struct proto_buf *b, const char *key, const void *val,
		      size_t n);
int proto_request_end(struct proto_buf *b);

/*
 * Building a reply, by appending to b in wire order.  proto_reply_status()
 * appends the first line: "ok" when err is 0, else "err ERRNAME MESSAGE"
 * (err is a negative errno, sent as EIO when it has no name here; control
 * bytes in msg become '?', and msg is cut at PROTO_MAX_MESSAGE bytes).
 * proto_reply_field() appends "KEY=VALUE", proto_reply_record() a
 * "record" line, proto_reply_end() the terminating empty line.  Each
 * returns 0, -EINVAL for a bad key, or the buffer's sticky error.
 */
int proto_reply_status(struct proto_buf *b, int err, const char *msg);
int proto_reply_field(struct proto_buf *b, const char *key, const void *val,
		      size_t n);
int proto_reply_record(struct proto_buf *b);
int proto_reply_end(struct proto_buf *b);

/*
 * Returns the length of the complete reply at the start of buf (up to and
 * including its terminating empty line), 0 if buf holds only part of one.
 */
size_t proto_reply_length(const char *buf, size_t len);

/*
 * A parsed request or reply.  Opaque; owned by whoever parsed it and freed
 * with proto_msg_free().  Every string it returns lives as long as it and
 * is NUL-terminated; values may also contain NUL bytes, so use the length.
 */
struct proto_msg;

/*
 * Parses one request line of len bytes, without its "\n".  On success
 * stores a new message in *out and returns 0.  On failure returns -EINVAL
 * (bad syntax), -E2BIG (too many arguments), -EMSGSIZE (line too long) or
 * -ENOMEM, and writes a lowercase explanation into why (may be NULL).
 */
int proto_parse_request(const char *line, size_t len, struct proto_msg **out,
			char *why, size_t whylen);

/*
 * Parses a complete reply of len bytes (as measured by proto_reply_length).
 * Returns 0 and stores a new message in *out, or -EPROTO (malformed),
 * -EMSGSIZE (over a limit) or -ENOMEM, with an explanation in why.
 */
int proto_parse_reply(const char *buf, size_t len, struct proto_msg **out,
		      char *why, size_t whylen);

/* Frees a parsed message; NULL-safe. */
void proto_msg_free(struct proto_msg *m);

/* The verb of a request; "" for a reply. */
const char *proto_msg_verb(const struct proto_msg *m);

/*
 * For a reply: 0 for "ok", else the negative errno its ERRNAME stands for
 * (-EPROTO when the name is unknown to this build).  0 for a request.
 */
int proto_msg_error(const struct proto_msg *m);

/* For an error reply, the errno name and message as sent; "" otherwise. */
const char *proto_msg_errname(const struct proto_msg *m);
const char *proto_msg_message(const struct proto_msg *m);

/* The number of fields, and of records after record 0. */
size_t proto_msg_count(const struct proto_msg *m);
size_t proto_msg_records(const struct proto_msg *m);

/*
 * Field i (0-based, in wire order): any out-pointer may be NULL.  Returns 0
 * or -ERANGE when i is out of range.
 */
int proto_msg_field(const struct proto_msg *m, size_t i, const char **key,
		    const char **val, size_t *len, size_t *record);

/*
 * The value of the first field named key in the given record, or NULL.
 * len (may be NULL) receives its length.
 */
const char *proto_msg_get(const struct proto_msg *m, size_t record,
			  const char *key, size_t *len);

/*
 * Errno names.  proto_errno_name() takes a positive or negative errno and
 * returns its symbolic name ("EPERM"), or NULL when it has none here.
 * proto_errno_value() maps a name back to a positive errno, 0 if unknown.
 */
const char *proto_errno_name(int err);
int proto_errno_value(const char *name);

/*
 * Socket locations.  proto_socket_dir() computes the default directory for
 * a daemon of the given uid: "/run/txfs" for root, else "$XDG_RUNTIME_DIR/
 * txfs" when xdg is a non-empty absolute path, else "/tmp/txfs-UID".
 * proto_socket_name() appends "/BASE-HASH.sock", where BASE is the last
 * component of the canonical mount point with bytes outside [A-Za-z0-9._-]
 * replaced by '_', cut to 32 bytes ("root" for "/"), and HASH is the FNV-1a
 * 64 hash of the whole canonical path as 16 lower-case hex digits.  Both
 * are pure and return 0, -EINVAL (path not absolute) or -ENAMETOOLONG
 * (does not fit in len, or a socket path longer than sun_path allows).
 */
int proto_socket_dir(uid_t uid, const char *xdg, char *buf, size_t len);
int proto_socket_name(const char *canonical, uid_t uid, const char *xdg,
		      char *buf, size_t len);
uint64_t proto_fnv1a64(const void *p, size_t n);

/*
 * Resolves mountpoint with realpath(3), then proto_socket_name() for the
 * effective uid and $XDG_RUNTIME_DIR.  Returns 0 or -errno.
 */
int proto_default_socket(const char *mountpoint, char *buf, size_t len);

/*
 * Finds the innermost mount of file-system type "fuse.txfs" whose mount
 * point contains the canonical path, in mountinfo text in the format of
 * /proc/self/mountinfo (octal escapes such as \040 are decoded).  When
 * several such mounts share a mount point, the last listed (the topmost)
 * wins.  Pure.  Returns 0 with the mount point in mnt, -ENOENT when there
 * is none, -ENAMETOOLONG when it does not fit.
 */
int proto_find_mount_in(const char *mountinfo, const char *canonical, char *mnt,
			size_t len);

/*
 * Resolves path with realpath(3) and runs proto_find_mount_in() on
 * /proc/self/mountinfo.  Returns 0 or -errno.
 */
int proto_find_mount(const char *path, char *mnt, size_t len);

#endif /* TXFS_PROTO_H */
