/*
 * statedir.c: the state directory.
 *
 * Invariants:
 *  (1) While a struct statedir exists its process holds an exclusive flock
 *      on STATE/lock, so two daemons never share a state directory.
 *  (2) hidden_name is the state directory's name in SOURCE's root when it
 *      is a direct child of SOURCE, and NULL when it is outside SOURCE.
 *  (3) The structure is immutable after statedir_open returns.
 */
#include "config.h"

#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct statedir {
	char *path;
	char *hidden_name;
	int fd;
	int lock_fd;
};

#define STATEDIR_DEFAULT_NAME ".txfs"

/* Writes a reason into why and returns err. */
static int fail(char *why, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t len, int err, const char *fmt, ...)
{
	char msg[PATH_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(why, len, "%s: %s", msg, strerror(-err));
	return err;
}

/* Checks that the directory open at fd accepts new files. */
static int probe_writable(int fd)
{
	char name[64];
	int pfd;

	snprintf(name, sizeof(name), ".probe.%d", (int)getpid());
	pfd = openat(fd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (pfd < 0)
		return -errno;
	close(pfd);
	if (unlinkat(fd, name, 0) < 0)
		return -errno;
	return 0;
}

int statedir_open(const char *source_path, int source_fd, const char *path,
		  struct statedir **out, char *why, size_t whylen)
{
	char want[PATH_MAX], real[PATH_MAX];
	struct stat src_st, st;
	struct statedir *sd;
	size_t srclen;
	int ret;

	if (fstat(source_fd, &src_st) < 0)
		return fail(why, whylen, -errno, "cannot stat %s", source_path);
	if (path == NULL) {
		if (snprintf(want, sizeof(want), "%s/%s",
			     strcmp(source_path, "/") == 0 ? "" : source_path,
			     STATEDIR_DEFAULT_NAME) >= (int)sizeof(want))
			return fail(why, whylen, -ENAMETOOLONG,
				    "state directory path too long under %s",
				    source_path);
		path = want;
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return fail(why, whylen, -errno,
			    "cannot create state directory %s", path);
	if (realpath(path, real) == NULL)
		return fail(why, whylen, -errno,
			    "cannot resolve state directory %s", path);
	sd = calloc(1, sizeof(*sd));
	if (sd == NULL)
		return -ENOMEM;
	sd->lock_fd = -1;
	sd->fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sd->fd < 0) {
		ret = fail(why, whylen, -errno,
			   "cannot open state directory %s", real);
		goto out_free;
	}
	if (fstat(sd->fd, &st) < 0) {
		ret = fail(why, whylen, -errno, "cannot stat %s", real);
		goto out_close_fd;
	}
	if (st.st_dev != src_st.st_dev) {
		ret = -EXDEV;
		snprintf(why, whylen,
			 "state directory %s is not on the same file system "
			 "as %s",
			 real, source_path);
		goto out_close_fd;
	}
	if (st.st_ino == src_st.st_ino) {
		ret = -EINVAL;
		snprintf(why, whylen, "state directory %s is the source itself",
			 real);
		goto out_close_fd;
	}

	/* Inside SOURCE it must be a direct child, see invariant (2). */
	srclen = strlen(source_path);
	if (strcmp(source_path, "/") == 0)
		srclen = 0;
	if (strncmp(real, source_path, srclen) == 0 && real[srclen] == '/') {
		const char *rest = real + srclen + 1;
		if (strchr(rest, '/') != NULL) {
			ret = -EINVAL;
			snprintf(why, whylen,
				 "state directory %s must be outside %s or "
				 "directly inside it",
				 real, source_path);
			goto out_close_fd;
		}
		sd->hidden_name = strdup(rest);
		if (sd->hidden_name == NULL) {
			ret = -ENOMEM;
			goto out_close_fd;
		}
	}
	ret = probe_writable(sd->fd);
	if (ret < 0) {
		fail(why, whylen, ret, "state directory %s is not writable",
		     real);
		goto out_free_name;
	}
	sd->lock_fd =
	    openat(sd->fd, "lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	if (sd->lock_fd < 0) {
		ret = fail(why, whylen, -errno, "cannot create %s/lock", real);
		goto out_free_name;
	}
	if (flock(sd->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ret = -errno;
		if (ret == -EWOULDBLOCK)
			snprintf(why, whylen,
				 "state directory %s is in use by another "
				 "txfsd",
				 real);
		else
			fail(why, whylen, ret, "cannot lock %s/lock", real);
		goto out_close_lock;
	}
	sd->path = strdup(real);
	if (sd->path == NULL) {
		ret = -ENOMEM;
		goto out_close_lock;
	}
	*out = sd;
	return 0;

out_close_lock:
	close(sd->lock_fd);
out_free_name:
	free(sd->hidden_name);
out_close_fd:
	close(sd->fd);
out_free:
	free(sd);
	return ret;
}

void statedir_close(struct statedir *sd)
{
	if (sd == NULL)
		return;
	close(sd->lock_fd);
	close(sd->fd);
	free(sd->hidden_name);
	free(sd->path);
	free(sd);
}

const char *statedir_path(const struct statedir *sd)
{
	return sd->path;
}

int statedir_fd(const struct statedir *sd)
{
	return sd->fd;
}

bool statedir_hides(const struct statedir *sd, const char *name)
{
	return sd->hidden_name != NULL && strcmp(name, sd->hidden_name) == 0;
}
