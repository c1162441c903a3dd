/*
 * test_txfs_client.c: unit tests of libtxfs's transaction requests
 * (src/txfs.c): the request each typed call sends, and how it turns the
 * daemon's reply into its result, against a fake daemon that answers
 * canned replies over a real unix socket.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "txfs.h"

/*
 * A fake daemon: a listening socket in a private directory and the one
 * connection a client made to it.  The reply to a request is written
 * before the request is made, so that everything runs in one thread; the
 * request is read afterwards and compared.
 */
struct fake {
	char dir[64];
	char path[100];
	int lfd;
	int sfd;
	struct txfs_client *cl;
};

static void fake_open(struct fake *f)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	snprintf(f->dir, sizeof(f->dir), "/tmp/txfs-client-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/d.sock", f->dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f->lfd, 0);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(f->lfd, 1), 0);
	ck_assert_int_eq(txfs_connect(f->path, &f->cl), 0);
	f->sfd = accept(f->lfd, NULL, NULL);
	ck_assert_int_ge(f->sfd, 0);
}

static void fake_close(struct fake *f)
{
	txfs_close(f->cl);
	close(f->sfd);
	close(f->lfd);
	unlink(f->path);
	rmdir(f->dir);
}

/* Queues the daemon's answer to the next request. */
static void fake_answer(struct fake *f, const char *reply)
{
	size_t n = strlen(reply);

	ck_assert_int_eq(write(f->sfd, reply, n), (ssize_t)n);
}

