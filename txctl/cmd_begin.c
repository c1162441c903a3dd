/*
 * cmd_begin.c: txctl begin [--pid PID] [--label TEXT], which starts a
 * transaction with a leader process (by default txctl's parent, the
 * calling shell) and prints its id.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <unistd.h>

#include "txctl.h"

static int begin_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "label", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *label = NULL;
	pid_t pid = getppid();
	uint64_t txid;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (txctl_parse_pid(optarg, &pid) != 0)
				return txctl_usage_error(
				    ctx->cmd, "bad process id '%s'", optarg);
			break;
		case 'l':
			label = optarg;
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
	if (optind < argc)
		return txctl_usage_error(ctx->cmd, "unexpected argument '%s'",
					 argv[optind]);
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	rc = txfs_begin(ctx->client, pid, label, 0, &txid);
	if (rc != 0)
		return txctl_request_failed(ctx, "begin", rc, NULL);
	printf("%" PRIu64 "\n", txid);
	return TXCTL_EXIT_OK;
}

const struct txctl_cmd txctl_cmd_begin = {
	.name = "begin",
	.usage = "[--pid PID] [--label TEXT]",
	.summary = "start a transaction and print its id",
	.help = "  --pid PID     make PID the leader (default: txctl's parent "
		"process)\n"
		"  --label TEXT  a note shown by 'txctl list'\n"
		"\n"
		"The leader and its future descendants are members.  Inside "
		"$(...) the\n"
		"parent may be a subshell: use 'TX=$(txctl begin --pid $$)'.\n",
	.run = begin_run,
};
