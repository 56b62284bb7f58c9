#include "ffdp/log.h"

#include <stdarg.h>
#include <stdio.h>

/* The only global mutable state in the library (see DESIGN.md). */
static ffdp_log_level g_level = FFDP_LOG_INFO;

void ffdp_log_set_level(ffdp_log_level level)
{
	g_level = level;
}

ffdp_log_level ffdp_log_get_level(void)
{
	return g_level;
}

static void emit(const char *tag, const char *fmt, va_list ap)
{
	/* One fprintf per line keeps lines from threads and ranks whole. */
	char line[2048];
	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "ffdp: %s%s\n", tag, line);
}

void ffdp_log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("error: ", fmt, ap);
	va_end(ap);
}

#define FFDP_LOG_AT(name, lvl, tag)                      \
	void name(const char *fmt, ...)                  \
	{                                                \
		if (g_level < (lvl))                     \
			return;                          \
		va_list ap;                              \
		va_start(ap, fmt);                       \
		emit(tag, fmt, ap);                      \
		va_end(ap);                              \
	}

FFDP_LOG_AT(ffdp_log_warn, FFDP_LOG_WARN, "warning: ")
FFDP_LOG_AT(ffdp_log_info, FFDP_LOG_INFO, "")
FFDP_LOG_AT(ffdp_log_debug, FFDP_LOG_DEBUG, "debug: ")
