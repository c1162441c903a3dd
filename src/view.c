/*
 * view.c: the names of each transaction's view (see view.h).
 *
 * Data: one hash of name entries keyed by (view, directory, name), and per
 * view a record (struct vstate) listing its entries, its operation log
 * (newest first) and its link-count deltas.  An entry's identity (view,
 * directory, name) and the base state it first saw never change; what the
 * name leads to is an immutable value record replaced copy-on-write.
 * Records are allocated before the STM body that may publish them (no
 * allocation that outlives an aborted attempt happens inside a body); the
 * unused ones are freed by the caller.
 *
 * Entry states: (none) -> SET [view_apply: first change of the name] ->
 * value replaced [view_apply] -> retired [view_drop].
 *
 * Invariants:
 *  (1) At most one entry exists per (view, directory, name); it is in the
 *      hash and on its view's list exactly while the view is not dropped.
 *  (2) An entry's value is never NULL.
 *  (3) A view's log holds its operations in the order their view_apply
 *      transactions committed; it only grows until view_drop.
 *  (4) published names a view with a vstate, or is 0.
 */
#include "config.h"

#include "view.h"

#include "handle.h"
#include "stm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define VIEW_BUCKETS (1u << 16)
#define VIEW_NL_MAX  4 /* link counts one operation may change */

struct value {
	bool found;
	struct view_obj obj;
};

struct entry {
	uint64_t view;
	struct node_key dir;
	struct handle *dh;
	struct view_base base;
	struct stm_tvar value; /* struct value * */
	struct stm_tvar next_hash;
	struct stm_tvar next_view;
	char name[];
};

struct logrec {
	struct view_op op;
	struct stm_tvar next;
};

struct nlrec {
	struct node_key key;
	struct stm_tvar delta; /* a long, stored as uintptr_t */
	struct stm_tvar next;
};

struct vstate {
	uint64_t view;
	struct stm_tvar entries;
	struct stm_tvar log;
	struct stm_tvar nlinks;
	struct stm_tvar next;
};

struct view_table {
	struct stm_tvar *buckets;
	struct stm_tvar views;	   /* struct vstate list */
	struct stm_tvar published; /* a view id, or 0 */
	_Atomic size_t nviews;	   /* a hint for view_any */
};

