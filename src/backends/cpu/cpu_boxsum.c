/* Running truncated box sums (see cpu_boxsum.h).  Floor: each input value is
 * read once per pass and each output written once; the x pass is a serial
 * dependency chain per row, the column pass vectorises across x. */
#include "cpu_boxsum.h"

void ffdp_cpu_box_row(const double *in, double *out, int64_t n, int64_t r)
{
	double s = 0.0;
	for (int64_t x = 0; x < r && x < n; x++)
		s += in[x];
	for (int64_t x = 0; x < n; x++) {
		if (x + r < n)
			s += in[x + r];
		if (x - r - 1 >= 0)
			s -= in[x - r - 1];
		out[x] = s;
	}
}

void ffdp_cpu_box_inv_counts(double *c, int64_t n, int64_t r)
{
	for (int64_t i = 0; i < n; i++) {
		int64_t lo = i - r < 0 ? 0 : i - r;
		int64_t hi = i + r > n - 1 ? n - 1 : i + r;
		c[i] = 1.0 / (double)(hi - lo + 1);
	}
}
