/*
 * handle.c: kernel file handles for backing objects.
 *
 * open_by_handle_at() needs a descriptor on the mount the handle belongs
 * to.  This module keeps one such descriptor per mount id in a small table
 * that only grows.
 *
 * Invariants:
 *  (1) A struct handle is immutable after handle_from_fd() returns it, so
 *      any thread may read it without synchronisation.
 *  (2) mounts[0 .. nmounts-1] are initialised entries; an entry is written
 *      before nmounts is raised past it (release), and readers load nmounts
 *      with acquire, so a reader never sees a half-written entry.
 *  (3) Entries are never removed before handle_shutdown().
 */
#include "config.h"

#include "handle.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HANDLE_MAX_BYTES  128
#define HANDLE_MAX_MOUNTS 256

struct handle {
	int mount_fd;	       /* borrowed from the mount table; immutable */
	struct file_handle fh; /* followed by fh.handle_bytes bytes */
};

struct mount_entry {
	int mount_id;
	int fd;
};

/* Guarded by mounts_lock for writers; readers see see invariant (2). */
static struct mount_entry mounts[HANDLE_MAX_MOUNTS];
static _Atomic int nmounts;
static pthread_mutex_t mounts_lock = PTHREAD_MUTEX_INITIALIZER;

/* Returns the descriptor registered for mount_id, or -1. */
static int mount_lookup(int mount_id)
{
	int n = atomic_load_explicit(&nmounts, memory_order_acquire);

	for (int i = 0; i < n; i++)
		if (mounts[i].mount_id == mount_id)
			return mounts[i].fd;
	return -1;
}

/*
 * Opens a descriptor open_by_handle_at accepts as its mount_fd (O_PATH
 * descriptors are refused) on the object fd refers to: a directory, or a
 * regular file.  Other objects cannot name their mount: -EOPNOTSUPP.
 */
static int open_mount_fd(int fd)
{
	char path[64];
	struct stat st;
	int mfd;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		mfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else if (S_ISREG(st.st_mode)) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		mfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	} else {
		return -EOPNOTSUPP;
	}
	return mfd < 0 ? -errno : mfd;
}

/* Registers fd's mount under mount_id; returns the registered fd or -errno. */
static int mount_register(int mount_id, int fd)
{
	int mfd, n, ret;

	ret = mount_lookup(mount_id);
	if (ret >= 0)
		return ret;
	mfd = open_mount_fd(fd);
	if (mfd < 0)
		return mfd;
	pthread_mutex_lock(&mounts_lock);
	ret = mount_lookup(mount_id);
	if (ret >= 0)
		goto out_close;
	n = atomic_load_explicit(&nmounts, memory_order_relaxed);
	if (n == HANDLE_MAX_MOUNTS) {
		ret = -EMFILE;
		goto out_close;
	}
	mounts[n].mount_id = mount_id;
	mounts[n].fd = mfd;
	atomic_store_explicit(&nmounts, n + 1, memory_order_release);
	pthread_mutex_unlock(&mounts_lock);
	return mfd;

out_close:
	pthread_mutex_unlock(&mounts_lock);
	close(mfd);
	return ret;
}

int handle_from_fd(int fd, struct handle **out)
{
	union {
		struct file_handle fh;
		char bytes[sizeof(struct file_handle) + HANDLE_MAX_BYTES];
	} buf;
	struct handle *h;
	int mount_id, mfd;

	buf.fh.handle_bytes = HANDLE_MAX_BYTES;
	if (name_to_handle_at(fd, "", &buf.fh, &mount_id, AT_EMPTY_PATH) < 0) {
		int err = errno;
		if (err == EOVERFLOW || err == ENOTSUP)
			return -EOPNOTSUPP;
		return -err;
	}
	mfd = mount_register(mount_id, fd);
	if (mfd < 0)
		return mfd;
	h = malloc(sizeof(*h) + buf.fh.handle_bytes);
	if (h == NULL)
		return -ENOMEM;
	h->mount_fd = mfd;
	memcpy(&h->fh, &buf.fh, sizeof(buf.fh) + buf.fh.handle_bytes);
	*out = h;
	return 0;
}

int handle_open(const struct handle *h, int flags)
{
	int fd;

	assert(h != NULL);
	fd = open_by_handle_at(h->mount_fd, (struct file_handle *)&h->fh,
			       flags | O_CLOEXEC | O_NOCTTY);
	return fd < 0 ? -errno : fd;
}

struct handle *handle_dup(const struct handle *h)
{
	size_t size = sizeof(*h) + h->fh.handle_bytes;
	struct handle *d = malloc(size);

	if (d != NULL)
		memcpy(d, h, size);
	return d;
}

const void *handle_bytes(const struct handle *h, size_t *len)
{
	*len = sizeof(h->fh) + h->fh.handle_bytes;
	return &h->fh;
}

void handle_free(struct handle *h)
{
	free(h);
}

bool handle_equal(const struct handle *a, const struct handle *b)
{
	return a->mount_fd == b->mount_fd &&
	       a->fh.handle_type == b->fh.handle_type &&
	       a->fh.handle_bytes == b->fh.handle_bytes &&
	       memcmp(a->fh.f_handle, b->fh.f_handle, a->fh.handle_bytes) == 0;
}

void handle_shutdown(void)
{
	pthread_mutex_lock(&mounts_lock);
	int n = atomic_load(&nmounts);
	for (int i = 0; i < n; i++)
		close(mounts[i].fd);
	atomic_store(&nmounts, 0);
	pthread_mutex_unlock(&mounts_lock);
}
