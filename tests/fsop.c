/*
 * fsop: a multi-call helper for the integration tests.
 *
 * It performs one system call (or a short, fixed sequence of them) that the
 * shell cannot express, so that scenario scripts can assert exact results:
 * renameat2 flags, SEEK_DATA/SEEK_HOLE, fallocate modes, copy_file_range,
 * record locks and flock, utimensat with UTIME_NOW/UTIME_OMIT, mknod of any
 * type, xattr calls with their flags, raw bytes to a unix socket, and so on.
 *
 * Conventions, relied on by tests/integration/lib.sh:
 *   - success: prints the result, if the command has one, and exits 0;
 *   - the call under test fails: prints the errno name (ENOENT, EEXIST, …)
 *     on stdout and exits 1;
 *   - usage errors and failures of set-up calls: a message on stderr and
 *     exit 2, so a broken test is never mistaken for an expected errno.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#include <linux/falloc.h>
#endif

struct cmd {
	const char *name;
	int min_args;
	int max_args;
	const char *usage;
	int (*run)(int argc, char **argv);
};

/* Reports a failed call under test: its errno name on stdout, exit 1. */
static int fail_errno(int err)
{
	const char *name = strerrorname_np(err);

	if (name != NULL)
		printf("%s\n", name);
	else
		printf("E%d\n", err);
	return 1;
}

/* Reports a failed set-up step on stderr; exit 2 marks a broken test. */
static int die(const char *what, const char *path)
{
	int err = errno;

	fprintf(stderr, "fsop: %s %s: %s\n", what, path ? path : "",
		strerror(err));
	return 2;
}

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "fsop: %s: %s\n", msg, arg);
	return 2;
}

static bool parse_ll(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 0);
	return errno == 0 && end != s && *end == '\0';
}

/* Parses a file mode given in octal ("644", "0755"). */
static bool parse_mode(const char *s, mode_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno != 0 || end == s || *end != '\0' || v > 07777)
		return false;
	*out = (mode_t)v;
	return true;
}

struct flag_name {
	const char *name;
	int value;
};

static const struct flag_name open_flags[] = {
	{ "rdonly", O_RDONLY },	    { "wronly", O_WRONLY },
	{ "rdwr", O_RDWR },	    { "creat", O_CREAT },
	{ "excl", O_EXCL },	    { "trunc", O_TRUNC },
	{ "append", O_APPEND },	    { "directory", O_DIRECTORY },
	{ "nofollow", O_NOFOLLOW }, { "path", O_PATH },
	{ "noatime", O_NOATIME },   { "sync", O_SYNC },
	{ "dsync", O_DSYNC },	    { "tmpfile", O_TMPFILE },
	{ "nonblock", O_NONBLOCK }, { NULL, 0 },
};

static const struct flag_name falloc_flags[] = {
	{ "0", 0 },
	{ "keep", FALLOC_FL_KEEP_SIZE },
	{ "punch", FALLOC_FL_PUNCH_HOLE },
	{ "zero", FALLOC_FL_ZERO_RANGE },
	{ "collapse", FALLOC_FL_COLLAPSE_RANGE },
	{ "insert", FALLOC_FL_INSERT_RANGE },
	{ NULL, 0 },
};

/* Parses a comma-separated list of flag names into their bitwise or. */
static bool parse_flags(const char *s, const struct flag_name *table, int *out)
{
	char buf[256];
	char *save = NULL;
	char *tok;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	*out = 0;
	for (tok = strtok_r(buf, ",|", &save); tok != NULL;
	     tok = strtok_r(NULL, ",|", &save)) {
		const struct flag_name *f;

		for (f = table; f->name != NULL; f++)
			if (strcasecmp(tok, f->name) == 0 ||
			    (strncasecmp(tok, "O_", 2) == 0 &&
			     strcasecmp(tok + 2, f->name) == 0))
				break;
		if (f->name == NULL)
			return false;
		*out |= f->value;
	}
	return true;
}

