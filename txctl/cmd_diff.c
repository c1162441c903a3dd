/*
 * cmd_diff.c: txctl diff [TXID] [--content] [--json] [--color[=WHEN]],
 * which shows what a transaction changed compared with its base: one
 * line per changed path as `git status --short` prints them, with
 * --content followed by how the contents of regular files changed (as
 * diff -u shows it), or as a JSON array.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "txctl.h"

/* As git does, a file with a NUL byte in its first 8 KiB is binary. */
#define BINARY_PROBE 8192

extern char **environ;

enum color_when { COLOR_AUTO, COLOR_ALWAYS, COLOR_NEVER };

/* The colour of each kind of change in the status letter. */
static const struct {
	char change;
	const char *sgr;
} colors[] = {
	{ 'A', "\033[32m" }, /* green */
	{ 'M', "\033[33m" }, /* yellow */
	{ 'D', "\033[31m" }, /* red */
	{ 'R', "\033[36m" }, /* cyan */
	{ 'T', "\033[35m" }, /* magenta */
};

#define SGR_RESET "\033[m"

/* How showing the contents of one file went. */
enum shown {
	SHOWN_OK,     /* shown, or nothing to show */
	SHOWN_ERROR,  /* an error was reported; go on with the next file */
	SHOWN_NO_DIFF /* diff(1) cannot be run: stop showing contents */
};

/* Whether to colour the output: WHEN, $NO_COLOR, $TERM and the terminal. */
static bool use_color(enum color_when when)
{
	const char *env;

	if (when != COLOR_AUTO)
		return when == COLOR_ALWAYS;
	env = getenv("NO_COLOR");
	if (env != NULL && env[0] != '\0')
		return false;
	env = getenv("TERM");
	if (env != NULL && strcmp(env, "dumb") == 0)
		return false;
	return isatty(STDOUT_FILENO) == 1;
}

/* Reports why file cannot be read, with a copy of its name made safe. */
static void cannot_read(const char *file, const char *why)
{
	char *safe = strdup(file);

	if (safe != NULL)
		txctl_sanitize(safe);
	txctl_err("cannot read %s: %s", safe != NULL ? safe : "a file", why);
	free(safe);
}

/*
 * Opens file for reading.  O_NONBLOCK keeps a FIFO put where a regular
 * file was announced from blocking; it changes nothing for regular files.
 */
