/*
 * cmd_commit.c: txctl commit [TXID], which publishes a transaction's
 * changes at once, or reports the paths that conflict (exit 3).
 */
#include "config.h"

#include "txctl.h"

static int commit_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	struct txfs_commit_result res;
	uint64_t txid;
	int rc;

	rc = txctl_parse_txid_args(ctx, argc, argv, &txid);
	if (rc != TXCTL_CONTINUE)
		return rc;
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	txctl_wait_long(ctx);
	rc = txfs_commit(ctx->client, txid, &res);
	if (rc != 0)
		rc = txctl_tx_failed(ctx, "commit", rc, txid, &res);
	txfs_commit_result_clear(&res);
	return rc;
}

const struct txctl_cmd txctl_cmd_commit = {
	.name = "commit",
	.usage = "[TXID]",
	.summary = "publish all changes of a transaction at once",
	.help = "TXID defaults to the transaction txctl's caller is in.  "
		"The commit is\n"
		"waited for without a timeout unless -t is given.  Exit "
		"status 3: the\n"
		"changes conflict with others (the paths are listed) and the\n"
		"transaction was aborted; 4: no such transaction.\n",
	.run = commit_run,
};
