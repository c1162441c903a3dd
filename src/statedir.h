/*
 * statedir.h: the state directory, where txfsd keeps its private files.
 *
 * By default it is SOURCE/.txfs.  It must be on the same file system as
 * SOURCE, so that publishing a shadow is a rename(2), and it must be either
 * a direct child of SOURCE or outside SOURCE.  A child of SOURCE is hidden
 * from the mount (see statedir_hides).
 */
#ifndef TXFS_STATEDIR_H
#define TXFS_STATEDIR_H

#include <stdbool.h>
#include <stddef.h>

struct statedir;

/*
 * Creates (if needed), checks and locks the state directory for the source
 * open at source_fd whose resolved path is source_path.  path NULL means the
 * default.  On failure returns -errno and writes a one-line reason (without
 * the program name) into why.
 */
int statedir_open(const char *source_path, int source_fd, const char *path,
		  struct statedir **out, char *why, size_t whylen);

/* Unlocks and frees; NULL-safe.  The directory itself stays. */
void statedir_close(struct statedir *sd);

/* The directory's resolved path and an open descriptor on it. */
const char *statedir_path(const struct statedir *sd);
int statedir_fd(const struct statedir *sd);

/*
 * Returns true when name, looked up in SOURCE's root directory, is the state
 * directory and so must be invisible through the mount.
 */
bool statedir_hides(const struct statedir *sd, const char *name);

#endif /* TXFS_STATEDIR_H */