/* Makes room for one more element in a growable array; 0 or -ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap * 2 + 16;
	void *nv = realloc(*v, ncap * size);
	if (nv == NULL)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

static uint64_t hash_of(uint64_t view, const struct node_key *dir,
			const char *name)
{
	uint64_t h = 1469598103934665603ull ^ view;

	h = (h ^ (uint64_t)dir->dev) * 1099511628211ull;
	h = (h ^ (uint64_t)dir->ino) * 1099511628211ull;
	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

static bool same_key(const struct node_key *a, const struct node_key *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

static void obj_clear(struct view_obj *o)
{
	handle_free(o->handle);
	o->handle = NULL;
}

static int obj_copy(struct view_obj *to, const struct view_obj *from)
{
	*to = *from;
	to->handle = NULL;
	if (from->handle != NULL) {
		to->handle = handle_dup(from->handle);
		if (to->handle == NULL)
			return -ENOMEM;
	}
	return 0;
}

static void value_free(void *p)
{
	struct value *v = p;

	if (v != NULL)
		obj_clear(&v->obj);
	free(v);
}

static void entry_free(void *p)
{
	struct entry *e = p;

	value_free((struct value *)stm_peek(&e->value));
	handle_free(e->dh);
	free(e);
}

static void op_clear(struct view_op *op)
{
	handle_free(op->dh1);
	handle_free(op->dh2);
	free(op->name1);
	free(op->name2);
	obj_clear(&op->obj);
	memset(op, 0, sizeof(*op));
}

static int op_copy(struct view_op *to, const struct view_op *from)
{
	*to = *from;
	to->dh1 = to->dh2 = NULL;
	to->name1 = to->name2 = NULL;
	to->obj.handle = NULL;
	if ((from->dh1 != NULL && (to->dh1 = handle_dup(from->dh1)) == NULL) ||
	    (from->dh2 != NULL && (to->dh2 = handle_dup(from->dh2)) == NULL) ||
	    (from->name1 != NULL &&
	     (to->name1 = strdup(from->name1)) == NULL) ||
	    (from->name2 != NULL &&
	     (to->name2 = strdup(from->name2)) == NULL) ||
	    obj_copy(&to->obj, &from->obj) < 0) {
		op_clear(to);
		return -ENOMEM;
	}
	return 0;
}

static void logrec_free(void *p)
{
	struct logrec *l = p;

	op_clear(&l->op);
	free(l);
}

int view_table_new(struct view_table **out)
{
	struct view_table *vt = calloc(1, sizeof(*vt));

	if (vt == NULL)
		return -ENOMEM;
	vt->buckets = calloc(VIEW_BUCKETS, sizeof(*vt->buckets));
	if (vt->buckets == NULL) {
		free(vt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < VIEW_BUCKETS; i++)
		stm_tvar_init(&vt->buckets[i], 0);
	stm_tvar_init(&vt->views, 0);
	stm_tvar_init(&vt->published, 0);
	atomic_init(&vt->nviews, 0);
	*out = vt;
	return 0;
}

bool view_published(struct view_table *vt)
{
	return stm_peek(&vt->published) != 0;
}

bool view_any(struct view_table *vt)
{
	return atomic_load(&vt->nviews) != 0;
}

/* Finds view's record in a body; NULL if it has none. */
static int find_vstate(struct stm_tx *tx, struct view_table *vt, uint64_t view,
		       struct vstate **out)
{
	struct vstate *v;

	STM_LOADP(tx, &vt->views, &v);
	while (v != NULL && v->view != view)
		STM_LOADP(tx, &v->next, &v);
	*out = v;
	return 0;
}

/* Finds the entry for (view, dir, name) in a body. */
static int find_entry(struct stm_tx *tx, struct view_table *vt, uint64_t view,
		      const struct node_key *dir, const char *name,
		      struct entry **out)
{
	uint64_t h = hash_of(view, dir, name);
	struct entry *e;

	STM_LOADP(tx, &vt->buckets[h & (VIEW_BUCKETS - 1)], &e);
	while (e != NULL && !(e->view == view && same_key(&e->dir, dir) &&
			      strcmp(e->name, name) == 0))
		STM_LOADP(tx, &e->next_hash, &e);
	*out = e;
	return 0;
}

struct lookup_args {
	struct view_table *vt;
	uint64_t view;
	const struct node_key *dir;
	const char *name;
	struct view_obj *obj;
	int result;
};

static int lookup_body(struct stm_tx *tx, void *arg)
{
	struct lookup_args *a = arg;
	uintptr_t published;
	struct entry *e = NULL;
	struct value *v;
	int ret;

	obj_clear(a->obj);
	a->result = VIEW_MISS;
	if (a->view != 0) {
		ret = find_entry(tx, a->vt, a->view, a->dir, a->name, &e);
		if (ret != 0)
			return ret;
	}
	STM_LOAD(tx, &a->vt->published, &published);
	if (e == NULL && published != 0 && published != a->view) {
		ret = find_entry(tx, a->vt, published, a->dir, a->name, &e);
		if (ret != 0)
			return ret;
	}
	if (e == NULL)
		return 0;
	STM_LOADP(tx, &e->value, &v);
	if (!v->found) {
		a->result = VIEW_GONE;
		return 0;
	}
	a->result = VIEW_FOUND;
	ret = obj_copy(a->obj, &v->obj);
	a->obj->from = e->view;
	return ret;
}

int view_lookup(struct view_table *vt, uint64_t view,
		const struct node_key *dir, const char *name,
		struct view_obj *obj)
{
	struct lookup_args a = {
		.vt = vt, .view = view, .dir = dir, .name = name, .obj = obj
	};
	int ret;