/* Writes all of buf to fd; returns 0 or -errno. */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Blocks until the file release exists (the test's "let go" signal), or
 * until the parent process is gone, so a holder never outlives its test.
 */
static void wait_release(const char *release)
{
	pid_t parent = getppid();
	const struct timespec tick = { 0, 10 * 1000 * 1000 };

	while (access(release, F_OK) != 0 && getppid() == parent)
		nanosleep(&tick, NULL);
}

/* Parses "hold=PATH"; returns PATH or NULL. */
static const char *parse_hold(const char *arg)
{
	if (strncmp(arg, "hold=", 5) == 0 && arg[5] != '\0')
		return arg + 5;
	return NULL;
}

/* --- open and simple namespace calls ------------------------------------ */

static int cmd_open(int argc, char **argv)
{
	int flags;
	mode_t mode = 0644;
	int fd;

	(void)argc;
	if (!parse_flags(argv[1], open_flags, &flags))
		return usage_error("bad open flags", argv[1]);
	if (argv[2] != NULL && !parse_mode(argv[2], &mode))
		return usage_error("bad mode", argv[2]);
	fd = open(argv[0], flags, mode);
	if (fd < 0)
		return fail_errno(errno);
	close(fd);
	printf("ok\n");
	return 0;
}

/* Runs a call that returns 0 or -1 with errno, printing "ok" or the errno. */
static int report(int rc)
{
	if (rc < 0)
		return fail_errno(errno);
	printf("ok\n");
	return 0;
}

static int cmd_rename2(int argc, char **argv)
{
	unsigned int flags;

	(void)argc;
	if (strcmp(argv[2], "none") == 0)
		flags = 0;
	else if (strcmp(argv[2], "noreplace") == 0)
		flags = RENAME_NOREPLACE;
	else if (strcmp(argv[2], "exchange") == 0)
		flags = RENAME_EXCHANGE;
	else
		return usage_error("bad rename flag", argv[2]);
	return report(renameat2(AT_FDCWD, argv[0], AT_FDCWD, argv[1], flags));
}

static int cmd_rename(int argc, char **argv)
{
	(void)argc;
	return report(rename(argv[0], argv[1]));
}

static int cmd_link(int argc, char **argv)
{
	(void)argc;
	return report(link(argv[0], argv[1]));
}

static int cmd_symlink(int argc, char **argv)
{
	(void)argc;
	return report(symlink(argv[0], argv[1]));
}

static int cmd_unlink(int argc, char **argv)
{
	(void)argc;
	return report(unlink(argv[0]));
}

static int cmd_rmdir(int argc, char **argv)
{
	(void)argc;
	return report(rmdir(argv[0]));
}

static int cmd_mkdir(int argc, char **argv)
{
	mode_t mode = 0755;

	if (argc > 1 && !parse_mode(argv[1], &mode))
		return usage_error("bad mode", argv[1]);
	return report(mkdir(argv[0], mode));
}

static int cmd_chmod(int argc, char **argv)
{
	mode_t mode;

	(void)argc;
	if (!parse_mode(argv[1], &mode))
		return usage_error("bad mode", argv[1]);
	return report(chmod(argv[0], mode));
}

static int cmd_lchown(int argc, char **argv)
{
	long long uid, gid;

	(void)argc;
	if (!parse_ll(argv[1], &uid) || !parse_ll(argv[2], &gid))
		return usage_error("bad owner", argv[1]);
	return report(lchown(argv[0], (uid_t)uid, (gid_t)gid));
}

static int cmd_truncate(int argc, char **argv)
{
	long long len;

	(void)argc;
	if (!parse_ll(argv[1], &len))
		return usage_error("bad length", argv[1]);
	return report(truncate(argv[0], (off_t)len));
}

static int cmd_access(int argc, char **argv)
{
	int mode = 0;
	const char *p;

	(void)argc;
	for (p = argv[1]; *p != '\0'; p++) {
		switch (*p) {
		case 'r':
			mode |= R_OK;
			break;
		case 'w':
			mode |= W_OK;
			break;
		case 'x':
			mode |= X_OK;
			break;
		case 'f':
			break;
		default:
			return usage_error("bad access mode", argv[1]);
		}
	}
	return report(access(argv[0], mode));
}

static int cmd_readlink(int argc, char **argv)
{
	char buf[PATH_MAX + 1];
	ssize_t n;

	(void)argc;
	n = readlink(argv[0], buf, sizeof(buf) - 1);
	if (n < 0)
		return fail_errno(errno);
	buf[n] = '\0';
	printf("%s\n", buf);
	return 0;
}

static const char *type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "reg";
	case S_IFDIR:
		return "dir";
	case S_IFLNK:
		return "lnk";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "sock";
	case S_IFCHR:
		return "chr";
	case S_IFBLK:
		return "blk";
	default:
		return "unknown";
	}
}

/* Prints the attributes of a stat that a pass-through must preserve. */
static void print_stat(const struct stat *st)
{
	printf("%s %04o nlink=%ju uid=%ju gid=%ju size=%jd rdev=%u:%u\n",
	       type_name(st->st_mode), (unsigned int)(st->st_mode & 07777),
	       (uintmax_t)st->st_nlink, (uintmax_t)st->st_uid,
	       (uintmax_t)st->st_gid, (intmax_t)st->st_size, major(st->st_rdev),
	       minor(st->st_rdev));
}

static int cmd_lstat(int argc, char **argv)
{
	struct stat st;

	(void)argc;
	if (lstat(argv[0], &st) < 0)
		return fail_errno(errno);
	print_stat(&st);
	return 0;
}

static int cmd_mknod(int argc, char **argv)
{
	mode_t mode = 0644;
	mode_t type;
	long long maj = 0, min = 0;

	if (strcmp(argv[1], "fifo") == 0)
		type = S_IFIFO;
	else if (strcmp(argv[1], "sock") == 0)
		type = S_IFSOCK;
	else if (strcmp(argv[1], "chr") == 0)
		type = S_IFCHR;
	else if (strcmp(argv[1], "blk") == 0)
		type = S_IFBLK;
	else if (strcmp(argv[1], "reg") == 0)
		type = S_IFREG;
	else
		return usage_error("bad node type", argv[1]);
	if (argc > 2 && !parse_mode(argv[2], &mode))
		return usage_error("bad mode", argv[2]);
	if (argc > 4 && (!parse_ll(argv[3], &maj) || !parse_ll(argv[4], &min)))
		return usage_error("bad device number", argv[3]);
	return report(mknod(argv[0], type | mode,
			    makedev((unsigned int)maj, (unsigned int)min)));
}

/* Parses "now", "omit" or SECONDS[.NANOSECONDS] into a timespec. */
static bool parse_time(const char *s, struct timespec *ts)
{
	char *end;
	long long sec;
	long nsec = 0;

	if (strcmp(s, "now") == 0) {
		ts->tv_sec = 0;
		ts->tv_nsec = UTIME_NOW;
		return true;
	}
	if (strcmp(s, "omit") == 0) {
		ts->tv_sec = 0;
		ts->tv_nsec = UTIME_OMIT;
		return true;
	}
	errno = 0;
	sec = strtoll(s, &end, 10);
	if (errno != 0 || end == s)
		return false;
	if (*end == '.') {
		const char *d = end + 1;
		int digits = 0;

		for (; *d >= '0' && *d <= '9' && digits < 9; d++, digits++)
			nsec = nsec * 10 + (*d - '0');
		if (*d != '\0' || digits == 0)
			return false;
		for (; digits < 9; digits++)
			nsec *= 10;
	} else if (*end != '\0') {
		return false;
	}
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return true;
}

static int cmd_utimens(int argc, char **argv)
{
	struct timespec ts[2];
	int flags = 0;

	if (!parse_time(argv[1], &ts[0]) || !parse_time(argv[2], &ts[1]))
		return usage_error("bad time", argv[1]);
	if (argc > 3) {
		if (strcmp(argv[3], "nofollow") != 0)
			return usage_error("bad utimens flag", argv[3]);
		flags = AT_SYMLINK_NOFOLLOW;
	}
	return report(utimensat(AT_FDCWD, argv[0], ts, flags));
}

/* Opens dir, then name relative to it; prints "dev:ino" of the result. */
static int cmd_openat(int argc, char **argv)
{
	struct stat st;
	int dirfd, fd;

	(void)argc;
	dirfd = open(argv[0], O_RDONLY | O_DIRECTORY);
	if (dirfd < 0)
		return die("cannot open", argv[0]);
	fd = openat(dirfd, argv[1], O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		int err = errno;

		close(dirfd);
		return fail_errno(err);
	}
	if (fstat(fd, &st) < 0)
		return die("cannot fstat", argv[1]);
	printf("%u:%u:%ju\n", major(st.st_dev), minor(st.st_dev),
	       (uintmax_t)st.st_ino);
	close(fd);
	close(dirfd);
	return 0;
}

