/* A one-line progress bar on stderr.  Drawn only when stderr is a terminal
 * and the log level is INFO or above; redrawn at most ten times a second. */
#ifndef FFDP_PROGRESS_H
#define FFDP_PROGRESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ffdp_progress {
	char label[48];
	int64_t total;
	int64_t done;
	int enabled;
	double t_start;
	double t_drawn;
	char extra[64]; /* e.g. "loss -0.4123" */
} ffdp_progress;

void ffdp_progress_begin(ffdp_progress *p, const char *label, int64_t total);
/* Set the number of steps done and an optional short status (may be NULL). */
void ffdp_progress_update(ffdp_progress *p, int64_t done, const char *extra);
void ffdp_progress_end(ffdp_progress *p);

/* Monotonic wall-clock seconds. */
double ffdp_now(void);

#ifdef __cplusplus
}
#endif
#endif
