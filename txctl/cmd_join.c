/*
 * cmd_join.c: txctl join TXID [--pid PID], which makes a process (by
 * default txctl's parent, the calling shell) and its future descendants
 * members of a transaction.
 */
#include "config.h"

#include <getopt.h>
#include <unistd.h>

#include "txctl.h"

static int join_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	pid_t pid = getppid();
	uint64_t txid;
	int c, rc;

	/* No "+": TXID may come before --pid. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (txctl_parse_pid(optarg, &pid) != 0)
				return txctl_usage_error(
				    ctx->cmd, "bad process id '%s'", optarg);
			break;
		case 'h':
			txctl_print_help(stdout, ctx->cmd);
			return TXCTL_EXIT_OK;
		case ':':
			return txctl_usage_error(
			    ctx->cmd, "option '%s' needs an argument",
			    argv[optind - 1]);
		default:
			return txctl_usage_error(
			    ctx->cmd, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return txctl_usage_error(ctx->cmd, "missing transaction id");
	if (txctl_parse_txid(argv[optind], &txid) != 0)
		return txctl_usage_error(ctx->cmd, "bad transaction id '%s'",
					 argv[optind]);
	if (optind + 1 < argc)
		return txctl_usage_error(ctx->cmd, "unexpected argument '%s'",
					 argv[optind + 1]);
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	rc = txfs_bind(ctx->client, txid, pid);
	if (rc != 0)
		return txctl_tx_failed(ctx, "join", rc, txid, NULL);
	return TXCTL_EXIT_OK;
}

const struct txctl_cmd txctl_cmd_join = {
	.name = "join",
	.usage = "TXID [--pid PID]",
	.summary = "make the calling shell (or PID) a member of a transaction",
	.help = "  --pid PID  the process to bind (default: txctl's parent "
		"process)\n"
		"\n"
		"Its future descendants become members too.  Exit status 4: "
		"no such\n"
		"transaction.\n",
	.run = join_run,
};
