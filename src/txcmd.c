/*
 * txcmd.c: the transaction verbs of the control socket (see txcmd.h).
 *
 * The control thread parses and authorises what it can without I/O, then
 * queues a job; the worker thread runs jobs one at a time and completes
 * their replies with control_reply_send().
 *
 * Job states: QUEUED [verb handler: enqueue] -> RUNNING [worker: dequeue]
 * -> answered and freed [worker: run_job].  A job without a reply (the
 * abort of a transaction whose connection closed) is freed the same way.
 *
 * Invariants:
 *  (1) The queue (head, tail, stopping) is guarded by lock; a job is on it
 *      or owned by the worker, never both.
 *  (2) Every job with a reply is answered exactly once, by the worker.
 *  (3) After stopping is set no job is queued, and the worker ends once
 *      the queue is empty.
 */
#include "config.h"

#include "txcmd.h"

#include "control.h"
#include "log.h"
#include "tx.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum job_kind { JOB_BEGIN, JOB_COMMIT, JOB_ABORT, JOB_BIND, JOB_DIFF };

struct job {
	enum job_kind kind;
	struct control_reply *rep; /* NULL: nobody waits for the answer */
	struct control_peer peer;
	uint64_t txid; /* 0: the peer's own transaction */
	pid_t pid;
	bool abort_on_close;
	char label[256];
	struct job *next;
};

struct txcmd {
	struct txcmd_config cfg; /* immutable */
	pthread_t thread;

	/* Guarded by lock, see invariant (1). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail;
	bool stopping;
};

/* Parses a decimal number that fits in max; false when malformed. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 20)
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Reads the optional txid= argument; 0 when absent.  0 or -EINVAL. */
static int arg_txid(const struct control_request *req,
		    struct control_reply *rep, uint64_t *txid)
{
	const char *v = control_request_get(req, "txid", NULL);

	*txid = 0;
	if (v == NULL)
		return 0;
	if (!parse_u64(v, UINT64_MAX, txid) || *txid == 0)
		return control_reply_error(rep, -EINVAL,
					   "bad transaction id: %s", v),
		       -EINVAL;
	return 0;
}

static int arg_pid(const struct control_request *req, struct control_reply *rep,
		   const char *key, pid_t *pid)
{
	const char *v = control_request_get(req, key, NULL);
	uint64_t n;

	if (v == NULL)
		return 0;
	if (!parse_u64(v, 0x7fffffff, &n) || n == 0)
		return control_reply_error(rep, -EINVAL, "bad %s: %s", key, v),
		       -EINVAL;
	*pid = (pid_t)n;
	return 0;
}

static void enqueue(struct txcmd *tc, struct job *j)
{
	pthread_mutex_lock(&tc->lock);
	j->next = NULL;
	if (tc->tail != NULL)
		tc->tail->next = j;
	else
		tc->head = j;
	tc->tail = j;
	pthread_cond_signal(&tc->cond);
	pthread_mutex_unlock(&tc->lock);
}

/* Builds a job for the request; NULL (with the reply set) on bad input. */
static struct job *job_new(enum job_kind kind,
			   const struct control_request *req,
			   struct control_reply *rep)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->kind = kind;
	j->rep = rep;
	j->peer = *control_request_peer(req);
	if (arg_txid(req, rep, &j->txid) < 0) {
		free(j);
		return NULL;
	}
	return j;
}

static int verb_begin(const struct control_request *req,
		      struct control_reply *rep, void *arg)
{
	const char *label = control_request_get(req, "label", NULL);
	const char *aoc = control_request_get(req, "abort_on_close", NULL);
	struct job *j;

	if (label != NULL && strlen(label) >= sizeof(j->label))
		return control_reply_error(rep, -EINVAL, "label too long"),
		       -EINVAL;
	if (aoc != NULL && strcmp(aoc, "0") != 0 && strcmp(aoc, "1") != 0)
		return control_reply_error(rep, -EINVAL,
					   "abort_on_close must be 0 or 1"),
		       -EINVAL;
	j = job_new(JOB_BEGIN, req, rep);
	if (j == NULL)
		return -ENOMEM;
	j->pid = j->peer.pid;
	if (arg_pid(req, rep, "pid", &j->pid) < 0) {
		free(j);
		return -EINVAL;
	}
	j->abort_on_close = aoc != NULL && strcmp(aoc, "1") == 0;
	if (label != NULL)
		strcpy(j->label, label);
	enqueue(arg, j);
	return CONTROL_PENDING;
}