/* Prints "dev:ino" of a path (following symlinks), for identity checks. */
static int cmd_devino(int argc, char **argv)
{
	struct stat st;

	(void)argc;
	if (stat(argv[0], &st) < 0)
		return fail_errno(errno);
	printf("%u:%u:%ju\n", major(st.st_dev), minor(st.st_dev),
	       (uintmax_t)st.st_ino);
	return 0;
}

/* --- data ---------------------------------------------------------------- */

static int cmd_seek(int argc, char **argv)
{
	long long off;
	int whence, fd;
	off_t r;

	(void)argc;
	if (strcmp(argv[1], "data") == 0)
		whence = SEEK_DATA;
	else if (strcmp(argv[1], "hole") == 0)
		whence = SEEK_HOLE;
	else
		return usage_error("bad whence", argv[1]);
	if (!parse_ll(argv[2], &off))
		return usage_error("bad offset", argv[2]);
	fd = open(argv[0], O_RDONLY);
	if (fd < 0)
		return die("cannot open", argv[0]);
	r = lseek(fd, (off_t)off, whence);
	if (r < 0) {
		int err = errno;

		close(fd);
		return fail_errno(err);
	}
	printf("%jd\n", (intmax_t)r);
	close(fd);
	return 0;
}

static int cmd_fallocate(int argc, char **argv)
{
	long long off, len;
	int mode, fd, rc;

	(void)argc;
	if (!parse_flags(argv[1], falloc_flags, &mode))
		return usage_error("bad fallocate mode", argv[1]);
	if (!parse_ll(argv[2], &off) || !parse_ll(argv[3], &len))
		return usage_error("bad range", argv[2]);
	fd = open(argv[0], O_RDWR);
	if (fd < 0)
		return die("cannot open", argv[0]);
	rc = fallocate(fd, mode, (off_t)off, (off_t)len);
	if (rc < 0) {
		int err = errno;

		close(fd);
		return fail_errno(err);
	}
	close(fd);
	printf("ok\n");
	return 0;
}

/* copy_file_range SRC DST LEN [SRCOFF DSTOFF]: prints the bytes copied. */
static int cmd_cfr(int argc, char **argv)
{
	long long len, soff = 0, doff = 0;
	loff_t in_off, out_off;
	long long total = 0;
	int in, out;

	if (!parse_ll(argv[2], &len))
		return usage_error("bad length", argv[2]);
	if (argc > 3 && (argc != 5 || !parse_ll(argv[3], &soff) ||
			 !parse_ll(argv[4], &doff)))
		return usage_error("bad offsets", argv[3]);
	in = open(argv[0], O_RDONLY);
	if (in < 0)
		return die("cannot open", argv[0]);
	out = open(argv[1], O_WRONLY | O_CREAT, 0644);
	if (out < 0)
		return die("cannot open", argv[1]);
	in_off = soff;
	out_off = doff;
	while (total < len) {
		ssize_t n = copy_file_range(in, &in_off, out, &out_off,
					    (size_t)(len - total), 0);

		if (n < 0)
			return fail_errno(errno);
		if (n == 0)
			break;
		total += n;
	}
	printf("%lld\n", total);
	close(in);
	close(out);
	return 0;
}

