/*
 * test_proto.c: unit tests of the control protocol codec (src/proto.c):
 * percent-encoding, request and reply round trips, limits, errno names,
 * socket locations, mountinfo parsing, and a seeded fuzz of both parsers.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

/* A small deterministic generator (xorshift64*) so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t rng_below(size_t n)
{
	return (size_t)(rng() % n);
}

/* Parses the request in b (which ends in "\n"), failing the test if bad. */
static struct proto_msg *parse_built(const struct proto_buf *b)
{
	struct proto_msg *m = NULL;
	char why[256] = "";
	int rc;

	ck_assert_uint_gt(b->len, 0);
	ck_assert_int_eq(b->data[b->len - 1], '\n');
	rc = proto_parse_request(b->data, b->len - 1, &m, why, sizeof(why));
	ck_assert_msg(rc == 0, "parse failed: %d %s", rc, why);
	return m;
}

/* Parses a request line given as a C string; returns rc, message in why. */
static int parse_line(const char *line, struct proto_msg **m, char *why)
{
	return proto_parse_request(line, strlen(line), m, why, 256);
}

START_TEST(encoding_round_trips_every_byte_value)
{
	struct proto_buf b;
	char out[256 * 3 + 1], in[256];
	size_t n = 0, bad = 0;

	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	proto_buf_init(&b, 4096);
	ck_assert_int_eq(proto_encode(&b, in, sizeof(in)), 0);
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.data[i];

		ck_assert(c > 0x20 && c < 0x7f && c != '=');
	}
	ck_assert_int_eq(proto_decode(b.data, b.len, out, &n, &bad), 0);
	ck_assert_uint_eq(n, sizeof(in));
	ck_assert_mem_eq(out, in, sizeof(in));
	proto_buf_release(&b);
}
END_TEST

START_TEST(encoding_keeps_paths_readable)
{
	struct proto_buf b;

	proto_buf_init(&b, 4096);
	ck_assert_int_eq(proto_encode(&b, "/srv/a-b_c.d~e:f,g@h+i", 22), 0);
	ck_assert_str_eq(b.data, "/srv/a-b_c.d~e:f,g@h+i");
	proto_buf_reset(&b);
	ck_assert_int_eq(proto_encode(&b, "a b=c%\n", 7), 0);
	ck_assert_str_eq(b.data, "a%20b%3Dc%25%0A");
	proto_buf_release(&b);
}
END_TEST

START_TEST(decoding_accepts_either_case_of_hex)
{
	char out[16];
	size_t n = 0;

	ck_assert_int_eq(proto_decode("%4a%4B", 6, out, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out, "JK");
}
END_TEST

START_TEST(decoding_rejects_bad_escapes_and_raw_bytes)
{
	static const struct {
		const char *in;
		size_t bad;
	} cases[] = {
		{ "%", 0 },   { "ab%4", 2 }, { "%zz", 0 },  { "a%g1", 1 },
		{ "a b", 1 }, { "x\ty", 1 }, { "\x80", 0 }, { "ok\x7f", 2 },
	};
	char out[16];
	size_t n, bad;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bad = 99;
		ck_assert_int_eq(proto_decode(cases[i].in, strlen(cases[i].in),
					      out, &n, &bad),
				 -EINVAL);
		ck_assert_uint_eq(bad, cases[i].bad);
	}
}
END_TEST

START_TEST(request_round_trips_binary_values)
{
	struct proto_buf b;
	struct proto_msg *m;
	char vals[8][300];
	size_t lens[8];
	const char *key, *val;
	size_t len, rec;

	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "begin-tx"), 0);
	for (int i = 0; i < 8; i++) {
		char k[8];

		lens[i] = rng_below(sizeof(vals[i]));
		for (size_t j = 0; j < lens[i]; j++)
			vals[i][j] = (char)rng();
		snprintf(k, sizeof(k), "k%d", i);
		ck_assert_int_eq(proto_request_add(&b, k, vals[i], lens[i]), 0);
	}
	ck_assert_int_eq(proto_request_add(&b, "k0", "dup", 3), 0);
	ck_assert_int_eq(proto_request_end(&b), 0);
	ck_assert_ptr_null(memchr(b.data, '\n', b.len - 1));

	m = parse_built(&b);
	ck_assert_str_eq(proto_msg_verb(m), "begin-tx");
	ck_assert_int_eq(proto_msg_error(m), 0);
	ck_assert_uint_eq(proto_msg_count(m), 9);
	for (size_t i = 0; i < 8; i++) {
		char k[8];

		snprintf(k, sizeof(k), "k%zu", i);
		ck_assert_int_eq(proto_msg_field(m, i, &key, &val, &len, &rec),
				 0);
		ck_assert_str_eq(key, k);
		ck_assert_uint_eq(len, lens[i]);
		ck_assert_mem_eq(val, vals[i], len);
		ck_assert_int_eq(val[len], '\0');
		ck_assert_uint_eq(rec, 0);
	}
	/* Repeated keys are kept in order; get returns the first. */
	ck_assert_int_eq(proto_msg_field(m, 8, &key, &val, &len, NULL), 0);
	ck_assert_str_eq(key, "k0");
	ck_assert_str_eq(val, "dup");
	val = proto_msg_get(m, 0, "k0", &len);
	ck_assert_uint_eq(len, lens[0]);
	ck_assert_mem_eq(val, vals[0], len);
	ck_assert_int_eq(proto_msg_field(m, 9, &key, NULL, NULL, NULL),
			 -ERANGE);
	proto_msg_free(m);
	proto_buf_release(&b);
}
END_TEST