static int verb_end(const struct control_request *req,
		    struct control_reply *rep, void *arg, enum job_kind kind)
{
	struct job *j = job_new(kind, req, rep);

	if (j == NULL)
		return control_reply_error(rep, -EINVAL, "%s", "bad request"),
		       -EINVAL;
	enqueue(arg, j);
	return CONTROL_PENDING;
}

static int verb_commit(const struct control_request *req,
		       struct control_reply *rep, void *arg)
{
	return verb_end(req, rep, arg, JOB_COMMIT);
}

static int verb_abort(const struct control_request *req,
		      struct control_reply *rep, void *arg)
{
	return verb_end(req, rep, arg, JOB_ABORT);
}

static int verb_diff(const struct control_request *req,
		     struct control_reply *rep, void *arg)
{
	return verb_end(req, rep, arg, JOB_DIFF);
}

static const char *type_letter(mode_t type)
{
	switch (type & S_IFMT) {
	case S_IFDIR:
		return "d";
	case S_IFLNK:
		return "l";
	case S_IFIFO:
		return "p";
	case S_IFSOCK:
		return "s";
	case S_IFCHR:
		return "c";
	case S_IFBLK:
		return "b";
	default:
		return "f";
	}
}

static int verb_bind(const struct control_request *req,
		     struct control_reply *rep, void *arg)
{
	struct job *j;

	if (control_request_get(req, "txid", NULL) == NULL ||
	    control_request_get(req, "pid", NULL) == NULL)
		return control_reply_error(rep, -EINVAL,
					   "bind needs txid= and pid="),
		       -EINVAL;
	j = job_new(JOB_BIND, req, rep);
	if (j == NULL)
		return -EINVAL;
	if (arg_pid(req, rep, "pid", &j->pid) < 0) {
		free(j);
		return -EINVAL;
	}
	enqueue(arg, j);
	return CONTROL_PENDING;
}

static const char *state_name(enum tx_state s)
{
	switch (s) {
	case TX_OPEN:
		return "open";
	case TX_COMMITTING:
		return "committing";
	case TX_ABORTING:
		return "aborting";
	case TX_DONE:
		break;
	}
	return "done";
}

static void add_info(struct control_reply *rep, const struct tx_info *i)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	control_reply_addf(rep, "txid", "%" PRIu64, i->id);
	control_reply_addf(rep, "uid", "%u", (unsigned)i->owner);
	control_reply_addf(rep, "leader", "%d", (int)i->leader);
	control_reply_add(rep, "label", i->label);
	control_reply_addf(rep, "started", "%" PRId64, i->started);
	control_reply_addf(rep, "age", "%" PRId64,
			   now.tv_sec > i->started ? now.tv_sec - i->started
						   : 0);
	control_reply_add(rep, "state", state_name(i->state));
	control_reply_addf(rep, "changes", "%zu", i->changes);
	control_reply_addf(rep, "members", "%zu", i->members);
}

static int verb_list(const struct control_request *req,
		     struct control_reply *rep, void *arg)
{
	const struct control_peer *peer = control_request_peer(req);
	struct txcmd *tc = arg;
	struct tx_info *v = NULL;
	size_t n, cap = 16;

	for (;;) {
		struct tx_info *nv = realloc(v, cap * sizeof(*v));
		if (nv == NULL) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		n = tx_list(tc->cfg.tx, v, cap);
		if (n <= cap)
			break;
		cap = n + 16;
	}
	for (size_t i = 0; i < n; i++) {
		if (!control_peer_may_manage(peer, v[i].owner))
			continue;
		control_reply_record(rep);
		add_info(rep, &v[i]);
	}
	free(v);
	return CONTROL_DONE;
}

/* recovery: what recovery did when the daemon started (anyone may ask). */
static int verb_recovery(const struct control_request *req,
			 struct control_reply *rep, void *arg)
{
	struct txcmd *tc = arg;
	struct tx_recovery r;