/* pwrite PATH OFF STRING: writes STRING at OFF without truncating. */
static int cmd_pwrite(int argc, char **argv)
{
	long long off;
	size_t len = strlen(argv[2]);
	ssize_t n;
	int fd;

	(void)argc;
	if (!parse_ll(argv[1], &off))
		return usage_error("bad offset", argv[1]);
	fd = open(argv[0], O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		return fail_errno(errno);
	n = pwrite(fd, argv[2], len, (off_t)off);
	if (n < 0)
		return fail_errno(errno);
	if ((size_t)n != len)
		return usage_error("short write", argv[0]);
	close(fd);
	printf("ok\n");
	return 0;
}

/* pread PATH OFF LEN: prints what was read, raw. */
static int cmd_pread(int argc, char **argv)
{
	long long off, len;
	char *buf;
	ssize_t n;
	int fd;

	(void)argc;
	if (!parse_ll(argv[1], &off) || !parse_ll(argv[2], &len) || len < 0)
		return usage_error("bad range", argv[1]);
	fd = open(argv[0], O_RDONLY);
	if (fd < 0)
		return fail_errno(errno);
	buf = malloc((size_t)len + 1);
	if (buf == NULL)
		return die("out of memory", NULL);
	n = pread(fd, buf, (size_t)len, (off_t)off);
	if (n < 0)
		return fail_errno(errno);
	fwrite(buf, 1, (size_t)n, stdout);
	free(buf);
	close(fd);
	return 0;
}

/* Writes to a file opened with the given flags; reports the errno. */
static int cmd_write(int argc, char **argv)
{
	int flags, fd;

	(void)argc;
	if (!parse_flags(argv[1], open_flags, &flags))
		return usage_error("bad open flags", argv[1]);
	fd = open(argv[0], flags, 0644);
	if (fd < 0)
		return fail_errno(errno);
	if (write(fd, argv[2], strlen(argv[2])) < 0)
		return fail_errno(errno);
	if (close(fd) < 0)
		return fail_errno(errno);
	printf("ok\n");
	return 0;
}

/* append PATH STRING COUNT: COUNT O_APPEND writes of STRING, one each. */
static int cmd_append(int argc, char **argv)
{
	long long count, i;
	size_t len = strlen(argv[1]);
	int fd;

	(void)argc;
	if (!parse_ll(argv[2], &count))
		return usage_error("bad count", argv[2]);
	fd = open(argv[0], O_WRONLY | O_APPEND);
	if (fd < 0)
		return fail_errno(errno);
	for (i = 0; i < count; i++) {
		ssize_t n = write(fd, argv[1], len);

		if (n < 0)
			return fail_errno(errno);
		if ((size_t)n != len)
			return usage_error("short append", argv[0]);
	}
	close(fd);
	printf("ok\n");
	return 0;
}

static int sync_path(const char *path, int flags, bool data_only)
{
	int fd = open(path, flags);
	int rc;

	if (fd < 0)
		return die("cannot open", path);
	rc = data_only ? fdatasync(fd) : fsync(fd);
	if (rc < 0) {
		int err = errno;

		close(fd);
		return fail_errno(err);
	}
	close(fd);
	printf("ok\n");
	return 0;
}

static int cmd_fsync(int argc, char **argv)
{
	(void)argc;
	return sync_path(argv[0], O_WRONLY, false);
}

static int cmd_fdatasync(int argc, char **argv)
{
	(void)argc;
	return sync_path(argv[0], O_WRONLY, true);
}

static int cmd_fsyncdir(int argc, char **argv)
{
	(void)argc;
	return sync_path(argv[0], O_RDONLY | O_DIRECTORY, false);
}

/* mmapwrite PATH OFF STRING: stores STRING through a shared mapping. */
static int cmd_mmapwrite(int argc, char **argv)
{
	long long off;
	size_t len = strlen(argv[2]);
	struct stat st;
	char *map;
	int fd;

	(void)argc;
	if (!parse_ll(argv[1], &off) || off < 0)
		return usage_error("bad offset", argv[1]);
	fd = open(argv[0], O_RDWR);
	if (fd < 0)
		return die("cannot open", argv[0]);
	if (fstat(fd, &st) < 0)
		return die("cannot fstat", argv[0]);
	if ((long long)(off + (long long)len) > (long long)st.st_size)
		return usage_error("mapping beyond end of file", argv[0]);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	if (map == MAP_FAILED)
		return fail_errno(errno);
	memcpy(map + off, argv[2], len);
	if (msync(map, (size_t)st.st_size, MS_SYNC) < 0)
		return fail_errno(errno);
	munmap(map, (size_t)st.st_size);
	close(fd);
	printf("ok\n");
	return 0;
}

/* --- extended attributes --------------------------------------------------- */

static int cmd_getxattr(int argc, char **argv)
{
	long long size = 65536;
	char *buf;
	ssize_t n;

	if (argc > 2 &&
	    (!parse_ll(argv[2], &size) || size < 0 || size > 1 << 20))
		return usage_error("bad size", argv[2]);
	buf = malloc((size_t)size + 1);
	if (buf == NULL)
		return die("out of memory", NULL);
	n = lgetxattr(argv[0], argv[1], size > 0 ? buf : NULL, (size_t)size);
	if (n < 0)
		return fail_errno(errno);
	if (size == 0) {
		printf("%zd\n", n);
	} else {
		fwrite(buf, 1, (size_t)n, stdout);
		printf("\n");
	}
	free(buf);
	return 0;
}

static int cmd_setxattr(int argc, char **argv)
{
	int flags = 0;

	if (argc > 3) {
		if (strcmp(argv[3], "create") == 0)
			flags = XATTR_CREATE;
		else if (strcmp(argv[3], "replace") == 0)
			flags = XATTR_REPLACE;
		else
			return usage_error("bad xattr flag", argv[3]);
	}
	return report(
	    lsetxattr(argv[0], argv[1], argv[2], strlen(argv[2]), flags));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* listxattr PATH [BUFSIZE]: prints the names sorted, one per line. */
static int cmd_listxattr(int argc, char **argv)
{
	long long size = 65536;
	char *names[4096];
	size_t count = 0, i;
	char *buf, *p;
	ssize_t n;

	if (argc > 1 &&
	    (!parse_ll(argv[1], &size) || size < 0 || size > 1 << 20))
		return usage_error("bad size", argv[1]);
	buf = malloc((size_t)size + 1);
	if (buf == NULL)
		return die("out of memory", NULL);
	n = llistxattr(argv[0], size > 0 ? buf : NULL, (size_t)size);
	if (n < 0)
		return fail_errno(errno);
	if (size == 0) {
		printf("%zd\n", n);
		free(buf);
		return 0;
	}
	for (p = buf; p < buf + n && count < 4096; p += strlen(p) + 1)
		names[count++] = p;
	qsort(names, count, sizeof(names[0]), cmp_str);
	for (i = 0; i < count; i++)
		printf("%s\n", names[i]);
	free(buf);
	return 0;
}

static int cmd_removexattr(int argc, char **argv)
{
	(void)argc;
	return report(lremovexattr(argv[0], argv[1]));
}

/* --- locks ------------------------------------------------------------------ */

static bool parse_lock_type(const char *s, short *type)
{
	if (strcmp(s, "rd") == 0)
		*type = F_RDLCK;
	else if (strcmp(s, "wr") == 0)
		*type = F_WRLCK;
	else if (strcmp(s, "un") == 0)
		*type = F_UNLCK;
	else
		return false;
	return true;
}

/*
 * lock PATH rd|wr START LEN [hold=RELEASE|wait]: F_SETLK (F_SETLKW with
 * "wait").  With hold=RELEASE, prints "locked" once the lock is taken and
 * keeps it until the file RELEASE exists.
 */
static int cmd_lock(int argc, char **argv)
{
	struct flock fl = { 0 };
	long long start, len;
	const char *hold = NULL;
	bool wait = false;
	int fd;

	if (!parse_lock_type(argv[1], &fl.l_type))
		return usage_error("bad lock type", argv[1]);
	if (!parse_ll(argv[2], &start) || !parse_ll(argv[3], &len))
		return usage_error("bad range", argv[2]);
	if (argc > 4) {
		if (parse_hold(argv[4]) != NULL)
			hold = parse_hold(argv[4]);
		else if (strcmp(argv[4], "wait") == 0)
			wait = true;
		else
			return usage_error("bad lock option", argv[4]);
	}
	fd = open(argv[0], fl.l_type == F_RDLCK ? O_RDONLY : O_RDWR);
	if (fd < 0)
		return die("cannot open", argv[0]);
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)start;
	fl.l_len = (off_t)len;
	if (fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) < 0)
		return fail_errno(errno);
	printf(hold != NULL ? "locked\n" : "ok\n");
	fflush(stdout);
	if (hold != NULL)
		wait_release(hold);
	close(fd);
	return 0;
}

