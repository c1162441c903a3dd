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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

#include "txfs.h"

/* Exit codes (txctl(1), EXIT STATUS). */
enum {
	TXCTL_EXIT_OK = 0,    /* success */
	TXCTL_EXIT_ERROR = 1, /* the request failed or no daemon was reached */
	TXCTL_EXIT_USAGE = 2, /* bad verb, option or argument */
	TXCTL_EXIT_CONFLICT = 3, /* a commit conflicted; the tx was aborted */
	TXCTL_EXIT_NOTX = 4	 /* no such transaction */
};

/* Not an exit code: what a verb's helper returns when the verb goes on. */
#define TXCTL_CONTINUE (-1)

/* State shared by the driver and the verb being run. */
struct txctl_ctx {
	const char *socket; /* --socket PATH, else NULL */
	const char *mount;  /* -m MOUNTPOINT, else NULL */
	int timeout_ms;	    /* --timeout, else TXFS_DEFAULT_TIMEOUT_MS */
	bool timeout_given; /* whether --timeout was given */
	const struct txctl_cmd *cmd; /* the verb being run */
	struct txfs_client *client;  /* set by txctl_connect() */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct txctl_cmd {
	const char *name;
	const char *usage;   /* what follows the verb, as in the SYNOPSIS */
	const char *summary; /* one line, lowercase, no full stop */
	const char *help;    /* the options and more, or NULL */
	int (*run)(struct txctl_ctx *ctx, int argc, char **argv);
};

/* The verbs, one per cmd_<verb>.c. */
extern const struct txctl_cmd txctl_cmd_abort;
extern const struct txctl_cmd txctl_cmd_begin;
extern const struct txctl_cmd txctl_cmd_commit;
extern const struct txctl_cmd txctl_cmd_diff;
extern const struct txctl_cmd txctl_cmd_help;
extern const struct txctl_cmd txctl_cmd_join;
extern const struct txctl_cmd txctl_cmd_list;
extern const struct txctl_cmd txctl_cmd_run;
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
 * error reply (or, when r is NULL, when the client's last request got
 * one), else the transport error rc.  Returns TXCTL_EXIT_ERROR.
 */
int txctl_request_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
			 const struct txfs_reply *r);

/*
 * Reports the failure rc of the transaction request verb about txid (0:
 * the caller's own) and turns it into an exit code: the daemon's ENOENT
 * gives TXCTL_EXIT_NOTX, its ECANCELED TXCTL_EXIT_CONFLICT (listing the
 * conflicting paths of res, made safe to print in place, when res is not
 * NULL), anything else what txctl_request_failed gives.
 */
int txctl_tx_failed(const struct txctl_ctx *ctx, const char *verb, int rc,
		    uint64_t txid, struct txfs_commit_result *res);

/*
 * Before a commit or abort, which may take long: lifts the request
 * timeout unless --timeout was given.
 */
void txctl_wait_long(struct txctl_ctx *ctx);

/*
 * Parses a transaction id (decimal, greater than 0) or a process id
 * (decimal, greater than 0).  Both return 0 or -EINVAL.
 */
int txctl_parse_txid(const char *s, uint64_t *txid);
int txctl_parse_pid(const char *s, pid_t *pid);

/*
 * Parses the arguments of a verb that takes --help and an optional TXID
 * (commit, abort).  Returns TXCTL_CONTINUE with *txid set (0 when there
 * is none), or the exit code to end with.
 */
int txctl_parse_txid_args(struct txctl_ctx *ctx, int argc, char **argv,
			  uint64_t *txid);

/* Writes a duration of s seconds as "42s", "5m", "3h" or "2d" into buf. */
void txctl_format_age(uint64_t s, char *buf, size_t len);

/* Writes the name of user uid into buf, or the number when it has none. */
void txctl_format_user(uint32_t uid, char *buf, size_t len);

/* Replaces control characters in s by '?', so it cannot upset a terminal. */
void txctl_sanitize(char *s);

/*
 * Writes one transaction as a JSON object to f: the fields of struct
 * txfs_tx_info, and with paths an array "paths" of objects with the
 * members "path" and "change".
 */
void txctl_tx_json(FILE *f, const struct txfs_tx_info *info, bool paths);

/* Prints "txctl: " and the message to stderr, with a newline. */
void txctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "usage: txctl VERB USAGE" for cmd to f. */
void txctl_print_usage(FILE *f, const struct txctl_cmd *cmd);

/*
 * Prints what 'txctl help VERB' and 'txctl VERB --help' show: the usage,
 * the summary and the help text of cmd.
 */
void txctl_print_help(FILE *f, const struct txctl_cmd *cmd);

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