/* Asserts that the client sent exactly the request line want. */
static void fake_expect(struct fake *f, const char *want)
{
	char buf[4096];
	ssize_t n = recv(f->sfd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

/* Asserts that the client sent nothing at all. */
static void fake_expect_nothing(struct fake *f)
{
	char c;

	ck_assert_int_eq(recv(f->sfd, &c, 1, MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
}

START_TEST(begin_sends_pid_label_and_abort_on_close)
{
	struct fake f;
	uint64_t txid = 0;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=42\n\n");
	ck_assert_int_eq(txfs_begin(f.cl, 1234, "nightly build",
				    TXFS_BEGIN_ABORT_ON_CLOSE, &txid),
			 0);
	fake_expect(&f, "begin pid=1234 label=nightly%20build "
			"abort_on_close=1\n");
	ck_assert_uint_eq(txid, 42);
	ck_assert_ptr_null(txfs_last_message(f.cl));
	fake_close(&f);
}
END_TEST

START_TEST(begin_without_pid_or_label_sends_no_arguments)
{
	struct fake f;
	uint64_t txid = 0;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=18446744073709551615\n\n");
	ck_assert_int_eq(txfs_begin(f.cl, 0, NULL, 0, &txid), 0);
	fake_expect(&f, "begin\n");
	ck_assert_uint_eq(txid, UINT64_MAX);
	fake_close(&f);
}
END_TEST

START_TEST(begin_rejects_a_missing_or_malformed_txid)
{
	static const char *const bad[] = {
		"ok\n\n",
		"ok\ntxid=\n\n",
		"ok\ntxid=0\n\n",
		"ok\ntxid=-1\n\n",
		"ok\ntxid=+7\n\n",
		"ok\ntxid=7x\n\n",
		"ok\ntxid=%207\n\n",
		"ok\ntxid=7%00\n\n",
		"ok\ntxid=18446744073709551616\n\n",
		"ok\nrecord\ntxid=7\n\n",
	};
	struct fake f;

	fake_open(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t txid = 99;

		fake_answer(&f, bad[i]);
		ck_assert_msg(txfs_begin(f.cl, 0, NULL, 0, &txid) == -EPROTO,
			      "accepted %s", bad[i]);
		fake_expect(&f, "begin\n");
		ck_assert_uint_eq(txid, 0);
	}
	fake_close(&f);
}
END_TEST

START_TEST(begin_returns_the_daemons_errno_and_keeps_its_message)
{
	struct fake f;
	uint64_t txid = 99;

	fake_open(&f);
	fake_answer(&f, "err EBUSY process 77 is already in transaction 5\n\n");
	ck_assert_int_eq(txfs_begin(f.cl, 77, NULL, 0, &txid), -EBUSY);
	fake_expect(&f, "begin pid=77\n");
	ck_assert_uint_eq(txid, 0);
	ck_assert_str_eq(txfs_last_message(f.cl),
			 "process 77 is already in transaction 5");

	/* The next answer that is "ok" forgets the message. */
	fake_answer(&f, "ok\ntxid=6\n\n");
	ck_assert_int_eq(txfs_begin(f.cl, 77, NULL, 0, &txid), 0);
	fake_expect(&f, "begin pid=77\n");
	ck_assert_ptr_null(txfs_last_message(f.cl));
	fake_close(&f);
}
END_TEST

START_TEST(begin_refuses_unknown_flags_and_negative_pids_unsent)
{
	struct fake f;
	uint64_t txid = 99;

	fake_open(&f);
	ck_assert_int_eq(txfs_begin(f.cl, 0, NULL, 0x2, &txid), -EINVAL);
	ck_assert_int_eq(txfs_begin(f.cl, -1, NULL, 0, &txid), -EINVAL);
	ck_assert_uint_eq(txid, 0);
	fake_expect_nothing(&f);
	fake_close(&f);
}
END_TEST

START_TEST(commit_reports_txid_changes_and_time)
{
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=9\nchanges=3\nms=12\n\n");
	ck_assert_int_eq(txfs_commit(f.cl, 9, &res), 0);
	fake_expect(&f, "commit txid=9\n");
	ck_assert_uint_eq(res.txid, 9);
	ck_assert_uint_eq(res.changes, 3);
	ck_assert_uint_eq(res.ms, 12);
	ck_assert_uint_eq(res.nconflicts, 0);
	txfs_commit_result_clear(&res);

	/* Without a txid the request names none: the caller's own. */
	fake_answer(&f, "ok\ntxid=10\nchanges=0\nms=0\n\n");
	ck_assert_int_eq(txfs_commit(f.cl, 0, &res), 0);
	fake_expect(&f, "commit\n");
	ck_assert_uint_eq(res.txid, 10);
	txfs_commit_result_clear(&res);
	fake_close(&f);
}
END_TEST

START_TEST(commit_conflict_lists_the_paths)
{
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "err ECANCELED commit of transaction 9 conflicts\n"
			"record\npath=/etc/passwd\n"
			"record\npath=/a%20b/%C3%A9\n\n");
	ck_assert_int_eq(txfs_commit(f.cl, 9, &res), -ECANCELED);
	fake_expect(&f, "commit txid=9\n");
	ck_assert_uint_eq(res.txid, 9);
	ck_assert_uint_eq(res.nconflicts, 2);
	ck_assert_str_eq(res.conflicts[0], "/etc/passwd");
	ck_assert_str_eq(res.conflicts[1], "/a b/\xc3\xa9");
	txfs_commit_result_clear(&res);
	ck_assert_ptr_null(res.conflicts);
	ck_assert_uint_eq(res.nconflicts, 0);
	fake_close(&f);
}
END_TEST

START_TEST(commit_conflict_of_own_transaction_takes_txid_from_reply)
{
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "err ECANCELED conflict\ntxid=31\n"
			"record\nother=1\nrecord\npath=/x\n\n");
	ck_assert_int_eq(txfs_commit(f.cl, 0, &res), -ECANCELED);
	fake_expect(&f, "commit\n");
	ck_assert_uint_eq(res.txid, 31);
	/* The record without a path is skipped; the abort is what counts. */
	ck_assert_uint_eq(res.nconflicts, 1);
	ck_assert_str_eq(res.conflicts[0], "/x");
	txfs_commit_result_clear(&res);
	fake_close(&f);
}
END_TEST

START_TEST(commit_rejects_an_incomplete_ok_reply)
{
	static const char *const bad[] = {
		"ok\ntxid=9\nchanges=3\n\n",
		"ok\ntxid=9\nms=3\n\n",
		"ok\nchanges=3\nms=3\n\n",
		"ok\ntxid=0\nchanges=3\nms=3\n\n",
		"ok\ntxid=9\nchanges=three\nms=3\n\n",
	};
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fake_answer(&f, bad[i]);
		ck_assert_msg(txfs_commit(f.cl, 9, &res) == -EPROTO,
			      "accepted %s", bad[i]);
		fake_expect(&f, "commit txid=9\n");
		ck_assert_uint_eq(res.txid, 0);
		ck_assert_ptr_null(res.conflicts);
	}
	fake_close(&f);
}
END_TEST

START_TEST(commit_passes_other_errors_through_with_nothing_held)
{
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "err ENOENT no such transaction: 9\n"
			"record\npath=/ignored\n\n");
	ck_assert_int_eq(txfs_commit(f.cl, 9, &res), -ENOENT);
	fake_expect(&f, "commit txid=9\n");
	ck_assert_uint_eq(res.nconflicts, 0);
	ck_assert_ptr_null(res.conflicts);
	ck_assert_str_eq(txfs_last_message(f.cl), "no such transaction: 9");
	fake_close(&f);
}
END_TEST

