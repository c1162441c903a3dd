/*
 * copy.h: copying a regular file's bytes and attributes between open
 * descriptors.  Every function returns 0 or -errno.
 */
#ifndef TXFS_COPY_H
#define TXFS_COPY_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * Copies size bytes of from into to, both from offset 0: with FICLONE when
 * try_clone and the file system shares extents, else copy_file_range, else
 * read and write.  A source that shrinks meanwhile ends the copy early.
 */
int copy_data(int from, int to, off_t size, bool try_clone);

/* Makes to's extended attributes equal to from's. */
int copy_xattrs(int from, int to);

/* Gives to the xattrs of from and the owner, mode and times of st. */
int copy_meta(int from, int to, const struct stat *st);

#endif /* TXFS_COPY_H */