START_TEST(request_parser_tolerates_runs_of_spaces)
{
	struct proto_msg *m = NULL;
	char why[256];

	ck_assert_int_eq(parse_line("  status   a=1  b=  ", &m, why), 0);
	ck_assert_str_eq(proto_msg_verb(m), "status");
	ck_assert_uint_eq(proto_msg_count(m), 2);
	ck_assert_str_eq(proto_msg_get(m, 0, "a", NULL), "1");
	ck_assert_str_eq(proto_msg_get(m, 0, "b", NULL), "");
	ck_assert_ptr_null(proto_msg_get(m, 0, "c", NULL));
	proto_msg_free(m);
}
END_TEST

START_TEST(request_parser_explains_bad_syntax)
{
	static const struct {
		const char *line;
		int rc;
		const char *why;
	} cases[] = {
		{ "", -EINVAL, "empty request" },
		{ "   ", -EINVAL, "empty request" },
		{ "Status", -EINVAL, "bad verb 'Status'" },
		{ "stat2", -EINVAL, "bad verb" },
		{ "abcdefghijklmnopqrstuvwxyzabcdefg", -EINVAL, "bad verb" },
		{ "\xff\xfe", -EINVAL,
		  "bad verb '?"
		  "?'" },
		{ "status foo", -EINVAL, "bad argument 'foo'" },
		{ "status =v", -EINVAL, "expected key=value" },
		{ "status Key=v", -EINVAL, "bad argument" },
		{ "status 9k=v", -EINVAL, "bad argument" },
		{ "status k=%4", -EINVAL,
		  "bad percent escape in value of 'k'" },
		{ "status k=%G0", -EINVAL, "bad percent escape" },
		{ "status k=\x01", -EINVAL, "byte 0x01 in value of 'k'" },
		{ "status k=\xc3\xa9", -EINVAL, "byte 0xc3" },
		{ "status k=a\rb", -EINVAL, "byte 0x0d" },
	};
	struct proto_msg *m;
	char why[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = (struct proto_msg *)1;
		why[0] = '\0';
		ck_assert_int_eq(parse_line(cases[i].line, &m, why),
				 cases[i].rc);
		ck_assert_ptr_null(m);
		ck_assert_msg(strstr(why, cases[i].why) != NULL,
			      "case %zu: '%s' lacks '%s'", i, why,
			      cases[i].why);
	}
}
END_TEST

START_TEST(request_parser_rejects_nul_bytes)
{
	struct proto_msg *m;
	char why[256];

	ck_assert_int_eq(
	    proto_parse_request("ping a=\0b", 9, &m, why, sizeof(why)),
	    -EINVAL);
	ck_assert_str_eq(why, "NUL byte in request");
}
END_TEST

START_TEST(request_keys_may_be_64_bytes_and_no_more)
{
	char line[200], why[256];
	struct proto_msg *m = NULL;
	struct proto_buf b;
	char key[66];

	memset(key, 'k', 64);
	key[64] = '\0';
	snprintf(line, sizeof(line), "ping %s=1", key);
	ck_assert_int_eq(parse_line(line, &m, why), 0);
	proto_msg_free(m);
	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "ping"), 0);
	ck_assert_int_eq(proto_request_add(&b, key, "1", 1), 0);
	key[64] = 'k';
	key[65] = '\0';
	ck_assert_int_eq(proto_request_add(&b, key, "1", 1), -EINVAL);
	snprintf(line, sizeof(line), "ping %s=1", key);
	ck_assert_int_eq(parse_line(line, &m, why), -EINVAL);
	proto_buf_release(&b);
}
END_TEST

