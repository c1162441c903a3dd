/*
 * Unit tests for tx.c: transactions, copy-up, commit, abort and recovery.
 *
 * Every test builds the daemon's modules without FUSE on a fresh SOURCE
 * directory under /tmp: a node table rooted at SOURCE, the state
 * directory SOURCE/.txfs, its journal, a /proc-mode membership map and the
 * transaction table.  Base nodes are looked up the way fs_ops does
 * (node_lookup, then node_set_name to remember the name).  Members are
 * child processes that only sleep; the test binds them with tx_begin and
 * kills them in the teardown (or they die with the test process).
 */
#include "config.h"

#include "handle.h"
#include "journal.h"
#include "membership.h"
#include "node.h"
#include "statedir.h"
#include "tx.h"
#include "view.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_KIDS 8
#define NOBODY	 12345 /* a uid that owns no process of the test */

static char src[PATH_MAX]; /* SOURCE, resolved */
static int src_fd = -1;	   /* SOURCE, O_RDONLY | O_DIRECTORY */
static struct statedir *sd;
static struct journal *jrnl;
static struct membership *mem;
static struct view_table *views;
static struct node_table *nodes;
static struct tx_table *tt;
static pid_t kids[MAX_KIDS];
static int nkids;

/* ---- fixture ------------------------------------------------------------ */

static void open_journal(void)
{
	char why[512] = "";
	int ret;

	ret = journal_open(statedir_fd(sd), statedir_path(sd), &jrnl, why,
			   sizeof(why));
	ck_assert_msg(ret == 0, "journal_open: %d: %s", ret, why);
}

static void open_table(void)
{
	struct tx_config cfg = {
		.nodes = nodes,
		.state = sd,
		.journal = jrnl,
		.members = mem,
		.views = views,
		.source_path = src,
	};

	ck_assert_int_eq(tx_table_new(&cfg, &tt), 0);
	ck_assert(tx_table_invariants(tt));
}

/* What a daemon restart does to the journal and the transaction table. */
static void restart(void)
{
	tx_table_free(tt);
	tt = NULL;
	journal_close(jrnl);
	jrnl = NULL;
	open_journal();
	open_table();
}