/* getlk PATH rd|wr START LEN: prints "unlocked" or "TYPE PID START LEN". */
static int cmd_getlk(int argc, char **argv)
{
	struct flock fl = { 0 };
	long long start, len;
	int fd;

	(void)argc;
	if (!parse_lock_type(argv[1], &fl.l_type))
		return usage_error("bad lock type", argv[1]);
	if (!parse_ll(argv[2], &start) || !parse_ll(argv[3], &len))
		return usage_error("bad range", argv[2]);
	fd = open(argv[0], O_RDWR);
	if (fd < 0)
		return die("cannot open", argv[0]);
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)start;
	fl.l_len = (off_t)len;
	if (fcntl(fd, F_GETLK, &fl) < 0)
		return fail_errno(errno);
	if (fl.l_type == F_UNLCK)
		printf("unlocked\n");
	else
		printf("%s %d %jd %jd\n", fl.l_type == F_WRLCK ? "wr" : "rd",
		       (int)fl.l_pid, (intmax_t)fl.l_start, (intmax_t)fl.l_len);
	close(fd);
	return 0;
}

/*
 * flock PATH ex|sh [nb] [hold=RELEASE]: flock(2).  With hold=RELEASE,
 * prints "locked" and keeps the lock until the file RELEASE exists.
 */
static int cmd_flock(int argc, char **argv)
{
	const char *hold = NULL;
	int op, fd, i;

	if (strcmp(argv[1], "ex") == 0)
		op = LOCK_EX;
	else if (strcmp(argv[1], "sh") == 0)
		op = LOCK_SH;
	else
		return usage_error("bad flock type", argv[1]);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "nb") == 0)
			op |= LOCK_NB;
		else if (parse_hold(argv[i]) != NULL)
			hold = parse_hold(argv[i]);
		else
			return usage_error("bad flock option", argv[i]);
	}
	fd = open(argv[0], O_RDONLY);
	if (fd < 0)
		return die("cannot open", argv[0]);
	if (flock(fd, op) < 0)
		return fail_errno(errno);
	printf(hold != NULL ? "locked\n" : "ok\n");
	fflush(stdout);
	if (hold != NULL)
		wait_release(hold);
	close(fd);
	return 0;
}

/*
 * flock2 PATH: takes LOCK_EX on one open file description, then tries
 * LOCK_EX|LOCK_NB on a second one of the same file in the same process;
 * prints the second attempt's result (flock locks belong to descriptions).
 */
static int cmd_flock2(int argc, char **argv)
{
	int a, b;

	(void)argc;
	a = open(argv[0], O_RDONLY);
	b = open(argv[0], O_RDONLY);
	if (a < 0 || b < 0)
		return die("cannot open", argv[0]);
	if (flock(a, LOCK_EX | LOCK_NB) < 0)
		return die("cannot take the first lock on", argv[0]);
	if (flock(b, LOCK_EX | LOCK_NB) < 0)
		return fail_errno(errno);
	printf("ok\n");
	return 0;
}

/* --- directories -------------------------------------------------------- */

/*
 * dirseek DIR [STRIDE]: reads the whole directory recording telldir()
 * before each entry, then seekdir()s to every STRIDE-th recorded position
 * and the last one (last to first) and checks that readdir() returns the
 * same entry; then checks rewinddir().  Prints the number of entries
 * (including "." and "..").
 */
static int cmd_dirseek(int argc, char **argv)
{
	size_t cap = 1024, count = 0, i, stride = 1;
	long *pos = malloc(cap * sizeof(*pos));
	char **names = malloc(cap * sizeof(*names));
	struct dirent *de;
	DIR *d;
	int bad = 0;

	if (argc > 1) {
		long long v;

		if (!parse_ll(argv[1], &v) || v < 1)
			return usage_error("bad stride", argv[1]);
		stride = (size_t)v;
	}
	if (pos == NULL || names == NULL)
		return die("out of memory", NULL);
	d = opendir(argv[0]);
	if (d == NULL)
		return fail_errno(errno);
	for (;;) {
		long p = telldir(d);

		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (count == cap) {
			cap *= 2;
			pos = realloc(pos, cap * sizeof(*pos));
			names = realloc(names, cap * sizeof(*names));
			if (pos == NULL || names == NULL)
				return die("out of memory", NULL);
		}
		pos[count] = p;
		names[count] = strdup(de->d_name);
		count++;
	}
	if (errno != 0)
		return fail_errno(errno);
	for (i = count; i-- > 0;) {
		if (i % stride != 0 && i != count - 1)
			continue;
		seekdir(d, pos[i]);
		de = readdir(d);
		if (de == NULL || strcmp(de->d_name, names[i]) != 0) {
			fprintf(stderr,
				"fsop: seekdir to entry %zu (%s) read %s\n", i,
				names[i], de ? de->d_name : "(end)");
			bad = 1;
		}
	}
	rewinddir(d);
	for (i = 0; (de = readdir(d)) != NULL; i++)
		if (i >= count || strcmp(de->d_name, names[i]) != 0) {
			fprintf(stderr, "fsop: rewinddir entry %zu differs\n",
				i);
			bad = 1;
		}
	if (i != count) {
		fprintf(stderr, "fsop: rewinddir read %zu entries, not %zu\n",
			i, count);
		bad = 1;
	}
	closedir(d);
	for (i = 0; i < count; i++)
		free(names[i]);
	free(names);
	free(pos);
	if (bad) {
		printf("EMISMATCH\n");
		return 1;
	}
	printf("%zu\n", count);
	return 0;
}

static const char *dtype_name(unsigned char t)
{
	switch (t) {
	case DT_REG:
		return "reg";
	case DT_DIR:
		return "dir";
	case DT_LNK:
		return "lnk";
	case DT_FIFO:
		return "fifo";
	case DT_SOCK:
		return "sock";
	case DT_CHR:
		return "chr";
	case DT_BLK:
		return "blk";
	default:
		return "unknown";
	}
}

/*
 * readdir DIR: prints "NAME TYPE" for every entry, TYPE from d_type, sorted
 * by name (a pass-through must report the types the source reports).
 */