START_TEST(recovery_reports_every_count)
{
	struct txfs_recovery r;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\nrecords=2\nsteps=17\nalready=3\nskipped=1\n"
			"discarded=4\nms=250\n\n");
	ck_assert_int_eq(txfs_recovery(f.cl, &r), 0);
	fake_expect(&f, "recovery\n");
	ck_assert_uint_eq(r.records, 2);
	ck_assert_uint_eq(r.steps, 17);
	ck_assert_uint_eq(r.already, 3);
	ck_assert_uint_eq(r.skipped, 1);
	ck_assert_uint_eq(r.discarded, 4);
	ck_assert_uint_eq(r.ms, 250);
	fake_close(&f);
}
END_TEST

START_TEST(recovery_rejects_a_missing_count_and_passes_enosys)
{
	struct txfs_recovery r;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\nrecords=2\nsteps=17\nalready=3\nskipped=1\n"
			"ms=250\n\n");
	ck_assert_int_eq(txfs_recovery(f.cl, &r), -EPROTO);
	ck_assert_uint_eq(r.records, 0);
	fake_expect(&f, "recovery\n");
	/* A daemon older than the verb. */
	fake_answer(&f, "err ENOSYS unknown request 'recovery'\n\n");
	ck_assert_int_eq(txfs_recovery(f.cl, &r), -ENOSYS);
	fake_close(&f);
}
END_TEST

START_TEST(abort_names_the_transaction_or_none)
{
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=4\n\n");
	ck_assert_int_eq(txfs_abort(f.cl, 4), 0);
	fake_expect(&f, "abort txid=4\n");
	fake_answer(&f, "err ENOENT not in a transaction\n\n");
	ck_assert_int_eq(txfs_abort(f.cl, 0), -ENOENT);
	fake_expect(&f, "abort\n");
	fake_close(&f);
}
END_TEST

START_TEST(bind_sends_txid_and_pid_defaulting_to_the_caller)
{
	char want[64];
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\n\n");
	ck_assert_int_eq(txfs_bind(f.cl, 8, 4321), 0);
	fake_expect(&f, "bind txid=8 pid=4321\n");
	fake_answer(&f, "err ESRCH no such process\n\n");
	ck_assert_int_eq(txfs_bind(f.cl, 8, 0), -ESRCH);
	snprintf(want, sizeof(want), "bind txid=8 pid=%ld\n", (long)getpid());
	fake_expect(&f, want);
	ck_assert_int_eq(txfs_bind(f.cl, 0, 4321), -EINVAL);
	fake_expect_nothing(&f);
	fake_close(&f);
}
END_TEST

/* One list record with every field, for txid n. */
#define LIST_RECORD(n)                                                         \
	"record\ntxid=" #n "\nuid=1000\nleader=" #n "00\nlabel=job%20" #n      \
	"\nstarted=1700000000\nage=" #n "\nstate=open\nchanges=" #n            \
	"\nmembers=2\n"

