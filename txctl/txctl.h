/*
 * txctl.h: what txctl's verbs share.
 *
 * Each verb lives in txctl/cmd_<verb>.c and exports one struct txctl_cmd;
 * txctl.c lists them in its table, parses the global options, finds the
 * daemon and maps outcomes to exit codes.  A verb's run function gets the
 * arguments from the verb on (argv[0] is the verb) and returns an exit
 * code.
 */
#ifndef TXCTL_H
#define TXCTL_H

#include <limits.h>
#include <stdio.h>
#include <sys/un.h>

#include "txfs.h"

/* Exit codes (txctl(1), EXIT STATUS). */
enum {
	TXCTL_EXIT_OK = 0,    /* success */
	TXCTL_EXIT_ERROR = 1, /* the request failed or no daemon was reached */
	TXCTL_EXIT_USAGE = 2  /* bad verb, option or argument */
};

/* State shared by the driver and the verb being run. */
struct txctl_ctx {
	const char *socket; /* --socket PATH, else NULL */
	const char *mount;  /* -m MOUNTPOINT, else NULL */
	int timeout_ms;	    /* --timeout, else TXFS_DEFAULT_TIMEOUT_MS */
	const struct txctl_cmd *cmd; /* the verb being run */
	struct txfs_client *client;  /* set by txctl_connect() */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct txctl_cmd {
	const char *name;
	const char *usage;   /* what follows the verb, as in the SYNOPSIS */
	const char *summary; /* one line, lowercase, no full stop */
	int (*run)(struct txctl_ctx *ctx, int argc, char **argv);
};

/* The verbs, one per cmd_<verb>.c. */
extern const struct txctl_cmd txctl_cmd_help;
extern const struct txctl_cmd txctl_cmd_status;

/* The table of every verb, ended by NULL (txctl.c). */
extern const struct txctl_cmd *const txctl_cmds[];

/* The verb called name, or NULL. */
const struct txctl_cmd *txctl_find_cmd(const char *name);

/*
 * Finds the daemon (--socket, -m, $TXFS_SOCKET, $TXFS_MOUNT, then the
 * txfs mount holding the current directory) and connects ctx->client.
 * Returns TXCTL_EXIT_OK, or prints why not and returns TXCTL_EXIT_ERROR.
 */
int txctl_connect(struct txctl_ctx *ctx);

/*
 * Reports a failed request for verb: the daemon's message when r holds an
 * error reply, else the transport error rc.  Returns TXCTL_EXIT_ERROR.
 */
int txctl_request_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
			 const struct txfs_reply *r);

/* Prints "txctl: " and the message to stderr, with a newline. */
void txctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "usage: txctl VERB USAGE" for cmd to f. */
void txctl_print_usage(FILE *f, const struct txctl_cmd *cmd);

/*
 * For a verb's argument errors: prints the message (if fmt is not NULL)
 * and the verb's usage to stderr.  Returns TXCTL_EXIT_USAGE.
 */
int txctl_usage_error(const struct txctl_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Writes n bytes of s as a JSON string, quotes included.  Valid UTF-8 is
 * kept; control characters, quotes and backslashes are escaped; bytes
 * that are not UTF-8 become U+FFFD.
 */
void txctl_json_string(FILE *f, const char *s, size_t n);

#endif /* TXCTL_H */