static int cmd_readdir(int argc, char **argv)
{
	size_t cap = 256, count = 0, i;
	char **lines = malloc(cap * sizeof(*lines));
	struct dirent *de;
	DIR *d;

	(void)argc;
	if (lines == NULL)
		return die("out of memory", NULL);
	d = opendir(argv[0]);
	if (d == NULL)
		return fail_errno(errno);
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (count == cap) {
			cap *= 2;
			lines = realloc(lines, cap * sizeof(*lines));
			if (lines == NULL)
				return die("out of memory", NULL);
		}
		if (asprintf(&lines[count], "%s %s", de->d_name,
			     dtype_name(de->d_type)) < 0)
			return die("out of memory", NULL);
		count++;
	}
	if (errno != 0)
		return fail_errno(errno);
	closedir(d);
	qsort(lines, count, sizeof(lines[0]), cmp_str);
	for (i = 0; i < count; i++) {
		printf("%s\n", lines[i]);
		free(lines[i]);
	}
	free(lines);
	return 0;
}

/* --- stress -------------------------------------------------------------- */

/* A small, seedable generator, so a failing run can be repeated. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Errnos a racing namespace operation may legitimately return. */
static bool expected_errno(int err)
{
	switch (err) {
	case ENOENT:
	case EEXIST:
	case ENOTEMPTY:
	case EISDIR:
	case ENOTDIR:
	case EPERM:
	case EINVAL:
	case ELOOP:
	case EMLINK:
		return true;
	default:
		return false;
	}
}

/*
 * stress DIR SEED COUNT: COUNT random namespace and data operations on a
 * small set of names in DIR/a and DIR/b (create, write, append, read,
 * stat, rename, exchange, link, symlink, unlink, mkdir, rmdir, truncate,
 * chmod, readdir), meant to run in several processes at once.  Errors a
 * race explains (ENOENT, EEXIST, …) are counted; any other error (ESTALE,
 * EIO, ENOTCONN, …) stops the run: the op and errno are printed, exit 1.
 * Prints "ops N errors M" on success.
 */
static int cmd_stress(int argc, char **argv)
{
	static const char *const dirs[] = { "a", "b" };
	long long seed, count, i, errors = 0;
	uint64_t st;
	char p1[PATH_MAX], p2[PATH_MAX], buf[4096];
	int dfd;

	(void)argc;
	if (!parse_ll(argv[1], &seed) || !parse_ll(argv[2], &count))
		return usage_error("bad seed or count", argv[1]);
	dfd = open(argv[0], O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return die("cannot open", argv[0]);
	mkdirat(dfd, "a", 0755);
	mkdirat(dfd, "b", 0755);
	st = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
	for (i = 0; i < count; i++) {
		unsigned int op = (unsigned int)(rng_next(&st) % 16);
		const char *what = "";
		int rc = 0, fd;

		snprintf(p1, sizeof(p1), "%s/n%u", dirs[rng_next(&st) % 2],
			 (unsigned int)(rng_next(&st) % 8));
		snprintf(p2, sizeof(p2), "%s/n%u", dirs[rng_next(&st) % 2],
			 (unsigned int)(rng_next(&st) % 8));
		switch (op) {
		case 0:
		case 1:
			what = "create";
			fd =
			    openat(dfd, p1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			rc = fd;
			if (fd >= 0) {
				int n =
				    snprintf(buf, sizeof(buf),
					     "seed %lld op %lld\n", seed, i);

				rc = (int)write(fd, buf, (size_t)n);
				close(fd);
			}
			break;
		case 2:
			what = "append";
			fd = openat(dfd, p1, O_WRONLY | O_APPEND);
			rc = fd;
			if (fd >= 0) {
				rc = (int)write(fd, "+", 1);
				close(fd);
			}
			break;
		case 3:
			what = "read";
			fd = openat(dfd, p1, O_RDONLY | O_NONBLOCK);
			rc = fd;
			if (fd >= 0) {
				while ((rc = (int)read(fd, buf, sizeof(buf))) >
				       0)
					;
				close(fd);
			}
			break;
		case 4: {
			struct stat sb;

			what = "stat";
			rc = fstatat(dfd, p1, &sb, AT_SYMLINK_NOFOLLOW);
			break;
		}
		case 5:
		case 6:
			what = "rename";
			rc = renameat(dfd, p1, dfd, p2);
			break;
		case 7:
			what = "exchange";
			rc = renameat2(dfd, p1, dfd, p2, RENAME_EXCHANGE);
			break;
		case 8:
			what = "link";
			rc = linkat(dfd, p1, dfd, p2, 0);
			break;
		case 9:
			what = "symlink";
			rc = symlinkat("../a/n0", dfd, p1);
			break;
		case 10:
		case 11:
			what = "unlink";
			rc = unlinkat(dfd, p1, 0);
			break;
		case 12:
			what = "mkdir";
			rc = mkdirat(dfd, p1, 0755);
			break;
		case 13:
			what = "rmdir";
			rc = unlinkat(dfd, p1, AT_REMOVEDIR);
			break;
		case 14:
			what = "truncate";
			fd = openat(dfd, p1, O_WRONLY | O_NONBLOCK);
			rc = fd;
			if (fd >= 0) {
				rc = ftruncate(fd, (off_t)(rng_next(&st) % 64));
				close(fd);
			}
			break;
		default: {
			DIR *d;
			int dup_fd = openat(dfd, dirs[rng_next(&st) % 2],
					    O_RDONLY | O_DIRECTORY);

			what = "readdir";
			rc = dup_fd;
			if (dup_fd >= 0) {
				d = fdopendir(dup_fd);
				if (d == NULL) {
					rc = -1;
					close(dup_fd);
					break;
				}
				errno = 0;
				while (readdir(d) != NULL)
					;
				rc = errno != 0 ? -1 : 0;
				closedir(d);
			}
			if (rc == 0 &&
			    fchmodat(dfd, p1, 0600 | (i & 1 ? 044 : 0), 0) <
				0 &&
			    errno != ENOENT) {
				what = "chmod";
				rc = -1;
			}
			break;
		}
		}
		if (rc < 0) {
			if (!expected_errno(errno)) {
				printf("%s %s %s: ", what, p1, p2);
				return fail_errno(errno);
			}
			errors++;
		}
	}
	close(dfd);
	printf("ops %lld errors %lld\n", count, errors);
	return 0;
}

/* --- sockets ---------------------------------------------------------- */

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

/* Decodes C escapes (\n, \t, \\, \0, \xHH) in s into buf; returns length. */
static size_t decode_escapes(const char *s, char *buf)
{
	size_t n = 0;

	while (*s != '\0') {
		if (*s != '\\' || s[1] == '\0') {
			buf[n++] = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'n':
			buf[n++] = '\n';
			s++;
			break;
		case 't':
			buf[n++] = '\t';
			s++;
			break;
		case '0':
			buf[n++] = '\0';
			s++;
			break;
		case 'x': {
			char hex[3] = { 0 };

			if (s[1] != '\0' && s[2] != '\0') {
				hex[0] = s[1];
				hex[1] = s[2];
				buf[n++] = (char)strtoul(hex, NULL, 16);
				s += 3;
			} else {
				buf[n++] = *s++;
			}
			break;
		}
		default:
			buf[n++] = *s++;
			break;
		}
	}
	return n;
}

/*
 * Reads a reply: waits up to 5 s for the first byte, then until the peer
 * closes or stays silent for 500 ms.  Prints it; returns bytes read or -errno.
 */
static ssize_t read_reply(int fd)
{
	char buf[4096];
	ssize_t total = 0;
	int timeout = 5000;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, timeout);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (total > 0)
				break;
			return -errno;
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
		total += n;
		timeout = 500;
	}
	fflush(stdout);
	return total;
}

