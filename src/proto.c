/*
 * proto.c: encoding and parsing of the control protocol (see proto.h).
 *
 * Everything here is a pure function of its arguments except
 * proto_default_socket() and proto_find_mount(), which resolve paths and
 * read /proc/self/mountinfo.  The parsers never trust their input: every
 * length is checked against the PROTO_MAX_* limits before it is used, and
 * a parsed message owns a private copy of all its strings.
 *
 * Invariants of a parsed struct proto_msg:
 *   (1) nfields <= PROTO_MAX_FIELDS and nrecords <= PROTO_MAX_RECORDS.
 *   (2) Every field's record number is <= nrecords, and record numbers
 *       never decrease along the field array.
 *   (3) Every key satisfies proto_key_valid(); every value is
 *       NUL-terminated at its length.
 *   (4) err is 0 exactly when errname is "".
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"

struct proto_field {
	const char *key; /* points into store */
	const char *val; /* points into store; NUL-terminated at len */
	size_t len;
	size_t record;
};

struct proto_msg {
	char verb[PROTO_MAX_VERB + 1];
	int err;
	char errname[PROTO_MAX_ERRNAME + 1];
	const char *message; /* into store, or "" */
	size_t nfields;
	size_t nrecords;
	struct proto_field *fields;
	char *store; /* one allocation holding every string */
};

/* ------------------------------------------------------------------------
 * Buffers
 */

void proto_buf_init(struct proto_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->err = 0;
}

void proto_buf_release(struct proto_buf *b)
{
	free(b->data);
	proto_buf_init(b, b->max);
}