START_TEST(list_parses_every_record_in_order)
{
	struct txfs_tx_info *list = NULL;
	struct fake f;
	size_t n = 0;

	fake_open(&f);
	fake_answer(&f, "ok\n" LIST_RECORD(3) LIST_RECORD(5) "\n");
	ck_assert_int_eq(txfs_list(f.cl, &list, &n), 0);
	fake_expect(&f, "list\n");
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(list[0].txid, 3);
	ck_assert_uint_eq(list[1].txid, 5);
	ck_assert_uint_eq(list[1].uid, 1000);
	ck_assert_int_eq(list[1].leader, 500);
	ck_assert_str_eq(list[1].label, "job 5");
	ck_assert_int_eq(list[1].started, 1700000000);
	ck_assert_uint_eq(list[1].age, 5);
	ck_assert_str_eq(list[1].state, "open");
	ck_assert_uint_eq(list[1].changes, 5);
	ck_assert_uint_eq(list[1].members, 2);
	ck_assert_uint_eq(list[1].npaths, 0);
	txfs_tx_list_free(list, n);
	fake_close(&f);
}
END_TEST

START_TEST(list_of_nothing_is_empty)
{
	struct txfs_tx_info *list = (struct txfs_tx_info *)&list;
	struct fake f;
	size_t n = 7;

	fake_open(&f);
	fake_answer(&f, "ok\n\n");
	ck_assert_int_eq(txfs_list(f.cl, &list, &n), 0);
	ck_assert_ptr_null(list);
	ck_assert_uint_eq(n, 0);
	fake_close(&f);
}
END_TEST

/* A list record; state is its "state=" line, or "" to leave it out. */
#define RECORD(txid, uid, label, state)                                        \
	"record\ntxid=" txid "\nuid=" uid "\nleader=1\nlabel=" label           \
	"\nstarted=1\nage=1\n" state "changes=0\nmembers=1\n"

START_TEST(list_fails_whole_when_one_record_is_bad)
{
	static const char *const bad[] = {
		("ok\n" LIST_RECORD(3) "record\ntxid=4\n\n"),
		("ok\n" LIST_RECORD(3)
		     RECORD("4", "4294967296", "", "state=open\n") "\n"),
		("ok\n" LIST_RECORD(3) RECORD("4", "1", "", "") "\n"),
		("ok\n" RECORD("4", "1", "a%00b", "state=open\n") "\n"),
		("ok\n" RECORD("0", "1", "", "state=open\n") "\n"),
	};
	struct fake f;

	fake_open(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct txfs_tx_info *list = (struct txfs_tx_info *)&list;
		size_t n = 7;

		fake_answer(&f, bad[i]);
		ck_assert_msg(txfs_list(f.cl, &list, &n) == -EPROTO,
			      "accepted %s", bad[i]);
		fake_expect(&f, "list\n");
		ck_assert_ptr_null(list);
		ck_assert_uint_eq(n, 0);
	}
	fake_close(&f);
}
END_TEST

START_TEST(show_reports_the_fields_and_changed_paths)
{
	struct txfs_tx_info tx;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=12\nuid=0\nleader=99\nlabel=\n"
			"started=1700000000\nage=61\nstate=committing\n"
			"changes=2\nmembers=0\n"
			"record\npath=/a\nchange=modified\n"
			"record\npath=/b/c\nchange=created\n\n");
	ck_assert_int_eq(txfs_show(f.cl, 12, &tx), 0);
	fake_expect(&f, "show txid=12\n");
	ck_assert_uint_eq(tx.txid, 12);
	ck_assert_str_eq(tx.label, "");
	ck_assert_str_eq(tx.state, "committing");
	ck_assert_uint_eq(tx.age, 61);
	ck_assert_uint_eq(tx.npaths, 2);
	ck_assert_str_eq(tx.paths[0], "/a");
	ck_assert_str_eq(tx.kinds[0], "modified");
	ck_assert_str_eq(tx.paths[1], "/b/c");
	ck_assert_str_eq(tx.kinds[1], "created");
	txfs_tx_info_clear(&tx);
	ck_assert_ptr_null(tx.paths);
	ck_assert_ptr_null(tx.label);
	fake_close(&f);
}
END_TEST