START_TEST(request_arguments_are_limited_to_64)
{
	struct proto_buf b;
	struct proto_msg *m = NULL;
	char why[256];

	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "ping"), 0);
	for (int i = 0; i < PROTO_MAX_ARGS; i++)
		ck_assert_int_eq(proto_request_add(&b, "a", "x", 1), 0);
	ck_assert_int_eq(proto_request_add(&b, "a", "x", 1), -E2BIG);
	ck_assert_int_eq(proto_request_end(&b), 0);
	m = parse_built(&b);
	ck_assert_uint_eq(proto_msg_count(m), PROTO_MAX_ARGS);
	proto_msg_free(m);

	/* One more on the wire is refused by the parser. */
	b.data[b.len - 1] = '\0';
	b.len--;
	ck_assert_int_eq(proto_buf_add(&b, " a=x", 4), 0);
	ck_assert_int_eq(
	    proto_parse_request(b.data, b.len, &m, why, sizeof(why)), -E2BIG);
	ck_assert_str_eq(why, "more than 64 arguments");
	proto_buf_release(&b);
}
END_TEST

START_TEST(request_lines_are_limited_to_64k_with_newline)
{
	struct proto_msg *m = NULL;
	struct proto_buf b;
	size_t vlen;
	char *line, why[256];

	/* "ping v=" plus a value filling the line to exactly the limit. */
	vlen = PROTO_MAX_LINE - 1 - strlen("ping v=");
	line = malloc(PROTO_MAX_LINE + 1);
	ck_assert_ptr_nonnull(line);
	memcpy(line, "ping v=", 7);
	memset(line + 7, 'a', vlen);
	ck_assert_int_eq(
	    proto_parse_request(line, PROTO_MAX_LINE - 1, &m, why, sizeof(why)),
	    0);
	ck_assert_uint_eq(strlen(proto_msg_get(m, 0, "v", NULL)), vlen);
	proto_msg_free(m);
	line[PROTO_MAX_LINE - 1] = 'a';
	ck_assert_int_eq(
	    proto_parse_request(line, PROTO_MAX_LINE, &m, why, sizeof(why)),
	    -EMSGSIZE);

	/* The builder refuses to produce what the parser would refuse. */
	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "ping"), 0);
	ck_assert_int_eq(proto_request_add(&b, "v", line + 7, vlen), 0);
	ck_assert_int_eq(proto_request_end(&b), 0);
	ck_assert_uint_eq(b.len, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "ping"), 0);
	ck_assert_int_eq(proto_request_add(&b, "v", line + 7, vlen + 1),
			 -EMSGSIZE);
	proto_buf_release(&b);
	free(line);
}
END_TEST

START_TEST(builders_refuse_bad_verbs_and_keys)
{
	struct proto_buf b;

	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, "Status"), -EINVAL);
	ck_assert_int_eq(proto_request_begin(&b, ""), -EINVAL);
	ck_assert_int_eq(proto_request_begin(&b, "a b"), -EINVAL);
	ck_assert_int_eq(proto_request_begin(&b, "ok"), 0);
	ck_assert_int_eq(proto_request_add(&b, "a=b", "", 0), -EINVAL);
	ck_assert_int_eq(proto_request_add(&b, "_a", "", 0), -EINVAL);
	ck_assert_int_eq(proto_reply_field(&b, "A", "", 0), -EINVAL);
	ck_assert(proto_verb_valid("commit-all"));
	ck_assert(!proto_verb_valid(NULL));
	ck_assert(proto_key_valid("state_dir"));
	ck_assert(!proto_key_valid("record=1"));
	proto_buf_release(&b);
}
END_TEST

START_TEST(buffer_errors_are_sticky)
{
	struct proto_buf b;

	proto_buf_init(&b, 8);
	ck_assert_int_eq(proto_buf_add(&b, "12345678", 8), 0);
	ck_assert_int_eq(proto_buf_add(&b, "9", 1), -EMSGSIZE);
	ck_assert_int_eq(proto_buf_addf(&b, "%s", ""), -EMSGSIZE);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_str_eq(b.data, "12345678");
	proto_buf_reset(&b);
	ck_assert_int_eq(proto_buf_addf(&b, "%d", 42), 0);
	ck_assert_str_eq(b.data, "42");
	proto_buf_release(&b);
}
END_TEST