/*
 * sock PATH DATA [shut]: connects to a unix stream socket, sends DATA
 * (C escapes decoded), optionally shuts down the writing side, and prints
 * the reply.  Fails with ENODATA when no reply arrives.
 */
static int cmd_sock(int argc, char **argv)
{
	struct sockaddr_un sun;
	char *buf = malloc(strlen(argv[1]) + 1);
	size_t len;
	ssize_t got;
	int fd, rc;

	if (buf == NULL)
		return die("out of memory", NULL);
	len = decode_escapes(argv[1], buf);
	if (unix_addr(argv[0], &sun) < 0)
		return fail_errno(errno);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return die("cannot create socket", NULL);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return fail_errno(errno);
	rc = write_all(fd, buf, len);
	free(buf);
	if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
		return fail_errno(-rc);
	if (argc > 2 && strcmp(argv[2], "shut") == 0)
		shutdown(fd, SHUT_WR);
	got = read_reply(fd);
	close(fd);
	if (got < 0)
		return fail_errno((int)-got);
	if (got == 0) {
		printf("ENODATA\n");
		return 1;
	}
	return 0;
}

/*
 * sockfill PATH N: sends N bytes of 'x' and a newline (an oversized
 * request) and prints the reply, as sock does.
 */
static int cmd_sockfill(int argc, char **argv)
{
	struct sockaddr_un sun;
	long long n;
	char block[65536];
	ssize_t got;
	int fd;

	(void)argc;
	if (!parse_ll(argv[1], &n) || n < 0)
		return usage_error("bad length", argv[1]);
	memset(block, 'x', sizeof(block));
	if (unix_addr(argv[0], &sun) < 0)
		return fail_errno(errno);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return die("cannot create socket", NULL);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return fail_errno(errno);
	while (n > 0) {
		size_t chunk =
		    n > (long long)sizeof(block) ? sizeof(block) : (size_t)n;

		/* The daemon may close early: stop sending, read its reply. */
		if (write_all(fd, block, chunk) < 0)
			break;
		n -= (long long)chunk;
	}
	if (n == 0)
		(void)write_all(fd, "\n", 1);
	got = read_reply(fd);
	close(fd);
	if (got < 0)
		return fail_errno((int)-got);
	if (got == 0) {
		printf("ENODATA\n");
		return 1;
	}
	return 0;
}

/*
 * sockpair PATH: binds a listening unix socket at PATH, has a child
 * connect to PATH and send "ping", accepts it and prints what arrived.
 */