void proto_buf_reset(struct proto_buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

/* Makes room for n more bytes plus a NUL; sets the sticky error if not. */
static int reserve(struct proto_buf *b, size_t n)
{
	size_t want, cap;
	char *p;

	if (b->err != 0)
		return b->err;
	if (n > b->max - b->len) {
		b->err = -EMSGSIZE;
		return b->err;
	}
	want = b->len + n + 1;
	if (want <= b->cap)
		return 0;
	cap = b->cap != 0 ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int proto_buf_add(struct proto_buf *b, const void *p, size_t n)
{
	int rc;

	rc = reserve(b, n);
	if (rc != 0)
		return rc;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int proto_buf_vaddf(struct proto_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, rc;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0) {
		if (b->err == 0)
			b->err = -EINVAL;
		return b->err;
	}
	rc = reserve(b, (size_t)n);
	if (rc != 0)
		return rc;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int proto_buf_addf(struct proto_buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = proto_buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* ------------------------------------------------------------------------
 * Syntax and percent-encoding
 */

static bool is_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool verb_valid(const char *s, size_t n)
{
	if (n == 0 || n > PROTO_MAX_VERB)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool key_valid(const char *s, size_t n)
{
	if (n == 0 || n > PROTO_MAX_KEY || !is_lower((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!is_lower(c) && !is_digit(c) && c != '_' && c != '-')
			return false;
	}
	return true;
}

bool proto_verb_valid(const char *verb)
{
	return verb != NULL && verb_valid(verb, strnlen(verb, 64));
}

bool proto_key_valid(const char *key)
{
	return key != NULL && key_valid(key, strnlen(key, 128));
}

static bool unreserved(unsigned char c)
{
	return is_lower(c) || is_digit(c) || (c >= 'A' && c <= 'Z') ||
	       strchr("-._~/:,@+", c) != NULL;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int proto_encode(struct proto_buf *b, const void *val, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = val;
	char chunk[384];
	size_t k = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (unreserved(p[i]) && p[i] != '\0') {
			chunk[k++] = (char)p[i];
		} else {
			chunk[k++] = '%';
			chunk[k++] = hex[p[i] >> 4];
			chunk[k++] = hex[p[i] & 15];
		}
		if (k > sizeof(chunk) - 3) {
			rc = proto_buf_add(b, chunk, k);
			if (rc != 0)
				return rc;
			k = 0;
		}
	}
	return proto_buf_add(b, chunk, k);
}

int proto_decode(const char *in, size_t n, char *out, size_t *outlen,
		 size_t *bad)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3)
				goto out_bad;
			hi = hexval((unsigned char)in[i + 1]);
			lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				goto out_bad;
			out[k++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (c < 0x21 || c > 0x7e) {
			goto out_bad;
		} else {
			out[k++] = (char)c;
		}
	}
	out[k] = '\0';
	*outlen = k;
	return 0;

out_bad:
	if (bad != NULL)
		*bad = i;
	return -EINVAL;
}

/* ------------------------------------------------------------------------
 * Building requests and replies
 */

int proto_request_begin(struct proto_buf *b, const char *verb)
{
	if (!proto_verb_valid(verb))
		return -EINVAL;
	proto_buf_reset(b);
	return proto_buf_add(b, verb, strlen(verb));
}

int proto_request_add(struct proto_buf *b, const char *key, const void *val,
		      size_t n)
{
	size_t args = 0;
	int rc;

	if (!proto_key_valid(key))
		return -EINVAL;
	for (size_t i = 0; i < b->len; i++)
		args += b->data[i] == ' ';
	if (args >= PROTO_MAX_ARGS)
		return -E2BIG;
	rc = proto_buf_addf(b, " %s=", key);
	if (rc == 0)
		rc = proto_encode(b, val, n);
	if (rc == 0 && b->len >= PROTO_MAX_LINE)
		rc = -EMSGSIZE;
	return rc;
}

int proto_request_end(struct proto_buf *b)
{
	int rc;

	rc = proto_buf_add(b, "\n", 1);
	if (rc == 0 && b->len > PROTO_MAX_LINE)
		rc = -EMSGSIZE;
	return rc;
}

int proto_reply_status(struct proto_buf *b, int err, const char *msg)
{
	const char *name;
	char clean[PROTO_MAX_MESSAGE + 1];
	size_t n;

	if (err == 0)
		return proto_buf_add(b, "ok\n", 3);
	name = proto_errno_name(err);
	if (name == NULL)
		name = "EIO";
	n = msg != NULL ? strnlen(msg, PROTO_MAX_MESSAGE) : 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];

		clean[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	clean[n] = '\0';
	if (n == 0)
		return proto_buf_addf(b, "err %s\n", name);
	return proto_buf_addf(b, "err %s %s\n", name, clean);
}

int proto_reply_field(struct proto_buf *b, const char *key, const void *val,
		      size_t n)
{
	int rc;

	if (!proto_key_valid(key))
		return -EINVAL;
	rc = proto_buf_addf(b, "%s=", key);
	if (rc == 0)
		rc = proto_encode(b, val, n);
	if (rc == 0)
		rc = proto_buf_add(b, "\n", 1);
	return rc;
}

int proto_reply_record(struct proto_buf *b)
{
	return proto_buf_add(b, "record\n", 7);
}

int proto_reply_end(struct proto_buf *b)
{
	return proto_buf_add(b, "\n", 1);
}

size_t proto_reply_length(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			return 0;
		if (nl + 1 < end && nl[1] == '\n')
			return (size_t)(nl + 2 - buf);
		p = nl + 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Parsing
 */

static void why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Copies at most 32 bytes of s for quoting in a message, '?' for oddities. */
static void excerpt(char *dst, const char *s, size_t n)
{
	size_t k = n < 32 ? n : 32;

	for (size_t i = 0; i < k; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[i] = c < 0x21 || c > 0x7e || c == '\'' ? '?' : (char)c;
	}
	if (n > 32) {
		memcpy(dst + k, "...", 3);
		k += 3;
	}
	dst[k] = '\0';
}

static struct proto_msg *msg_alloc(size_t nfields, size_t storelen)
{
	struct proto_msg *m;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->message = "";
	m->fields = calloc(nfields != 0 ? nfields : 1, sizeof(*m->fields));
	m->store = malloc(storelen);
	if (m->fields == NULL || m->store == NULL) {
		proto_msg_free(m);
		return NULL;
	}
	return m;
}

/* Checks invariants (1) to (4) of a parsed message. */
static bool msg_invariants(const struct proto_msg *m)
{
	size_t rec = 0;

	if (m->nfields > PROTO_MAX_FIELDS || m->nrecords > PROTO_MAX_RECORDS)
		return false;
	for (size_t i = 0; i < m->nfields; i++) {
		const struct proto_field *f = &m->fields[i];

		if (f->record < rec || f->record > m->nrecords ||
		    !proto_key_valid(f->key) || f->val[f->len] != '\0')
			return false;
		rec = f->record;
	}
	return (m->err == 0) == (m->errname[0] == '\0');
}

void proto_msg_free(struct proto_msg *m)
{
	if (m == NULL)
		return;
	free(m->fields);
	free(m->store);
	free(m);
}

/*
 * Parses "KEY=VALUE" of n bytes at s into field f, copying both into the
 * store at *sp.  Returns 0 or -EINVAL with an explanation.
 */
static int parse_field(const char *s, size_t n, struct proto_field *f,
		       char **sp, char *why, size_t whylen)
{
	const char *eq = memchr(s, '=', n);
	char quoted[40];
	size_t klen, bad = 0;
	char *p = *sp;

	if (eq == NULL || !key_valid(s, (size_t)(eq - s))) {
		excerpt(quoted, s, n);
		why_set(why, whylen, "bad argument '%s': expected key=value",
			quoted);
		return -EINVAL;
	}
	klen = (size_t)(eq - s);
	memcpy(p, s, klen);
	p[klen] = '\0';
	f->key = p;
	p += klen + 1;
	if (proto_decode(eq + 1, n - klen - 1, p, &f->len, &bad) != 0) {
		excerpt(quoted, s, klen);
		if (eq[1 + bad] == '%')
			why_set(why, whylen,
				"bad percent escape in value of '%s'", quoted);
		else
			why_set(why, whylen,
				"byte 0x%02x in value of '%s' must be "
				"percent-encoded",
				(unsigned char)eq[1 + bad], quoted);
		return -EINVAL;
	}
	f->val = p;
	*sp = p + f->len + 1;
	return 0;
}

int proto_parse_request(const char *line, size_t len, struct proto_msg **out,
			char *why, size_t whylen)
{
	struct proto_msg *m;
	const char *p, *end = line + len, *tok;
	char quoted[40], *sp;
	size_t ntok = 0, n;
	int rc;

	*out = NULL;
	if (len >= PROTO_MAX_LINE) {
		why_set(why, whylen, "request longer than %d bytes",
			PROTO_MAX_LINE);
		return -EMSGSIZE;
	}
	if (memchr(line, '\0', len) != NULL) {
		why_set(why, whylen, "NUL byte in request");
		return -EINVAL;
	}
	for (p = line; p < end; p++) {
		if (*p != ' ' && (p == line || p[-1] == ' '))
			ntok++;
	}
	if (ntok == 0) {
		why_set(why, whylen, "empty request");
		return -EINVAL;
	}
	if (ntok - 1 > PROTO_MAX_ARGS) {
		why_set(why, whylen, "more than %d arguments", PROTO_MAX_ARGS);
		return -E2BIG;
	}
	m = msg_alloc(ntok - 1, len + 1);
	if (m == NULL) {
		why_set(why, whylen, "out of memory");
		return -ENOMEM;
	}
	sp = m->store;
	p = line;
	for (size_t i = 0; i < ntok; i++) {
		while (*p == ' ')
			p++;
		tok = p;
		while (p < end && *p != ' ')
			p++;
		n = (size_t)(p - tok);
		if (i == 0) {
			if (!verb_valid(tok, n)) {
				excerpt(quoted, tok, n);
				why_set(why, whylen,
					"bad verb '%s': expected 1 to %d "
					"of [a-z-]",
					quoted, PROTO_MAX_VERB);
				rc = -EINVAL;
				goto out_free_msg;
			}
			memcpy(m->verb, tok, n);
			m->verb[n] = '\0';
			continue;
		}
		rc = parse_field(tok, n, &m->fields[i - 1], &sp, why, whylen);
		if (rc != 0)
			goto out_free_msg;
	}
	m->nfields = ntok - 1;
	assert(msg_invariants(m));
	*out = m;
	return 0;

out_free_msg:
	proto_msg_free(m);
	return rc;
}

/* Parses the status line of a reply (without "\n") into m. */
static int parse_status(struct proto_msg *m, const char *s, size_t n, char **sp,
			char *why, size_t whylen)
{
	const char *name, *end = s + n;
	size_t k;
	int e;

	if (n == 2 && memcmp(s, "ok", 2) == 0)
		return 0;
	if (n < 5 || memcmp(s, "err ", 4) != 0) {
		why_set(why, whylen, "reply starts with neither ok nor err");
		return -EPROTO;
	}
	name = s + 4;
	for (k = 0; name + k < end && name[k] != ' '; k++) {
		unsigned char c = (unsigned char)name[k];

		if (!(c >= 'A' && c <= 'Z') && !is_digit(c))
			break;
	}
	if (k == 0 || k > PROTO_MAX_ERRNAME || name[0] != 'E' ||
	    (name + k < end && name[k] != ' ')) {
		why_set(why, whylen, "bad errno name in reply");
		return -EPROTO;
	}
	memcpy(m->errname, name, k);
	m->errname[k] = '\0';
	e = proto_errno_value(m->errname);
	m->err = e != 0 ? -e : -EPROTO;
	if (name + k < end) {
		const char *msg = name + k + 1;
		size_t mlen = (size_t)(end - msg);

		if (mlen > PROTO_MAX_MESSAGE) {
			why_set(why, whylen, "error message too long");
			return -EMSGSIZE;
		}
		for (size_t i = 0; i < mlen; i++) {
			unsigned char c = (unsigned char)msg[i];

			if (c < 0x20 || c == 0x7f) {
				why_set(why, whylen,
					"control byte in error message");
				return -EPROTO;
			}
		}
		memcpy(*sp, msg, mlen);
		(*sp)[mlen] = '\0';
		m->message = *sp;
		*sp += mlen + 1;
	}
	return 0;
}

int proto_parse_reply(const char *buf, size_t len, struct proto_msg **out,
		      char *why, size_t whylen)
{
	struct proto_msg *m;
	const char *p, *end, *nl;
	size_t nlines = 0, record = 0, lineno = 1;
	char *sp;
	int rc;

	*out = NULL;
	if (len > PROTO_MAX_REPLY) {
		why_set(why, whylen, "reply longer than %u bytes",
			PROTO_MAX_REPLY);
		return -EMSGSIZE;
	}
	if (len < 2 || proto_reply_length(buf, len) != len) {
		why_set(why, whylen,
			"reply is not one block ended by an "
			"empty line");
		return -EPROTO;
	}
	if (memchr(buf, '\0', len) != NULL) {
		why_set(why, whylen, "NUL byte in reply");
		return -EPROTO;
	}
	for (p = buf; p < buf + len; p++)
		nlines += *p == '\n';
	/* The status line and the empty line are not fields. */
	if (nlines - 2 > PROTO_MAX_FIELDS + PROTO_MAX_RECORDS) {
		why_set(why, whylen, "too many lines in reply");
		return -EMSGSIZE;
	}
	m = msg_alloc(nlines - 2, len + 1);
	if (m == NULL) {
		why_set(why, whylen, "out of memory");
		return -ENOMEM;
	}
	sp = m->store;
	end = buf + len - 1; /* the final "\n" of the empty line */
	nl = memchr(buf, '\n', len);
	rc = parse_status(m, buf, (size_t)(nl - buf), &sp, why, whylen);
	if (rc != 0)
		goto out_free_msg;
	for (p = nl + 1; p < end; p = nl + 1) {
		size_t n;

		lineno++;
		nl = memchr(p, '\n', (size_t)(end + 1 - p));
		n = (size_t)(nl - p);
		if (n == 6 && memcmp(p, "record", 6) == 0) {
			if (++record > PROTO_MAX_RECORDS) {
				why_set(why, whylen, "too many records");
				rc = -EMSGSIZE;
				goto out_free_msg;
			}
			continue;
		}
		if (m->nfields == PROTO_MAX_FIELDS) {
			why_set(why, whylen, "too many fields");
			rc = -EMSGSIZE;
			goto out_free_msg;
		}
		rc =
		    parse_field(p, n, &m->fields[m->nfields], &sp, why, whylen);
		if (rc != 0) {
			why_set(why, whylen, "bad line %zu in reply", lineno);
			rc = -EPROTO;
			goto out_free_msg;
		}
		m->fields[m->nfields++].record = record;
	}
	m->nrecords = record;
	assert(msg_invariants(m));
	*out = m;
	return 0;

out_free_msg:
	proto_msg_free(m);
	return rc;
}

const char *proto_msg_verb(const struct proto_msg *m)
{
	return m->verb;
}

int proto_msg_error(const struct proto_msg *m)
{
	return m->err;
}

const char *proto_msg_errname(const struct proto_msg *m)
{
	return m->errname;
}

const char *proto_msg_message(const struct proto_msg *m)
{
	return m->message;
}

size_t proto_msg_count(const struct proto_msg *m)
{
	return m->nfields;
}

size_t proto_msg_records(const struct proto_msg *m)
{
	return m->nrecords;
}

int proto_msg_field(const struct proto_msg *m, size_t i, const char **key,
		    const char **val, size_t *len, size_t *record)
{
	const struct proto_field *f;

	if (i >= m->nfields)
		return -ERANGE;
	f = &m->fields[i];
	if (key != NULL)
		*key = f->key;
	if (val != NULL)
		*val = f->val;
	if (len != NULL)
		*len = f->len;
	if (record != NULL)
		*record = f->record;
	return 0;
}

const char *proto_msg_get(const struct proto_msg *m, size_t record,
			  const char *key, size_t *len)
{
	for (size_t i = 0; i < m->nfields; i++) {
		const struct proto_field *f = &m->fields[i];

		if (f->record > record)
			break;
		if (f->record == record && strcmp(f->key, key) == 0) {
			if (len != NULL)
				*len = f->len;
			return f->val;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Errno names
 */

#define E(x)                                                                   \
	{                                                                      \
		x, #x                                                          \
	}

static const struct {
	int val;
	const char *name;
} errnames[] = {
	E(EPERM),
	E(ENOENT),
	E(ESRCH),
	E(EINTR),
	E(EIO),
	E(ENXIO),
	E(E2BIG),
	E(ENOEXEC),
	E(EBADF),
	E(ECHILD),
	E(EAGAIN),
	E(ENOMEM),
	E(EACCES),
	E(EFAULT),
	E(ENOTBLK),
	E(EBUSY),
	E(EEXIST),
	E(EXDEV),
	E(ENODEV),
	E(ENOTDIR),
	E(EISDIR),
	E(EINVAL),
	E(ENFILE),
	E(EMFILE),
	E(ENOTTY),
	E(ETXTBSY),
	E(EFBIG),
	E(ENOSPC),
	E(ESPIPE),
	E(EROFS),
	E(EMLINK),
	E(EPIPE),
	E(EDOM),
	E(ERANGE),
	E(EDEADLK),
	E(ENAMETOOLONG),
	E(ENOLCK),
	E(ENOSYS),
	E(ENOTEMPTY),
	E(ELOOP),
	E(ENOMSG),
	E(EIDRM),
	E(ENOSTR),
	E(ENODATA),
	E(ETIME),
	E(ENOSR),
	E(EREMOTE),
	E(ENOLINK),
	E(EPROTO),
	E(EMULTIHOP),
	E(EBADMSG),
	E(EOVERFLOW),
	E(EBADFD),
	E(EILSEQ),
	E(EUSERS),
	E(ENOTSOCK),
	E(EDESTADDRREQ),
	E(EMSGSIZE),
	E(EPROTOTYPE),
	E(ENOPROTOOPT),
	E(EPROTONOSUPPORT),
	E(ESOCKTNOSUPPORT),
	E(EOPNOTSUPP),
	E(EPFNOSUPPORT),
	E(EAFNOSUPPORT),
	E(EADDRINUSE),
	E(EADDRNOTAVAIL),
	E(ENETDOWN),
	E(ENETUNREACH),
	E(ENETRESET),
	E(ECONNABORTED),
	E(ECONNRESET),
	E(ENOBUFS),
	E(EISCONN),
	E(ENOTCONN),
	E(ESHUTDOWN),
	E(ETOOMANYREFS),
	E(ETIMEDOUT),
	E(ECONNREFUSED),
	E(EHOSTDOWN),
	E(EHOSTUNREACH),
	E(EALREADY),
	E(EINPROGRESS),
	E(ESTALE),
	E(EDQUOT),
	E(ENOMEDIUM),
	E(EMEDIUMTYPE),
	E(ECANCELED),
	E(ENOKEY),
	E(EKEYEXPIRED),
	E(EKEYREVOKED),
	E(EKEYREJECTED),
	E(EOWNERDEAD),
	E(ENOTRECOVERABLE),
};

#undef E

const char *proto_errno_name(int err)
{
	if (err < 0)
		err = -err;
	for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].val == err)
			return errnames[i].name;
	return NULL;
}

int proto_errno_value(const char *name)
{
	for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (strcmp(errnames[i].name, name) == 0)
			return errnames[i].val;
	return 0;
}

/* ------------------------------------------------------------------------
 * Socket locations and mount discovery
 */

uint64_t proto_fnv1a64(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The bytes kept as they are in the base name of a socket. */
static bool base_char(unsigned char c)
{
	return is_lower(c) || is_digit(c) || (c >= 'A' && c <= 'Z') ||
	       c == '.' || c == '_' || c == '-';
}

int proto_socket_dir(uid_t uid, const char *xdg, char *buf, size_t len)
{
	int n;

	if (uid == 0)
		n = snprintf(buf, len, "/run/txfs");
	else if (xdg != NULL && xdg[0] == '/')
		n = snprintf(buf, len, "%s/txfs", xdg);
	else
		n = snprintf(buf, len, "/tmp/txfs-%lu", (unsigned long)uid);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

int proto_socket_name(const char *canonical, uid_t uid, const char *xdg,
		      char *buf, size_t len)
{
	struct sockaddr_un sun;
	char base[33];
	size_t n, b, k;
	int rc, w;

	if (canonical == NULL || canonical[0] != '/')
		return -EINVAL;
	n = strlen(canonical);
	/* Find the last component, ignoring trailing slashes. */
	for (k = n; k > 0 && canonical[k - 1] == '/'; k--)
		;
	for (b = k; b > 0 && canonical[b - 1] != '/'; b--)
		;
	if (k == b) {
		strcpy(base, "root");
	} else {
		size_t m = k - b < 32 ? k - b : 32;

		for (size_t i = 0; i < m; i++) {
			unsigned char c = (unsigned char)canonical[b + i];

			base[i] = base_char(c) ? (char)c : '_';
		}
		base[m] = '\0';
	}
	rc = proto_socket_dir(uid, xdg, buf, len);
	if (rc != 0)
		return rc;
	k = strlen(buf);
	w = snprintf(buf + k, len - k, "/%s-%016llx.sock", base,
		     (unsigned long long)proto_fnv1a64(canonical, n));
	if (w < 0 || (size_t)w >= len - k ||
	    k + (size_t)w >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int proto_default_socket(const char *mountpoint, char *buf, size_t len)
{
	char *canonical;
	int rc;

	canonical = realpath(mountpoint, NULL);
	if (canonical == NULL)
		return -errno;
	rc = proto_socket_name(canonical, geteuid(), getenv("XDG_RUNTIME_DIR"),
			       buf, len);
	free(canonical);
	return rc;
}

/* Decodes the octal escapes of a mountinfo field into out (PATH_MAX+1). */
static bool unescape_field(const char *s, size_t n, char *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (k >= PATH_MAX)
			return false;
		if (s[i] == '\\' && n - i >= 4 && s[i + 1] >= '0' &&
		    s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
		    s[i + 3] >= '0' && s[i + 3] <= '7') {
			out[k++] =
			    (char)((s[i + 1] - '0') << 6 |
				   (s[i + 2] - '0') << 3 | (s[i + 3] - '0'));
			i += 3;
		} else {
			out[k++] = s[i];
		}
	}
	out[k] = '\0';
	return true;
}

/* True when the canonical path is mnt or lies below it. */
static bool contains(const char *mnt, const char *path)
{
	size_t n = strlen(mnt);

	if (strcmp(mnt, "/") == 0)
		return true;
	return strncmp(mnt, path, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

int proto_find_mount_in(const char *mountinfo, const char *canonical, char *mnt,
			size_t len)
{
	char best[PATH_MAX + 1], cur[PATH_MAX + 1];
	const char *line = mountinfo;
	size_t bestlen = 0;
	bool found = false;

	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		const char *f[6], *p, *sep;
		size_t flen[6], nf = 0;

		if (eol == NULL)
			eol = line + strlen(line);
		/* Fields 1-5 (id parent dev root mountpoint), then " - ". */
		for (p = line; p < eol && nf < 5;) {
			while (p < eol && *p == ' ')
				p++;
			f[nf] = p;
			while (p < eol && *p != ' ')
				p++;
			flen[nf] = (size_t)(p - f[nf]);
			nf++;
		}
		sep = NULL;
		for (const char *q = p; q + 3 <= eol; q++) {
			if (q[0] == ' ' && q[1] == '-' && q[2] == ' ') {
				sep = q + 3;
				break;
			}
		}
		if (nf == 5 && sep != NULL) {
			const char *t = sep;

			while (t < eol && *t != ' ')
				t++;
			if ((size_t)(t - sep) == 9 &&
			    memcmp(sep, "fuse.txfs", 9) == 0 &&
			    unescape_field(f[4], flen[4], cur) &&
			    contains(cur, canonical) &&
			    (!found || strlen(cur) >= bestlen)) {
				strcpy(best, cur);
				bestlen = strlen(cur);
				found = true;
			}
		}
		line = *eol == '\n' ? eol + 1 : eol;
	}
	if (!found)
		return -ENOENT;
	if (bestlen >= len)
		return -ENAMETOOLONG;
	memcpy(mnt, best, bestlen + 1);
	return 0;
}

/* Reads all of /proc/self/mountinfo into a NUL-terminated buffer. */
static int read_mountinfo(char **out)
{
	struct proto_buf b;
	char chunk[4096];
	FILE *f;
	size_t n;
	int rc = 0;

	f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL)
		return -errno;
	proto_buf_init(&b, 64u << 20);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		rc = proto_buf_add(&b, chunk, n);
		if (rc != 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = -EIO;
	if (rc == 0)
		rc = proto_buf_add(&b, "", 0);
	fclose(f);
	if (rc != 0) {
		proto_buf_release(&b);
		return rc;
	}
	*out = b.data;
	return 0;
}

int proto_find_mount(const char *path, char *mnt, size_t len)
{
	char *canonical, *info = NULL;
	int rc;

	canonical = realpath(path, NULL);
	if (canonical == NULL)
		return -errno;
	rc = read_mountinfo(&info);
	if (rc == 0)
		rc = proto_find_mount_in(info, canonical, mnt, len);
	free(info);
	free(canonical);
	return rc;
}