/* Builds a reply: ok, two top-level fields and two records. */
static void build_reply(struct proto_buf *b, int err, const char *msg)
{
	proto_buf_init(b, PROTO_MAX_REPLY);
	ck_assert_int_eq(proto_reply_status(b, err, msg), 0);
	ck_assert_int_eq(proto_reply_field(b, "source", "/srv/a b", 8), 0);
	ck_assert_int_eq(proto_reply_field(b, "nul", "x\0y", 3), 0);
	ck_assert_int_eq(proto_reply_record(b), 0);
	ck_assert_int_eq(proto_reply_field(b, "name", "one", 3), 0);
	ck_assert_int_eq(proto_reply_record(b), 0);
	ck_assert_int_eq(proto_reply_field(b, "name", "two", 3), 0);
	ck_assert_int_eq(proto_reply_field(b, "source", "rec2", 4), 0);
	ck_assert_int_eq(proto_reply_end(b), 0);
}

START_TEST(reply_round_trips_fields_and_records)
{
	struct proto_buf b;
	struct proto_msg *m = NULL;
	const char *val;
	size_t len, rec;
	char why[256];

	build_reply(&b, 0, NULL);
	ck_assert_uint_eq(proto_reply_length(b.data, b.len), b.len);
	ck_assert_int_eq(proto_parse_reply(b.data, b.len, &m, why, sizeof(why)),
			 0);
	ck_assert_int_eq(proto_msg_error(m), 0);
	ck_assert_str_eq(proto_msg_errname(m), "");
	ck_assert_str_eq(proto_msg_message(m), "");
	ck_assert_uint_eq(proto_msg_count(m), 5);
	ck_assert_uint_eq(proto_msg_records(m), 2);
	ck_assert_str_eq(proto_msg_get(m, 0, "source", NULL), "/srv/a b");
	val = proto_msg_get(m, 0, "nul", &len);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(val, "x\0y", 3);
	ck_assert_str_eq(proto_msg_get(m, 1, "name", NULL), "one");
	ck_assert_ptr_null(proto_msg_get(m, 1, "source", NULL));
	ck_assert_str_eq(proto_msg_get(m, 2, "name", NULL), "two");
	ck_assert_str_eq(proto_msg_get(m, 2, "source", NULL), "rec2");
	ck_assert_ptr_null(proto_msg_get(m, 3, "name", NULL));
	ck_assert_int_eq(proto_msg_field(m, 4, NULL, NULL, NULL, &rec), 0);
	ck_assert_uint_eq(rec, 2);
	proto_msg_free(m);
	proto_buf_release(&b);
}
END_TEST

START_TEST(error_reply_carries_errno_name_and_message)
{
	struct proto_buf b;
	struct proto_msg *m = NULL;
	char why[256];

	build_reply(&b, -EPERM, "not the owner of transaction 12");
	ck_assert_int_eq(
	    strncmp(b.data, "err EPERM not the owner of transaction 12\n", 42),
	    0);
	ck_assert_int_eq(proto_parse_reply(b.data, b.len, &m, why, sizeof(why)),
			 0);
	ck_assert_int_eq(proto_msg_error(m), -EPERM);
	ck_assert_str_eq(proto_msg_errname(m), "EPERM");
	ck_assert_str_eq(proto_msg_message(m),
			 "not the owner of transaction 12");
	ck_assert_uint_eq(proto_msg_count(m), 5);
	proto_msg_free(m);
	proto_buf_release(&b);
}
END_TEST

START_TEST(error_message_cannot_break_framing)
{
	struct proto_buf b;
	struct proto_msg *m = NULL;
	char why[256];

	proto_buf_init(&b, PROTO_MAX_REPLY);
	ck_assert_int_eq(proto_reply_status(&b, -ENOENT, "a\nb\n\nc\td"), 0);
	ck_assert_int_eq(proto_reply_end(&b), 0);
	ck_assert_str_eq(b.data, "err ENOENT a?b??c?d\n\n");
	ck_assert_int_eq(proto_parse_reply(b.data, b.len, &m, why, sizeof(why)),
			 0);
	ck_assert_str_eq(proto_msg_message(m), "a?b??c?d");
	proto_msg_free(m);
	proto_buf_release(&b);
}
END_TEST

START_TEST(unknown_errno_names_parse_as_eproto)
{
	static const char r[] = "err EFROB something odd\n\n";
	struct proto_msg *m = NULL;
	struct proto_buf b;
	char why[256];

	ck_assert_int_eq(proto_parse_reply(r, strlen(r), &m, why, sizeof(why)),
			 0);
	ck_assert_int_eq(proto_msg_error(m), -EPROTO);
	ck_assert_str_eq(proto_msg_errname(m), "EFROB");
	ck_assert_str_eq(proto_msg_message(m), "something odd");
	proto_msg_free(m);
	/* An errno without a name goes out as EIO. */
	proto_buf_init(&b, 1024);
	ck_assert_int_eq(proto_reply_status(&b, -4000, "x"), 0);
	ck_assert_str_eq(b.data, "err EIO x\n");
	proto_buf_release(&b);
}
END_TEST