static int open_file(const char *file)
{
	return open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

/* Reads up to len bytes, fewer only at the end of the file; or -errno. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, buf + got, len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/*
 * Reads up to BINARY_PROBE bytes of file to tell whether it is binary.
 * Returns 0 with *binary set, or -errno (reported; -EINVAL when file is
 * not a regular file after all).
 */
static int probe_binary(const char *file, bool *binary)
{
	char buf[BINARY_PROBE];
	struct stat st;
	ssize_t got;
	int fd, err;

	fd = open_file(file);
	if (fd < 0) {
		err = errno;
		goto out_report;
	}
	if (fstat(fd, &st) != 0) {
		err = errno;
		goto out_close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		cannot_read(file, "not a regular file");
		return -EINVAL;
	}
	got = read_full(fd, buf, sizeof(buf));
	if (got < 0) {
		err = (int)-got;
		goto out_close_fd;
	}
	close(fd);
	*binary = memchr(buf, '\0', (size_t)got) != NULL;
	return 0;

out_close_fd:
	close(fd);
out_report:
	cannot_read(file, strerror(err));
	return -err;
}

/*
 * Compares the contents of files a and b.  Returns 1 when they are equal,
 * 0 when they differ, or -errno when one cannot be read (not reported).
 */
static int same_content(const char *a, const char *b)
{
	static char bufa[65536], bufb[65536]; /* txctl has one thread */
	struct stat sta, stb;
	int fda, fdb, rc;

	fda = open_file(a);
	if (fda < 0)
		return -errno;
	fdb = open_file(b);
	if (fdb < 0) {
		rc = -errno;
		goto out_close_a;
	}
	if (fstat(fda, &sta) != 0 || fstat(fdb, &stb) != 0) {
		rc = -errno;
		goto out_close_b;
	}
	rc = 0;
	if (sta.st_size != stb.st_size)
		goto out_close_b;
	for (;;) {
		ssize_t na = read_full(fda, bufa, sizeof(bufa));
		ssize_t nb = read_full(fdb, bufb, sizeof(bufb));

		if (na < 0 || nb < 0) {
			rc = (int)(na < 0 ? na : nb);
			break;
		}
		if (na != nb || memcmp(bufa, bufb, (size_t)na) != 0)
			break;
		if (na == 0) {
			rc = 1;
			break;
		}
	}
out_close_b:
	close(fdb);
out_close_a:
	close(fda);
	return rc;
}

/*
 * True when only the permission bits of c changed: it is not a regular
 * file, or its two versions hold the same bytes.  When they cannot be
 * compared nothing is known, and the answer is false.
 */
static bool only_mode_changed(const struct txfs_change *c)
{
	if (c->change != 'M' || !c->mode_changed)
		return false;
	if (c->type != 'f')
		return true;
	if (c->old_file == NULL || c->new_file == NULL)
		return false;
	return same_content(c->old_file, c->new_file) == 1;
}

/* Prints a path, with a slash after it when it names a directory. */
static void print_path(const char *path, char type)
{
	fputs(path, stdout);
	if (type == 'd' && strcmp(path, "/") != 0)
		putchar('/');
}

static void print_status(struct txfs_change *c, bool color)
{
	const char *sgr = NULL;

	for (size_t i = 0; color && i < sizeof(colors) / sizeof(colors[0]); i++)
		if (colors[i].change == c->change)
			sgr = colors[i].sgr;
	if (sgr != NULL)
		printf("%s%c%s ", sgr, c->change, SGR_RESET);
	else
		printf("%c ", c->change);
	txctl_sanitize(c->path);
	if (c->old != NULL) {
		txctl_sanitize(c->old);
		print_path(c->old, c->type);
		fputs(" -> ", stdout);
	}
	print_path(c->path, c->type);
	if (only_mode_changed(c))
		fputs(" (mode)", stdout);
	putchar('\n');
}

/*
 * The version of c on side old (true) or new (false) whose contents to
 * show, or NULL when that side has none or it is not a regular file.
 * Sets *missing when the side is a regular file the daemon did not name,
 * and *err to the errno of a base version that cannot be looked at.
 */
static const char *side_file(const struct txfs_change *c, bool old,
			     bool *missing, int *err)
{
	const char *file = old ? c->old_file : c->new_file;
	struct stat st;

	if (c->change == (old ? 'A' : 'D'))
		return NULL;
	if (c->change == 'T' && old) {
		/* The type field tells the new type: look at the old one. */
		if (file == NULL) {
			*missing = true;
			return NULL;
		}
		if (lstat(file, &st) != 0) {
			*err = errno;
			return NULL;
		}
		return S_ISREG(st.st_mode) ? file : NULL;
	}
	if (c->type != 'f')
		return NULL;
	if (file == NULL)
		*missing = true;
	return file;
}

/* Runs diff -u on oldf and newf, labelled la and lb; how it went. */
static enum shown run_diff(const char *oldf, const char *newf, const char *la,
			   const char *lb, bool color)
{
	char *argv[12];
	size_t n = 0;
	pid_t pid;
	int rc, status;

	argv[n++] = (char *)"diff";
	argv[n++] = (char *)"-u";
	if (color)
		argv[n++] = (char *)"--color=always";
	argv[n++] = (char *)"--label";
	argv[n++] = (char *)la;
	argv[n++] = (char *)"--label";
	argv[n++] = (char *)lb;
	argv[n++] = (char *)"--";
	argv[n++] = (char *)oldf;
	argv[n++] = (char *)newf;
	argv[n] = NULL;
	fflush(stdout);
	rc = posix_spawnp(&pid, "diff", NULL, NULL, argv, environ);
	if (rc != 0) {
		txctl_err("cannot run diff: %s", strerror(rc));
		return SHOWN_NO_DIFF;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			txctl_err("cannot wait for diff: %s", strerror(errno));
			return SHOWN_ERROR;
		}
	/* 0: the same, 1: different, 2: trouble, which diff has reported. */
	if (WIFEXITED(status) && WEXITSTATUS(status) <= 1)
		return SHOWN_OK;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		txctl_err("cannot run diff");
		return SHOWN_NO_DIFF;
	}
	if (WIFSIGNALED(status))
		txctl_err("diff was killed by signal %d", WTERMSIG(status));
	return SHOWN_ERROR;
}