static int cmd_sockpair(int argc, char **argv)
{
	struct sockaddr_un sun;
	char buf[16] = { 0 };
	int lfd, cfd, status;
	pid_t pid;
	ssize_t n;

	(void)argc;
	if (unix_addr(argv[0], &sun) < 0)
		return fail_errno(errno);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return die("cannot create socket", NULL);
	if (bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return fail_errno(errno);
	if (listen(lfd, 1) < 0)
		return fail_errno(errno);
	pid = fork();
	if (pid < 0)
		return die("cannot fork", NULL);
	if (pid == 0) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0 ||
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			printf("connect: ");
			_exit(fail_errno(errno));
		}
		_exit(write_all(fd, "ping", 4) < 0 ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return 1;
	cfd = accept(lfd, NULL, NULL);
	if (cfd < 0)
		return fail_errno(errno);
	n = read(cfd, buf, sizeof(buf) - 1);
	if (n < 0)
		return fail_errno(errno);
	printf("%s\n", buf);
	close(cfd);
	close(lfd);
	return 0;
}

/*
 * sockmany PATH N RELEASE [PARTIAL]: opens N connections to a unix stream
 * socket, each sending PARTIAL (an unfinished request, C escapes decoded)
 * or nothing, prints "held N" and keeps them open until the file RELEASE
 * exists.
 */
static int cmd_sockmany(int argc, char **argv)
{
	struct sockaddr_un sun;
	char partial[256];
	size_t plen = 0;
	long long n, i;
	int *fds;

	if (!parse_ll(argv[1], &n) || n < 0 || n > 10000)
		return usage_error("bad count", argv[1]);
	if (argc > 3) {
		if (strlen(argv[3]) >= sizeof(partial))
			return usage_error("partial request too long", argv[3]);
		plen = decode_escapes(argv[3], partial);
	}
	if (unix_addr(argv[0], &sun) < 0)
		return fail_errno(errno);
	fds = calloc((size_t)n + 1, sizeof(*fds));
	if (fds == NULL)
		return die("out of memory", NULL);
	for (i = 0; i < n; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0)
			return die("cannot create socket", NULL);
		if (connect(fds[i], (struct sockaddr *)&sun, sizeof(sun)) < 0)
			return fail_errno(errno);
		if (plen > 0 && write_all(fds[i], partial, plen) < 0)
			return fail_errno(errno);
	}
	printf("held %lld\n", n);
	fflush(stdout);
	wait_release(argv[2]);
	for (i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

/* --- limits ------------------------------------------------------------ */

static int cmd_fdlimit(int argc, char **argv)
{
	struct rlimit rl;

	(void)argc;
	(void)argv;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return fail_errno(errno);
	printf("%ju %ju\n", (uintmax_t)rl.rlim_cur, (uintmax_t)rl.rlim_max);
	return 0;
}

/*
 * pin LISTFILE RELEASE: adds an inotify watch on every path listed (one
 * per line), which keeps each inode referenced in the kernel (and so its
 * FUSE nodeid alive, without FORGET) however short the entry timeouts are.
 * Prints "pinned N" and keeps the watches until the file RELEASE exists.
 */
static int cmd_pin(int argc, char **argv)
{
	char *line = NULL;
	size_t cap = 0;
	long count = 0;
	ssize_t len;
	FILE *list;
	int fd;

	(void)argc;
	list = fopen(argv[0], "r");
	if (list == NULL)
		return die("cannot open", argv[0]);
	fd = inotify_init1(IN_CLOEXEC);
	if (fd < 0)
		return die("cannot create an inotify instance", NULL);
	while ((len = getline(&line, &cap, list)) > 0) {
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (inotify_add_watch(fd, line, IN_ATTRIB | IN_DONT_FOLLOW) <
		    0) {
			printf("%s: ", line);
			return fail_errno(errno);
		}
		count++;
	}
	free(line);
	fclose(list);
	printf("pinned %ld\n", count);
	fflush(stdout);
	wait_release(argv[1]);
	close(fd);
	return 0;
}

static const struct cmd cmds[] = {
	{ "open", 2, 3, "PATH FLAGS[,FLAGS…] [MODE]", cmd_open },
	{ "rename", 2, 2, "OLD NEW", cmd_rename },
	{ "rename2", 3, 3, "OLD NEW none|noreplace|exchange", cmd_rename2 },
	{ "link", 2, 2, "OLD NEW", cmd_link },
	{ "symlink", 2, 2, "TARGET PATH", cmd_symlink },
	{ "unlink", 1, 1, "PATH", cmd_unlink },
	{ "rmdir", 1, 1, "PATH", cmd_rmdir },
	{ "mkdir", 1, 2, "PATH [MODE]", cmd_mkdir },
	{ "chmod", 2, 2, "PATH MODE", cmd_chmod },
	{ "lchown", 3, 3, "PATH UID GID", cmd_lchown },
	{ "truncate", 2, 2, "PATH LEN", cmd_truncate },
	{ "access", 2, 2, "PATH r|w|x|f…", cmd_access },
	{ "readlink", 1, 1, "PATH", cmd_readlink },
	{ "lstat", 1, 1, "PATH", cmd_lstat },
	{ "devino", 1, 1, "PATH", cmd_devino },
	{ "openat", 2, 2, "DIR NAME", cmd_openat },
	{ "mknod", 2, 5, "PATH fifo|sock|chr|blk|reg [MODE [MAJ MIN]]",
	  cmd_mknod },
	{ "utimens", 3, 4, "PATH now|omit|S[.N] now|omit|S[.N] [nofollow]",
	  cmd_utimens },
	{ "seek", 3, 3, "PATH data|hole OFF", cmd_seek },
	{ "fallocate", 4, 4, "PATH 0|keep|punch|zero,… OFF LEN",
	  cmd_fallocate },
	{ "cfr", 3, 5, "SRC DST LEN [SRCOFF DSTOFF]", cmd_cfr },
	{ "pwrite", 3, 3, "PATH OFF STRING", cmd_pwrite },
	{ "pread", 3, 3, "PATH OFF LEN", cmd_pread },
	{ "write", 3, 3, "PATH FLAGS STRING", cmd_write },
	{ "append", 3, 3, "PATH STRING COUNT", cmd_append },
	{ "fsync", 1, 1, "PATH", cmd_fsync },
	{ "fdatasync", 1, 1, "PATH", cmd_fdatasync },
	{ "fsyncdir", 1, 1, "DIR", cmd_fsyncdir },
	{ "mmapwrite", 3, 3, "PATH OFF STRING", cmd_mmapwrite },
	{ "getxattr", 2, 3, "PATH NAME [BUFSIZE]", cmd_getxattr },
	{ "setxattr", 3, 4, "PATH NAME VALUE [create|replace]", cmd_setxattr },
	{ "listxattr", 1, 2, "PATH [BUFSIZE]", cmd_listxattr },
	{ "removexattr", 2, 2, "PATH NAME", cmd_removexattr },
	{ "lock", 4, 5, "PATH rd|wr|un START LEN [hold=RELEASE|wait]",
	  cmd_lock },
	{ "getlk", 4, 4, "PATH rd|wr START LEN", cmd_getlk },
	{ "flock", 2, 4, "PATH ex|sh [nb] [hold=RELEASE]", cmd_flock },
	{ "flock2", 1, 1, "PATH", cmd_flock2 },
	{ "dirseek", 1, 2, "DIR [STRIDE]", cmd_dirseek },
	{ "readdir", 1, 1, "DIR", cmd_readdir },
	{ "stress", 3, 3, "DIR SEED COUNT", cmd_stress },
	{ "sock", 2, 3, "PATH DATA [shut]", cmd_sock },
	{ "sockfill", 2, 2, "PATH N", cmd_sockfill },
	{ "sockpair", 1, 1, "PATH", cmd_sockpair },
	{ "sockmany", 3, 4, "PATH N RELEASE [PARTIAL]", cmd_sockmany },
	{ "pin", 2, 2, "LISTFILE RELEASE", cmd_pin },
	{ "fdlimit", 0, 0, "", cmd_fdlimit },
	{ NULL, 0, 0, NULL, NULL },
};

static void usage(FILE *f)
{
	const struct cmd *c;

	fprintf(f, "usage: fsop COMMAND ARGS…\n");
	for (c = cmds; c->name != NULL; c++)
		fprintf(f, "  fsop %s %s\n", c->name, c->usage);
}

int main(int argc, char **argv)
{
	const struct cmd *c;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	for (c = cmds; c->name != NULL; c++) {
		if (strcmp(c->name, argv[1]) != 0)
			continue;
		if (argc - 2 < c->min_args || argc - 2 > c->max_args) {
			fprintf(stderr, "usage: fsop %s %s\n", c->name,
				c->usage);
			return 2;
		}
		return c->run(argc - 2, argv + 2);
	}
	fprintf(stderr, "fsop: unknown command: %s\n", argv[1]);
	usage(stderr);
	return 2;
}
