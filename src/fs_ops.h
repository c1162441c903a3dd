/*
 * fs_ops.h: the FUSE low-level callbacks.
 *
 * A thin layer: each callback resolves nodeids through the node table, does
 * its system call relative to the node's O_PATH descriptor (never by path
 * string), and replies.  Errors travel as -errno inside the module and are
 * converted to the positive errno FUSE wants at the reply.
 */
#ifndef TXFS_FS_OPS_H
#define TXFS_FS_OPS_H

#include <fuse_lowlevel.h>

#include <stdbool.h>
#include <stdint.h>

struct node_table;
struct statedir;
struct tx_table;
struct view_table;

struct fs;

struct fs_config {
	struct node_table *nodes; /* borrowed; outlives the fs */
	struct statedir *state;	  /* borrowed; hidden from the mount */
	struct tx_table *tx;	  /* borrowed; transactions */
	struct view_table *views; /* borrowed; the names of each view */
	double entry_timeout;	  /* seconds the kernel may cache names */
	double attr_timeout;	  /* seconds it may cache attributes */
};

/* Creates the callback context passed to fuse_session_new as userdata. */
int fs_new(const struct fs_config *cfg, struct fs **out);
void fs_free(struct fs *fs);

/*
 * The CLOCK_MONOTONIC nanosecond until which the kernel may cache what the
 * fs (passed as void *) replied with a positive timeout (txcmd_config).
 */
int64_t fs_cache_deadline(void *fs);

/* The callback table. */
const struct fuse_lowlevel_ops *fs_ops_table(void);

#endif /* TXFS_FS_OPS_H */
