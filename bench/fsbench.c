/*
 * fsbench.c: the workload driver behind bench/run.sh.
 *
 * Each subcommand runs one phase of a file-system benchmark on whatever
 * directory it is given (a native directory or a FUSE mount) and prints
 * exactly one line on standard output:
 *
 *	ok OPS SECONDS		OPS operations completed in SECONDS
 *	fail REASON DONE	an operation failed after DONE had succeeded;
 *				REASON is an errno name (EMFILE) or, for
 *				"time", exitN or signalN
 *
 * Diagnostics go to standard error.  The exit status is 0 after "ok", 1
 * after "fail" and 2 on a usage error.  Timing uses CLOCK_MONOTONIC and
 * covers the operations only, not process start-up or argument checks.
 *
 * The program is deliberately self-contained (no config.h, no project
 * headers) so that run.sh can compile it on the spot when the build tree
 * does not provide it.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF_BYTES (1 << 20)

static char buf[BUF_BYTES];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A xorshift64* generator: deterministic for a given seed on every host. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

static void report_ok(unsigned long ops, double seconds)
{
	printf("ok %lu %.6f\n", ops, seconds);
}

/* Reports errno err for the operation op on path; returns exit status 1. */
static int report_fail(int err, const char *op, const char *path,
		       unsigned long done)
{
	const char *name = strerrorname_np(err);

	fprintf(stderr, "fsbench: cannot %s %s: %s\n", op, path, strerror(err));
	printf("fail %s %lu\n", name ? name : "EUNKNOWN", done);
	return 1;
}

static bool parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && s[0] != '-';
}

/*
 * Names file i of n spread over ndirs subdirectories d00, d01, ... of dir,
 * in consecutive blocks; ndirs == 0 puts every file directly in dir.
 */
static void file_path(char *path, size_t size, const char *dir,
		      unsigned long ndirs, unsigned long i, unsigned long n)
{
	if (ndirs == 0)
		snprintf(path, size, "%s/f%07lu", dir, i);
	else
		snprintf(path, size, "%s/d%02lu/f%07lu", dir, i * ndirs / n, i);
}

static int write_all(int fd, size_t size)
{
	while (size > 0) {
		size_t chunk = size < BUF_BYTES ? size : BUF_BYTES;
		ssize_t n = write(fd, buf, chunk);

		if (n < 0)
			return -errno;
		size -= (size_t)n;
	}
	return 0;
}

/* create DIR NDIRS NFILES SIZE: makes the directories, then the files. */
static int cmd_create(const char *dir, unsigned long ndirs, unsigned long n,
		      unsigned long size)
{
	char path[PATH_MAX];
	unsigned long i;
	double t0;
	int fd, ret;

	memset(buf, 'x', sizeof(buf));
	t0 = now();
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return report_fail(errno, "create directory", dir, 0);
	for (i = 0; i < ndirs; i++) {
		snprintf(path, sizeof(path), "%s/d%02lu", dir, i);
		if (mkdir(path, 0755) < 0)
			return report_fail(errno, "create directory", path, 0);
	}
	for (i = 0; i < n; i++) {
		file_path(path, sizeof(path), dir, ndirs, i, n);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return report_fail(errno, "create", path, i);
		ret = write_all(fd, size);
		if (ret < 0) {
			close(fd);
			return report_fail(-ret, "write", path, i);
		}
		if (close(fd) < 0)
			return report_fail(errno, "close", path, i);
	}
	report_ok(n, now() - t0);
	return 0;
}

/* stat DIR NDIRS NFILES: lstat()s every file that create made. */
static int cmd_stat(const char *dir, unsigned long ndirs, unsigned long n)
{
	char path[PATH_MAX];
	struct stat st;
	unsigned long i;
	double t0;

	t0 = now();
	for (i = 0; i < n; i++) {
		file_path(path, sizeof(path), dir, ndirs, i, n);
		if (lstat(path, &st) < 0)
			return report_fail(errno, "stat", path, i);
		if (!S_ISREG(st.st_mode))
			return report_fail(EINVAL, "use non-regular file", path,
					   i);
	}
	report_ok(n, now() - t0);
	return 0;
}

