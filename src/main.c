/*
 * main.c: txfsd, the txfs daemon.
 *
 * Start-up runs in a fixed order so that every error a user can cause is
 * reported as one line on stderr before anything is mounted:
 *
 *   parse options -> check /dev/fuse -> open SOURCE -> check MOUNTPOINT
 *   -> open the state directory -> (daemonize) -> build the node table
 *   -> mount -> start the control socket -> report ready -> serve
 *
 * Daemonizing forks before any thread exists.  The parent waits on a pipe
 * until the child reports that the mount and the control socket are up (or
 * why they are not), so `txfsd SRC MNT && txctl status` never races.
 *
 * Shutdown: SIGTERM, SIGINT and SIGHUP end the FUSE loop (libfuse's signal
 * handlers), as does `fusermount3 -u`; then the control socket stops, the
 * file system is unmounted and everything is freed.
 */
#include "config.h"

#include "control.h"
#include "crash.h"
#include "fs_ops.h"
#include "handle.h"
#include "journal.h"
#include "log.h"
#include "membership.h"
#include "node.h"
#include "statedir.h"
#include "stm.h"
#include "tx.h"
#include "txcmd.h"
#include "txfs.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_THREADS	 8
#define DEFAULT_FD_CACHE 8192

struct options {
	bool foreground;
	bool debug;
	char *fuse_opts; /* comma-separated, as given with -o */
	const char *state_dir;
	const char *socket;
	int threads;
	size_t fd_cache;
	double timeout;
	const char *source;
	const char *mountpoint;
};

