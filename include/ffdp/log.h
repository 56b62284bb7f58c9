/* Logger: the one piece of global mutable state (its level).
 * Messages go to stderr, prefixed "ffdp: " and, for warnings and errors,
 * with the level.  FFDP_LOG_QUIET also silences progress bars. */
#ifndef FFDP_LOG_H
#define FFDP_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ffdp_log_level {
	FFDP_LOG_QUIET = 0, /* errors only */
	FFDP_LOG_WARN = 1,
	FFDP_LOG_INFO = 2,  /* default */
	FFDP_LOG_DEBUG = 3,
} ffdp_log_level;

void ffdp_log_set_level(ffdp_log_level level);
ffdp_log_level ffdp_log_get_level(void);

void ffdp_log_error(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;
void ffdp_log_warn(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;
void ffdp_log_info(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;
void ffdp_log_debug(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;

#ifdef __cplusplus
}
#endif
#endif
