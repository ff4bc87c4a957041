// SPDX-License-Identifier: MIT
/* CPU seconds of this process's threads: the live ones from
 * /proc/self/task, the named ones that ended from what their exit kept. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "procfs.h"
#include "thread-cpu.h"

#define ENDED_MAX 32

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t ended_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fl_thread_cpu ended[ENDED_MAX]; /* by name */
static size_t nended;

void fl__thread_cpu_add(struct fl_thread_cpu *list, size_t *n, size_t max, const char *name,
			double cpu_s)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(list[i].name, name)) {
			list[i].cpu_s += cpu_s;
			return;
		}
	if (*n < max) {
		snprintf(list[*n].name, sizeof(list[*n].name), "%s", name);
		list[(*n)++].cpu_s = cpu_s;
	}
}

/* A named thread ends: keep its CPU seconds. */
static void thread_ended(void *unused)
{
	char name[16] = "";

	(void)unused;
	prctl(PR_GET_NAME, name, 0, 0, 0);
	pthread_mutex_lock(&ended_lock);
	fl__thread_cpu_add(ended, &nended, ENDED_MAX, name, fl__thread_cpu_s());
	pthread_mutex_unlock(&ended_lock);
}

static void make_key(void)
{
	pthread_key_create(&exit_key, thread_ended);
}

void fl__thread_name(const char *name)
{
	prctl(PR_SET_NAME, name, 0, 0, 0);
	pthread_once(&exit_once, make_key);
	pthread_setspecific(exit_key, (void *)1); /* non-NULL: the destructor runs */
}

static int by_cpu(const void *a, const void *b)
{
	double x = ((const struct fl_thread_cpu *)a)->cpu_s;
	double y = ((const struct fl_thread_cpu *)b)->cpu_s;

	return (x < y) - (x > y);
}

/* One thread's name and utime + stime (fields 14 and 15 of its stat). */
static int read_task(const char *tid, struct fl_thread_cpu *t)
{
	char path[64], line[1024];
	const char *p;
	unsigned long long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%.20s/stat", tid);
	p = fl__proc_stat(path, line, sizeof(line), t->name, sizeof(t->name));
	for (int field = 3; field < 14 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%llu %llu", &ut, &st) != 2)
		return -1;
	t->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

size_t fl__threads_cpu(const char *prefix, struct fl_thread_cpu *out, size_t max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	size_t n = 0;

	while (d && (e = readdir(d))) {
		struct fl_thread_cpu t;

		if (e->d_name[0] != '.' && read_task(e->d_name, &t) == 0 &&
		    !strncmp(t.name, prefix, strlen(prefix)))
			fl__thread_cpu_add(out, &n, max, t.name, t.cpu_s);
	}
	if (d)
		closedir(d);
	pthread_mutex_lock(&ended_lock);
	for (size_t i = 0; i < nended; i++)
		if (!strncmp(ended[i].name, prefix, strlen(prefix)))
			fl__thread_cpu_add(out, &n, max, ended[i].name, ended[i].cpu_s);
	pthread_mutex_unlock(&ended_lock);
	qsort(out, n, sizeof(*out), by_cpu);
	return n;
}

double fl__thread_cpu_print(FILE *out, const struct fl_thread_cpu *t, size_t n)
{
	double all = 0;

	for (size_t i = 0; i < n; i++) {
		fprintf(out, "%s %s %.2f", i ? "," : "", t[i].name, t[i].cpu_s);
		all += t[i].cpu_s;
	}
	return all;
}