START_TEST(show_rejects_a_changed_object_without_its_kind)
{
	struct txfs_tx_info tx;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "ok\ntxid=12\nuid=0\nleader=99\nlabel=x\n"
			"started=1\nage=1\nstate=open\nchanges=2\nmembers=1\n"
			"record\npath=/a\nchange=modified\n"
			"record\npath=/b\n\n");
	ck_assert_int_eq(txfs_show(f.cl, 0, &tx), -EPROTO);
	fake_expect(&f, "show\n");
	ck_assert_ptr_null(tx.paths);
	ck_assert_ptr_null(tx.label);
	ck_assert_uint_eq(tx.npaths, 0);

	fake_answer(&f, "err EPERM transaction 12 belongs to another user\n\n");
	ck_assert_int_eq(txfs_show(f.cl, 12, &tx), -EPERM);
	fake_expect(&f, "show txid=12\n");
	ck_assert_ptr_null(tx.label);
	fake_close(&f);
}
END_TEST

START_TEST(diff_parses_every_kind_of_change)
{
	struct txfs_change *c = NULL;
	struct fake f;
	size_t n = 0;

	fake_open(&f);
	fake_answer(&f, "ok\n"
			"record\nchange=A\npath=/a%20b\ntype=f\n"
			"new_file=/state/7/1\n"
			"record\nchange=D\npath=/d\ntype=d\nold_file=/src/d\n"
			"record\nchange=M\npath=/m\ntype=f\nmode_changed=1\n"
			"old_file=/src/m\nnew_file=/state/7/2\n"
			"record\nchange=R\npath=/new\nold=/old\ntype=l\n"
			"mode_changed=0\nold_file=/src/old\n"
			"new_file=/src/new\n"
			"record\nchange=T\npath=/t\ntype=p\nold_file=/src/t\n"
			"new_file=/state/7/3\n\n");
	ck_assert_int_eq(txfs_diff(f.cl, 7, &c, &n), 0);
	fake_expect(&f, "diff txid=7\n");
	ck_assert_uint_eq(n, 5);

	ck_assert_int_eq(c[0].change, 'A');
	ck_assert_str_eq(c[0].path, "/a b");
	ck_assert_int_eq(c[0].type, 'f');
	ck_assert(!c[0].mode_changed);
	ck_assert_ptr_null(c[0].old);
	ck_assert_ptr_null(c[0].old_file);
	ck_assert_str_eq(c[0].new_file, "/state/7/1");

	ck_assert_int_eq(c[1].change, 'D');
	ck_assert_int_eq(c[1].type, 'd');
	ck_assert_str_eq(c[1].old_file, "/src/d");
	ck_assert_ptr_null(c[1].new_file);

	ck_assert_int_eq(c[2].change, 'M');
	ck_assert(c[2].mode_changed);
	ck_assert_str_eq(c[2].old_file, "/src/m");
	ck_assert_str_eq(c[2].new_file, "/state/7/2");

	ck_assert_int_eq(c[3].change, 'R');
	ck_assert_str_eq(c[3].path, "/new");
	ck_assert_str_eq(c[3].old, "/old");
	ck_assert_int_eq(c[3].type, 'l');
	ck_assert(!c[3].mode_changed);

	ck_assert_int_eq(c[4].change, 'T');
	ck_assert_int_eq(c[4].type, 'p');
	txfs_changes_free(c, n);
	fake_close(&f);
}
END_TEST

START_TEST(diff_of_own_transaction_without_changes_is_empty)
{
	struct txfs_change *c = (struct txfs_change *)&c;
	struct fake f;
	size_t n = 7;

	fake_open(&f);
	fake_answer(&f, "ok\n\n");
	ck_assert_int_eq(txfs_diff(f.cl, 0, &c, &n), 0);
	fake_expect(&f, "diff\n");
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(n, 0);
	fake_close(&f);
}
END_TEST

