/*
 * cmd_abort.c: txctl abort [TXID], which ends a transaction and makes
 * every change it made vanish.
 */
#include "config.h"

#include "txctl.h"

static int abort_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	uint64_t txid;
	int rc;

	rc = txctl_parse_txid_args(ctx, argc, argv, &txid);
	if (rc != TXCTL_CONTINUE)
		return rc;
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	txctl_wait_long(ctx);
	rc = txfs_abort(ctx->client, txid);
	if (rc != 0)
		return txctl_tx_failed(ctx, "abort", rc, txid, NULL);
	return TXCTL_EXIT_OK;
}

const struct txctl_cmd txctl_cmd_abort = {
	.name = "abort",
	.usage = "[TXID]",
	.summary = "end a transaction and make all its changes vanish",
	.help = "TXID defaults to the transaction txctl's caller is in.  "
		"Exit status 4:\n"
		"no such transaction.\n",
	.run = abort_run,
};
