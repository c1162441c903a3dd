/*
 * cmd_run.c: txctl run [--abort-always] [--label TEXT] [--] COMMAND
 * [ARG...], which runs a command inside a new transaction, then commits
 * the transaction when the command succeeds and aborts it otherwise.
 *
 * txctl itself is the transaction's leader, so the command and everything
 * it starts are members.  It makes itself a child subreaper, so that the
 * orphans of double forks are re-parented to it rather than to init.  The
 * connection to the daemon stays open until the end, and the transaction
 * is begun with abort_on_close, so killing txctl aborts it.
 *
 * States, and the function behind each transition:
 *
 *   CONNECTED -> BEGUN    [run_run: txfs_begin, the signals blocked]
 *   BEGUN     -> RUNNING  [start_command: fork; the child execs COMMAND]
 *   BEGUN     -> ENDING   [early_signal: txctl was signalled before that]
 *   RUNNING   -> ENDING   [wait_command: the command exited]
 *   ENDING    -> done     [finish: txfs_commit or txfs_abort]
 *
 * Invariants:
 *   (1) From BEGUN on, SIGCHLD has its default disposition, and it and
 *       the forwarded signals are blocked and read only from the
 *       signalfd, so none of them can end txctl while the transaction is
 *       open; only SIGKILL can, and abort_on_close covers it.
 *   (2) In RUNNING, a forwarded signal is sent to the command unless the
 *       command already got it (see should_forward); once the command has
 *       exited, signals are left pending and ignored.
 *   (3) The command is the only child waited for by pid; every other child
 *       reaped is an orphan it left behind, reaped while the command runs
 *       and never waited for before the transaction ends.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "txctl.h"

/* The signals txctl passes on to the command instead of dying of them. */
static const int forwarded[] = {
	SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
};

#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

/* What txctl changes of the signal state it was started with. */
struct inherited {
	sigset_t mask;	       /* the signal mask */
	struct sigaction chld; /* the disposition of SIGCHLD */
};

/*
 * Whether a signal txctl received should be sent on to the command.  Not
 * when the terminal sent it to the whole foreground process group and the
 * command is in txctl's group (it got the signal too), nor when it comes
 * from the command itself.
 */
static bool should_forward(const struct signalfd_siginfo *si, pid_t child)
{
	if (si->ssi_code == SI_KERNEL && getpgid(child) == getpgrp())
		return false;
	return (pid_t)si->ssi_pid != child;
}

/*
 * Takes the signals that arrived after the transaction began and before
 * the command could start.  Returns the first that would have ended
 * txctl, or 0 when there is none.
 */
static int early_signal(int sfd)
{
	struct pollfd p = { .fd = sfd, .events = POLLIN };
	struct signalfd_siginfo si;

	while (poll(&p, 1, 0) > 0) {
		if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			return 0;
		if (si.ssi_signo != SIGWINCH && si.ssi_signo != SIGCHLD)
			return (int)si.ssi_signo;
	}
	return 0;
}

/* In the child: tells the parent (through report) that err ended it. */
static void child_fail(int report, int err, int code)
{
	ssize_t n = write(report, &err, sizeof(err));

	(void)n; /* the exit status tells the same */
	_exit(code);
}

/*
 * In the child: sets up and executes the command.  Does not return.  On
 * failure it says why, and writes the errno to report (a close-on-exec
 * pipe) so that the parent need not say it again.
 */
static void exec_command(char **argv, uint64_t txid,
			 const struct inherited *inh, int report)
{
	char num[24];
	int err;

	snprintf(num, sizeof(num), "%" PRIu64, txid);
	if (setenv("TXFS_TXID", num, 1) != 0) {
		err = errno;
		txctl_err("cannot set TXFS_TXID: %s", strerror(err));
		child_fail(report, err, 126);
	}
	/* The command gets the signal state txctl got. */
	sigaction(SIGCHLD, &inh->chld, NULL);
	sigprocmask(SIG_SETMASK, &inh->mask, NULL);
	execvp(argv[0], argv);
	err = errno;
	txctl_err("cannot run %s: %s", argv[0], strerror(err));
	child_fail(report, err, err == ENOENT || err == ENOTDIR ? 127 : 126);
}

/*
 * Forks the command and waits until it has been executed.  Returns its
 * pid or -errno, and sets *failed when the child could not execute it.
 */
static pid_t start_command(char **argv, uint64_t txid,
			   const struct inherited *inh, bool *failed)
{
	int p[2], err;
	pid_t pid;
	ssize_t n;

	*failed = false;
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(p[0]);
		close(p[1]);
		return -err;
	}
	if (pid == 0) {
		close(p[0]);
		exec_command(argv, txid, inh, p[1]);
	}
	close(p[1]);
	while ((n = read(p[0], &err, sizeof(err))) < 0 && errno == EINTR)
		;
	*failed = n > 0;
	close(p[0]);
	return pid;
}

/* Reaps every child that has exited; true when the command is one. */
static bool reap(pid_t child, int *status)
{
	bool found = false;
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == child) {
			*status = st;
			found = true;
		}
	}
	return found;
}

/*
 * Waits for the command to exit, forwarding signals to it and reaping
 * orphans meanwhile, and stores its wait status.
 */
