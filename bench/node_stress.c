/*
 * node_stress.c: hammers the node table with lookups and forgets of a few
 * names from many threads, the pattern of test_node's race test at a
 * larger scale.  Built on demand (make bench/node_stress), best under
 * --enable-asan: it is the reproducer for a rare use-after-free of a node
 * retired through the STM (see the closing note of the session that added
 * it).  usage: node_stress THREADS ROUNDS
 */
#include "config.h"

#include "node.h"
#include "stm.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAMES	    8
#define MAX_THREADS 256

static int dir_fd;
static struct node_table *table;
static int rounds;

/* Looks up and forgets the same few names, as the kernel would. */
static void *run(void *arg)
{
	char name[16];

	(void)arg;
	for (int i = 0; i < rounds; i++) {
		struct node_key key;
		struct node *n;
		struct stat st;
		int fd;

		snprintf(name, sizeof(name), "r%d", i % NAMES);
		fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 ||
		    node_stat(fd, "", AT_EMPTY_PATH, &st, &key) != 0 ||
		    node_ref_fd(table, fd, &key, &n) != 0)
			abort();
		if (node_fd_get(table, n) < 0)
			abort();
		node_fd_put(table, n);
		node_forget(table, n, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/node-stress-XXXXXX", name[16];
	pthread_t tid[MAX_THREADS];
	int threads, root;

	if (argc != 3 || (threads = atoi(argv[1])) < 1 ||
	    threads > MAX_THREADS || (rounds = atoi(argv[2])) < 1) {
		fprintf(stderr, "usage: node_stress THREADS ROUNDS\n");
		return 2;
	}
	if (mkdtemp(dir) == NULL ||
	    (dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror("node_stress: cannot make a directory");
		return 1;
	}
	for (int i = 0; i < NAMES; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		close(
		    openat(dir_fd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	}
	root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0 || node_table_new(root, 16 * 64, &table) != 0) {
		fprintf(stderr, "node_stress: cannot make the node table\n");
		return 1;
	}
	for (int i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, run, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	stm_quiesce();
	printf("%d threads x %d rounds: %zu nodes left (expected 0)\n", threads,
	       rounds, node_count(table));
	node_table_free(table);
	for (int i = 0; i < NAMES; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		unlinkat(dir_fd, name, 0);
	}
	close(dir_fd);
	rmdir(dir);
	return 0;
}