START_TEST(reply_length_finds_the_empty_line)
{
	static const char r[] = "ok\na=1\nrecord\nb=2\n\nok\n\n";

	ck_assert_uint_eq(proto_reply_length(r, 0), 0);
	ck_assert_uint_eq(proto_reply_length(r, 3), 0);
	ck_assert_uint_eq(proto_reply_length(r, 18), 0);
	ck_assert_uint_eq(proto_reply_length(r, 19), 19);
	ck_assert_uint_eq(proto_reply_length(r, strlen(r)), 19);
}
END_TEST

START_TEST(reply_parser_rejects_malformed_replies)
{
	static const char *const bad[] = {
		"ok\n",
		"\n\n",
		"ok \n\n",
		"okay\n\n",
		"err\n\n",
		"err \n\n",
		"err eperm x\n\n",
		"err PERM x\n\n",
		"err EPERM\x01x\n\n",
		"ok\nfoo\n\n",
		"ok\nA=1\n\n",
		"ok\na=%zz\n\n",
		"ok\na=1\n\nb=2\n\n",
		"ok\nRecord\n\n",
	};
	struct proto_msg *m;
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = (struct proto_msg *)1;
		why[0] = '\0';
		ck_assert_msg(proto_parse_reply(bad[i], strlen(bad[i]), &m, why,
						sizeof(why)) == -EPROTO,
			      "case %zu accepted", i);
		ck_assert_ptr_null(m);
		ck_assert_msg(why[0] != '\0', "case %zu: no reason", i);
	}
	ck_assert_int_eq(
	    proto_parse_reply("ok\na=\0\n\n", 8, &m, why, sizeof(why)),
	    -EPROTO);
}
END_TEST

START_TEST(errno_names_map_both_ways)
{
	int named = 0;

	for (int e = 1; e < 200; e++) {
		const char *name = proto_errno_name(e);

		if (name == NULL)
			continue;
		named++;
		ck_assert_int_eq(proto_errno_value(name), e);
		ck_assert_ptr_eq(proto_errno_name(-e), name);
	}
	ck_assert_int_gt(named, 80);
	ck_assert_str_eq(proto_errno_name(ENOSYS), "ENOSYS");
	ck_assert_int_eq(proto_errno_value("EADDRINUSE"), EADDRINUSE);
	ck_assert_int_eq(proto_errno_value("EFROB"), 0);
	ck_assert_ptr_null(proto_errno_name(0));
}
END_TEST

