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

/* nq chains in one loop; out[x] = out[x-1] + (in[x+r] - in[x-r-1]) leaves one
 * dependent add per value.  Three ranges avoid tests on the faces. */
static inline void box_rows_n(const double *in, int64_t is, double *out, int64_t os, int nq, int64_t n,
			      int64_t r)
{
	double s[5] = {0, 0, 0, 0, 0};
	int64_t x = 0, a = r + 1 < n - r ? r + 1 : n - r; /* [0, a): nothing leaves */

	if (a < 0)
		a = 0;
	for (int q = 0; q < nq; q++)
		for (int64_t j = 0; j < r && j < n; j++)
			s[q] += in[q * is + j];
	for (; x < a; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += in[q * is + x + r];
	for (; x < n - r; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += in[q * is + x + r] - in[q * is + x - r - 1];
	for (; x < n; x++)
		for (int q = 0; q < nq; q++)
			out[q * os + x] = s[q] += x - r - 1 >= 0 ? -in[q * is + x - r - 1] : 0.0;
}

void ffdp_cpu_box_rows(const double *in, int64_t istride, double *out, int64_t ostride, int nq, int64_t n,
		       int64_t r)
{
	switch (nq) {
	case 5:
		box_rows_n(in, istride, out, ostride, 5, n, r);
		break;
	case 3:
		box_rows_n(in, istride, out, ostride, 3, n, r);
		break;
	default:
		for (int q = 0; q < nq; q++)
			ffdp_cpu_box_row(in + q * istride, out + q * ostride, n, r);
	}
}

void ffdp_cpu_box_cols_add(const double *src, double *dst, int64_t nx, int64_t ny, int64_t r, int64_t x0,
			   int64_t x1)
{
	double run[FFDP_CPU_BOX_CHUNK] = {0};
	int64_t w = x1 - x0;
	const double *s = src + x0;
	double *d = dst + x0;

	for (int64_t y = 0; y < r && y < ny; y++)
		for (int64_t j = 0; j < w; j++)
			run[j] += s[y * nx + j];
	for (int64_t y = 0; y < ny; y++) {
		if (y + r < ny) {
			const double *add = s + (y + r) * nx;
			for (int64_t j = 0; j < w; j++)
				run[j] += add[j];
		}
		if (y - r - 1 >= 0) {
			const double *sub = s + (y - r - 1) * nx;
			for (int64_t j = 0; j < w; j++)
				run[j] -= sub[j];
		}
		double *o = d + y * nx;
		for (int64_t j = 0; j < w; j++)
			o[j] += run[j];
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
