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

void ffdp_cpu_box_counts(double *c, int64_t n, int64_t r)
{
	for (int64_t i = 0; i < n; i++) {
		int64_t lo = i - r < 0 ? 0 : i - r;
		int64_t hi = i + r > n - 1 ? n - 1 : i + r;
		c[i] = (double)(hi - lo + 1);
	}
}