/*
 * The label of one side of a diff: prefix and path ("a/dir/name"), or
 * /dev/null when the side has no file, as git writes it so that patch
 * tools see a creation or a deletion.  NULL when out of memory.
 */
static char *make_label(const char *prefix, const char *path)
{
	char *s;

	if (path == NULL)
		return strdup("/dev/null");
	if (asprintf(&s, "%s%s", prefix, path) < 0)
		return NULL;
	return s;
}

/* Shows how the contents of c changed, if it is a regular file. */
static enum shown show_content(const struct txfs_change *c, bool color)
{
	const char *apath = c->old != NULL ? c->old : c->path, *oldf, *newf;
	char *la = NULL, *lb = NULL;
	bool missing = false, bin_old = false, bin_new = false;
	enum shown ret = SHOWN_ERROR;
	int err = 0;

	oldf = side_file(c, true, &missing, &err);
	if (err != 0) {
		cannot_read(c->old_file, strerror(err));
		return SHOWN_ERROR;
	}
	newf = side_file(c, false, &missing, &err);
	if (missing) {
		txctl_err("cannot show the contents of %s: the daemon did not "
			  "say where a version of it is",
			  c->path);
		return SHOWN_ERROR;
	}
	if (oldf == NULL && newf == NULL)
		return SHOWN_OK;
	/* A renamed file's old version is labelled with its old path. */
	la = make_label("a", oldf == NULL ? NULL : apath);
	lb = make_label("b", newf == NULL ? NULL : c->path);
	if (la == NULL || lb == NULL) {
		txctl_err("out of memory");
		goto out_free_labels;
	}
	if ((oldf != NULL && probe_binary(oldf, &bin_old) != 0) ||
	    (newf != NULL && probe_binary(newf, &bin_new) != 0))
		goto out_free_labels;
	if (bin_old || bin_new) {
		int same =
		    oldf != NULL && newf != NULL ? same_content(oldf, newf) : 0;

		if (same < 0) {
			txctl_err("cannot compare %s with its base: %s",
				  c->path, strerror(-same));
			goto out_free_labels;
		}
		if (same == 0)
			printf("Binary files %s and %s differ\n", la, lb);
		ret = SHOWN_OK;
		goto out_free_labels;
	}
	ret = run_diff(oldf != NULL ? oldf : "/dev/null",
		       newf != NULL ? newf : "/dev/null", la, lb, color);
out_free_labels:
	free(la);
	free(lb);
	return ret;
}

static void json_opt(const char *key, const char *val)
{
	printf(",\"%s\":", key);
	if (val != NULL)
		txctl_json_string(stdout, val, strlen(val));
	else
		fputs("null", stdout);
}

static void print_json(const struct txfs_change *list, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		const struct txfs_change *c = &list[i];

		printf("%s{\"change\":\"%c\"", i > 0 ? "," : "", c->change);
		json_opt("path", c->path);
		json_opt("old", c->old);
		printf(",\"type\":\"%c\"", c->type);
		printf(",\"mode_changed\":%s",
		       c->mode_changed ? "true" : "false");
		json_opt("old_file", c->old_file);
		json_opt("new_file", c->new_file);
		putchar('}');
	}
	puts("]");
}