	(void)req;
	tx_recovery_get(tc->cfg.tx, &r);
	control_reply_addf(rep, "records", "%zu", r.records);
	control_reply_addf(rep, "steps", "%zu", r.steps);
	control_reply_addf(rep, "already", "%zu", r.already);
	control_reply_addf(rep, "skipped", "%zu", r.skipped);
	control_reply_addf(rep, "discarded", "%zu", r.discarded);
	control_reply_addf(rep, "ms", "%" PRIu64, r.ms);
	return CONTROL_DONE;
}

static void show_path(const char *path, const char *change, void *arg)
{
	struct control_reply *rep = arg;

	control_reply_record(rep);
	control_reply_add(rep, "path", path);
	control_reply_add(rep, "change", change);
}

/* Resolves an omitted txid to the peer's own transaction. */
static int own_txid(struct txcmd *tc, const struct control_peer *peer,
		    struct control_reply *rep, uint64_t *txid)
{
	int ret;

	if (*txid != 0)
		return 0;
	ret = tx_of_pid(tc->cfg.tx, peer->pid, txid);
	if (ret < 0)
		return control_reply_error(rep, ret,
					   "cannot tell the caller's "
					   "transaction: %s",
					   strerror(-ret)),
		       ret;
	if (*txid == 0)
		return control_reply_error(rep, -ENOENT,
					   "not in a transaction"),
		       -ENOENT;
	return 0;
}

static int verb_show(const struct control_request *req,
		     struct control_reply *rep, void *arg)
{
	const struct control_peer *peer = control_request_peer(req);
	struct txcmd *tc = arg;
	struct tx_info info;
	uint64_t txid;
	int ret;

	ret = arg_txid(req, rep, &txid);
	if (ret < 0)
		return ret;
	ret = own_txid(tc, peer, rep, &txid);
	if (ret < 0)
		return ret;
	/* Check the owner before listing anything. */
	ret = tx_show(tc->cfg.tx, txid, &info, NULL, NULL);
	if (ret == -ENOENT)
		return control_reply_error(
			   rep, ret, "no such transaction: %" PRIu64, txid),
		       ret;
	if (ret < 0)
		return ret;
	if (!control_peer_may_manage(peer, info.owner))
		return control_reply_error(rep, -EPERM,
					   "transaction %" PRIu64
					   " belongs to uid %u",
					   txid, (unsigned)info.owner),
		       -EPERM;
	add_info(rep, &info);
	ret = tx_show(tc->cfg.tx, txid, &info, show_path, rep);
	if (ret == -ENOENT)
		return control_reply_error(
			   rep, ret, "no such transaction: %" PRIu64, txid),
		       ret;
	return ret < 0 ? ret : CONTROL_DONE;
}

/* Sleeps until the kernel has dropped entries cached before begin. */
static void wait_caches(struct txcmd *tc)
{
	struct timespec now;
	int64_t deadline, t;

	if (tc->cfg.cache_deadline == NULL)
		return;
	deadline = tc->cfg.cache_deadline(tc->cfg.cache_arg);
	clock_gettime(CLOCK_MONOTONIC, &now);
	t = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	if (deadline > t) {
		struct timespec d = {
			.tv_sec = (deadline - t) / 1000000000,
			.tv_nsec = (deadline - t) % 1000000000,
		};
		nanosleep(&d, NULL);
	}
}

static const char *end_error(int ret)
{
	switch (ret) {
	case -ENOENT:
		return "no such transaction";
	case -EPERM:
		return "not the owner of transaction";
	case -EBUSY:
		return "a commit or abort is already running for transaction";
	default:
		return NULL;
	}
}

