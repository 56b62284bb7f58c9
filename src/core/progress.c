#include "ffdp/progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ffdp/log.h"

double ffdp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void draw(ffdp_progress *p)
{
	const int width = 30;
	int64_t total = p->total > 0 ? p->total : 1;
	int filled = (int)((double)width * (double)p->done / (double)total);
	if (filled > width)
		filled = width;
	char bar[64];
	memset(bar, '#', (size_t)filled);
	memset(bar + filled, '.', (size_t)(width - filled));
	bar[width] = '\0';
	fprintf(stderr, "\r%-16s [%s] %lld/%lld %5.1fs %s\033[K", p->label, bar, (long long)p->done,
		(long long)p->total, ffdp_now() - p->t_start, p->extra);
	fflush(stderr);
	p->t_drawn = ffdp_now();
}

void ffdp_progress_begin(ffdp_progress *p, const char *label, int64_t total)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->label, sizeof(p->label), "%s", label);
	p->total = total;
	p->enabled = isatty(STDERR_FILENO) && ffdp_log_get_level() >= FFDP_LOG_INFO;
	p->t_start = ffdp_now();
	if (p->enabled)
		draw(p);
}

void ffdp_progress_update(ffdp_progress *p, int64_t done, const char *extra)
{
	p->done = done;
	if (extra)
		snprintf(p->extra, sizeof(p->extra), "%s", extra);
	if (p->enabled && ffdp_now() - p->t_drawn >= 0.1)
		draw(p);
}

void ffdp_progress_end(ffdp_progress *p)
{
	if (!p->enabled)
		return;
	draw(p);
	fputc('\n', stderr);
}