START_TEST(fnv1a64_matches_published_vectors)
{
	ck_assert(proto_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
	ck_assert(proto_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
	ck_assert(proto_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
}
END_TEST

/* The expected default name, computed independently of the code under test. */
static void expect_name(const char *dir, const char *base, const char *path,
			char *out, size_t len)
{
	snprintf(out, len, "%s/%s-%016llx.sock", dir, base,
		 (unsigned long long)proto_fnv1a64(path, strlen(path)));
}

START_TEST(default_socket_depends_on_uid_and_runtime_dir)
{
	char buf[200], want[200];

	ck_assert_int_eq(
	    proto_socket_name("/mnt/x", 0, "/run/user/0", buf, sizeof(buf)), 0);
	expect_name("/run/txfs", "x", "/mnt/x", want, sizeof(want));
	ck_assert_str_eq(buf, want);

	ck_assert_int_eq(proto_socket_name("/mnt/x", 1000, "/run/user/1000",
					   buf, sizeof(buf)),
			 0);
	expect_name("/run/user/1000/txfs", "x", "/mnt/x", want, sizeof(want));
	ck_assert_str_eq(buf, want);

	ck_assert_int_eq(
	    proto_socket_name("/mnt/x", 1000, NULL, buf, sizeof(buf)), 0);
	expect_name("/tmp/txfs-1000", "x", "/mnt/x", want, sizeof(want));
	ck_assert_str_eq(buf, want);

	/* A relative or empty XDG_RUNTIME_DIR is ignored, as the spec says. */
	ck_assert_int_eq(proto_socket_name("/mnt/x", 7, "", buf, sizeof(buf)),
			 0);
	ck_assert_int_eq(strncmp(buf, "/tmp/txfs-7/", 12), 0);
	ck_assert_int_eq(
	    proto_socket_name("/mnt/x", 7, "rel", buf, sizeof(buf)), 0);
	ck_assert_int_eq(strncmp(buf, "/tmp/txfs-7/", 12), 0);

	ck_assert_int_eq(proto_socket_dir(0, NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/txfs");
}
END_TEST

START_TEST(default_socket_name_is_sanitised_and_bounded)
{
	char buf[200], want[200], longname[120];

	ck_assert_int_eq(proto_socket_name("/", 0, NULL, buf, sizeof(buf)), 0);
	expect_name("/run/txfs", "root", "/", want, sizeof(want));
	ck_assert_str_eq(buf, want);

	ck_assert_int_eq(
	    proto_socket_name("/mnt/my dir\n*", 0, NULL, buf, sizeof(buf)), 0);
	expect_name("/run/txfs", "my_dir__", "/mnt/my dir\n*", want,
		    sizeof(want));
	ck_assert_str_eq(buf, want);

	memset(longname, 'n', sizeof(longname));
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(proto_socket_name(longname, 0, NULL, buf, sizeof(buf)),
			 0);
	ck_assert_uint_eq(strlen(buf), strlen("/run/txfs/") + 32 + 1 + 16 + 5);

	/* Different paths with the same last component do not collide. */
	ck_assert_int_eq(proto_socket_name("/a/x", 0, NULL, buf, sizeof(buf)),
			 0);
	ck_assert_int_eq(proto_socket_name("/b/x", 0, NULL, want, sizeof(want)),
			 0);
	ck_assert_str_ne(buf, want);

	ck_assert_int_eq(proto_socket_name("mnt/x", 0, NULL, buf, sizeof(buf)),
			 -EINVAL);
	ck_assert_int_eq(proto_socket_name("/mnt/x", 0, NULL, buf, 20),
			 -ENAMETOOLONG);
	/* A name that cannot fit in sun_path is refused. */
	memset(longname, 'd', sizeof(longname));
	longname[0] = '/';
	longname[90] = '\0';
	ck_assert_int_eq(
	    proto_socket_name("/mnt/x", 5, longname, buf, sizeof(buf)),
	    -ENAMETOOLONG);
}
END_TEST

START_TEST(default_socket_resolves_the_mount_point)
{
	char dir[] = "/tmp/test_proto.XXXXXX", sub[64], buf[200], want[200];
	char *canonical;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/./", dir);
	ck_assert_int_eq(proto_default_socket(sub, buf, sizeof(buf)), 0);
	canonical = realpath(dir, NULL);
	ck_assert_int_eq(proto_socket_name(canonical, geteuid(),
					   getenv("XDG_RUNTIME_DIR"), want,
					   sizeof(want)),
			 0);
	ck_assert_str_eq(buf, want);
	free(canonical);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_int_eq(proto_default_socket(dir, buf, sizeof(buf)), -ENOENT);
}
END_TEST

static const char mountinfo[] =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:40 / /mnt/tx rw,nosuid shared:5 - fuse.txfs /srv rw,"
    "user_id=0,group_id=0\n"
    "31 30 0:41 / /mnt/tx/inner rw - fuse.txfs /srv2 rw\n"
    "32 22 0:42 / /mnt/my\\040space rw - fuse.txfs /srv3 rw\n"
    "33 22 0:43 / /mnt/other rw - fuse.sshfs host: rw\n"
    "34 22 0:44 / /mnt/stacked rw - fuse.txfs /a rw\n"
    "35 34 0:45 / /mnt/stacked rw master:2 - fuse.txfs /b rw\n"
    "36 22 0:46 / /mnt/txfs-lookalike rw - fuse.txfsx /c rw";

START_TEST(find_mount_picks_the_innermost_txfs_mount)
{
	char mnt[PATH_MAX];

	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/tx/a/b", mnt, sizeof(mnt)), 0);
	ck_assert_str_eq(mnt, "/mnt/tx");
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/tx", mnt, sizeof(mnt)), 0);
	ck_assert_str_eq(mnt, "/mnt/tx");
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/tx/inner/c", mnt, sizeof(mnt)),
	    0);
	ck_assert_str_eq(mnt, "/mnt/tx/inner");
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/my space/f", mnt, sizeof(mnt)),
	    0);
	ck_assert_str_eq(mnt, "/mnt/my space");
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/stacked", mnt, sizeof(mnt)),
	    0);
	ck_assert_str_eq(mnt, "/mnt/stacked");
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/tx/inner", mnt, 8),
	    -ENAMETOOLONG);
}
END_TEST

START_TEST(find_mount_ignores_other_file_systems_and_prefixes)
{
	char mnt[PATH_MAX];

	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/txy", mnt, sizeof(mnt)),
	    -ENOENT);
	ck_assert_int_eq(
	    proto_find_mount_in(mountinfo, "/mnt/other/x", mnt, sizeof(mnt)),
	    -ENOENT);
	ck_assert_int_eq(proto_find_mount_in(mountinfo, "/mnt/txfs-lookalike",
					     mnt, sizeof(mnt)),
			 -ENOENT);
	ck_assert_int_eq(proto_find_mount_in(mountinfo, "/", mnt, sizeof(mnt)),
			 -ENOENT);
	ck_assert_int_eq(proto_find_mount_in("", "/", mnt, sizeof(mnt)),
			 -ENOENT);
	ck_assert_int_eq(proto_find_mount_in("garbage\n\n - \n1 2 3 4\n", "/",
					     mnt, sizeof(mnt)),
			 -ENOENT);
}
END_TEST

