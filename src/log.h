/*
 * log.h: levelled logging for txfsd, to stderr in the foreground and to
 * syslog when daemonized.  Thread-safe; never fails.
 */
#ifndef TXFS_LOG_H
#define TXFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Where messages go. */
enum log_target { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };

/* Sets the destination and the most verbose level written (LOG_DEBUG …). */
void log_setup(const char *ident, enum log_target target, int max_level);

/* Returns true when messages of this level are written. */
bool log_enabled(int level);

/* Writes one message; level is a syslog level (LOG_ERR, LOG_INFO, …). */
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_err(...)  log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG))                                    \
			log_msg(LOG_DEBUG, __VA_ARGS__);                       \
	} while (0)

/* Parses "err", "warning", "info", "debug" into a level; -EINVAL if unknown. */
int log_level_parse(const char *name);

#endif /* TXFS_LOG_H */