static const char usage_text[] =
    "usage: txfsd [options] SOURCE MOUNTPOINT\n"
    "\n"
    "Serves SOURCE at MOUNTPOINT through FUSE (SOURCE may equal "
    "MOUNTPOINT).\n"
    "\n"
    "options:\n"
    "  -f                  stay in the foreground, log to stderr\n"
    "  -d                  debug logging (implies -f)\n"
    "  -o OPT[,OPT...]     FUSE mount options (allow_other, "
    "default_permissions, ...)\n"
    "  --state-dir DIR     state directory (default SOURCE/.txfs)\n"
    "  --socket PATH       control socket (default /run/txfs/NAME-HASH.sock)\n"
    "  --threads N         maximum FUSE worker threads (default 8)\n"
    "  --fd-cache N        cached descriptors (default 8192)\n"
    "  --cache-timeout S   seconds the kernel may cache names and "
    "attributes outside transactions (default 0)\n"
    "  --crash-points      list the crash points TXFS_CRASH can arm, and "
    "exit\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n";

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("txfsd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Appends one option to the -o list. */
static void add_fuse_opt(struct options *o, const char *opt)
{
	size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *s = realloc(o->fuse_opts, old + strlen(opt) + 2);

	if (s == NULL)
		die("out of memory");
	if (old > 0)
		s[old++] = ',';
	strcpy(s + old, opt);
	o->fuse_opts = s;
}

/* Returns true when the -o list holds exactly this option. */
static bool has_fuse_opt(const struct options *o, const char *opt)
{
	size_t len = strlen(opt);
	const char *p = o->fuse_opts;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == len && strncmp(p, opt, len) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static long parse_number(const char *what, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
		die("invalid %s '%s' (expected %ld to %ld)", what, s, min, max);
	return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum {
		OPT_STATE_DIR = 256,
		OPT_SOCKET,
		OPT_THREADS,
		OPT_FD_CACHE,
		OPT_TIMEOUT,
		OPT_CRASH_POINTS
	};
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "fd-cache", required_argument, NULL, OPT_FD_CACHE },
		{ "cache-timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "crash-points", no_argument, NULL, OPT_CRASH_POINTS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->threads = DEFAULT_THREADS;
	o->fd_cache = DEFAULT_FD_CACHE;
	o->timeout = 0;
	while ((c = getopt_long(argc, argv, "+fdo:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			o->foreground = true;
			break;
		case 'o':
			add_fuse_opt(o, optarg);
			break;
		case OPT_STATE_DIR:
			o->state_dir = optarg;
			break;
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_THREADS:
			o->threads =
			    (int)parse_number("thread count", optarg, 1, 256);
			break;
		case OPT_FD_CACHE:
			o->fd_cache = (size_t)parse_number(
			    "descriptor cache size", optarg, 64, 1 << 20);
			break;
		case OPT_TIMEOUT: {
			char *end;
			o->timeout = strtod(optarg, &end);
			if (*end != '\0' || end == optarg || o->timeout < 0 ||
			    o->timeout > 86400)
				die("invalid cache timeout '%s'", optarg);
			break;
		}
		case OPT_CRASH_POINTS:
			crash_list(stdout);
			exit(0);
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("txfsd %s\n", TXFS_VERSION);
			exit(0);
		default:
			fputs(usage_text, stderr);
			exit(2);
		}
	}
	if (argc - optind != 2) {
		fputs(usage_text, stderr);
		exit(2);
	}
	o->source = argv[optind];
	o->mountpoint = argv[optind + 1];
}

/* Everything the daemon owns, torn down in reverse order. */
struct daemon {
	struct options opt;
	char source[PATH_MAX];
	char mountpoint[PATH_MAX];
	char socket[PATH_MAX];
	int source_fd;
	struct statedir *state;
	struct journal *journal;
	struct membership *members;
	struct node_table *nodes;
	struct tx_table *tx;
	struct view_table *views;
	struct fs *fs;
	struct fuse_session *se;
	struct control *ctl;
	struct txcmd *txcmd;
	int ready_fd; /* pipe to the waiting parent, or -1 */
};

/* Checks what can be checked before forking; dies with one line. */
static void check_startup(struct daemon *d)
{
	char why[PATH_MAX + 256];
	char found[PATH_MAX];
	struct stat st;
	int fd, ret;

	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("cannot open /dev/fuse: %s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) ||
	    st.st_rdev != makedev(10, 229))
		die("cannot use /dev/fuse: not the FUSE device");
	close(fd);

	if (realpath(d->opt.source, d->source) == NULL)
		die("cannot use source %s: %s", d->opt.source, strerror(errno));
	d->source_fd = open(d->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->source_fd < 0)
		die("cannot open source %s: %s", d->source, strerror(errno));

	if (stat(d->opt.mountpoint, &st) < 0) {
		if (errno == ENOTCONN)
			die("mount point %s is a dead FUSE mount (run "
			    "'fusermount3 -u %s' first)",
			    d->opt.mountpoint, d->opt.mountpoint);
		die("cannot use mount point %s: %s", d->opt.mountpoint,
		    strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		die("cannot use mount point %s: %s", d->opt.mountpoint,
		    strerror(ENOTDIR));
	if (realpath(d->opt.mountpoint, d->mountpoint) == NULL)
		die("cannot use mount point %s: %s", d->opt.mountpoint,
		    strerror(errno));
	if (txfs_find_mount(d->mountpoint, found, sizeof(found)) == 0 &&
	    strcmp(found, d->mountpoint) == 0)
		die("%s is already a txfs mount", d->mountpoint);

	ret = statedir_open(d->source, d->source_fd, d->opt.state_dir,
			    &d->state, why, sizeof(why));
	if (ret < 0)
		die("%s", why);
	ret = journal_open(statedir_fd(d->state), statedir_path(d->state),
			   &d->journal, why, sizeof(why));
	if (ret < 0)
		die("%s", why);

	if (d->opt.socket != NULL) {
		if (strlen(d->opt.socket) >= sizeof(d->socket))
			die("socket path too long: %s", d->opt.socket);
		strcpy(d->socket, d->opt.socket);
	} else {
		ret = txfs_default_socket(d->mountpoint, d->socket,
					  sizeof(d->socket));
		if (ret < 0)
			die("cannot derive a socket path for %s: %s",
			    d->mountpoint, strerror(-ret));
	}
}

/*
 * Forks; the parent waits for the child's report and exits with it.
 * The child returns with d->ready_fd set.
 */
static void daemonize(struct daemon *d)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("cannot create a pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("cannot fork: %s", strerror(errno));
	if (pid > 0) {
		close(pfd[1]);
		/* The child writes '0' when serving; errors went to stderr. */
		ssize_t n = read(pfd[0], &c, 1);
		_exit(n == 1 && c == '0' ? 0 : 1);
	}
	close(pfd[0]);
	d->ready_fd = pfd[1];
	if (setsid() < 0)
		die("cannot start a session: %s", strerror(errno));
}

/* Tells the waiting parent (if any) that we serve; detaches stdio. */
static void report_ready(struct daemon *d)
{
	int nullfd;

	if (d->ready_fd < 0)
		return;
	if (chdir("/") < 0)
		log_warn("cannot change directory to /: %s", strerror(errno));
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nullfd >= 0) {
		dup2(nullfd, STDIN_FILENO);
		dup2(nullfd, STDOUT_FILENO);
		dup2(nullfd, STDERR_FILENO);
		close(nullfd);
	}
	if (write(d->ready_fd, "0", 1) != 1)
		log_warn("cannot report readiness: %s", strerror(errno));
	close(d->ready_fd);
	d->ready_fd = -1;
}

/* Lets the descriptor cache and open files use the whole hard limit. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open-file limit: %s",
				 strerror(errno));
	}
}

/*
 * Returns a copy of s with ',' and '\\' escaped for a FUSE option list
 * (fuse_opt splits on unescaped commas), or NULL without memory.
 */
static char *escape_opt(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *p = out;

	if (out == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

static int start_fuse(struct daemon *d)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fs_config cfg = {
		.nodes = d->nodes,
		.state = d->state,
		.tx = d->tx,
		.views = d->views,
		.entry_timeout = d->opt.timeout,
		.attr_timeout = d->opt.timeout,
	};
	char *opts = NULL, *fsname;
	int ret;

	ret = fs_new(&cfg, &d->fs);
	if (ret < 0)
		return ret;
	/* Another user reaching a root daemon must meet the kernel's checks. */
	if (has_fuse_opt(&d->opt, "allow_other") &&
	    !has_fuse_opt(&d->opt, "default_permissions"))
		add_fuse_opt(&d->opt, "default_permissions");
	fsname = escape_opt(d->source);
	if (fsname == NULL)
		return -ENOMEM;
	ret = asprintf(&opts, "fsname=%s,subtype=txfs%s%s", fsname,
		       d->opt.fuse_opts ? "," : "",
		       d->opt.fuse_opts ? d->opt.fuse_opts : "");
	free(fsname);
	if (ret < 0)
		return -ENOMEM;
	if (fuse_opt_add_arg(&args, "txfsd") != 0 ||
	    fuse_opt_add_arg(&args, "-o") != 0 ||
	    fuse_opt_add_arg(&args, opts) != 0) {
		free(opts);
		fuse_opt_free_args(&args);
		return -ENOMEM;
	}
	free(opts);
	d->se = fuse_session_new(&args, fs_ops_table(),
				 sizeof(struct fuse_lowlevel_ops), d->fs);
	fuse_opt_free_args(&args);
	if (d->se == NULL)
		return -EINVAL;
	/*
	 * libfuse installs its handlers only over default dispositions, and a
	 * shell starts background jobs with SIGINT ignored: reset them so
	 * every stop signal ends the daemon cleanly.
	 */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (fuse_set_signal_handlers(d->se) != 0)
		return -EIO;
	if (fuse_session_mount(d->se, d->mountpoint) != 0)
		return -EIO;
	return 0;
}

static void teardown(struct daemon *d)
{
	control_stop(d->ctl);
	txcmd_stop(d->txcmd);
	if (d->se != NULL) {
		fuse_session_unmount(d->se);
		fuse_remove_signal_handlers(d->se);
		fuse_session_destroy(d->se);
	}
	fs_free(d->fs);
	/* Open transactions are aborted: a restart would abort them anyway. */
	tx_table_free(d->tx);
	view_table_free(d->views);
	membership_free(d->members);
	node_table_free(d->nodes);
	handle_shutdown();
	journal_close(d->journal);
	statedir_close(d->state);
	if (d->source_fd >= 0)
		close(d->source_fd);
	free(d->opt.fuse_opts);
}

int main(int argc, char **argv)
{
	struct daemon d = { .source_fd = -1, .ready_fd = -1 };
	struct fuse_loop_config *loop;
	struct control_info info;
	int ret, root_fd;

	parse_options(argc, argv, &d.opt);
	log_setup("txfsd", LOG_TARGET_STDERR,
		  d.opt.debug ? LOG_DEBUG : LOG_INFO);
	{
		char why[256];
		if (crash_init(why, sizeof(why)) < 0)
			die("%s", why);
	}
	check_startup(&d);
	if (!d.opt.foreground)
		daemonize(&d);
	raise_fd_limit();

	root_fd = fcntl(d.source_fd, F_DUPFD_CLOEXEC, 3);
	if (root_fd < 0)
		die("cannot duplicate the source descriptor: %s",
		    strerror(errno));
	ret = node_table_new(root_fd, d.opt.fd_cache, &d.nodes);
	if (ret < 0)
		die("cannot create the node table: %s", strerror(-ret));
	ret = membership_new(true, &d.members);
	if (ret < 0)
		die("cannot track process membership: %s", strerror(-ret));
	ret = view_table_new(&d.views);
	if (ret < 0)
		die("cannot create the view table: %s", strerror(-ret));
	struct tx_config txc = {
		.views = d.views,
		.nodes = d.nodes,
		.state = d.state,
		.journal = d.journal,
		.members = d.members,
		.source_path = d.source,
	};
	/* Recovery runs here, before the mount comes up. */
	ret = tx_table_new(&txc, &d.tx);
	if (ret < 0)
		die("cannot recover the transaction state in %s: %s",
		    statedir_path(d.state), strerror(-ret));
	ret = start_fuse(&d);
	if (ret < 0) {
		teardown(&d);
		die("cannot mount %s", d.mountpoint);
	}

	info = (struct control_info){
		.source = d.source,
		.mountpoint = d.mountpoint,
		.state_dir = statedir_path(d.state),
		.socket_path = d.socket,
		.pid = getpid(),
	};
	clock_gettime(CLOCK_REALTIME, &info.started);
	ret = control_start(&info, 0600, &d.ctl);
	if (ret < 0) {
		teardown(&d);
		die("cannot serve the control socket %s: %s", d.socket,
		    strerror(-ret));
	}
	struct txcmd_config tcc = {
		.control = d.ctl,
		.tx = d.tx,
		.cache_deadline = fs_cache_deadline,
		.cache_arg = d.fs,
	};
	ret = txcmd_start(&tcc, &d.txcmd);
	if (ret < 0) {
		teardown(&d);
		die("cannot serve the transaction verbs: %s", strerror(-ret));
	}

	if (!d.opt.foreground)
		log_setup("txfsd", LOG_TARGET_SYSLOG,
			  d.opt.debug ? LOG_DEBUG : LOG_INFO);
	log_info("serving %s at %s (state %s, socket %s)", d.source,
		 d.mountpoint, statedir_path(d.state), d.socket);
	report_ready(&d);

	loop = fuse_loop_cfg_create();
	if (loop == NULL) {
		teardown(&d);
		return 1;
	}
	fuse_loop_cfg_set_clone_fd(loop, 1);
	fuse_loop_cfg_set_max_threads(loop, (unsigned)d.opt.threads);
	fuse_loop_cfg_set_idle_threads(loop, (unsigned)d.opt.threads);
	ret = fuse_session_loop_mt(d.se, loop);
	fuse_loop_cfg_destroy(loop);
	log_info("unmounting %s", d.mountpoint);
	teardown(&d);
	return ret < 0 ? 1 : 0;
}