START_TEST(diff_tolerates_versions_the_daemon_cannot_name)
{
	struct txfs_change *c = NULL;
	struct fake f;
	size_t n = 0;

	fake_open(&f);
	fake_answer(&f, "ok\nrecord\nchange=M\npath=/m\ntype=f\n\n");
	ck_assert_int_eq(txfs_diff(f.cl, 3, &c, &n), 0);
	fake_expect(&f, "diff txid=3\n");
	ck_assert_uint_eq(n, 1);
	ck_assert_ptr_null(c[0].old_file);
	ck_assert_ptr_null(c[0].new_file);
	txfs_changes_free(c, n);
	fake_close(&f);
}
END_TEST

/* A good diff record, to put before a bad one. */
#define GOOD_CHANGE "record\nchange=A\npath=/ok\ntype=f\nnew_file=/s/ok\n"

START_TEST(diff_fails_whole_when_one_record_is_malformed)
{
	static const char *const bad[] = {
		"ok\n" GOOD_CHANGE "record\npath=/x\ntype=f\n\n",
		"ok\n" GOOD_CHANGE "record\nchange=X\npath=/x\ntype=f\n\n",
		"ok\n" GOOD_CHANGE "record\nchange=MM\npath=/x\ntype=f\n\n",
		"ok\n" GOOD_CHANGE "record\nchange=\npath=/x\ntype=f\n\n",
		"ok\n" GOOD_CHANGE "record\nchange=%00\npath=/x\ntype=f\n\n",
		"ok\nrecord\nchange=M\ntype=f\n\n",
		"ok\nrecord\nchange=M\npath=\ntype=f\n\n",
		"ok\nrecord\nchange=M\npath=/a%00b\ntype=f\n\n",
		"ok\nrecord\nchange=M\npath=/x\n\n",
		"ok\nrecord\nchange=M\npath=/x\ntype=x\n\n",
		"ok\nrecord\nchange=M\npath=/x\ntype=f\nmode_changed=yes\n\n",
		"ok\nrecord\nchange=M\npath=/x\ntype=f\nmode_changed=\n\n",
		"ok\nrecord\nchange=M\npath=/x\ntype=f\nold_file=rel\n\n",
		"ok\nrecord\nchange=M\npath=/x\ntype=f\nnew_file=\n\n",
	};
	struct fake f;

	fake_open(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct txfs_change *c = (struct txfs_change *)&c;
		size_t n = 7;

		fake_answer(&f, bad[i]);
		ck_assert_msg(txfs_diff(f.cl, 2, &c, &n) == -EPROTO,
			      "accepted %s", bad[i]);
		fake_expect(&f, "diff txid=2\n");
		ck_assert_ptr_null(c);
		ck_assert_uint_eq(n, 0);
	}
	fake_close(&f);
}
END_TEST

START_TEST(diff_rejects_fields_that_contradict_the_change)
{
	static const char *const bad[] = {
		/* A rename without its old path, or another with one. */
		"ok\nrecord\nchange=R\npath=/x\ntype=f\n\n",
		"ok\nrecord\nchange=R\npath=/x\nold=\ntype=f\n\n",
		"ok\nrecord\nchange=M\npath=/x\nold=/y\ntype=f\n\n",
		/* A base version of an added object, a new one of a deleted. */
		"ok\nrecord\nchange=A\npath=/x\ntype=f\nold_file=/s/x\n\n",
		"ok\nrecord\nchange=D\npath=/x\ntype=f\nnew_file=/s/x\n\n",
	};
	struct fake f;

	fake_open(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct txfs_change *c = (struct txfs_change *)&c;
		size_t n = 7;

		fake_answer(&f, bad[i]);
		ck_assert_msg(txfs_diff(f.cl, 0, &c, &n) == -EPROTO,
			      "accepted %s", bad[i]);
		fake_expect(&f, "diff\n");
		ck_assert_ptr_null(c);
		ck_assert_uint_eq(n, 0);
	}
	fake_close(&f);
}
END_TEST