	memset(obj, 0, sizeof(*obj));
	if (!view_any(vt))
		return VIEW_MISS;
	ret = stm_atomically(lookup_body, &a, STM_RO);
	if (ret < 0 || a.result != VIEW_FOUND)
		obj_clear(obj);
	return ret < 0 ? ret : a.result;
}

/* What view_apply prepares before its body: every record it may link. */
struct apply_args {
	struct view_table *vt;
	uint64_t view;
	const struct view_change *ch;
	struct vstate *vs;	       /* used if the view has none */
	struct entry *e[2];	       /* used if the names have none */
	struct value *val[2];	       /* the names' new values */
	struct nlrec *nl[VIEW_NL_MAX]; /* used if the objects have none */
	struct logrec *log;
	bool used_vs, used_e[2], used_nl[VIEW_NL_MAX];
	int next_nl; /* the next unused nl */
	view_guard_fn guard;
	void *garg;
};

/* Sets (dir, name) of the view to val in a body. */
static int set_name(struct stm_tx *tx, struct apply_args *a, struct vstate *vs,
		    int i, const struct node_key *dir, const char *name)
{
	struct entry *e, *first;
	struct value *old;
	int ret;

	ret = find_entry(tx, a->vt, a->view, dir, name, &e);
	if (ret != 0)
		return ret;
	if (e == NULL) {
		uint64_t h = hash_of(a->view, dir, name);
		struct stm_tvar *head = &a->vt->buckets[h & (VIEW_BUCKETS - 1)];
		e = a->e[i];
		a->used_e[i] = true;
		stm_write(tx, &e->value, (uintptr_t)a->val[i]);
		STM_LOADP(tx, head, &first);
		stm_write(tx, &e->next_hash, (uintptr_t)first);
		stm_write(tx, head, (uintptr_t)e);
		STM_LOADP(tx, &vs->entries, &first);
		stm_write(tx, &e->next_view, (uintptr_t)first);
		stm_write(tx, &vs->entries, (uintptr_t)e);
		return 0;
	}
	STM_LOADP(tx, &e->value, &old);
	stm_write(tx, &e->value, (uintptr_t)a->val[i]);
	stm_retire(tx, old, value_free);
	return 0;
}

/* Adds d to the view's link-count delta of obj in a body. */
static int add_links(struct stm_tx *tx, struct apply_args *a, struct vstate *vs,
		     const struct node_key *obj, long d)
{
	struct nlrec *r, *first;
	uintptr_t cur;
	int i;

	STM_LOADP(tx, &vs->nlinks, &first);
	for (r = first; r != NULL;) {
		if (same_key(&r->key, obj))
			break;
		STM_LOADP(tx, &r->next, &r);
	}
	if (r == NULL) {
		i = a->next_nl++;
		r = a->nl[i];
		a->used_nl[i] = true;
		r->key = *obj;
		stm_write(tx, &r->next, (uintptr_t)first);
		stm_write(tx, &vs->nlinks, (uintptr_t)r);
		cur = 0;
	} else {
		STM_LOAD(tx, &r->delta, &cur);
	}
	stm_write(tx, &r->delta, (uintptr_t)((long)cur + d));
	return 0;
}

