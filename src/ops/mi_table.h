/* The host-side step shared by the MI of every backend: from the joint
 * histogram to the marginals, the mean V, MI, and the table G that both
 * backward passes read.  One piece of code, so the backends cannot drift. */
#ifndef FFDP_MI_TABLE_H
#define FFDP_MI_TABLE_H

#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* h: the B x B joint histogram, followed by room for the two marginals
 * (filled here: hf then hm).  V = denom when > 0, else the histogram's
 * total.  G: a rows x st table, zeroed, with G[(j + ro) * st + l + co] =
 * log h + log V - log hf - log hm (the logs apart, so nothing underflows)
 * for every bin with h > 0.  *mi = sum h G / V.  lg: 2B doubles of
 * scratch.  A negative bin (negative mask weights) or V <= 0 is
 * FFDP_ERR_DATA. */
ffdp_status ffdp_mi_table(double *h, int B, double denom, double *G, int rows, int st, int ro, int co, double *lg,
			  double *V, double *mi, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