static void run_job(struct txcmd *tc, struct job *j)
{
	struct control_reply *rep = j->rep;
	struct tx_conflicts conflicts = { 0 };
	struct timespec t0, t1;
	size_t changes = 0;
	uint64_t txid = j->txid;
	bool replied = false;
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (j->kind != JOB_BEGIN && j->kind != JOB_BIND &&
	    (rep != NULL || txid == 0)) {
		ret =
		    rep != NULL ? own_txid(tc, &j->peer, rep, &txid) : -ENOENT;
		if (ret < 0)
			goto out_send;
	}
	switch (j->kind) {
	case JOB_BEGIN:
		ret = tx_begin(tc->cfg.tx, j->peer.uid, j->pid, j->label,
			       j->abort_on_close ? j->peer.conn : 0, &txid);
		if (ret == 0) {
			wait_caches(tc);
			control_reply_addf(rep, "txid", "%" PRIu64, txid);
		} else if (ret == -ESRCH) {
			control_reply_error(rep, ret, "no such process: %d",
					    (int)j->pid);
		} else if (ret == -EPERM) {
			control_reply_error(rep, ret,
					    "process %d belongs to another "
					    "user",
					    (int)j->pid);
		} else if (ret == -EBUSY) {
			uint64_t other = 0;
			(void)tx_of_pid(tc->cfg.tx, j->pid, &other);
			control_reply_error(rep, ret,
					    "process %d is already in "
					    "transaction %" PRIu64,
					    (int)j->pid, other);
		}
		break;
	case JOB_BIND:
		ret = tx_bind(tc->cfg.tx, txid, j->peer.uid, j->pid);
		if (ret == -EACCES) {
			ret = -EPERM;
			control_reply_error(rep, ret,
					    "cannot bind process %d: it "
					    "belongs to another user",
					    (int)j->pid);
			goto out_send;
		}
		if (ret == -EBUSY || ret == -ESRCH) {
			control_reply_error(rep, ret,
					    "cannot bind process %d: %s",
					    (int)j->pid, strerror(-ret));
			goto out_send;
		}
		break;
	case JOB_COMMIT:
		ret = tx_commit(tc->cfg.tx, txid, j->peer.uid, &changes,
				&conflicts);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (ret == 0) {
			control_reply_addf(rep, "txid", "%" PRIu64, txid);
			control_reply_addf(rep, "changes", "%zu", changes);
			control_reply_addf(
			    rep, "ms", "%" PRId64,
			    (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
				(t1.tv_nsec - t0.tv_nsec) / 1000000);
		} else if (ret == -ECANCELED) {
			control_reply_addf(rep, "txid", "%" PRIu64, txid);
			control_reply_error(rep, ret,
					    "transaction %" PRIu64
					    " conflicts on %zu path(s) and "
					    "was aborted",
					    txid, conflicts.n);
			for (size_t i = 0; i < conflicts.n; i++) {
				control_reply_record(rep);
				control_reply_add(rep, "path",
						  conflicts.paths[i]);
			}
		} else if (ret < 0 && end_error(ret) == NULL) {
			/* Nothing became durable: say what the user can do. */
			control_reply_error(rep, ret,
					    "cannot commit transaction %" PRIu64
					    ": %s; it is still open (commit "
					    "again, or abort it)",
					    txid, strerror(-ret));
			replied = true;
		}
		tx_conflicts_clear(&conflicts);
		break;
	case JOB_DIFF: {
		struct tx_change *c;
		size_t n;
		ret = tx_diff(tc->cfg.tx, txid, j->peer.uid, &c, &n);
		for (size_t i = 0; ret == 0 && i < n; i++) {
			char kind[2] = { c[i].kind, '\0' };
			control_reply_record(rep);
			control_reply_add(rep, "change", kind);
			control_reply_add(rep, "path",
					  c[i].path ? c[i].path : "?");
			if (c[i].old != NULL)
				control_reply_add(rep, "old", c[i].old);
			control_reply_add(rep, "type", type_letter(c[i].type));
			if (c[i].mode_changed)
				control_reply_add(rep, "mode_changed", "1");
			if (c[i].old_file != NULL)
				control_reply_add(rep, "old_file",
						  c[i].old_file);
			if (c[i].new_file != NULL)
				control_reply_add(rep, "new_file",
						  c[i].new_file);
		}
		if (ret == 0)
			tx_changes_free(c, n);
		break;
	}
	case JOB_ABORT:
		if (rep == NULL && tx_by_conn(tc->cfg.tx, j->peer.conn) != txid)
			break; /* it ended some other way meanwhile */
		ret = tx_abort(tc->cfg.tx, txid, j->peer.uid);
		if (rep == NULL)
			log_info("transaction %" PRIu64 ": its client went "
				 "away, aborted",
				 txid);
		else if (ret == 0)
			control_reply_addf(rep, "txid", "%" PRIu64, txid);
		break;
	}
	if (ret < 0 && rep != NULL && end_error(ret) != NULL &&
	    j->kind != JOB_BEGIN)
		control_reply_error(rep, ret, "%s %" PRIu64, end_error(ret),
				    txid);
	else if (ret < 0 && rep != NULL && !replied && ret != -ECANCELED &&
		 ret != -EBUSY && ret != -ESRCH && ret != -EPERM)
		control_reply_error(
		    rep, ret, "%s failed: %s",
		    control_request_verb(control_reply_request(rep)),
		    strerror(-ret));
out_send:
	if (rep != NULL)
		control_reply_send(rep);
	free(j);
}

static void *worker(void *arg)
{
	struct txcmd *tc = arg;

	for (;;) {
		struct job *j;
		pthread_mutex_lock(&tc->lock);
		while (tc->head == NULL && !tc->stopping)
			pthread_cond_wait(&tc->cond, &tc->lock);
		j = tc->head;
		if (j != NULL) {
			tc->head = j->next;
			if (tc->head == NULL)
				tc->tail = NULL;
		}
		pthread_mutex_unlock(&tc->lock);
		if (j == NULL)
			return NULL; /* stopping and drained, invariant (3) */
		run_job(tc, j);
	}
}

/* The control thread: a connection closed; abort what it asked us to. */
static void on_close(const struct control_peer *peer, void *arg)
{
	struct txcmd *tc = arg;
	uint64_t txid = tx_by_conn(tc->cfg.tx, peer->conn);
	struct job *j;

	if (txid == 0)
		return;
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		log_err("transaction %" PRIu64 ": cannot queue its abort: %s",
			txid, strerror(ENOMEM));
		return;
	}
	j->kind = JOB_ABORT;
	j->peer = *peer;
	j->peer.uid = 0; /* the daemon itself ends it */
	j->txid = txid;
	pthread_mutex_lock(&tc->lock);
	bool stopping = tc->stopping;
	pthread_mutex_unlock(&tc->lock);
	if (stopping) {
		free(j); /* the table aborts everything at shutdown */
		return;
	}
	enqueue(tc, j);
}

