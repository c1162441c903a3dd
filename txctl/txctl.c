/*
 * txctl.c: the command-line client of txfsd: global options, the verb
 * table, daemon discovery, exit codes, and the helpers the verbs share
 * (argument parsing, JSON and table output).  The verbs themselves live
 * in cmd_<verb>.c (see txctl.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txctl.h"

#ifndef TXFS_VERSION
#define TXFS_VERSION "unknown"
#endif

/* The verbs, in the order 'txctl help' lists them, ended by NULL. */
const struct txctl_cmd *const txctl_cmds[] = {
	&txctl_cmd_begin,  &txctl_cmd_commit,
	&txctl_cmd_abort,  &txctl_cmd_run,
	&txctl_cmd_join,   &txctl_cmd_list,
	&txctl_cmd_status, &txctl_cmd_diff,
	&txctl_cmd_help,   NULL,
};

const struct txctl_cmd *txctl_find_cmd(const char *name)
{
	for (size_t i = 0; txctl_cmds[i] != NULL; i++)
		if (strcmp(txctl_cmds[i]->name, name) == 0)
			return txctl_cmds[i];
	return NULL;
}

void txctl_err(const char *fmt, ...)
{
	va_list ap;

	fputs("txctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void txctl_print_usage(FILE *f, const struct txctl_cmd *cmd)
{
	fprintf(f, "usage: txctl %s%s%s\n", cmd->name,
		cmd->usage[0] != '\0' ? " " : "", cmd->usage);
}

void txctl_print_help(FILE *f, const struct txctl_cmd *cmd)
{
	txctl_print_usage(f, cmd);
	fprintf(f, "\n%c%s.\n", toupper((unsigned char)cmd->summary[0]),
		cmd->summary + 1);
	if (cmd->help != NULL)
		fprintf(f, "\n%s", cmd->help);
}

int txctl_usage_error(const struct txctl_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fputs("txctl: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	txctl_print_usage(stderr, cmd);
	return TXCTL_EXIT_USAGE;
}

/* Writes the code point cp as UTF-8 JSON text (or an escape). */
static void json_code_point(FILE *f, unsigned cp)
{
	if (cp == '"' || cp == '\\')
		fprintf(f, "\\%c", (char)cp);
	else if (cp == '\n')
		fputs("\\n", f);
	else if (cp == '\t')
		fputs("\\t", f);
	else if (cp < 0x20 || cp == 0x7f)
		fprintf(f, "\\u%04x", cp);
	else if (cp < 0x80)
		fputc((int)cp, f);
	else if (cp < 0x800)
		fprintf(f, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
	else if (cp < 0x10000)
		fprintf(f, "%c%c%c", 0xe0 | (cp >> 12),
			0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
	else
		fprintf(f, "%c%c%c%c", 0xf0 | (cp >> 18),
			0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f),
			0x80 | (cp & 0x3f));
}

/*
 * Decodes one UTF-8 sequence at s (n bytes available).  Returns its length
 * and the code point, or 0 when the bytes are not well-formed UTF-8
 * (overlong forms, surrogates and values past U+10FFFF included).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp)
{
	size_t len;
	unsigned min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		min = 0x80;
		*cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		min = 0x800;
		*cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		min = 0x10000;
		*cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = *cp << 6 | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

void txctl_json_string(FILE *f, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	fputc('"', f);
	while (i < n) {
		unsigned cp;
		size_t len = utf8_decode(p + i, n - i, &cp);

		if (len == 0) {
			json_code_point(f, 0xfffd);
			i++;
			continue;
		}
		json_code_point(f, cp);
		i += len;
	}
	fputc('"', f);
}

/* Connects to the socket at path; on failure explains, naming mount. */
static int connect_socket(struct txctl_ctx *ctx, const char *path)
{
	int rc;

	snprintf(ctx->socket_path, sizeof(ctx->socket_path), "%s", path);
	rc = txfs_connect(path, &ctx->client);
	if (rc != 0) {
		txctl_err("cannot connect to %s: %s", path, strerror(-rc));
		return TXCTL_EXIT_ERROR;
	}
	return TXCTL_EXIT_OK;
}

/* Connects to the daemon serving mount at its default socket. */
static int connect_mount(struct txctl_ctx *ctx, const char *mount)
{
	int rc;

	rc = txfs_connect_mount(mount, &ctx->client, ctx->socket_path,
				sizeof(ctx->socket_path));
	if (rc == 0)
		return TXCTL_EXIT_OK;
	if (ctx->socket_path[0] == '\0')
		txctl_err("cannot find the socket of %s: %s", mount,
			  strerror(-rc));
	else if (rc == -ENOENT || rc == -ECONNREFUSED)
		txctl_err("cannot connect to %s: %s (is txfsd running on %s?)",
			  ctx->socket_path, strerror(-rc), mount);
	else
		txctl_err("cannot connect to %s: %s", ctx->socket_path,
			  strerror(-rc));
	return TXCTL_EXIT_ERROR;
}

int txctl_connect(struct txctl_ctx *ctx)
{
	char cwd[PATH_MAX], mnt[PATH_MAX];
	const char *env;
	int rc;

	if (ctx->client != NULL)
		return TXCTL_EXIT_OK;
	if (ctx->socket != NULL)
		rc = connect_socket(ctx, ctx->socket);
	else if (ctx->mount != NULL)
		rc = connect_mount(ctx, ctx->mount);
	else if ((env = getenv("TXFS_SOCKET")) != NULL && env[0] != '\0')
		rc = connect_socket(ctx, env);
	else if ((env = getenv("TXFS_MOUNT")) != NULL && env[0] != '\0')
		rc = connect_mount(ctx, env);
	else if (getcwd(cwd, sizeof(cwd)) == NULL) {
		txctl_err("cannot get the current directory: %s",
			  strerror(errno));
		return TXCTL_EXIT_ERROR;
	} else {
		rc = txfs_find_mount(cwd, mnt, sizeof(mnt));
		if (rc == -ENOENT) {
			txctl_err("not inside a txfs mount: use -m MOUNTPOINT "
				  "or --socket PATH");
			return TXCTL_EXIT_ERROR;
		}
		if (rc != 0) {
			txctl_err("cannot read the mount table: %s",
				  strerror(-rc));
			return TXCTL_EXIT_ERROR;
		}
		rc = connect_mount(ctx, mnt);
	}
	if (rc == TXCTL_EXIT_OK)
		txfs_set_timeout(ctx->client, ctx->timeout_ms);
	return rc;
}

/*
 * The daemon's error message for the request that failed with rc: from r
 * when it holds an error reply, else from the client's last answer; NULL
 * when the daemon did not answer.
 */
static const char *daemon_message(const struct txctl_ctx *ctx,
				  const struct txfs_reply *r)
{
	if (r != NULL && txfs_reply_error(r) != 0)
		return txfs_reply_message(r);
	if (r == NULL && ctx->client != NULL)
		return txfs_last_message(ctx->client);
	return NULL;
}

int txctl_request_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
			 const struct txfs_reply *r)
{
	const char *msg = daemon_message(ctx, r);
	size_t n = strlen(verb);

	if (msg != NULL) {
		/* The daemon's default messages already name the verb. */
		if (strncmp(msg, verb, n) == 0 && msg[n] == ':' &&
		    msg[n + 1] == ' ')
			msg += n + 2;
		txctl_err("%s: %s", verb, msg[0] != '\0' ? msg : strerror(-rc));
	} else if (rc == -ETIMEDOUT) {
		txctl_err("%s: no reply from %s within %d ms", verb,
			  ctx->socket_path, ctx->timeout_ms);
	} else {
		txctl_err("%s: cannot talk to %s: %s", verb, ctx->socket_path,
			  strerror(-rc));
	}
	return TXCTL_EXIT_ERROR;
}

int txctl_tx_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
		    uint64_t txid, struct txfs_commit_result *res)
{
	if (daemon_message(ctx, NULL) == NULL)
		return txctl_request_failed(ctx, verb, rc, NULL);
	if (rc == -ENOENT) {
		if (txid != 0)
			txctl_err("no such transaction: %" PRIu64, txid);
		else
			txctl_err("not in a transaction");
		return TXCTL_EXIT_NOTX;
	}
	if (rc != -ECANCELED)
		return txctl_request_failed(ctx, verb, rc, NULL);
	if (res != NULL && res->txid != 0)
		txid = res->txid;
	if (txid != 0)
		txctl_err("%s of transaction %" PRIu64
			  " conflicts; it was aborted",
			  verb, txid);
	else
		txctl_err("%s conflicts; the transaction was aborted", verb);
	for (size_t i = 0; res != NULL && i < res->nconflicts; i++) {
		txctl_sanitize(res->conflicts[i]);
		fprintf(stderr, "  conflict: %s\n", res->conflicts[i]);
	}
	return TXCTL_EXIT_CONFLICT;
}

void txctl_wait_long(struct txctl_ctx *ctx)
{
	if (!ctx->timeout_given)
		txfs_set_timeout(ctx->client, -1);
}

/* Parses a decimal number from 1 to max; 0 or -EINVAL. */
static int parse_positive(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || *out == 0 || *out > max)
		return -EINVAL;
	return 0;
}

int txctl_parse_txid(const char *s, uint64_t *txid)
{
	return parse_positive(s, UINT64_MAX, txid);
}

int txctl_parse_pid(const char *s, pid_t *pid)
{
	uint64_t v;
	int rc = parse_positive(s, INT32_MAX, &v);

	if (rc == 0)
		*pid = (pid_t)v;
	return rc;
}

int txctl_parse_txid_args(struct txctl_ctx *ctx, int argc, char **argv,
			  uint64_t *txid)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*txid = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			txctl_print_help(stdout, ctx->cmd);
			return TXCTL_EXIT_OK;
		default:
			return txctl_usage_error(
			    ctx->cmd, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc && txctl_parse_txid(argv[optind], txid) != 0)
		return txctl_usage_error(ctx->cmd, "bad transaction id '%s'",
					 argv[optind]);
	if (optind + 1 < argc)
		return txctl_usage_error(ctx->cmd, "unexpected argument '%s'",
					 argv[optind + 1]);
	return TXCTL_CONTINUE;
}