/* unlink DIR NDIRS NFILES: removes the files, then the subdirectories. */
static int cmd_unlink(const char *dir, unsigned long ndirs, unsigned long n)
{
	char path[PATH_MAX];
	unsigned long i;
	double t0;

	t0 = now();
	for (i = 0; i < n; i++) {
		file_path(path, sizeof(path), dir, ndirs, i, n);
		if (unlink(path) < 0)
			return report_fail(errno, "unlink", path, i);
	}
	for (i = 0; i < ndirs; i++) {
		snprintf(path, sizeof(path), "%s/d%02lu", dir, i);
		if (rmdir(path) < 0)
			return report_fail(errno, "remove directory", path, n);
	}
	report_ok(n, now() - t0);
	return 0;
}

/* randread FILE NOPS BLOCK SEED: NOPS aligned preads at random offsets. */
static int cmd_randread(const char *file, unsigned long nops,
			unsigned long block, unsigned long seed)
{
	uint64_t rng = seed ? seed : 1, nblocks;
	struct stat st;
	unsigned long i = 0;
	double t0;
	int fd, err;

	if (block == 0 || block > BUF_BYTES) {
		fprintf(stderr, "fsbench: block size must be 1..%d\n",
			BUF_BYTES);
		return 2;
	}
	t0 = now();
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return report_fail(errno, "open", file, 0);
	if (fstat(fd, &st) < 0)
		goto out_fail;
	nblocks = (uint64_t)st.st_size / block;
	if (nblocks == 0) {
		errno = EINVAL;
		goto out_fail;
	}
	for (i = 0; i < nops; i++) {
		off_t off = (off_t)(rng_next(&rng) % nblocks * block);
		ssize_t n = pread(fd, buf, block, off);

		if (n < 0)
			goto out_fail;
		if ((size_t)n != block) {
			errno = EIO;
			goto out_fail;
		}
	}
	close(fd);
	report_ok(nops, now() - t0);
	return 0;

out_fail:
	err = errno;
	close(fd);
	return report_fail(err, "read", file, i);
}

/* Tree generator state for mktree. */
struct tree {
	uint64_t rng;
	unsigned long budget; /* files still to create */
	unsigned long files, dirs;
	uint64_t bytes;
};

/* Fills buf with size bytes of source-like text lines. */
static void fill_text(struct tree *t, size_t size)
{
	static const char words[] = "static int struct return if else for "
				    "while unsigned char void const long ";
	size_t i;

	for (i = 0; i < size; i++) {
		uint64_t r = rng_next(&t->rng);

		buf[i] = (r % 61 == 0) ? '\n' : words[r % (sizeof(words) - 1)];
	}
}

/*
 * Makes one directory level: a handful of files whose sizes are spread
 * log-uniformly over 128 B .. 64 KiB (a source tree's shape), then up to
 * four subdirectories while the file budget lasts.
 */
static int tree_level(struct tree *t, const char *dir, int depth)
{
	static const char *const ext[] = { "c", "h", "txt", "py", "md", "S" };
	char path[PATH_MAX];
	unsigned long nfiles, nsub, i;
	int fd, ret;

	if (mkdir(dir, 0755) < 0)
		return report_fail(errno, "create directory", dir, t->files);
	t->dirs++;
	nfiles = 4 + rng_next(&t->rng) % 24;
	for (i = 0; i < nfiles && t->budget > 0; i++, t->budget--) {
		uint64_t r = rng_next(&t->rng);
		size_t size = ((size_t)1 << (7 + r % 9)) +
			      (size_t)(r >> 32) % ((size_t)1 << (7 + r % 9));

		snprintf(path, sizeof(path), "%s/file%03lu.%s", dir, i,
			 ext[(r >> 8) % 6]);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return report_fail(errno, "create", path, t->files);
		fill_text(t, size);
		ret = write_all(fd, size);
		close(fd);
		if (ret < 0)
			return report_fail(-ret, "write", path, t->files);
		t->files++;
		t->bytes += size;
	}
	nsub = depth < 5 ? 1 + rng_next(&t->rng) % 4 : 0;
	for (i = 0; i < nsub && t->budget > 0; i++) {
		snprintf(path, sizeof(path), "%s/mod%02lu", dir, i);
		ret = tree_level(t, path, depth + 1);
		if (ret != 0)
			return ret;
	}
	return 0;
}