static const struct {
	const char *verb;
	control_handler fn;
} verbs[] = {
	{ "begin", verb_begin }, { "commit", verb_commit },
	{ "abort", verb_abort }, { "bind", verb_bind },
	{ "list", verb_list },	 { "show", verb_show },
	{ "diff", verb_diff },	 { "recovery", verb_recovery },
};

int txcmd_start(const struct txcmd_config *cfg, struct txcmd **out)
{
	struct txcmd *tc = calloc(1, sizeof(*tc));
	int ret;

	if (tc == NULL)
		return -ENOMEM;
	tc->cfg = *cfg;
	pthread_mutex_init(&tc->lock, NULL);
	pthread_cond_init(&tc->cond, NULL);
	ret = -pthread_create(&tc->thread, NULL, worker, tc);
	if (ret < 0)
		goto out_free;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		ret = control_register(cfg->control, verbs[i].verb, verbs[i].fn,
				       tc);
		if (ret < 0) {
			log_err("cannot register verb %s: %s", verbs[i].verb,
				strerror(-ret));
			/* The worker has nothing queued yet: stop it. */
			pthread_mutex_lock(&tc->lock);
			tc->stopping = true;
			pthread_cond_signal(&tc->cond);
			pthread_mutex_unlock(&tc->lock);
			pthread_join(tc->thread, NULL);
			goto out_free;
		}
	}
	control_on_close(cfg->control, on_close, tc);
	*out = tc;
	return 0;

out_free:
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->lock);
	free(tc);
	return ret;
}

void txcmd_stop(struct txcmd *tc)
{
	if (tc == NULL)
		return;
	pthread_mutex_lock(&tc->lock);
	tc->stopping = true;
	pthread_cond_signal(&tc->cond);
	pthread_mutex_unlock(&tc->lock);
	pthread_join(tc->thread, NULL);
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->lock);
	free(tc);
}
