/*
 * cmd_help.c: txctl help [VERB], which lists the verbs or describes one.
 */
#include "config.h"

#include <string.h>

#include "txctl.h"

static int help_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	const struct txctl_cmd *cmd;

	(void)ctx;
	if (argc > 2)
		return txctl_usage_error(&txctl_cmd_help, "too many arguments");
	if (argc == 2) {
		cmd = txctl_find_cmd(argv[1]);
		if (cmd == NULL) {
			txctl_err("unknown verb '%s' (see 'txctl help')",
				  argv[1]);
			return TXCTL_EXIT_USAGE;
		}
		txctl_print_help(stdout, cmd);
		return TXCTL_EXIT_OK;
	}
	printf("usage: txctl [-m MOUNTPOINT | -S PATH] [-t SECONDS] VERB "
	       "[ARGS]\n"
	       "       txctl --help | --version\n"
	       "\n"
	       "verbs:\n");
	for (size_t i = 0; txctl_cmds[i] != NULL; i++)
		printf("  %-10s %s\n", txctl_cmds[i]->name,
		       txctl_cmds[i]->summary);
	printf("\n"
	       "options:\n"
	       "  -m, --mount MOUNTPOINT  talk to the daemon serving "
	       "MOUNTPOINT\n"
	       "  -S, --socket PATH       talk to the daemon listening on "
	       "PATH\n"
	       "  -t, --timeout SECONDS   give up on a request after SECONDS "
	       "(0: never)\n"
	       "  -h, --help              show this help\n"
	       "  -V, --version           show the version\n"
	       "\n"
	       "Without -m or -S, txctl uses $TXFS_SOCKET, then $TXFS_MOUNT,\n"
	       "then the txfs mount holding the current directory.\n"
	       "See txctl(1) for more.\n");
	return TXCTL_EXIT_OK;
}

const struct txctl_cmd txctl_cmd_help = {
	.name = "help",
	.usage = "[VERB]",
	.summary = "list the verbs, or describe one",
	.run = help_run,
};
