/*
 * cmd_status.c: txctl status [--stm] [--json], which shows what the
 * daemon serves, since when, and with --stm its per-site STM statistics;
 * and txctl status TXID [--json], which shows one transaction and the
 * paths it has changed.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "txctl.h"

/* The per-site counters the stm request reports, in column order. */
static const struct {
	const char *key;
	const char *head;
} stm_cols[] = {
	{ "commits", "commits" },
	{ "aborts_locked", "locked" },
	{ "aborts_validate", "validate" },
	{ "aborts_user", "user" },
	{ "waits", "waits" },
	{ "serial", "serial" },
};

#define NCOLS (sizeof(stm_cols) / sizeof(stm_cols[0]))

/* True when s is a non-empty run of decimal digits, fit for JSON as is. */
static bool is_number(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	return strspn(s, "0123456789") == strlen(s);
}

static void json_field(const char *key, const char *val, bool first)
{
	printf("%s\"%s\":", first ? "" : ",", key);
	if (is_number(val))
		fputs(val, stdout);
	else
		txctl_json_string(stdout, val != NULL ? val : "",
				  val != NULL ? strlen(val) : 0);
}

static void print_uptime(uint64_t s)
{
	uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

	if (d > 0)
		printf("%" PRIu64 "d ", d);
	if (d > 0 || h > 0)
		printf("%" PRIu64 "h ", h);
	if (d > 0 || h > 0 || m > 0)
		printf("%" PRIu64 "m ", m);
	printf("%" PRIu64 "s\n", s % 60);
}

static void print_text(const struct txfs_status *st)
{
	printf("source:       %s\n", st->source);
	printf("mount point:  %s\n", st->mountpoint);
	printf("state dir:    %s\n", st->state_dir);
	printf("socket:       %s\n", st->socket);
	printf("daemon pid:   %ld\n", st->pid);
	printf("uptime:       ");
	print_uptime(st->uptime);
	printf("version:      %s (protocol %u)\n", st->version, st->protocol);
}

static void print_recovery_text(const struct txfs_recovery *r)
{
	printf("recovery:     ");
	if (r->records == 0 && r->discarded == 0) {
		printf("nothing to recover (%" PRIu64 " ms)\n", r->ms);
		return;
	}
	printf("%" PRIu64 " committed transaction(s) finished (%" PRIu64
	       " step(s) redone, %" PRIu64 " found done, %" PRIu64
	       " skipped), %" PRIu64 " unfinished transaction(s) discarded, "
	       "in %" PRIu64 " ms\n",
	       r->records, r->steps, r->already, r->skipped, r->discarded,
	       r->ms);
}

static void print_stm_text(const struct txfs_reply *r)
{
	size_t n = txfs_reply_records(r), width = 4;

	for (size_t i = 1; i <= n; i++) {
		const char *site = txfs_reply_record_get(r, i, "site", NULL);
		size_t len = site != NULL ? strlen(site) : 0;

		if (len > width)
			width = len < 48 ? len : 48;
	}
	printf("\n%-*s", (int)width, "site");
	for (size_t c = 0; c < NCOLS; c++)
		printf(" %10s", stm_cols[c].head);
	putchar('\n');
	for (size_t i = 1; i <= n; i++) {
		const char *site = txfs_reply_record_get(r, i, "site", NULL);

		printf("%-*s", (int)width, site != NULL ? site : "?");
		for (size_t c = 0; c < NCOLS; c++) {
			const char *v =
			    txfs_reply_record_get(r, i, stm_cols[c].key, NULL);

			printf(" %10s", v != NULL ? v : "-");
		}
		putchar('\n');
	}
}

static void print_json(const struct txfs_status *st,
		       const struct txfs_recovery *rec,
		       const struct txfs_reply *stm)
{
	char num[32];

	printf("{");
	json_field("source", st->source, true);
	json_field("mountpoint", st->mountpoint, false);
	json_field("state_dir", st->state_dir, false);
	json_field("socket", st->socket, false);
	snprintf(num, sizeof(num), "%ld", st->pid);
	json_field("pid", num, false);
	snprintf(num, sizeof(num), "%" PRId64, st->started);
	json_field("started", num, false);
	snprintf(num, sizeof(num), "%" PRIu64, st->uptime);
	json_field("uptime", num, false);
	json_field("version", st->version, false);
	snprintf(num, sizeof(num), "%u", st->protocol);
	json_field("protocol", num, false);
	if (rec != NULL)
		printf(",\"recovery\":{\"records\":%" PRIu64
		       ",\"steps\":%" PRIu64 ",\"already\":%" PRIu64
		       ",\"skipped\":%" PRIu64 ",\"discarded\":%" PRIu64
		       ",\"ms\":%" PRIu64 "}",
		       rec->records, rec->steps, rec->already, rec->skipped,
		       rec->discarded, rec->ms);
	if (stm != NULL) {
		printf(",\"stm\":{");
		json_field("clock", txfs_reply_get(stm, "clock"), true);
		printf(",\"sites\":[");
		for (size_t i = 1; i <= txfs_reply_records(stm); i++) {
			printf("%s{", i > 1 ? "," : "");
			json_field("site",
				   txfs_reply_record_get(stm, i, "site", NULL),
				   true);
			for (size_t c = 0; c < NCOLS; c++)
				json_field(stm_cols[c].key,
					   txfs_reply_record_get(
					       stm, i, stm_cols[c].key, NULL),
					   false);
			printf("}");
		}
		printf("]}");
	}
	printf("}\n");
}