/* Prints the status lines of list and, with content, the contents. */
static int print_text(struct txfs_change *list, size_t n, bool content,
		      bool color)
{
	bool header = false;
	int rc = TXCTL_EXIT_OK;

	for (size_t i = 0; i < n; i++)
		print_status(&list[i], color);
	for (size_t i = 0; content && i < n; i++) {
		enum shown s;

		if (list[i].type != 'f' && list[i].change != 'T')
			continue;
		if (!header) {
			putchar('\n');
			header = true;
		}
		s = show_content(&list[i], color);
		if (s != SHOWN_OK)
			rc = TXCTL_EXIT_ERROR;
		if (s == SHOWN_NO_DIFF)
			break;
	}
	return rc;
}

/* Parses --color's WHEN; -EINVAL for anything but always, never, auto. */
static int parse_when(const char *s, enum color_when *when)
{
	if (s == NULL || strcmp(s, "always") == 0)
		*when = COLOR_ALWAYS;
	else if (strcmp(s, "never") == 0)
		*when = COLOR_NEVER;
	else if (strcmp(s, "auto") == 0)
		*when = COLOR_AUTO;
	else
		return -EINVAL;
	return 0;
}

static int diff_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "content", no_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "color", optional_argument, NULL, 'C' },
		{ "no-color", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum color_when when = COLOR_AUTO;
	struct txfs_change *list;
	bool content = false, json = false;
	uint64_t txid = 0;
	size_t n;
	int c, rc;

	opterr = 0;
	/* No "+": TXID may come before the options. */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			content = true;
			break;
		case 'j':
			json = true;
			break;
		case 'C':
			if (parse_when(optarg, &when) != 0)
				return txctl_usage_error(
				    ctx->cmd,
				    "bad --color '%s': expected always, "
				    "never or auto",
				    optarg);
			break;
		case 'N':
			when = COLOR_NEVER;
			break;
		case 'h':
			txctl_print_help(stdout, ctx->cmd);
			return TXCTL_EXIT_OK;
		default:
			return txctl_usage_error(
			    ctx->cmd, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc && txctl_parse_txid(argv[optind], &txid) != 0)
		return txctl_usage_error(ctx->cmd, "bad transaction id '%s'",
					 argv[optind]);
	if (optind + 1 < argc)
		return txctl_usage_error(ctx->cmd, "unexpected argument '%s'",
					 argv[optind + 1]);
	if (content && json)
		return txctl_usage_error(
		    ctx->cmd, "--content cannot be combined with --json");
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	rc = txfs_diff(ctx->client, txid, &list, &n);
	if (rc != 0)
		return txctl_tx_failed(ctx, "diff", rc, txid, NULL);
	if (json) {
		print_json(list, n);
		rc = TXCTL_EXIT_OK;
	} else {
		rc = print_text(list, n, content, use_color(when));
	}
	txfs_changes_free(list, n);
	return rc;
}

const struct txctl_cmd txctl_cmd_diff = {
	.name = "diff",
	.usage = "[TXID] [--content] [--json] [--color[=WHEN]]",
	.summary = "show what a transaction changed",
	.help = "TXID defaults to the transaction txctl's caller is in.  "
		"One line per\n"
		"changed path: A added, M modified, D deleted, R renamed "
		"(old -> new),\n"
		"T type changed; \"(mode)\" when only the permission bits "
		"changed.\n"
		"\n"
		"  --content       then show how the contents of regular files "
		"changed,\n"
		"                  as unified diffs from diff(1)\n"
		"  --json          print a JSON array of objects with the "
		"members change,\n"
		"                  path, old, type, mode_changed, old_file and "
		"new_file\n"
		"  --color[=WHEN]  colour the output: always (the default "
		"for --color),\n"
		"                  never, or auto (when writing to a terminal "
		"and\n"
		"                  NO_COLOR is not set; the default)\n"
		"  --no-color      the same as --color=never\n"
		"\n"
		"Exit status 4: no such transaction.\n",
	.run = diff_run,
};