START_TEST(diff_returns_the_daemons_errno_and_message)
{
	struct txfs_change *c = (struct txfs_change *)&c;
	struct fake f;
	size_t n = 7;

	fake_open(&f);
	fake_answer(&f, "err ENOENT not in a transaction\n\n");
	ck_assert_int_eq(txfs_diff(f.cl, 0, &c, &n), -ENOENT);
	fake_expect(&f, "diff\n");
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(n, 0);
	ck_assert_str_eq(txfs_last_message(f.cl), "not in a transaction");

	fake_answer(&f, "err EPERM transaction 5 belongs to another user\n"
			"record\nchange=A\npath=/x\ntype=f\n\n");
	ck_assert_int_eq(txfs_diff(f.cl, 5, &c, &n), -EPERM);
	fake_expect(&f, "diff txid=5\n");
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(n, 0);
	fake_close(&f);
}
END_TEST

START_TEST(transport_failure_leaves_no_daemon_message)
{
	struct txfs_commit_result res;
	struct fake f;

	fake_open(&f);
	fake_answer(&f, "err EBUSY busy\n\n");
	ck_assert_int_eq(txfs_abort(f.cl, 3), -EBUSY);
	ck_assert_str_eq(txfs_last_message(f.cl), "busy");
	close(f.sfd);
	f.sfd = -1;
	ck_assert_int_lt(txfs_commit(f.cl, 3, &res), 0);
	ck_assert_ptr_null(txfs_last_message(f.cl));
	ck_assert_ptr_null(res.conflicts);
	fake_close(&f);
}
END_TEST

static Suite *txfs_client_suite(void)
{
	Suite *s = suite_create("txfs_client");
	TCase *tc;

	tc = tcase_create("begin");
	tcase_add_test(tc, begin_sends_pid_label_and_abort_on_close);
	tcase_add_test(tc, begin_without_pid_or_label_sends_no_arguments);
	tcase_add_test(tc, begin_rejects_a_missing_or_malformed_txid);
	tcase_add_test(tc,
		       begin_returns_the_daemons_errno_and_keeps_its_message);
	tcase_add_test(tc,
		       begin_refuses_unknown_flags_and_negative_pids_unsent);
	suite_add_tcase(s, tc);

	tc = tcase_create("commit");
	tcase_add_test(tc, commit_reports_txid_changes_and_time);
	tcase_add_test(tc, commit_conflict_lists_the_paths);
	tcase_add_test(
	    tc, commit_conflict_of_own_transaction_takes_txid_from_reply);
	tcase_add_test(tc, commit_rejects_an_incomplete_ok_reply);
	tcase_add_test(tc,
		       commit_passes_other_errors_through_with_nothing_held);
	tcase_add_test(tc, abort_names_the_transaction_or_none);
	tcase_add_test(tc, bind_sends_txid_and_pid_defaulting_to_the_caller);
	tcase_add_test(tc, transport_failure_leaves_no_daemon_message);
	suite_add_tcase(s, tc);

	tc = tcase_create("inspect");
	tcase_add_test(tc, list_parses_every_record_in_order);
	tcase_add_test(tc, list_of_nothing_is_empty);
	tcase_add_test(tc, list_fails_whole_when_one_record_is_bad);
	tcase_add_test(tc, show_reports_the_fields_and_changed_paths);
	tcase_add_test(tc, show_rejects_a_changed_object_without_its_kind);
	suite_add_tcase(s, tc);

	tc = tcase_create("diff");
	tcase_add_test(tc, diff_parses_every_kind_of_change);
	tcase_add_test(tc, diff_of_own_transaction_without_changes_is_empty);
	tcase_add_test(tc, diff_tolerates_versions_the_daemon_cannot_name);
	tcase_add_test(tc, diff_fails_whole_when_one_record_is_malformed);
	tcase_add_test(tc, diff_rejects_fields_that_contradict_the_change);
	tcase_add_test(tc, diff_returns_the_daemons_errno_and_message);
	tcase_add_test(tc, recovery_reports_every_count);
	tcase_add_test(tc, recovery_rejects_a_missing_count_and_passes_enosys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(txfs_client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