static void wait_command(int sfd, pid_t child, int *status)
{
	struct signalfd_siginfo si;
	ssize_t n;

	for (;;) {
		n = read(sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			break;
		if (si.ssi_signo != SIGCHLD) {
			if (should_forward(&si, child))
				kill(child, (int)si.ssi_signo);
			continue;
		}
		if (reap(child, status))
			return;
	}
	/* The signalfd failed: still wait, without forwarding. */
	txctl_err("cannot read signals: %s", n < 0 ? strerror(errno) : "?");
	while (waitpid(child, status, 0) < 0 && errno == EINTR)
		;
}

/* The exit code of the command, as a shell reports it. */
static int command_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return TXCTL_EXIT_ERROR;
}

/*
 * Ends the transaction: commits it when the command succeeded (code 0)
 * and the caller wants that, else aborts it.  Returns txctl's exit code.
 */
static int finish(struct txctl_ctx *ctx, uint64_t txid, int code, bool commit)
{
	struct txfs_commit_result res;
	int rc;

	txctl_wait_long(ctx);
	if (code == 0 && commit) {
		rc = txfs_commit(ctx->client, txid, &res);
		if (rc != 0) {
			rc = txctl_tx_failed(ctx, "commit", rc, txid, &res);
			if (rc != TXCTL_EXIT_CONFLICT)
				rc = TXCTL_EXIT_ERROR;
		}
		txfs_commit_result_clear(&res);
		return rc;
	}
	rc = txfs_abort(ctx->client, txid);
	/* A transaction someone else aborted meanwhile is just as gone. */
	if (rc == -ENOENT && txfs_last_message(ctx->client) != NULL)
		rc = 0;
	if (rc != 0) {
		txctl_tx_failed(ctx, "abort", rc, txid, NULL);
		return code != 0 ? code : TXCTL_EXIT_ERROR;
	}
	return code;
}

/* Says on stderr how the command ended, when that aborts. */
static void report_failure(const char *name, int status, uint64_t txid)
{
	if (WIFSIGNALED(status))
		txctl_err(
		    "%s was killed by signal %d (%s); transaction %" PRIu64
		    " was aborted",
		    name, WTERMSIG(status), strsignal(WTERMSIG(status)), txid);
	else
		txctl_err("%s failed with exit status %d; transaction %" PRIu64
			  " was aborted",
			  name, command_code(status), txid);
}

static int run_run(struct txctl_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "abort-always", no_argument, NULL, 'a' },
		{ "label", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *label = NULL;
	bool abort_always = false;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	struct inherited inh;
	sigset_t set;
	uint64_t txid;
	int c, rc, sfd, sig, status = 0;
	bool exec_failed;
	pid_t child;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			abort_always = true;
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
	if (optind >= argc)
		return txctl_usage_error(ctx->cmd, "missing command");
	argv += optind;

	rc = txctl_connect(ctx);
	if (rc != TXCTL_EXIT_OK)
		return rc;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
		txctl_err("cannot become a child subreaper: %s",
			  strerror(errno));
		return TXCTL_EXIT_ERROR;
	}
	sigemptyset(&set);
	for (size_t i = 0; i < NFORWARDED; i++)
		sigaddset(&set, forwarded[i]);
	sigaddset(&set, SIGCHLD);
	/* An ignored SIGCHLD would reap the command before txctl could. */
	sigaction(SIGCHLD, &dfl, &inh.chld);
	sigprocmask(SIG_BLOCK, &set, &inh.mask);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		txctl_err("cannot create a signalfd: %s", strerror(errno));
		return TXCTL_EXIT_ERROR;
	}

	rc = txfs_begin(ctx->client, getpid(), label, TXFS_BEGIN_ABORT_ON_CLOSE,
			&txid);
	if (rc != 0) {
		rc = txctl_request_failed(ctx, "begin", rc, NULL);
		goto out_close_sfd;
	}
	sig = early_signal(sfd);
	if (sig != 0) {
		txctl_err("interrupted by signal %d before %s started; "
			  "transaction %" PRIu64 " was aborted",
			  sig, argv[0], txid);
		rc = finish(ctx, txid, 128 + sig, false);
		goto out_close_sfd;
	}
	child = start_command(argv, txid, &inh, &exec_failed);
	if (child < 0) {
		txctl_err("cannot fork: %s", strerror((int)-child));
		rc = finish(ctx, txid, TXCTL_EXIT_ERROR, false);
		goto out_close_sfd;
	}
	wait_command(sfd, child, &status);
	if (command_code(status) != 0 && !abort_always && !exec_failed)
		report_failure(argv[0], status, txid);
	rc = finish(ctx, txid, command_code(status), !abort_always);

	/*
	 * The signals stay blocked until txctl exits: one that arrived after
	 * the command ended must not override the exit code.
	 */
out_close_sfd:
	close(sfd);
	return rc;
}

const struct txctl_cmd txctl_cmd_run = {
	.name = "run",
	.usage = "[--abort-always] [--label TEXT] [--] COMMAND [ARG...]",
	.summary = "run a command in a transaction, committed if it succeeds",
	.help = "  --abort-always  abort even when COMMAND succeeds\n"
		"  --label TEXT    a note shown by 'txctl list'\n"
		"\n"
		"COMMAND runs with TXFS_TXID set; txctl passes INT, TERM, "
		"HUP, QUIT,\n"
		"USR1, USR2 and WINCH on to it.  When it exits 0 the "
		"transaction is\n"
		"committed (exit status 3 on a conflict), else aborted, and "
		"txctl exits\n"
		"with its status (128+N when killed by signal N).  Killing "
		"txctl aborts.\n",
	.run = run_run,
};
