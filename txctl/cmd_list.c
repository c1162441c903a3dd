/*
 * cmd_list.c: txctl list [--json], which shows the open transactions the
 * caller may inspect, one per line or as a JSON array.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "txctl.h"

/* Labels longer than this many characters are cut in the table. */
#define LABEL_MAX 32

enum {
	COL_ID,
	COL_OWNER,
	COL_LEADER,
	COL_LABEL,
	COL_AGE,
	COL_STATE,
	COL_CHANGES,
	NCOLS
};

static const char *const heads[NCOLS] = {
	"ID", "OWNER", "LEADER", "LABEL", "AGE", "STATE", "CHANGES",
};

/* One row of the table, its cells as text. */
struct row {
	char cell[NCOLS][LABEL_MAX * 4 + 8];
};

/* The number of characters (not bytes) in UTF-8 text s. */
static size_t width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Copies label into buf, cut to LABEL_MAX characters; "-" when empty. */
static void format_label(const char *label, char *buf, size_t len)
{
	size_t chars = 0, i = 0;

	if (label[0] == '\0') {
		snprintf(buf, len, "-");
		return;
	}
	if (width(label) <= LABEL_MAX) {
		snprintf(buf, len, "%s", label);
		return;
	}
	/* Keep LABEL_MAX - 3 characters, ending on a character boundary. */
	for (; label[i] != '\0'; i++) {
		if (((unsigned char)label[i] & 0xc0) != 0x80 &&
		    chars++ == LABEL_MAX - 3)
			break;
	}
	snprintf(buf, len, "%.*s...", (int)i, label);
}

static void fill_row(struct row *row, struct txfs_tx_info *tx)
{
	txctl_sanitize(tx->label);
	txctl_sanitize(tx->state);
	snprintf(row->cell[COL_ID], sizeof(row->cell[0]), "%" PRIu64, tx->txid);
	txctl_format_user(tx->uid, row->cell[COL_OWNER], sizeof(row->cell[0]));
	snprintf(row->cell[COL_LEADER], sizeof(row->cell[0]), "%ld",
		 tx->leader);
	format_label(tx->label, row->cell[COL_LABEL], sizeof(row->cell[0]));
	txctl_format_age(tx->age, row->cell[COL_AGE], sizeof(row->cell[0]));
	snprintf(row->cell[COL_STATE], sizeof(row->cell[0]), "%s", tx->state);
	snprintf(row->cell[COL_CHANGES], sizeof(row->cell[0]), "%" PRIu64,
		 tx->changes);
}

/* Prints one line of the table, each column padded to its width. */
static void print_line(const char *const *cells, const size_t *widths)
{
	for (size_t c = 0; c < NCOLS; c++) {
		fputs(cells[c], stdout);
		if (c + 1 == NCOLS)
			break;
		for (size_t w = width(cells[c]); w < widths[c] + 2; w++)
			putchar(' ');
	}
	putchar('\n');
}

static int print_table(struct txfs_tx_info *list, size_t n)
{
	size_t widths[NCOLS];
	const char *cells[NCOLS];
	struct row *rows;

	rows = calloc(n > 0 ? n : 1, sizeof(*rows));
	if (rows == NULL) {
		txctl_err("out of memory");
		return TXCTL_EXIT_ERROR;
	}
	for (size_t c = 0; c < NCOLS; c++)
		widths[c] = strlen(heads[c]);
	for (size_t i = 0; i < n; i++) {
		fill_row(&rows[i], &list[i]);
		for (size_t c = 0; c < NCOLS; c++) {
			size_t w = width(rows[i].cell[c]);

			if (w > widths[c])
				widths[c] = w;
		}
	}
	print_line(heads, widths);
	for (size_t i = 0; i < n; i++) {
		for (size_t c = 0; c < NCOLS; c++)
			cells[c] = rows[i].cell[c];
		print_line(cells, widths);
	}
	free(rows);
	return TXCTL_EXIT_OK;
}

static void print_json(const struct txfs_tx_info *list, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			putchar(',');
		txctl_tx_json(stdout, &list[i], false);
	}
	puts("]");
}

static int list_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct txfs_tx_info *list;
	bool json = false;
	size_t n;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			txctl_print_help(stdout, ctx->cmd);
			return TXCTL_EXIT_OK;
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
	rc = txfs_list(ctx->client, &list, &n);
	if (rc != 0)
		return txctl_request_failed(ctx, "list", rc, NULL);
	if (json) {
		print_json(list, n);
		rc = TXCTL_EXIT_OK;
	} else {
		rc = print_table(list, n);
	}
	txfs_tx_list_free(list, n);
	return rc;
}

const struct txctl_cmd txctl_cmd_list = {
	.name = "list",
	.usage = "[--json]",
	.summary = "list the open transactions",
	.help = "  --json  print a JSON array of objects with the members "
		"txid, uid,\n"
		"          leader, label, started, age, state, changes and "
		"members\n",
	.run = list_run,
};
