/*
 * copy.c: copying a regular file's bytes and attributes (see copy.h).
 * Stateless; used by copy-up (tx.c) and by writing a shadow back into a
 * base inode that has several links (checkpoint.c).
 */
#include "config.h"

#include "copy.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Copies every byte of from into to (both at offset 0); 0 or -errno. */
int copy_data(int from, int to, off_t size, bool try_clone)
{
	loff_t in = 0, out = 0;

	if (try_clone && ioctl(to, FICLONE, from) == 0)
		return 0;
	while (in < size) {
		ssize_t n = copy_file_range(from, &in, to, &out,
					    (size_t)(size - in), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EXDEV && errno != EOPNOTSUPP &&
			    errno != ENOSYS && errno != EINVAL)
				return -errno;
			/* Fall back to reading and writing. */
			char buf[1 << 16];
			ssize_t r = pread(from, buf, sizeof(buf), in);
			if (r < 0)
				return -errno;
			if (r == 0)
				break;
			for (ssize_t w = 0; w < r;) {
				ssize_t k = pwrite(to, buf + w, (size_t)(r - w),
						   out + w);
				if (k < 0)
					return -errno;
				w += k;
			}
			in += r;
			out += r;
			continue;
		}
		if (n == 0)
			break; /* the source shrank: a later check notices */
	}
	return 0;
}

/*
 * Makes to's extended attributes equal to from's: sets each of from's and
 * removes those to has that from has not.  0 or -errno.
 */
int copy_xattrs(int from, int to)
{
	char names[65536], tnames[65536], val[65536];
	ssize_t len, tlen;

	len = flistxattr(from, names, sizeof(names));
	if (len < 0)
		return errno == ENOTSUP ? 0 : -errno;
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1) {
		ssize_t v = fgetxattr(from, names + i, val, sizeof(val));
		if (v < 0)
			return -errno;
		if (fsetxattr(to, names + i, val, (size_t)v, 0) < 0)
			return -errno;
	}
	tlen = flistxattr(to, tnames, sizeof(tnames));
	if (tlen < 0)
		return errno == ENOTSUP ? 0 : -errno;
	for (ssize_t i = 0; i < tlen; i += (ssize_t)strlen(tnames + i) + 1) {
		bool found = false;
		for (ssize_t j = 0; j < len && !found;
		     j += (ssize_t)strlen(names + j) + 1)
			found = strcmp(names + j, tnames + i) == 0;
		if (!found && fremovexattr(to, tnames + i) < 0 &&
		    errno != ENODATA)
			return -errno;
	}
	return 0;
}

/* Gives to the owner, mode, times and xattrs of st / from; 0 or -errno. */
int copy_meta(int from, int to, const struct stat *st)
{
	struct timespec times[2] = { st->st_atim, st->st_mtim };
	int ret;

	ret = copy_xattrs(from, to);
	if (ret < 0)
		return ret;
	if (fchown(to, st->st_uid, st->st_gid) < 0)
		return -errno;
	/* After chown, which may clear set-ID bits. */
	if (fchmod(to, st->st_mode & 07777) < 0)
		return -errno;
	if (futimens(to, times) < 0)
		return -errno;
	return 0;
}
