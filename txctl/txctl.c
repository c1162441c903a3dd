/*
 * txctl.c: the command-line client of txfsd: global options, the verb
 * table, daemon discovery and exit codes.  The verbs themselves live in
 * cmd_<verb>.c (see txctl.h).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txctl.h"

#ifndef TXFS_VERSION
#define TXFS_VERSION "unknown"
#endif

const struct txctl_cmd *const txctl_cmds[] = {
	&txctl_cmd_status,
	&txctl_cmd_help,
	NULL,
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

int txctl_request_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
			 const struct txfs_reply *r)
{
	if (r != NULL && txfs_reply_error(r) != 0) {
		const char *msg = txfs_reply_message(r);

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