static void print_tx_text(struct txfs_tx_info *tx)
{
	char user[64], age[32], when[64] = "?";
	time_t t = (time_t)tx->started;
	struct tm tm;

	txctl_sanitize(tx->label);
	txctl_sanitize(tx->state);
	txctl_format_user(tx->uid, user, sizeof(user));
	txctl_format_age(tx->age, age, sizeof(age));
	if (localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm);
	printf("transaction:  %" PRIu64 "\n", tx->txid);
	printf("label:        %s\n", tx->label);
	printf("owner:        %s (uid %" PRIu32 ")\n", user, tx->uid);
	printf("leader:       %ld\n", tx->leader);
	printf("members:      %" PRIu64 "\n", tx->members);
	printf("state:        %s\n", tx->state);
	printf("started:      %s (%s ago)\n", when, age);
	printf("changes:      %" PRIu64 "\n", tx->changes);
	for (size_t i = 0; i < tx->npaths; i++) {
		txctl_sanitize(tx->kinds[i]);
		txctl_sanitize(tx->paths[i]);
		printf("  %-10s %s\n", tx->kinds[i], tx->paths[i]);
	}
}

/* txctl status TXID: shows one transaction. */
static int show_tx(struct txctl_ctx *ctx, uint64_t txid, bool json)
{
	struct txfs_tx_info tx;
	int rc;

	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	rc = txfs_show(ctx->client, txid, &tx);
	if (rc != 0)
		return txctl_tx_failed(ctx, "status", rc, txid, NULL);
	if (json) {
		txctl_tx_json(stdout, &tx, true);
		putchar('\n');
	} else {
		print_tx_text(&tx);
	}
	txfs_tx_info_clear(&tx);
	return TXCTL_EXIT_OK;
}

static int status_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "stm", no_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct txfs_reply *stm = NULL;
	struct txfs_recovery rec;
	bool have_rec;
	struct txfs_status st;
	bool want_stm = false, json = false;
	uint64_t txid;
	int c, rc;

	opterr = 0;
	/* No "+": TXID may come before the options. */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			want_stm = true;
			break;
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
	if (optind < argc && txctl_parse_txid(argv[optind], &txid) != 0)
		return txctl_usage_error(ctx->cmd, "bad transaction id '%s'",
					 argv[optind]);
	if (optind + 1 < argc)
		return txctl_usage_error(ctx->cmd, "unexpected argument '%s'",
					 argv[optind + 1]);
	if (optind < argc && want_stm)
		return txctl_usage_error(
		    ctx->cmd, "--stm cannot be combined with a transaction id");
	if (optind < argc)
		return show_tx(ctx, txid, json);
	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	rc = txfs_status(ctx->client, &st);
	if (rc != 0)
		return txctl_request_failed(ctx, "status", rc, NULL);
	if (st.protocol > TXFS_PROTOCOL)
		txctl_err("warning: the daemon speaks protocol %u, this txctl "
			  "%d",
			  st.protocol, TXFS_PROTOCOL);
	/* A daemon too old to report recovery is shown without it. */
	rc = txfs_recovery(ctx->client, &rec);
	if (rc != 0 && rc != -ENOSYS) {
		rc = txctl_request_failed(ctx, "recovery", rc, NULL);
		goto out_free;
	}
	have_rec = rc == 0;
	if (want_stm) {
		rc = txfs_request(ctx->client, &stm, "stm", (char *)NULL);
		if (rc != 0) {
			rc = txctl_request_failed(ctx, "stm", rc, stm);
			goto out_free;
		}
	}
	if (json) {
		print_json(&st, have_rec ? &rec : NULL, stm);
	} else {
		print_text(&st);
		if (have_rec)
			print_recovery_text(&rec);
		if (stm != NULL)
			print_stm_text(stm);
	}
	rc = TXCTL_EXIT_OK;
out_free:
	txfs_reply_free(stm);
	txfs_status_clear(&st);
	return rc;
}

const struct txctl_cmd txctl_cmd_status = {
	.name = "status",
	.usage = "[--stm | TXID] [--json]",
	.summary = "show what the daemon serves, or one transaction",
	.help = "  TXID    show transaction TXID and the paths it changed\n"
		"  --stm   add the daemon's per-site STM statistics\n"
		"  --json  print a JSON object instead\n",
	.run = status_run,
};
