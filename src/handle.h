/*
 * handle.h: kernel file handles for backing objects.
 *
 * txfsd names each backing object by its kernel file handle
 * (name_to_handle_at) instead of holding an open file descriptor per node,
 * so the number of objects the kernel may keep referenced is not bounded by
 * the open-file limit.  A handle is reopened with open_by_handle_at, which
 * needs CAP_DAC_READ_SEARCH (txfsd runs as root).
 */
#ifndef TXFS_HANDLE_H
#define TXFS_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An immutable file handle plus the mount it lives on. */
struct handle;

/*
 * Makes a handle for the object fd refers to (any fd, O_PATH included).
 * Returns 0 and a new handle in *out, -EOPNOTSUPP if the file system
 * cannot export handles, or another -errno.
 */
int handle_from_fd(int fd, struct handle **out);

/*
 * Opens the object behind h with flags (O_PATH, O_RDONLY, …; O_NOCTTY and
 * O_CLOEXEC are added).  Returns the new fd or -errno: -ESTALE when the
 * file system reports the object gone (an unlinked inode the kernel still
 * holds in memory may open instead, with a link count of 0).
 */
int handle_open(const struct handle *h, int flags);

/* Returns a copy of h, or NULL when out of memory. */
struct handle *handle_dup(const struct handle *h);

/*
 * The handle's bytes (struct file_handle and its payload) for storing,
 * e.g. in the journal; *len receives their number.
 */
const void *handle_bytes(const struct handle *h, size_t *len);

/* Frees a handle; NULL-safe. */
void handle_free(struct handle *h);

/* Returns true when both handles name the same object. */
bool handle_equal(const struct handle *a, const struct handle *b);

/* Closes the per-mount descriptors handles are opened through (shutdown). */
void handle_shutdown(void);

#endif /* TXFS_HANDLE_H */