static int apply_body(struct stm_tx *tx, void *arg)
{
	struct apply_args *a = arg;
	const struct view_change *ch = a->ch;
	const struct view_op *op = &ch->op;
	struct vstate *vs, *first;
	struct logrec *head;
	int ret;

	a->used_vs = a->used_e[0] = a->used_e[1] = false;
	memset(a->used_nl, 0, sizeof(a->used_nl));
	a->next_nl = 0;
	if (a->guard != NULL) {
		ret = a->guard(tx, a->garg);
		if (ret != 0)
			return ret;
	}
	ret = find_vstate(tx, a->vt, a->view, &vs);
	if (ret != 0)
		return ret;
	if (vs == NULL) {
		vs = a->vs;
		a->used_vs = true;
		STM_LOADP(tx, &a->vt->views, &first);
		stm_write(tx, &vs->next, (uintptr_t)first);
		stm_write(tx, &a->vt->views, (uintptr_t)vs);
	}
	ret = set_name(tx, a, vs, 0, &op->dir1, op->name1);
	if (ret == 0 && op->kind == VIEW_RENAME)
		ret = set_name(tx, a, vs, 1, &op->dir2, op->name2);
	if (ret != 0)
		return ret;
	/*
	 * Link counts: a file counts its names, a directory its
	 * subdirectories' ".." (so a directory's own count never changes).
	 */
	bool sdir = ch->src.key.type == S_IFDIR;
	bool ddir = ch->dst.key.type == S_IFDIR;
	bool moves = !same_key(&op->dir1, &op->dir2);
	switch (op->kind) {
	case VIEW_LINK:
		ret = add_links(tx, a, vs, &op->obj.key, 1);
		break;
	case VIEW_CREATE:
		if (op->obj.key.type == S_IFDIR)
			ret = add_links(tx, a, vs, &op->dir1, 1);
		break;
	case VIEW_UNLINK:
		ret = add_links(tx, a, vs, sdir ? &op->dir1 : &ch->src.key, -1);
		break;
	case VIEW_RENAME:
		if (op->flags & RENAME_EXCHANGE) {
			/* A directory swapped with a non-directory moves a
			 * ".." from one parent to the other. */
			if (sdir != ddir && moves) {
				ret = add_links(tx, a, vs, &op->dir1,
						sdir ? -1 : 1);
				if (ret == 0)
					ret = add_links(tx, a, vs, &op->dir2,
							sdir ? 1 : -1);
			}
			break;
		}
		if (sdir && moves) {
			ret = add_links(tx, a, vs, &op->dir1, -1);
			if (ret == 0)
				ret = add_links(tx, a, vs, &op->dir2, 1);
		}
		if (ret == 0 && ch->dst_exists &&
		    !same_key(&ch->dst.key, &ch->src.key))
			ret = add_links(tx, a, vs,
					ddir ? &op->dir2 : &ch->dst.key, -1);
		break;
	}
	if (ret != 0)
		return ret;
	STM_LOADP(tx, &vs->log, &head);
	stm_write(tx, &a->log->next, (uintptr_t)head);
	stm_write(tx, &vs->log, (uintptr_t)a->log);
	return 0;
}

static struct entry *entry_new(uint64_t view, const struct node_key *dir,
			       const struct handle *dh, const char *name,
			       const struct view_base *base)
{
	size_t len = strlen(name);
	struct entry *e = calloc(1, sizeof(*e) + len + 1);

	if (e == NULL)
		return NULL;
	e->view = view;
	e->dir = *dir;
	e->base = *base;
	memcpy(e->name, name, len + 1);
	if (dh != NULL && (e->dh = handle_dup(dh)) == NULL) {
		free(e);
		return NULL;
	}
	stm_tvar_init(&e->value, 0);
	stm_tvar_init(&e->next_hash, 0);
	stm_tvar_init(&e->next_view, 0);
	return e;
}

static struct value *value_new(bool found, const struct view_obj *obj)
{
	struct value *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->found = found;
	if (found && obj_copy(&v->obj, obj) < 0) {
		free(v);
		return NULL;
	}
	return v;
}