void txctl_format_age(uint64_t s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m", s / 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h", s / 3600);
	else
		snprintf(buf, len, "%" PRIu64 "d", s / 86400);
}

void txctl_format_user(uint32_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid((uid_t)uid);

	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "%" PRIu32, uid);
	txctl_sanitize(buf);
}

void txctl_sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Writes ,"key": (without the comma when first) to f. */
static void json_key(FILE *f, const char *key, bool first)
{
	fprintf(f, "%s\"%s\":", first ? "" : ",", key);
}

static void json_str(FILE *f, const char *key, const char *val)
{
	json_key(f, key, false);
	txctl_json_string(f, val, strlen(val));
}

void txctl_tx_json(FILE *f, const struct txfs_tx_info *info, bool paths)
{
	fputc('{', f);
	json_key(f, "txid", true);
	fprintf(f, "%" PRIu64, info->txid);
	json_key(f, "uid", false);
	fprintf(f, "%" PRIu32, info->uid);
	json_key(f, "leader", false);
	fprintf(f, "%ld", info->leader);
	json_str(f, "label", info->label);
	json_key(f, "started", false);
	fprintf(f, "%" PRId64, info->started);
	json_key(f, "age", false);
	fprintf(f, "%" PRIu64, info->age);
	json_str(f, "state", info->state);
	json_key(f, "changes", false);
	fprintf(f, "%" PRIu64, info->changes);
	json_key(f, "members", false);
	fprintf(f, "%" PRIu64, info->members);
	if (paths) {
		json_key(f, "paths", false);
		fputc('[', f);
		for (size_t i = 0; i < info->npaths; i++) {
			fputs(i > 0 ? ",{" : "{", f);
			json_key(f, "path", true);
			txctl_json_string(f, info->paths[i],
					  strlen(info->paths[i]));
			json_str(f, "change", info->kinds[i]);
			fputc('}', f);
		}
		fputc(']', f);
	}
	fputc('}', f);
}

