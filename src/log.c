/*
 * log.c: levelled logging.
 *
 * The configuration is written once by log_setup() before any other thread
 * starts and is read through atomics afterwards, so log_msg() can be called
 * from any thread.  A message is formatted into a local buffer and written
 * with one write(2), so lines from different threads never interleave.
 */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set by log_setup() before threads start; atomics for the readers. */
static _Atomic int log_max_level = LOG_INFO;
static _Atomic int log_to_syslog;
static const char *log_ident = "txfsd";

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg",	   [LOG_ALERT] = "alert",
	[LOG_CRIT] = "crit",	   [LOG_ERR] = "error",
	[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",	   [LOG_DEBUG] = "debug",
};

void log_setup(const char *ident, enum log_target target, int max_level)
{
	if (ident != NULL)
		log_ident = ident;
	atomic_store(&log_max_level, max_level);
	if (target == LOG_TARGET_SYSLOG) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
		atomic_store(&log_to_syslog, 1);
	} else {
		atomic_store(&log_to_syslog, 0);
	}
}

bool log_enabled(int level)
{
	return level <=
	       atomic_load_explicit(&log_max_level, memory_order_relaxed);
}

void log_msg(int level, const char *fmt, ...)
{
	char buf[1024];
	int saved_errno = errno;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	if (atomic_load_explicit(&log_to_syslog, memory_order_relaxed)) {
		va_start(ap, fmt);
		vsyslog(level, fmt, ap);
		va_end(ap);
		errno = saved_errno;
		return;
	}
	n = snprintf(buf, sizeof(buf), "%s[%d]: %s: ", log_ident, (int)getpid(),
		     level >= 0 && level <= LOG_DEBUG ? level_names[level]
						      : "log");
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = 0;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* A failed write to stderr has nowhere to be reported. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		(void)0;
	errno = saved_errno;
}

int log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "err") == 0)
		return LOG_ERR;
	if (strcmp(name, "warn") == 0)
		return LOG_WARNING;
	return -EINVAL;
}