/* mktree DIR NFILES SEED: a deterministic synthetic source tree. */
static int cmd_mktree(const char *dir, unsigned long n, unsigned long seed)
{
	struct tree t = { .rng = seed ? seed : 1, .budget = n };
	char path[PATH_MAX];
	unsigned long i;
	int ret;

	if (mkdir(dir, 0755) < 0)
		return report_fail(errno, "create directory", dir, 0);
	for (i = 0; t.budget > 0; i++) {
		snprintf(path, sizeof(path), "%s/top%02lu", dir, i);
		ret = tree_level(&t, path, 1);
		if (ret != 0)
			return ret;
	}
	printf("tree %lu %lu %" PRIu64 "\n", t.files, t.dirs, t.bytes);
	return 0;
}

/* time CMD [ARG...]: runs CMD with stdout on /dev/null and times it. */
static int cmd_time(char *const argv[])
{
	int status, fd;
	double t0;
	pid_t pid;

	t0 = now();
	pid = fork();
	if (pid < 0)
		return report_fail(errno, "fork for", argv[0], 0);
	if (pid == 0) {
		fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "fsbench: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return report_fail(errno, "wait for", argv[0], 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		report_ok(1, now() - t0);
		return 0;
	}
	if (WIFEXITED(status))
		printf("fail exit%d 0\n", WEXITSTATUS(status));
	else
		printf("fail signal%d 0\n", WTERMSIG(status));
	return 1;
}

static int usage(void)
{
	fputs("usage: fsbench create DIR NDIRS NFILES SIZE\n"
	      "       fsbench stat DIR NDIRS NFILES\n"
	      "       fsbench unlink DIR NDIRS NFILES\n"
	      "       fsbench randread FILE NOPS BLOCK SEED\n"
	      "       fsbench mktree DIR NFILES SEED\n"
	      "       fsbench time COMMAND [ARG...]\n",
	      stderr);
	return 2;
}

int main(int argc, char *argv[])
{
	unsigned long a[4] = { 0 };
	const char *cmd;
	int nargs, i;

	if (argc < 3)
		return usage();
	cmd = argv[1];
	if (strcmp(cmd, "time") == 0)
		return cmd_time(argv + 2);
	if (strcmp(cmd, "create") == 0 || strcmp(cmd, "randread") == 0)
		nargs = 4;
	else if (strcmp(cmd, "stat") == 0 || strcmp(cmd, "unlink") == 0)
		nargs = 3;
	else if (strcmp(cmd, "mktree") == 0)
		nargs = 3;
	else
		return usage();
	if (argc != nargs + 2)
		return usage();
	for (i = 1; i < nargs; i++)
		if (!parse_ulong(argv[i + 2], &a[i - 1]))
			return usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "create") == 0)
		return cmd_create(argv[2], a[0], a[1], a[2]);
	if (strcmp(cmd, "randread") == 0)
		return cmd_randread(argv[2], a[0], a[1], a[2]);
	if (strcmp(cmd, "stat") == 0)
		return cmd_stat(argv[2], a[0], a[1]);
	if (strcmp(cmd, "unlink") == 0)
		return cmd_unlink(argv[2], a[0], a[1]);
	return cmd_mktree(argv[2], a[0], a[1]);
}