static void setup(void)
{
	char tmpl[] = "/tmp/txfs-tx-XXXXXX";
	char why[512] = "";
	int root, ret;

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	ck_assert_ptr_nonnull(realpath(tmpl, src));
	src_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(src_fd, 0);
	root = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
	ck_assert_int_eq(node_table_new(root, 1024, &nodes), 0);
	ret = statedir_open(src, src_fd, NULL, &sd, why, sizeof(why));
	ck_assert_msg(ret == 0, "statedir_open: %d: %s", ret, why);
	open_journal();
	ck_assert_int_eq(membership_new(false, &mem), 0);
	ck_assert_int_eq(view_table_new(&views), 0);
	open_table();
	nkids = 0;
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	for (int i = 0; i < nkids; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	nkids = 0;
	tx_table_free(tt);
	tt = NULL;
	view_table_free(views);
	views = NULL;
	node_table_free(nodes);
	membership_free(mem);
	journal_close(jrnl);
	statedir_close(sd);
	close(src_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", src);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- helpers ------------------------------------------------------------ */

/*
 * Forks a child that sleeps until killed, running as uid (0: root), and
 * returns its pid once it runs as that uid.
 */
static pid_t spawn_as(uid_t uid)
{
	pid_t parent = getpid(), pid;
	int p[2];
	char c = 1;

	ck_assert_int_lt(nkids, MAX_KIDS);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if (uid != 0 && (setresgid(uid, uid, uid) < 0 ||
				 setresuid(uid, uid, uid) < 0))
			_exit(1);
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	kids[nkids++] = pid;
	close(p[1]);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

static pid_t spawn(void)
{
	return spawn_as(0);
}

/* The pid of a process that has exited and been reaped. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

/* Begins a transaction as root for pid. */
static uint64_t begin(pid_t pid)
{
	uint64_t id = 0;

	ck_assert_int_eq(tx_begin(tt, 0, pid, "test", 0, &id), 0);
	ck_assert_uint_gt(id, 0);
	return id;
}

static void write_at(int dirfd, const char *name, const void *data, size_t len,
		     mode_t mode)
{
	int fd =
	    openat(dirfd, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

static void make_file(const char *name, const char *content)
{
	write_at(src_fd, name, content, strlen(content), 0644);
}

/* Reads all of fd from offset 0 into buf (NUL-terminated); the length. */
static size_t read_fd(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r = 0;

	while (n < len - 1 &&
	       (r = pread(fd, buf + n, len - 1 - n, (off_t)n)) > 0)
		n += (size_t)r;
	ck_assert_int_ge(r, 0);
	buf[n] = '\0';
	return n;
}

static size_t read_at(int dirfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	size_t n;

	ck_assert_msg(fd >= 0, "cannot open %s: %s", name, strerror(errno));
	n = read_fd(fd, buf, len);
	close(fd);
	return n;
}

static void assert_content(int dirfd, const char *name, const char *want)
{
	char buf[4096];

	read_at(dirfd, name, buf, sizeof(buf));
	ck_assert_str_eq(buf, want);
}

static struct stat stat_at(int dirfd, const char *name)
{
	struct stat st;

	ck_assert_int_eq(fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st;
}

/* Looks name up in the directory dirfd of node parent as fs_ops does. */
static struct node *lookup_in(struct node *parent, int dirfd, const char *name)
{
	struct node *n;
	struct stat st;

	ck_assert_int_eq(node_lookup(nodes, dirfd, name, &st, &n), 0);
	ck_assert_int_eq(node_set_name(nodes, n, parent, name), 0);
	return n;
}

static struct node *base_node(const char *name)
{
	return lookup_in(node_root(nodes), src_fd, name);
}

static struct node_key key_of(struct node *n)
{
	struct node_key k;

	node_get_key(n, &k);
	return k;
}

/* What view sees for n; free .handle with handle_free. */
static struct tx_target resolve(uint64_t view, struct node *n)
{
	struct node_key k = key_of(n);
	struct tx_target tg = { 0 };

	ck_assert_int_eq(tx_resolve(tt, view, &k, &tg), 0);
	return tg;
}

/* Opens view's shadow of n with flags; the shadow must exist. */
static int open_shadow(uint64_t view, struct node *n, int flags)
{
	struct tx_target tg = resolve(view, n);
	int fd;

	ck_assert_int_eq(tg.kind, TX_SHOW_SHADOW);
	ck_assert_ptr_nonnull(tg.handle);
	fd = handle_open(tg.handle, flags);
	handle_free(tg.handle);
	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Replaces the content of view's shadow of n. */
static void write_shadow(uint64_t view, struct node *n, const char *content)
{
	int fd = open_shadow(view, n, O_WRONLY);
	size_t len = strlen(content);

	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(pwrite(fd, content, len, 0), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

/* Entries in STATEDIR/tx-ID, or -1 when the directory does not exist. */
static int shadow_files(uint64_t id)
{
	char name[64];
	struct dirent *e;
	DIR *d;
	int fd, n = 0;

	snprintf(name, sizeof(name), "tx-%" PRIu64, id);
	fd = openat(statedir_fd(sd), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ck_assert_int_eq(errno, ENOENT);
		return -1;
	}
	d = fdopendir(fd);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Entries of the state directory named tx-*. */
static int tx_dirs(void)
{
	int fd = fcntl(statedir_fd(sd), F_DUPFD_CLOEXEC, 0);
	struct dirent *e;
	DIR *d;
	int n = 0;

	ck_assert_int_ge(fd, 0);
	d = fdopendir(fd);
	ck_assert_ptr_nonnull(d);
	rewinddir(d);
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "tx-", 3) == 0)
			n++;
	closedir(d);
	return n;
}

/* How many transactions the table holds. */
static size_t ntx(void)
{
	struct tx_info info[8];

	return tx_list(tt, info, 8);
}

static int count_record(uint64_t txid, const struct journal_change *c, size_t n,
			size_t steps, void *arg)
{
	(void)txid;
	(void)c;
	(void)n;
	(void)steps;
	(*(int *)arg)++;
	return 0;
}

/* Committed records not yet applied. */
static int pending(void)
{
	int n = 0;

	ck_assert_int_eq(journal_pending(jrnl, count_record, &n), 0);
	return n;
}

static uint64_t view_of(pid_t pid)
{
	uint64_t v = 99999;

	ck_assert_int_eq(tx_view_of(tt, pid, &v), 0);
	return v;
}

static int commit(uint64_t id, size_t *changes)
{
	struct tx_conflicts c;
	size_t n;
	int ret;

	ret = tx_commit(tt, id, 0, &n, &c);
	ck_assert_uint_eq(c.n, 0);
	tx_conflicts_clear(&c);
	if (changes != NULL)
		*changes = n;
	return ret;
}

/* ---- ids ---------------------------------------------------------------- */

START_TEST(ids_increase_and_are_never_reused_after_a_restart)
{
	uint64_t a, b, c, d, e;
	pid_t k1 = spawn(), k2 = spawn(), k3 = spawn();

	a = begin(k1);
	b = begin(k2);
	c = begin(k3);
	ck_assert_uint_gt(b, a);
	ck_assert_uint_gt(c, b);
	/* a commits (empty), c aborts, b stays open across the restart. */
	ck_assert_int_eq(commit(a, NULL), 0);
	ck_assert_int_eq(tx_abort(tt, c, 0), 0);
	restart();
	/* The restart aborted b. */
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_int_eq(tx_dirs(), 0);
	d = begin(k1);
	ck_assert_uint_gt(d, c);
	e = begin(k2);
	ck_assert_uint_gt(e, d);
	ck_assert_int_eq(tx_abort(tt, e, 0), 0);
	restart();
	ck_assert_uint_gt(begin(k3), e);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

/* ---- views -------------------------------------------------------------- */

START_TEST(a_bound_process_sees_its_transaction_others_the_base)
{
	pid_t k1 = spawn(), k2 = spawn();
	uint64_t a, b;

	ck_assert(!tx_any(tt));
	ck_assert_uint_eq(view_of(k1), NODE_VIEW_BASE);
	a = begin(k1);
	b = begin(k2);
	ck_assert(tx_any(tt));
	ck_assert_uint_eq(view_of(k1), a);
	ck_assert_uint_eq(view_of(k2), b);
	ck_assert_uint_eq(view_of(getpid()), NODE_VIEW_BASE);
	ck_assert_uint_eq(view_of(0), NODE_VIEW_BASE);
	ck_assert_int_eq(commit(a, NULL), 0);
	ck_assert_uint_eq(view_of(k1), NODE_VIEW_BASE);
	ck_assert_uint_eq(view_of(k2), b);
	ck_assert_int_eq(tx_abort(tt, b, 0), 0);
	ck_assert_uint_eq(view_of(k2), NODE_VIEW_BASE);
	ck_assert(!tx_any(tt));
}
END_TEST

/* ---- copy-up ------------------------------------------------------------ */

START_TEST(copy_up_makes_one_shadow_seen_only_in_its_view)
{
	pid_t k1 = spawn(), k2 = spawn();
	struct node *n;
	struct node_key k;
	struct tx_target tg;
	struct tx_info info;
	uint64_t a, b;

	make_file("f", "base content");
	n = base_node("f");
	k = key_of(n);
	a = begin(k1);
	b = begin(k2);
	ck_assert_int_eq(shadow_files(a), 0);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	ck_assert_int_eq(shadow_files(a), 1);
	ck_assert_int_eq(shadow_files(b), 0);

	tg = resolve(a, n);
	ck_assert_int_eq(tg.kind, TX_SHOW_SHADOW);
	ck_assert_uint_eq(tg.key.dev, k.dev);
	ck_assert_uint_eq(tg.key.ino, k.ino);
	ck_assert_uint_eq(tg.nlink, 1);
	ck_assert_ptr_nonnull(tg.handle);
	handle_free(tg.handle);

	tg = resolve(NODE_VIEW_BASE, n);
	ck_assert_int_eq(tg.kind, TX_SHOW_BASE);
	ck_assert_uint_eq(tg.key.ino, k.ino);
	ck_assert_ptr_null(tg.handle);
	tg = resolve(b, n);
	ck_assert_int_eq(tg.kind, TX_SHOW_BASE);
	ck_assert_ptr_null(tg.handle);

	/* A second copy-up keeps the shadow and what was written to it. */
	write_shadow(a, n, "changed in a");
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	ck_assert_int_eq(shadow_files(a), 1);
	int fd = open_shadow(a, n, O_RDONLY);
	char buf[64];
	read_fd(fd, buf, sizeof(buf));
	close(fd);
	ck_assert_str_eq(buf, "changed in a");
	ck_assert_int_eq(tx_show(tt, a, &info, NULL, NULL), 0);
	ck_assert_uint_eq(info.changes, 1);
	assert_content(src_fd, "f", "base content");
	ck_assert(tx_table_invariants(tt));
}
END_TEST

START_TEST(the_shadow_has_the_base_content_and_attributes)
{
	static const char data[] = "some\0binary\377content";
	struct timespec times[2] = { { 1000000000, 5 },
				     { 1500000000, 123456789 } };
	pid_t k1 = spawn();
	struct stat bst, sst;
	bool xattrs = true;
	char buf[64], val[16];
	struct node *n;
	uint64_t a;
	int fd;

	write_at(src_fd, "f", data, sizeof(data), 0600);
	fd = openat(src_fd, "f", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	if (fsetxattr(fd, "user.txfs-test", "v1", 2, 0) < 0) {
		ck_assert_int_eq(errno, ENOTSUP);
		xattrs = false;
	}
	ck_assert_int_eq(fchown(fd, 1234, 5678), 0);
	ck_assert_int_eq(fchmod(fd, 0640), 0);
	ck_assert_int_eq(futimens(fd, times), 0);
	close(fd);
	bst = stat_at(src_fd, "f");

	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	fd = open_shadow(a, n, O_RDONLY);
	ck_assert_int_eq(fstat(fd, &sst), 0);
	ck_assert_uint_ne(sst.st_ino, bst.st_ino);
	ck_assert_uint_eq(read_fd(fd, buf, sizeof(buf)), sizeof(data));
	ck_assert_mem_eq(buf, data, sizeof(data));
	ck_assert_uint_eq(sst.st_mode, bst.st_mode);
	ck_assert_uint_eq(sst.st_uid, 1234);
	ck_assert_uint_eq(sst.st_gid, 5678);
	ck_assert_int_eq(sst.st_mtim.tv_sec, times[1].tv_sec);
	ck_assert_int_eq(sst.st_mtim.tv_nsec, times[1].tv_nsec);
	ck_assert_int_eq(sst.st_mtim.tv_sec, bst.st_mtim.tv_sec);
	ck_assert_int_eq(sst.st_mtim.tv_nsec, bst.st_mtim.tv_nsec);
	if (xattrs) {
		ssize_t len = fgetxattr(fd, "user.txfs-test", val, sizeof(val));
		ck_assert_int_eq(len, 2);
		ck_assert_mem_eq(val, "v1", 2);
	}
	close(fd);
}
END_TEST

START_TEST(a_truncating_copy_up_gives_an_empty_shadow)
{
	pid_t k1 = spawn();
	struct stat sst;
	struct node *n;
	uint64_t a;
	int fd;

	make_file("f", "content that the shadow must not get");
	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, true), 0);
	ck_assert_int_eq(shadow_files(a), 1);
	fd = open_shadow(a, n, O_RDONLY);
	ck_assert_int_eq(fstat(fd, &sst), 0);
	close(fd);
	ck_assert_int_eq(sst.st_size, 0);
	assert_content(src_fd, "f", "content that the shadow must not get");
}
END_TEST

START_TEST(copy_up_refuses_directories_stale_names_and_ended_transactions)
{
	pid_t k1 = spawn();
	struct node *d, *n;
	uint64_t a;

	ck_assert_int_eq(mkdirat(src_fd, "d", 0755), 0);
	make_file("f", "x");
	d = base_node("d");
	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, d, false), -EINVAL);
	ck_assert_int_eq(unlinkat(src_fd, "f", 0), 0);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), -ESTALE);
	ck_assert_int_eq(shadow_files(a), 0);
	make_file("g", "y");
	n = base_node("g");
	ck_assert_int_eq(tx_abort(tt, a, 0), 0);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), -EBUSY);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

/* ---- commit ------------------------------------------------------------- */

START_TEST(commit_publishes_the_shadow_into_source)
{
	pid_t k1 = spawn();
	struct stat sst, st;
	struct node *n;
	size_t changes = 0;
	uint64_t a;
	int fd;

	make_file("f", "old");
	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "new content, longer than the old");
	fd = open_shadow(a, n, O_RDONLY);
	ck_assert_int_eq(fstat(fd, &sst), 0);
	close(fd);
	assert_content(src_fd, "f", "old");

	ck_assert_int_eq(commit(a, &changes), 0);
	ck_assert_uint_eq(changes, 1);
	assert_content(src_fd, "f", "new content, longer than the old");
	st = stat_at(src_fd, "f");
	ck_assert_uint_eq(st.st_ino, sst.st_ino);
	ck_assert_int_eq(shadow_files(a), -1);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_int_eq(pending(), 0);
	ck_assert_uint_eq(ntx(), 0);
	ck_assert(!tx_any(tt));
	ck_assert(tx_table_invariants(tt));
}
END_TEST

START_TEST(commit_publishes_a_file_in_a_subdirectory)
{
	pid_t k1 = spawn();
	struct node *d, *n;
	size_t changes = 0;
	uint64_t a;
	int dfd;

	ck_assert_int_eq(mkdirat(src_fd, "d", 0755), 0);
	dfd = openat(src_fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dfd, 0);
	write_at(dfd, "x", "old", 3, 0644);
	d = base_node("d");
	n = lookup_in(d, dfd, "x");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "new in d");
	ck_assert_int_eq(commit(a, &changes), 0);
	ck_assert_uint_eq(changes, 1);
	assert_content(dfd, "x", "new in d");
	ck_assert_int_eq(pending(), 0);
	ck_assert_int_eq(tx_dirs(), 0);
	close(dfd);
}
END_TEST

START_TEST(commit_of_a_hard_linked_file_writes_into_the_base_inode)
{
	pid_t k1 = spawn();
	struct stat before, sa, sb;
	struct tx_target tg;
	struct node *n;
	size_t changes = 0;
	uint64_t a;

	make_file("a", "old");
	ck_assert_int_eq(linkat(src_fd, "a", src_fd, "b", 0), 0);
	before = stat_at(src_fd, "a");
	ck_assert_uint_eq(before.st_nlink, 2);
	n = base_node("a");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	tg = resolve(a, n);
	ck_assert_int_eq(tg.kind, TX_SHOW_SHADOW);
	ck_assert_uint_eq(tg.nlink, 2);
	handle_free(tg.handle);
	write_shadow(a, n, "new through a link");

	ck_assert_int_eq(commit(a, &changes), 0);
	ck_assert_uint_eq(changes, 1);
	assert_content(src_fd, "a", "new through a link");
	assert_content(src_fd, "b", "new through a link");
	sa = stat_at(src_fd, "a");
	sb = stat_at(src_fd, "b");
	ck_assert_uint_eq(sa.st_ino, before.st_ino);
	ck_assert_uint_eq(sb.st_ino, before.st_ino);
	ck_assert_uint_eq(sa.st_nlink, 2);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_int_eq(pending(), 0);
}
END_TEST

/* ---- abort -------------------------------------------------------------- */

START_TEST(abort_removes_the_shadows_and_leaves_source_unchanged)
{
	static const char data[] = "precious\0bytes\n";
	pid_t k1 = spawn();
	struct stat before, after;
	char buf[64];
	struct node *n;
	uint64_t a;

	write_at(src_fd, "f", data, sizeof(data), 0644);
	before = stat_at(src_fd, "f");
	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "garbage");
	ck_assert_int_eq(shadow_files(a), 1);

	ck_assert_int_eq(tx_abort(tt, a, 0), 0);
	ck_assert_int_eq(shadow_files(a), -1);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_uint_eq(read_at(src_fd, "f", buf, sizeof(buf)), sizeof(data));
	ck_assert_mem_eq(buf, data, sizeof(data));
	after = stat_at(src_fd, "f");
	ck_assert_uint_eq(after.st_ino, before.st_ino);
	ck_assert_int_eq(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	ck_assert_int_eq(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	ck_assert_int_eq(resolve(a, n).kind, TX_SHOW_BASE);
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_int_eq(pending(), 0);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

/* ---- conflicts ---------------------------------------------------------- */

/* Expects commit of id to conflict on exactly path. */
static void assert_conflicts_on(uint64_t id, const char *path)
{
	struct tx_conflicts c;
	size_t changes = 99;

	ck_assert_int_eq(tx_commit(tt, id, 0, &changes, &c), -ECANCELED);
	ck_assert_uint_eq(changes, 0);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_str_eq(c.paths[0], path);
	tx_conflicts_clear(&c);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_ptr_null(c.paths);
}

START_TEST(an_outside_change_to_the_base_makes_the_commit_conflict)
{
	struct timespec times[2] = { { 0, UTIME_OMIT }, { 1234567890, 42 } };
	pid_t k1 = spawn();
	struct node *n;
	uint64_t a;
	int fd;

	make_file("name", "old");
	n = base_node("name");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "the transaction's");

	/* A non-member writes the base directly in SOURCE. */
	fd = openat(src_fd, "name", O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "outside", 7), 7);
	ck_assert_int_eq(futimens(fd, times), 0);
	close(fd);

	assert_conflicts_on(a, "/name");
	assert_content(src_fd, "name", "outside");
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_int_eq(tx_show(tt, a, &(struct tx_info){ 0 }, NULL, NULL),
			 -ENOENT);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_uint_eq(view_of(k1), NODE_VIEW_BASE);
	ck_assert_int_eq(pending(), 0);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

START_TEST(a_noted_base_write_makes_the_commit_conflict)
{
	pid_t k1 = spawn();
	struct node_key k;
	struct node *n;
	uint64_t a;

	make_file("name", "old");
	n = base_node("name");
	k = key_of(n);
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "the transaction's");
	tx_note_base_write(tt, &k);
	assert_conflicts_on(a, "/name");
	assert_content(src_fd, "name", "old");
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_int_eq(tx_dirs(), 0);
}
END_TEST

START_TEST(the_first_committer_wins)
{
	pid_t k1 = spawn(), k2 = spawn();
	struct node *n;
	size_t changes = 0;
	uint64_t a, b;

	make_file("name", "old");
	n = base_node("name");
	a = begin(k1);
	b = begin(k2);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	ck_assert_int_eq(tx_copy_up(tt, b, n, false), 0);
	write_shadow(a, n, "from a");
	write_shadow(b, n, "from b");
	ck_assert_int_eq(commit(a, &changes), 0);
	ck_assert_uint_eq(changes, 1);
	assert_content(src_fd, "name", "from a");
	assert_conflicts_on(b, "/name");
	assert_content(src_fd, "name", "from a");
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_int_eq(pending(), 0);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

/* ---- authorisation and errors ------------------------------------------- */

START_TEST(only_the_owner_or_root_may_end_a_transaction)
{
	pid_t k1 = spawn(), k2 = spawn(), k3 = spawn_as(NOBODY);
	struct tx_conflicts c;
	struct tx_info info;
	size_t changes;
	uint64_t a, b, o;

	a = begin(k1);
	b = begin(k2);
	ck_assert_int_eq(tx_commit(tt, a, NOBODY, &changes, &c), -EPERM);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_int_eq(tx_abort(tt, a, NOBODY), -EPERM);
	ck_assert_int_eq(tx_show(tt, a, &info, NULL, NULL), 0);
	ck_assert_int_eq(info.state, TX_OPEN);
	ck_assert_uint_eq(view_of(k1), a);
	ck_assert_int_eq(commit(a, NULL), 0);
	ck_assert_int_eq(tx_abort(tt, b, 0), 0);

	/* A user's own transaction: the user and root may end it. */
	ck_assert_int_eq(tx_begin(tt, NOBODY, k3, "mine", 0, &o), 0);
	ck_assert_int_eq(tx_show(tt, o, &info, NULL, NULL), 0);
	ck_assert_uint_eq(info.owner, NOBODY);
	ck_assert_int_eq(tx_abort(tt, o, NOBODY + 1), -EPERM);
	ck_assert_int_eq(tx_commit(tt, o, NOBODY, &changes, &c), 0);
	ck_assert_int_eq(tx_begin(tt, NOBODY, k3, "mine", 0, &o), 0);
	ck_assert_int_eq(tx_abort(tt, o, 0), 0);
	ck_assert_uint_eq(ntx(), 0);
}
END_TEST

START_TEST(binding_checks_the_requester_and_the_process)
{
	pid_t k1 = spawn(), k2 = spawn(), k3 = spawn(), gone = dead_pid();
	uint64_t a, b, id = 0;
	int dirs;

	a = begin(k1);
	b = begin(k2);
	dirs = tx_dirs();
	ck_assert_int_eq(dirs, 2);
	/* A user may not bind root's process, into a new or existing tx. */
	ck_assert_int_eq(tx_begin(tt, NOBODY, k3, "x", 0, &id), -EPERM);
	ck_assert_int_eq(tx_bind(tt, a, NOBODY, k3), -EPERM);
	/* A process is in at most one transaction. */
	ck_assert_int_eq(tx_bind(tt, b, 0, k1), -EBUSY);
	ck_assert_int_eq(tx_begin(tt, 0, k1, "x", 0, &id), -EBUSY);
	ck_assert_uint_eq(view_of(k1), a);
	/* Binding a member of the same transaction again succeeds. */
	ck_assert_int_eq(tx_bind(tt, a, 0, k1), 0);
	/* No such process. */
	ck_assert_int_eq(tx_bind(tt, a, 0, gone), -ESRCH);
	ck_assert_int_eq(tx_begin(tt, 0, gone, "x", 0, &id), -ESRCH);
	ck_assert_int_eq(tx_begin(tt, 0, -1, "x", 0, &id), -ESRCH);
	/* The failed begins left no transaction behind. */
	ck_assert_uint_eq(ntx(), 2);
	ck_assert_int_eq(tx_dirs(), dirs);
	/* A successful bind makes the process a member. */
	ck_assert_int_eq(tx_bind(tt, b, 0, k3), 0);
	ck_assert_uint_eq(view_of(k3), b);
	ck_assert(tx_table_invariants(tt));
}
END_TEST

START_TEST(an_unknown_transaction_is_enoent)
{
	pid_t k1 = spawn();
	struct tx_conflicts c;
	struct tx_info info;
	size_t changes;
	uint64_t a;

	a = begin(k1);
	ck_assert_int_eq(tx_commit(tt, a + 1000, 0, &changes, &c), -ENOENT);
	ck_assert_int_eq(tx_abort(tt, a + 1000, 0), -ENOENT);
	ck_assert_int_eq(tx_bind(tt, a + 1000, 0, k1), -ENOENT);
	ck_assert_int_eq(tx_show(tt, a + 1000, &info, NULL, NULL), -ENOENT);
	ck_assert_int_eq(tx_abort(tt, a, 0), 0);
	/* An ended transaction is unknown too. */
	ck_assert_int_eq(tx_abort(tt, a, 0), -ENOENT);
	ck_assert_int_eq(tx_commit(tt, a, 0, &changes, &c), -ENOENT);
}
END_TEST

/* ---- introspection ------------------------------------------------------ */

struct seen_paths {
	int n;
	char paths[8][64];
	bool bad_change;
};

static void collect_path(const char *path, const char *change, void *arg)
{
	struct seen_paths *s = arg;

	if (strcmp(change, "modified") != 0)
		s->bad_change = true;
	if (s->n < 8)
		snprintf(s->paths[s->n], sizeof(s->paths[0]), "%s", path);
	s->n++;
}

static bool has_path(const struct seen_paths *s, const char *path)
{
	for (int i = 0; i < s->n && i < 8; i++)
		if (strcmp(s->paths[i], path) == 0)
			return true;
	return false;
}

START_TEST(show_and_list_report_the_changes)
{
	pid_t k1 = spawn(), k2 = spawn();
	struct seen_paths seen = { 0 };
	struct tx_info info, list[4];
	struct node *d, *x, *f;
	uint64_t a, b;
	int dfd;

	make_file("f", "1");
	make_file("untouched", "2");
	ck_assert_int_eq(mkdirat(src_fd, "d", 0755), 0);
	dfd = openat(src_fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dfd, 0);
	write_at(dfd, "x", "3", 1, 0644);
	f = base_node("f");
	(void)base_node("untouched");
	d = base_node("d");
	x = lookup_in(d, dfd, "x");
	close(dfd);

	ck_assert_int_eq(tx_begin(tt, 0, k1, "the label", 7, &a), 0);
	b = begin(k2);
	ck_assert_uint_eq(tx_by_conn(tt, 7), a);
	ck_assert_uint_eq(tx_by_conn(tt, 8), 0);
	ck_assert_int_eq(tx_copy_up(tt, a, f, false), 0);
	ck_assert_int_eq(tx_copy_up(tt, a, x, false), 0);

	ck_assert_int_eq(tx_show(tt, a, &info, collect_path, &seen), 0);
	ck_assert_uint_eq(info.id, a);
	ck_assert_str_eq(info.label, "the label");
	ck_assert_int_eq(info.leader, k1);
	ck_assert_uint_eq(info.owner, 0);
	ck_assert_int_eq(info.state, TX_OPEN);
	ck_assert_uint_eq(info.changes, 2);
	ck_assert_uint_eq(info.members, 1);
	ck_assert_uint_eq(info.conn, 7);
	ck_assert_int_eq(seen.n, 2);
	ck_assert(!seen.bad_change);
	ck_assert(has_path(&seen, "/f"));
	ck_assert(has_path(&seen, "/d/x"));

	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(tx_show(tt, b, &info, collect_path, &seen), 0);
	ck_assert_int_eq(seen.n, 0);
	ck_assert_uint_eq(info.changes, 0);

	ck_assert_uint_eq(tx_list(tt, list, 4), 2);
	ck_assert_uint_eq(list[0].id, a); /* sorted by id */
	ck_assert_uint_eq(list[0].changes, 2);
	ck_assert_int_eq(list[0].state, TX_OPEN);
	ck_assert_uint_eq(list[0].members, 1);
	ck_assert_uint_eq(list[1].id, b);
	ck_assert_uint_eq(list[1].changes, 0);
	ck_assert_int_eq(list[1].state, TX_OPEN);
	/* A short buffer still gets the total, and one of them. */
	ck_assert_uint_eq(tx_list(tt, list, 1), 2);
	ck_assert(list[0].id == a || list[0].id == b);

	ck_assert_int_eq(tx_abort(tt, a, 0), 0);
	ck_assert_uint_eq(tx_by_conn(tt, 7), 0);
	ck_assert_uint_eq(tx_list(tt, list, 4), 1);
	ck_assert_uint_eq(list[0].id, b);
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

#define NWORKERS 4
#define PER	 50
#define NFILES	 (NWORKERS * PER)

struct conc {
	uint64_t id;
	struct node *n[NFILES];
	struct node_key keys[NFILES];
	atomic_bool committing, stop;
	atomic_int bad; /* anomalies the resolver saw */
	atomic_int bad_invariants;
	atomic_int rounds;
	atomic_int shadows_seen;
	atomic_int published_seen;
};

struct worker {
	struct conc *c;
	int first;
	int errors;
	int last_error;
};

static void *copy_worker(void *arg)
{
	struct worker *w = arg;
	struct conc *c = w->c;
	char content[32];

	for (int i = w->first; i < w->first + PER; i++) {
		struct tx_target tg = { 0 };
		int ret = tx_copy_up(tt, c->id, c->n[i], false);
		if (ret == 0)
			ret = tx_resolve(tt, c->id, &c->keys[i], &tg);
		if (ret == 0 &&
		    (tg.kind != TX_SHOW_SHADOW || tg.handle == NULL))
			ret = -EPROTO;
		int fd = ret == 0 ? handle_open(tg.handle, O_WRONLY) : -1;
		handle_free(tg.handle);
		if (ret == 0 && fd < 0)
			ret = fd;
		if (ret == 0) {
			int len =
			    snprintf(content, sizeof(content), "new-%d", i);
			if (ftruncate(fd, 0) < 0 ||
			    pwrite(fd, content, (size_t)len, 0) != len)
				ret = -errno;
		}
		if (fd >= 0)
			close(fd);
		if (ret != 0) {
			w->errors++;
			w->last_error = ret;
		}
	}
	return NULL;
}

static void *resolver(void *arg)
{
	struct conc *c = arg;
	bool was_shadow[NFILES] = { false };

	do {
		for (int i = 0; i < NFILES; i++) {
			struct tx_target tg = { 0 }, bg = { 0 };
			int r1 = tx_resolve(tt, c->id, &c->keys[i], &tg);
			int r2 =
			    tx_resolve(tt, NODE_VIEW_BASE, &c->keys[i], &bg);
			bool before = !atomic_load(&c->committing);
			if (r1 != 0 || r2 != 0)
				atomic_fetch_add(&c->bad, 1);
			if (tg.kind != TX_SHOW_BASE && tg.handle == NULL)
				atomic_fetch_add(&c->bad, 1);
			if (tg.kind == TX_SHOW_SHADOW &&
			    (tg.key.ino != c->keys[i].ino ||
			     tg.key.dev != c->keys[i].dev))
				atomic_fetch_add(&c->bad, 1);
			if (tg.kind == TX_SHOW_SHADOW)
				atomic_fetch_add(&c->shadows_seen, 1);
			if (tg.kind == TX_SHOW_PUBLISHED ||
			    bg.kind == TX_SHOW_PUBLISHED)
				atomic_fetch_add(&c->published_seen, 1);
			if (before) {
				/* Before the commit: shadows only appear, and
				 * only in their own view. */
				if (tg.kind == TX_SHOW_PUBLISHED ||
				    bg.kind != TX_SHOW_BASE ||
				    (was_shadow[i] &&
				     tg.kind != TX_SHOW_SHADOW))
					atomic_fetch_add(&c->bad, 1);
				if (tg.kind == TX_SHOW_SHADOW)
					was_shadow[i] = true;
			}
			handle_free(tg.handle);
			handle_free(bg.handle);
		}
		if (!tx_table_invariants(tt))
			atomic_fetch_add(&c->bad_invariants, 1);
		atomic_fetch_add(&c->rounds, 1);
	} while (!atomic_load(&c->stop));
	return NULL;
}

START_TEST(concurrent_copy_ups_and_resolves_commit_every_file)
{
	static struct conc c;
	struct worker w[NWORKERS];
	pthread_t wt[NWORKERS], rt;
	struct tx_info info;
	size_t changes = 0;
	char name[32], want[32];
	pid_t k1 = spawn();

	memset(&c, 0, sizeof(c));
	for (int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(want, sizeof(want), "old-%d", i);
		make_file(name, want);
		c.n[i] = base_node(name);
		c.keys[i] = key_of(c.n[i]);
	}
	c.id = begin(k1);
	ck_assert(tx_table_invariants(tt));

	ck_assert_int_eq(pthread_create(&rt, NULL, resolver, &c), 0);
	for (int i = 0; i < NWORKERS; i++) {
		w[i] = (struct worker){ .c = &c, .first = i * PER };
		ck_assert_int_eq(
		    pthread_create(&wt[i], NULL, copy_worker, &w[i]), 0);
	}
	for (int i = 0; i < NWORKERS; i++) {
		ck_assert_int_eq(pthread_join(wt[i], NULL), 0);
		ck_assert_msg(w[i].errors == 0,
			      "worker %d: %d copy-ups failed, last %d", i,
			      w[i].errors, w[i].last_error);
	}
	ck_assert(tx_table_invariants(tt));
	ck_assert_int_eq(shadow_files(c.id), NFILES);
	ck_assert_int_eq(tx_show(tt, c.id, &info, NULL, NULL), 0);
	ck_assert_uint_eq(info.changes, NFILES);

	/* The resolver keeps going while the commit publishes. */
	atomic_store(&c.committing, true);
	ck_assert_int_eq(commit(c.id, &changes), 0);
	atomic_store(&c.stop, true);
	ck_assert_int_eq(pthread_join(rt, NULL), 0);
	ck_assert_uint_eq(changes, NFILES);
	ck_assert_int_eq(atomic_load(&c.bad), 0);
	ck_assert_int_eq(atomic_load(&c.bad_invariants), 0);
	ck_assert_int_gt(atomic_load(&c.rounds), 0);
	ck_assert(tx_table_invariants(tt));

	for (int i = 0; i < NFILES; i++) {
		struct tx_target tg = { 0 };
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(want, sizeof(want), "new-%d", i);
		assert_content(src_fd, name, want);
		ck_assert_int_eq(tx_resolve(tt, c.id, &c.keys[i], &tg), 0);
		ck_assert_int_eq(tg.kind, TX_SHOW_BASE);
	}
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_int_eq(pending(), 0);
	ck_assert_uint_eq(ntx(), 0);
}
END_TEST

/* ---- recovery ----------------------------------------------------------- */

START_TEST(a_committed_record_is_applied_at_start_up)
{
	const char *shadow = "tx-99/1";
	struct journal_change jc = { 0 };
	struct stat rst, sst;
	pid_t k1 = spawn();
	int sfd = statedir_fd(sd);

	make_file("r", "before the crash");
	rst = stat_at(src_fd, "r");
	/* The daemon went down after the journal write, before applying. */
	tx_table_free(tt);
	tt = NULL;
	ck_assert_int_eq(mkdirat(sfd, "tx-99", 0700), 0);
	write_at(sfd, shadow, "recovered", 9, 0644);
	sst = stat_at(sfd, shadow);
	jc.kind = JOURNAL_REPLACE;
	jc.shadow = shadow;
	jc.parent = NULL;
	jc.name = "r";
	jc.base_dev = rst.st_dev;
	jc.base_ino = rst.st_ino;
	jc.mode = rst.st_mode;
	jc.path = "/r";
	ck_assert_int_eq(journal_commit(jrnl, 99, 0, "crashed", &jc, 1), 0);
	ck_assert_int_eq(pending(), 1);
	assert_content(src_fd, "r", "before the crash");

	restart();
	assert_content(src_fd, "r", "recovered");
	ck_assert_uint_eq(stat_at(src_fd, "r").st_ino, sst.st_ino);
	ck_assert_int_eq(pending(), 0);
	ck_assert_int_eq(shadow_files(99), -1);
	ck_assert_int_eq(tx_dirs(), 0);
	/* The recovered id is not handed out again. */
	ck_assert_uint_gt(begin(k1), 99);
}
END_TEST

START_TEST(a_restart_removes_what_open_transactions_left)
{
	pid_t k1 = spawn();
	struct node *n;
	uint64_t a;

	make_file("f", "old");
	n = base_node("f");
	a = begin(k1);
	ck_assert_int_eq(tx_copy_up(tt, a, n, false), 0);
	write_shadow(a, n, "never committed");
	restart();
	ck_assert_int_eq(shadow_files(a), -1);
	ck_assert_int_eq(tx_dirs(), 0);
	ck_assert_uint_eq(ntx(), 0);
	ck_assert_uint_eq(view_of(k1), NODE_VIEW_BASE);
	assert_content(src_fd, "f", "old");
	ck_assert_int_eq(pending(), 0);
}
END_TEST

static Suite *tx_suite(void)
{
	Suite *s = suite_create("tx");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, ids_increase_and_are_never_reused_after_a_restart);
	tcase_add_test(tc,
		       a_bound_process_sees_its_transaction_others_the_base);
	tcase_add_test(tc, copy_up_makes_one_shadow_seen_only_in_its_view);
	tcase_add_test(tc, the_shadow_has_the_base_content_and_attributes);
	tcase_add_test(tc, a_truncating_copy_up_gives_an_empty_shadow);
	tcase_add_test(
	    tc, copy_up_refuses_directories_stale_names_and_ended_transactions);
	tcase_add_test(tc, commit_publishes_the_shadow_into_source);
	tcase_add_test(tc, commit_publishes_a_file_in_a_subdirectory);
	tcase_add_test(tc,
		       commit_of_a_hard_linked_file_writes_into_the_base_inode);
	tcase_add_test(tc,
		       abort_removes_the_shadows_and_leaves_source_unchanged);
	tcase_add_test(tc,
		       an_outside_change_to_the_base_makes_the_commit_conflict);
	tcase_add_test(tc, a_noted_base_write_makes_the_commit_conflict);
	tcase_add_test(tc, the_first_committer_wins);
	tcase_add_test(tc, only_the_owner_or_root_may_end_a_transaction);
	tcase_add_test(tc, binding_checks_the_requester_and_the_process);
	tcase_add_test(tc, an_unknown_transaction_is_enoent);
	tcase_add_test(tc, show_and_list_report_the_changes);
	tcase_add_test(tc, concurrent_copy_ups_and_resolves_commit_every_file);
	tcase_add_test(tc, a_committed_record_is_applied_at_start_up);
	tcase_add_test(tc, a_restart_removes_what_open_transactions_left);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (geteuid() != 0) {
		fprintf(stderr, "test_tx: needs root (CAP_DAC_READ_SEARCH, "
				"chown)\n");
		return 77;
	}
	sr = srunner_create(tx_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