int view_apply(struct view_table *vt, uint64_t view,
	       const struct view_change *ch, view_guard_fn guard, void *garg)
{
	const struct view_op *op = &ch->op;
	struct apply_args a = {
		.vt = vt, .view = view, .ch = ch, .guard = guard, .garg = garg
	};
	bool rename = op->kind == VIEW_RENAME;
	bool exchange = rename && (op->flags & RENAME_EXCHANGE);
	int ret = -ENOMEM;

	a.vs = calloc(1, sizeof(*a.vs));
	a.log = calloc(1, sizeof(*a.log));
	for (int i = 0; i < VIEW_NL_MAX; i++)
		a.nl[i] = calloc(1, sizeof(*a.nl[i]));
	a.e[0] = entry_new(view, &op->dir1, op->dh1, op->name1, &ch->base1);
	if (rename)
		a.e[1] =
		    entry_new(view, &op->dir2, op->dh2, op->name2, &ch->base2);
	switch (op->kind) {
	case VIEW_CREATE:
	case VIEW_LINK:
		a.val[0] = value_new(true, &op->obj);
		break;
	case VIEW_UNLINK:
		a.val[0] = value_new(false, NULL);
		break;
	case VIEW_RENAME:
		a.val[0] = exchange ? value_new(true, &ch->dst)
				    : value_new(false, NULL);
		a.val[1] = value_new(true, &ch->src);
		break;
	}
	if (a.vs == NULL || a.log == NULL || a.nl[0] == NULL ||
	    a.nl[1] == NULL || a.nl[2] == NULL || a.nl[3] == NULL ||
	    a.e[0] == NULL || a.val[0] == NULL ||
	    (rename && (a.e[1] == NULL || a.val[1] == NULL)))
		goto out_free;
	if (op_copy(&a.log->op, op) < 0)
		goto out_free;
	a.vs->view = view;
	stm_tvar_init(&a.vs->entries, 0);
	stm_tvar_init(&a.vs->log, 0);
	stm_tvar_init(&a.vs->nlinks, 0);
	stm_tvar_init(&a.vs->next, 0);
	for (int i = 0; i < VIEW_NL_MAX; i++) {
		stm_tvar_init(&a.nl[i]->delta, 0);
		stm_tvar_init(&a.nl[i]->next, 0);
	}
	stm_tvar_init(&a.log->next, 0);
	ret = stm_atomically(apply_body, &a, 0);
	if (ret == 0) {
		if (a.used_vs)
			atomic_fetch_add(&vt->nviews, 1);
		a.log = NULL;
		a.val[0] = a.val[1] = NULL;
		if (a.used_vs)
			a.vs = NULL;
		for (int i = 0; i < 2; i++)
			if (a.used_e[i])
				a.e[i] = NULL;
		for (int i = 0; i < VIEW_NL_MAX; i++)
			if (a.used_nl[i])
				a.nl[i] = NULL;
	}
out_free:
	free(a.vs);
	if (a.log != NULL)
		logrec_free(a.log);
	for (int i = 0; i < 2; i++) {
		if (a.e[i] != NULL) {
			handle_free(a.e[i]->dh);
			free(a.e[i]);
		}
		value_free(a.val[i]);
	}
	for (int i = 0; i < VIEW_NL_MAX; i++)
		free(a.nl[i]);
	return ret;
}

struct list_args {
	struct view_table *vt;
	uint64_t view;
	const struct node_key *dir;
	/* Collected inside the body, reported after it. */
	struct {
		char *name;
		bool found;
		struct node_key key;
	} * v;
	size_t n, cap;
};

static int collect(struct list_args *a, struct vstate *vs, bool shadowed_ok,
		   struct stm_tx *tx)
{
	struct entry *e;
	struct value *val;

	STM_LOADP(tx, &vs->entries, &e);
	while (e != NULL) {
		if (same_key(&e->dir, a->dir)) {
			bool dup = false;
			for (size_t i = 0; !shadowed_ok && i < a->n && !dup;
			     i++)
				dup = strcmp(a->v[i].name, e->name) == 0;
			if (!dup) {
				if (grow((void **)&a->v, &a->cap, a->n,
					 sizeof(*a->v)) < 0)
					return -ENOMEM;
				STM_LOADP(tx, &e->value, &val);
				a->v[a->n].name = strdup(e->name);
				if (a->v[a->n].name == NULL)
					return -ENOMEM;
				a->v[a->n].found = val->found;
				a->v[a->n].key = val->obj.key;
				a->n++;
			}
		}
		STM_LOADP(tx, &e->next_view, &e);
	}
	return 0;
}