START_TEST(find_mount_reads_this_process_mountinfo)
{
	char mnt[PATH_MAX];

	/* This test machine has no txfs mount at /. */
	ck_assert_int_eq(proto_find_mount("/", mnt, sizeof(mnt)), -ENOENT);
	ck_assert_int_eq(
	    proto_find_mount("/nonexistent/txfs/x", mnt, sizeof(mnt)), -ENOENT);
}
END_TEST

/* Bytes a fuzzer should favour: the syntax of the protocol. */
static char fuzz_byte(void)
{
	static const char syntax[] = "      ==%%%aAzZ09-_\n\r\t\0rec\xff";

	if (rng_below(4) == 0)
		return (char)rng();
	return syntax[rng_below(sizeof(syntax) - 1)];
}

/* Checks that a parsed request survives re-encoding unchanged. */
static void check_request_idempotent(const struct proto_msg *m)
{
	struct proto_buf b;
	struct proto_msg *m2;

	proto_buf_init(&b, PROTO_MAX_LINE);
	ck_assert_int_eq(proto_request_begin(&b, proto_msg_verb(m)), 0);
	for (size_t i = 0; i < proto_msg_count(m); i++) {
		const char *k, *v;
		size_t n;

		ck_assert_int_eq(proto_msg_field(m, i, &k, &v, &n, NULL), 0);
		ck_assert_int_eq(proto_request_add(&b, k, v, n), 0);
	}
	ck_assert_int_eq(proto_request_end(&b), 0);
	m2 = parse_built(&b);
	ck_assert_str_eq(proto_msg_verb(m2), proto_msg_verb(m));
	ck_assert_uint_eq(proto_msg_count(m2), proto_msg_count(m));
	for (size_t i = 0; i < proto_msg_count(m); i++) {
		const char *k, *v, *k2, *v2;
		size_t n, n2;

		proto_msg_field(m, i, &k, &v, &n, NULL);
		proto_msg_field(m2, i, &k2, &v2, &n2, NULL);
		ck_assert_str_eq(k, k2);
		ck_assert_uint_eq(n, n2);
		ck_assert_mem_eq(v, v2, n);
	}
	proto_msg_free(m2);
	proto_buf_release(&b);
}

START_TEST(fuzzed_requests_never_crash_and_round_trip)
{
	static const char *const seeds[] = {
		"status",
		"ping a=1 b=%00%FF c=",
		"begin owner=1000 pid=42 name=my%20tx",
		"stm  x=y   ",
	};
	char line[512], why[256];
	size_t accepted = 0;

	for (int iter = 0; iter < 200000; iter++) {
		struct proto_msg *m = NULL;
		size_t n;
		int rc;

		if (iter % 2 == 0) {
			n = rng_below(sizeof(line));
			for (size_t i = 0; i < n; i++)
				line[i] = fuzz_byte();
		} else {
			const char *s = seeds[rng_below(4)];
			size_t muts = 1 + rng_below(4);

			n = strlen(s);
			memcpy(line, s, n);
			for (size_t k = 0; k < muts; k++) {
				size_t at = rng_below(n + 1);

				switch (rng_below(3)) {
				case 0: /* replace */
					if (at < n)
						line[at] = fuzz_byte();
					break;
				case 1: /* insert */
					if (n < sizeof(line)) {
						memmove(line + at + 1,
							line + at, n - at);
						line[at] = fuzz_byte();
						n++;
					}
					break;
				default: /* truncate */
					n = at;
				}
			}
		}
		rc = proto_parse_request(line, n, &m, why, sizeof(why));
		ck_assert_msg(rc == 0 || rc == -EINVAL || rc == -E2BIG,
			      "unexpected rc %d", rc);
		if (rc == 0) {
			accepted++;
			check_request_idempotent(m);
			proto_msg_free(m);
		} else {
			ck_assert_ptr_null(m);
			ck_assert(why[0] != '\0');
		}
	}
	/* The mutations must reach the accepting paths too. */
	ck_assert_uint_gt(accepted, 1000);
}
END_TEST

