/* The MI table: from the joint histogram to the marginals, the total V, MI,
 * and the table G that both backward passes read.  The CPU computes it on
 * the host (ffdp_mi_table), CUDA in one block on the device (cuda_mi.cu);
 * both take their per-bin values from the inline functions below and add
 * in the order written here, so the backends cannot drift:
 *   hf(j) = sum over l in order, hm(l) = sum over j in order,
 *   V = sum of hf(j) over j in order (or denom when > 0),
 *   MI = (sum over j in order of (sum over l in order of h G, bins with
 *        h > 0)) / V. */
#ifndef FFDP_MI_TABLE_H
#define FFDP_MI_TABLE_H

#include <math.h>

#include "ffdp/status.h"

#ifdef __CUDACC__
#define FFDP_MI_HD __host__ __device__
#else
#define FFDP_MI_HD
#endif

/* log of a marginal, 0 where it is empty (no bin of G reads it then). */
static inline FFDP_MI_HD double ffdp_mi_log0(double x)
{
	return x > 0 ? log(x) : 0;
}

/* G of a bin with h > 0: log(h V / (hf hm)), the logs apart so that
 * nothing underflows. */
static inline FFDP_MI_HD double ffdp_mi_g(double h, double lv, double lgf, double lgm)
{
	return log(h) + lv - lgf - lgm;
}

#ifdef __cplusplus
extern "C" {
#endif

/* h: the B x B joint histogram, followed by room for the two marginals
 * (filled here: hf then hm).  V = denom when > 0, else the histogram's
 * total.  G: a rows x st table, zeroed, with G[(j + ro) * st + l + co] =
 * ffdp_mi_g for every bin with h > 0.  *mi = sum h G / V.  lg: 2B doubles
 * of scratch.  A negative bin (negative mask weights) or V <= 0 is
 * FFDP_ERR_DATA. */
ffdp_status ffdp_mi_table(double *h, int B, double denom, double *G, int rows, int st, int ro, int co, double *lg,
			  double *V, double *mi, ffdp_error *err);

/* The table's data errors, one wording for every backend: bin (j, l) is
 * negative (j >= 0), else no voxel has positive weight. */
ffdp_status ffdp_mi_table_error(int j, int l, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