static int list_body(struct stm_tx *tx, void *arg)
{
	struct list_args *a = arg;
	struct vstate *vs;
	uintptr_t published;
	int ret;

	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].name);
	a->n = 0;
	if (a->view != 0) {
		ret = find_vstate(tx, a->vt, a->view, &vs);
		if (ret == 0 && vs != NULL)
			ret = collect(a, vs, true, tx);
		if (ret != 0)
			return ret;
	}
	STM_LOAD(tx, &a->vt->published, &published);
	if (published != 0 && published != a->view) {
		ret = find_vstate(tx, a->vt, published, &vs);
		if (ret == 0 && vs != NULL)
			ret = collect(a, vs, false, tx);
		if (ret != 0)
			return ret;
	}
	return 0;
}

int view_list(struct view_table *vt, uint64_t view, const struct node_key *dir,
	      view_list_fn fn, void *arg)
{
	struct list_args a = { .vt = vt, .view = view, .dir = dir };
	int ret;

	if (!view_any(vt))
		return 0;
	ret = stm_atomically(list_body, &a, STM_RO);
	for (size_t i = 0; i < a.n; i++) {
		if (ret == 0)
			fn(a.v[i].name, a.v[i].found, &a.v[i].key, arg);
		free(a.v[i].name);
	}
	free(a.v);
	return ret;
}

struct nlink_args {
	struct view_table *vt;
	uint64_t view;
	const struct node_key *obj;
	long delta;
};

static int nlink_body(struct stm_tx *tx, void *arg)
{
	struct nlink_args *a = arg;
	uintptr_t published, d;
	struct vstate *vs;
	struct nlrec *r;
	uint64_t views[2];
	int ret;

	a->delta = 0;
	STM_LOAD(tx, &a->vt->published, &published);
	views[0] = a->view;
	views[1] = published != a->view ? published : 0;
	for (int i = 0; i < 2; i++) {
		if (views[i] == 0)
			continue;
		ret = find_vstate(tx, a->vt, views[i], &vs);
		if (ret != 0)
			return ret;
		if (vs == NULL)
			continue;
		STM_LOADP(tx, &vs->nlinks, &r);
		while (r != NULL) {
			if (same_key(&r->key, a->obj)) {
				STM_LOAD(tx, &r->delta, &d);
				a->delta += (long)d;
			}
			STM_LOADP(tx, &r->next, &r);
		}
	}
	return 0;
}

long view_nlink_delta(struct view_table *vt, uint64_t view,
		      const struct node_key *obj)
{
	struct nlink_args a = { .vt = vt, .view = view, .obj = obj };

	if (!view_any(vt) || stm_atomically(nlink_body, &a, STM_RO) < 0)
		return 0;
	return a.delta;
}

struct log_args {
	struct view_table *vt;
	uint64_t view;
	struct logrec **v;
	size_t n, cap;
};

static int log_body(struct stm_tx *tx, void *arg)
{
	struct log_args *a = arg;
	struct vstate *vs;
	struct logrec *l;
	int ret;

	a->n = 0;
	ret = find_vstate(tx, a->vt, a->view, &vs);
	if (ret != 0 || vs == NULL)
		return ret;
	STM_LOADP(tx, &vs->log, &l);
	while (l != NULL) {
		if (grow((void **)&a->v, &a->cap, a->n, sizeof(*a->v)) < 0)
			return -ENOMEM;
		a->v[a->n++] = l;
		STM_LOADP(tx, &l->next, &l);
	}
	return 0;
}