START_TEST(fuzzed_replies_never_crash)
{
	static const char *const seeds[] = {
		"ok\n\n",
		"ok\nsource=/srv\npid=1\nrecord\nname=a%20b\nrecord\n\n",
		"err EPERM not the owner of transaction 12\nid=12\n\n",
	};
	char buf[512], why[256];
	size_t accepted = 0;

	for (int iter = 0; iter < 200000; iter++) {
		struct proto_msg *m = NULL;
		const char *s = seeds[rng_below(3)];
		size_t n = strlen(s), len, muts = rng_below(4);
		int rc;

		memcpy(buf, s, n);
		for (size_t k = 0; k < muts; k++) {
			size_t at = rng_below(n);

			if (rng_below(2) == 0 || n >= sizeof(buf)) {
				buf[at] = fuzz_byte();
			} else {
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = fuzz_byte();
				n++;
			}
		}
		len = proto_reply_length(buf, n);
		if (len == 0)
			len = n;
		rc = proto_parse_reply(buf, len, &m, why, sizeof(why));
		ck_assert_msg(rc == 0 || rc == -EPROTO, "unexpected rc %d", rc);
		if (rc == 0) {
			accepted++;
			ck_assert_uint_le(proto_msg_count(m), n);
			for (size_t i = 0; i < proto_msg_count(m); i++) {
				const char *k;
				size_t rec;

				proto_msg_field(m, i, &k, NULL, NULL, &rec);
				ck_assert(proto_key_valid(k));
				ck_assert_uint_le(rec, proto_msg_records(m));
			}
			proto_msg_free(m);
		} else {
			ck_assert_ptr_null(m);
		}
	}
	ck_assert_uint_gt(accepted, 1000);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("encoding");
	tcase_add_test(tc, encoding_round_trips_every_byte_value);
	tcase_add_test(tc, encoding_keeps_paths_readable);
	tcase_add_test(tc, decoding_accepts_either_case_of_hex);
	tcase_add_test(tc, decoding_rejects_bad_escapes_and_raw_bytes);
	tcase_add_test(tc, buffer_errors_are_sticky);
	suite_add_tcase(s, tc);

	tc = tcase_create("requests");
	tcase_add_test(tc, request_round_trips_binary_values);
	tcase_add_test(tc, request_parser_tolerates_runs_of_spaces);
	tcase_add_test(tc, request_parser_explains_bad_syntax);
	tcase_add_test(tc, request_parser_rejects_nul_bytes);
	tcase_add_test(tc, request_keys_may_be_64_bytes_and_no_more);
	tcase_add_test(tc, request_arguments_are_limited_to_64);
	tcase_add_test(tc, request_lines_are_limited_to_64k_with_newline);
	tcase_add_test(tc, builders_refuse_bad_verbs_and_keys);
	suite_add_tcase(s, tc);

	tc = tcase_create("replies");
	tcase_add_test(tc, reply_round_trips_fields_and_records);
	tcase_add_test(tc, error_reply_carries_errno_name_and_message);
	tcase_add_test(tc, error_message_cannot_break_framing);
	tcase_add_test(tc, unknown_errno_names_parse_as_eproto);
	tcase_add_test(tc, reply_length_finds_the_empty_line);
	tcase_add_test(tc, reply_parser_rejects_malformed_replies);
	tcase_add_test(tc, errno_names_map_both_ways);
	suite_add_tcase(s, tc);

	tc = tcase_create("locations");
	tcase_add_test(tc, fnv1a64_matches_published_vectors);
	tcase_add_test(tc, default_socket_depends_on_uid_and_runtime_dir);
	tcase_add_test(tc, default_socket_name_is_sanitised_and_bounded);
	tcase_add_test(tc, default_socket_resolves_the_mount_point);
	tcase_add_test(tc, find_mount_picks_the_innermost_txfs_mount);
	tcase_add_test(tc, find_mount_ignores_other_file_systems_and_prefixes);
	tcase_add_test(tc, find_mount_reads_this_process_mountinfo);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fuzzed_requests_never_crash_and_round_trip);
	tcase_add_test(tc, fuzzed_replies_never_crash);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
