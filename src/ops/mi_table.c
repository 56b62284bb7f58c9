/* The MI table (mi_table.h) on the host: the CPU backend's. */
#include <string.h>

#include "mi_table.h"

ffdp_status ffdp_mi_table(double *h, int B, double denom, double *G, int rows, int st, int ro, int co, double *lg,
			  double *V_out, double *mi_out, ffdp_error *err)
{
	double *hf = h + B * B, *hm = hf + B, V = 0, mi = 0;
	memset(hf, 0, 2 * (size_t)B * sizeof(double));
	for (int j = 0; j < B; j++)
		for (int l = 0; l < B; l++) {
			double x = h[j * B + l];
			if (x < 0)
				return ffdp_mi_table_error(j, l, err);
			hf[j] += x, hm[l] += x;
		}
	for (int j = 0; j < B; j++)
		V += hf[j];
	if (denom > 0)
		V = denom;
	if (!(V > 0))
		return ffdp_mi_table_error(-1, 0, err);
	for (int j = 0; j < 2 * B; j++)
		lg[j] = ffdp_mi_log0(hf[j]);
	double lv = log(V);
	memset(G, 0, (size_t)rows * (size_t)st * sizeof(double));
	for (int j = 0; j < B; j++) {
		double r = 0;
		for (int l = 0; l < B; l++) {
			double x = h[j * B + l];
			if (x > 0) {
				double g = ffdp_mi_g(x, lv, lg[j], lg[B + l]);
				G[(j + ro) * st + l + co] = g;
				r += x * g;
			}
		}
		mi += r;
	}
	*V_out = V;
	*mi_out = mi / V;
	return FFDP_OK;
}

ffdp_status ffdp_mi_table_error(int j, int l, ffdp_error *err)
{
	if (j >= 0)
		return ffdp_fail(err, FFDP_ERR_DATA, "mi: joint histogram bin (%d,%d) is negative (negative mask weights?)",
				 j, l);
	return ffdp_fail(err, FFDP_ERR_DATA, "mi: no voxel has positive weight");
}