int view_log(struct view_table *vt, uint64_t view, struct view_op **ops,
	     size_t *n)
{
	struct log_args a = { .vt = vt, .view = view };
	struct view_op *out = NULL;
	int ret;

	*ops = NULL;
	*n = 0;
	/*
	 * The log only grows while its transaction is open, and its commit
	 * (the caller) is the only one that drops it, so its records stay
	 * valid after the body.
	 */
	ret = stm_atomically(log_body, &a, STM_RO);
	if (ret == 0 && a.n > 0) {
		out = calloc(a.n, sizeof(*out));
		if (out == NULL)
			ret = -ENOMEM;
		for (size_t i = 0; ret == 0 && i < a.n; i++)
			ret = op_copy(&out[i], &a.v[a.n - 1 - i]->op);
		if (ret < 0) {
			view_ops_free(out, a.n);
			out = NULL;
		}
	}
	free(a.v);
	if (ret == 0) {
		*ops = out;
		*n = a.n;
	}
	return ret;
}

void view_ops_free(struct view_op *ops, size_t n)
{
	for (size_t i = 0; ops != NULL && i < n; i++)
		op_clear(&ops[i]);
	free(ops);
}

struct names_args {
	struct view_table *vt;
	uint64_t view;
	struct view_name *v;
	size_t n, cap;
};

static void name_clear(struct view_name *x)
{
	handle_free(x->dh);
	free(x->name);
	obj_clear(&x->obj);
}

static int names_body(struct stm_tx *tx, void *arg)
{
	struct names_args *a = arg;
	struct vstate *vs;
	struct entry *e;
	struct value *val;
	int ret;

	for (size_t i = 0; i < a->n; i++)
		name_clear(&a->v[i]);
	a->n = 0;
	ret = find_vstate(tx, a->vt, a->view, &vs);
	if (ret != 0 || vs == NULL)
		return ret;
	STM_LOADP(tx, &vs->entries, &e);
	while (e != NULL) {
		if (grow((void **)&a->v, &a->cap, a->n, sizeof(*a->v)) < 0)
			return -ENOMEM;
		/* Copied inside the body: values change while a view lives. */
		struct view_name *x = &a->v[a->n];
		memset(x, 0, sizeof(*x));
		STM_LOADP(tx, &e->value, &val);
		x->dir = e->dir;
		x->base = e->base;
		x->found = val->found;
		a->n++;
		if ((e->dh != NULL && (x->dh = handle_dup(e->dh)) == NULL) ||
		    (x->name = strdup(e->name)) == NULL ||
		    (val->found && obj_copy(&x->obj, &val->obj) < 0))
			return -ENOMEM;
		STM_LOADP(tx, &e->next_view, &e);
	}
	return 0;
}

int view_names(struct view_table *vt, uint64_t view, struct view_name **out,
	       size_t *n)
{
	struct names_args a = { .vt = vt, .view = view };
	int ret;

	*out = NULL;
	*n = 0;
	ret = stm_atomically(names_body, &a, STM_RO);
	if (ret < 0) {
		view_names_free(a.v, a.n);
		return ret;
	}
	/* Oldest first. */
	for (size_t i = 0; i < a.n / 2; i++) {
		struct view_name t = a.v[i];
		a.v[i] = a.v[a.n - 1 - i];
		a.v[a.n - 1 - i] = t;
	}
	*out = a.v;
	*n = a.n;
	return 0;
}

void view_names_free(struct view_name *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		name_clear(&v[i]);
	free(v);
}

struct pub_args {
	struct view_table *vt;
	uint64_t view;
	bool dropped;
};

int view_publish_in(struct stm_tx *tx, struct view_table *vt, uint64_t view)
{
	stm_write(tx, &vt->published, (uintptr_t)view);
	return 0;
}

static int publish_body(struct stm_tx *tx, void *arg)
{
	struct pub_args *a = arg;

	return view_publish_in(tx, a->vt, a->view);
}

int view_publish(struct view_table *vt, uint64_t view)
{
	struct pub_args a = { .vt = vt, .view = view };

	return stm_atomically(publish_body, &a, 0);
}

static int unlink_entry(struct stm_tx *tx, struct view_table *vt,
			struct entry *e)
{
	uint64_t h = hash_of(e->view, &e->dir, e->name);
	struct stm_tvar *link = &vt->buckets[h & (VIEW_BUCKETS - 1)];
	struct entry *cur, *next;