static void usage(FILE *f)
{
	fputs("usage: txctl [-m MOUNTPOINT | -S PATH] [-t SECONDS] VERB "
	      "[ARGS]\n"
	      "       txctl --help | --version\n",
	      f);
}

/* Parses --timeout's SECONDS (a positive decimal, 0 for no timeout). */
static int parse_timeout(const char *s, int *ms)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 86400)
		return -EINVAL;
	*ms = v == 0 ? -1 : (int)v * 1000;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mount", required_argument, NULL, 'm' },
		{ "socket", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct txctl_ctx ctx = { .timeout_ms = TXFS_DEFAULT_TIMEOUT_MS };
	static char help_name[] = "help";
	char *help_argv[2] = { NULL, NULL };
	const struct txctl_cmd *cmd;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:m:S:t:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			ctx.mount = optarg;
			break;
		case 'S':
			ctx.socket = optarg;
			break;
		case 't':
			if (parse_timeout(optarg, &ctx.timeout_ms) != 0) {
				txctl_err("bad timeout '%s': expected seconds",
					  optarg);
				return TXCTL_EXIT_USAGE;
			}
			ctx.timeout_given = true;
			break;
		case 'h':
			help_argv[0] = help_name;
			return txctl_cmd_help.run(&ctx, 1, help_argv);
		case 'V':
			printf("txctl %s (protocol %d)\n", TXFS_VERSION,
			       TXFS_PROTOCOL);
			return TXCTL_EXIT_OK;
		case ':':
			txctl_err("option '%s' needs an argument",
				  argv[optind - 1]);
			usage(stderr);
			return TXCTL_EXIT_USAGE;
		default:
			txctl_err("unknown option '%s'", argv[optind - 1]);
			usage(stderr);
			return TXCTL_EXIT_USAGE;
		}
	}
	if (ctx.mount != NULL && ctx.socket != NULL) {
		txctl_err("-m and --socket cannot be combined");
		usage(stderr);
		return TXCTL_EXIT_USAGE;
	}
	if (optind >= argc) {
		usage(stderr);
		return TXCTL_EXIT_USAGE;
	}
	cmd = txctl_find_cmd(argv[optind]);
	if (cmd == NULL) {
		txctl_err("unknown verb '%s' (see 'txctl help')", argv[optind]);
		return TXCTL_EXIT_USAGE;
	}
	ctx.cmd = cmd;
	argc -= optind;
	argv += optind;
	optind = 0; /* glibc: rescan from scratch for the verb's options */
	rc = cmd->run(&ctx, argc, argv);
	txfs_close(ctx.client);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		txctl_err("cannot write output: %s", strerror(errno));
		rc = TXCTL_EXIT_ERROR;
	}
	return rc;
}