	for (;;) {
		STM_LOADP(tx, link, &cur);
		if (cur == NULL)
			return 0;
		if (cur == e)
			break;
		link = &cur->next_hash;
	}
	STM_LOADP(tx, &e->next_hash, &next);
	stm_write(tx, link, (uintptr_t)next);
	return 0;
}

static void nlrec_free(void *p)
{
	free(p);
}

static int drop_body(struct stm_tx *tx, void *arg)
{
	struct pub_args *a = arg;
	struct stm_tvar *link = &a->vt->views;
	struct vstate *vs, *next;
	uintptr_t published;
	struct entry *e;
	struct logrec *l;
	struct nlrec *r;
	int ret;

	a->dropped = false;
	for (;;) {
		STM_LOADP(tx, link, &vs);
		if (vs == NULL)
			return 0;
		if (vs->view == a->view)
			break;
		link = &vs->next;
	}
	STM_LOADP(tx, &vs->next, &next);
	stm_write(tx, link, (uintptr_t)next);
	STM_LOAD(tx, &a->vt->published, &published);
	if (published == a->view)
		stm_write(tx, &a->vt->published, 0);
	STM_LOADP(tx, &vs->entries, &e);
	while (e != NULL) {
		struct entry *en;
		STM_LOADP(tx, &e->next_view, &en);
		ret = unlink_entry(tx, a->vt, e);
		if (ret != 0)
			return ret;
		stm_retire(tx, e, entry_free);
		e = en;
	}
	STM_LOADP(tx, &vs->log, &l);
	while (l != NULL) {
		struct logrec *ln;
		STM_LOADP(tx, &l->next, &ln);
		stm_retire(tx, l, logrec_free);
		l = ln;
	}
	STM_LOADP(tx, &vs->nlinks, &r);
	while (r != NULL) {
		struct nlrec *rn;
		STM_LOADP(tx, &r->next, &rn);
		stm_retire(tx, r, nlrec_free);
		r = rn;
	}
	stm_retire(tx, vs, NULL);
	a->dropped = true;
	return 0;
}

void view_drop(struct view_table *vt, uint64_t view)
{
	struct pub_args a = { .vt = vt, .view = view };

	if (!view_any(vt))
		return;
	if (stm_atomically(drop_body, &a, 0) == 0 && a.dropped)
		atomic_fetch_sub(&vt->nviews, 1);
}

void view_table_free(struct view_table *vt)
{
	if (vt == NULL)
		return;
	stm_quiesce();
	for (;;) {
		struct vstate *vs = (struct vstate *)stm_peek(&vt->views);
		if (vs == NULL)
			break;
		view_drop(vt, vs->view);
		stm_quiesce();
	}
	free(vt->buckets);
	free(vt);
}

struct inv_args {
	struct view_table *vt;
	bool ok;
};

static int inv_body(struct stm_tx *tx, void *arg)
{
	struct inv_args *a = arg;
	struct vstate *vs;
	uintptr_t published;
	bool found_pub = false;

	a->ok = true;
	STM_LOAD(tx, &a->vt->published, &published);
	STM_LOADP(tx, &a->vt->views, &vs);
	while (vs != NULL) {
		struct entry *e;
		if (vs->view == published)
			found_pub = true;
		STM_LOADP(tx, &vs->entries, &e);
		while (e != NULL) {
			struct value *v;
			STM_LOADP(tx, &e->value, &v);
			if (v == NULL || e->view != vs->view)
				a->ok = false; /* invariants (1), (2) */
			STM_LOADP(tx, &e->next_view, &e);
		}
		STM_LOADP(tx, &vs->next, &vs);
	}
	if (published != 0 && !found_pub)
		a->ok = false; /* invariant (4) */
	return 0;
}

bool view_table_invariants(struct view_table *vt)
{
	struct inv_args a = { .vt = vt };

	return stm_atomically(inv_body, &a, STM_RO) == 0 && a.ok;
}
