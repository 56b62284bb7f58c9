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

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define BOX4_FN static inline __attribute__((always_inline, target("avx2")))

/* a b c d (rows) <-> columns: the 4 x 4 transpose. */
BOX4_FN void box4_transpose(__m256d v[4])
{
	__m256d t0 = _mm256_unpacklo_pd(v[0], v[1]), t1 = _mm256_unpackhi_pd(v[0], v[1]);
	__m256d t2 = _mm256_unpacklo_pd(v[2], v[3]), t3 = _mm256_unpackhi_pd(v[2], v[3]);
	v[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
	v[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
	v[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
	v[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* t[4 x + j] = row j [x] */
BOX4_FN void box4_in(const double *in, int64_t rs, double *t, int64_t n)
{
	int64_t x = 0;
	for (; x + 4 <= n; x += 4) {
		__m256d v[4];
		for (int j = 0; j < 4; j++)
			v[j] = _mm256_loadu_pd(in + j * rs + x);
		box4_transpose(v);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_pd(t + 4 * (x + j), v[j]);
	}
	for (; x < n; x++)
		for (int j = 0; j < 4; j++)
			t[4 * x + j] = in[j * rs + x];
}

BOX4_FN void box4_out(const double *t, double *out, int64_t rs, int64_t n)
{
	int64_t x = 0;
	for (; x + 4 <= n; x += 4) {
		__m256d v[4];
		for (int j = 0; j < 4; j++)
			v[j] = _mm256_loadu_pd(t + 4 * (x + j));
		box4_transpose(v);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_pd(out + j * rs + x, v[j]);
	}
	for (; x < n; x++)
		for (int j = 0; j < 4; j++)
			out[j * rs + x] = t[4 * x + j];
}

/* box_rows_n's three ranges on transposed rows (one vector per x). */
BOX4_FN void box4_run(const double *t, double *o, int64_t n, int64_t r)
{
	__m256d s = _mm256_setzero_pd();
	int64_t x = 0, a = r + 1 < n - r ? r + 1 : n - r;

	if (a < 0)
		a = 0;
	for (int64_t j = 0; j < r && j < n; j++)
		s = _mm256_add_pd(s, _mm256_loadu_pd(t + 4 * j));
	for (; x < a; x++) {
		s = _mm256_add_pd(s, _mm256_loadu_pd(t + 4 * (x + r)));
		_mm256_storeu_pd(o + 4 * x, s);
	}
	for (; x + 1 < n - r; x += 2) {
		__m256d d0 = _mm256_sub_pd(_mm256_loadu_pd(t + 4 * (x + r)), _mm256_loadu_pd(t + 4 * (x - r - 1)));
		__m256d d1 = _mm256_sub_pd(_mm256_loadu_pd(t + 4 * (x + 1 + r)), _mm256_loadu_pd(t + 4 * (x - r)));
		s = _mm256_add_pd(s, d0);
		_mm256_storeu_pd(o + 4 * x, s);
		s = _mm256_add_pd(s, d1);
		_mm256_storeu_pd(o + 4 * x + 4, s);
	}
	for (; x < n - r; x++) {
		__m256d d = _mm256_sub_pd(_mm256_loadu_pd(t + 4 * (x + r)), _mm256_loadu_pd(t + 4 * (x - r - 1)));
		s = _mm256_add_pd(s, d);
		_mm256_storeu_pd(o + 4 * x, s);
	}
	for (; x < n; x++) {
		/* s + (-v) is s - v, and s + 0.0 where nothing leaves */
		s = x - r - 1 >= 0 ? _mm256_sub_pd(s, _mm256_loadu_pd(t + 4 * (x - r - 1)))
				   : _mm256_add_pd(s, _mm256_setzero_pd());
		_mm256_storeu_pd(o + 4 * x, s);
	}
}

__attribute__((target("avx2"))) void ffdp_cpu_box_rows4_avx2(const double *in, int64_t irs, int64_t iqs, double *out,
							     int64_t ors, int64_t oqs, int nq, int64_t n, int64_t r,
							     double *tmp)
{
	for (int q = 0; q < nq; q++) {
		box4_in(in + q * iqs, irs, tmp, n);
		box4_run(tmp, tmp + 4 * n, n, r);
		box4_out(tmp + 4 * n, out + q * oqs, ors, n);
	}
}

/* One running-sum step of box4_run at column x (its three ranges). */
BOX4_FN __m256d box4_step(__m256d s, const double *t, int64_t x, int64_t a, int64_t b, int64_t r)
{
	if (x < a)
		return _mm256_add_pd(s, _mm256_loadu_pd(t + 4 * (x + r)));
	if (x < b)
		return _mm256_add_pd(s, _mm256_sub_pd(_mm256_loadu_pd(t + 4 * (x + r)), _mm256_loadu_pd(t + 4 * (x - r - 1))));
	return x - r - 1 >= 0 ? _mm256_sub_pd(s, _mm256_loadu_pd(t + 4 * (x - r - 1))) : _mm256_add_pd(s, _mm256_setzero_pd());
}

/* box4_run and box4_out in one pass (box4_run's operations): the columns
 * before the first whole group of 4 inside [a, b) and after the last go
 * through a small buffer (st), the groups between stay in registers. */
BOX4_FN void box4_run_out(const double *t, double *out, int64_t rs, int64_t n, int64_t r, double *st)
{
	__m256d s = _mm256_setzero_pd();
	int64_t x = 0, a = r + 1 < n - r ? r + 1 : n - r, b = n - r, x0, x1;

	if (a < 0)
		a = 0;
	x0 = (a + 3) & ~(int64_t)3;
	x0 = x0 < n ? x0 : n;
	x1 = b > x0 ? x0 + ((b - x0) & ~(int64_t)3) : x0;
	for (int64_t j = 0; j < r && j < n; j++)
		s = _mm256_add_pd(s, _mm256_loadu_pd(t + 4 * j));
	for (; x < x0; x++)
		_mm256_storeu_pd(st + 4 * x, s = box4_step(s, t, x, a, b, r));
	if (x0 > 0)
		box4_out(st, out, rs, x0);
	for (; x < x1; x += 4) {
		__m256d v[4];
		for (int i = 0; i < 4; i++)
			v[i] = s = _mm256_add_pd(s, _mm256_sub_pd(_mm256_loadu_pd(t + 4 * (x + i + r)),
								  _mm256_loadu_pd(t + 4 * (x + i - r - 1))));
		box4_transpose(v);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_pd(out + j * rs + x, v[j]);
	}
	if (x < n) {
		int64_t xs = x;
		for (; x < n; x++)
			_mm256_storeu_pd(st + 4 * (x - xs), s = box4_step(s, t, x, a, b, r));
		box4_out(st, out + xs, rs, n - xs);
	}
}

__attribute__((target("avx2"))) void ffdp_cpu_box_t_to_rows4(const double *in, int64_t iqs, double *out, int64_t ors,
							     int64_t oqs, int nq, int64_t n, int64_t r, double *tmp)
{
	for (int q = 0; q < nq; q++)
		box4_run_out(in + q * iqs, out + q * oqs, ors, n, r, tmp);
}

/* The y box sums of anchor row y and the next 3: row y its window's rows
 * added in order, then each row (previous + entering) - leaving. */
BOX4_FN __m256d box4_next(__m256d p, const double *e, const double *l, int64_t x)
{
	if (e)
		p = _mm256_add_pd(p, _mm256_loadu_pd(e + x));
	if (l)
		p = _mm256_sub_pd(p, _mm256_loadu_pd(l + x));
	return p;
}

static inline double box1_next(double p, const double *e, const double *l, int64_t x)
{
	if (e)
		p = p + e[x];
	if (l)
		p = p - l[x];
	return p;
}

/* One quantity of ffdp_cpu_box_yx4_to_t, the tests on the rows' existence
 * (inner: every row enters and leaves), on from and keep hoisted. */
BOX4_FN void box4_yx(const double *z, const double *const *e, const double *const *l, int64_t lo, int64_t hi,
		     int64_t nx, const double *fq, double *kq, double *tmp, const int from, const int inner,
		     const int keep)
{
	int64_t x = 0;

	for (; x + 4 <= nx; x += 4) {
		__m256d v[4];
		if (from && inner) {
			v[0] = _mm256_sub_pd(_mm256_add_pd(_mm256_loadu_pd(fq + x), _mm256_loadu_pd(e[0] + x)),
					     _mm256_loadu_pd(l[0] + x));
		} else if (from) {
			v[0] = box4_next(_mm256_loadu_pd(fq + x), e[0], l[0], x);
		} else {
			int64_t i = lo + 1;
			v[0] = _mm256_loadu_pd(z + lo * nx + x);
			for (; i + 1 <= hi; i += 2) {
				v[0] = _mm256_add_pd(v[0], _mm256_loadu_pd(z + i * nx + x));
				v[0] = _mm256_add_pd(v[0], _mm256_loadu_pd(z + (i + 1) * nx + x));
			}
			if (i <= hi)
				v[0] = _mm256_add_pd(v[0], _mm256_loadu_pd(z + i * nx + x));
		}
		for (int j = 1; j < 4; j++)
			v[j] = inner ? _mm256_sub_pd(_mm256_add_pd(v[j - 1], _mm256_loadu_pd(e[j] + x)),
						     _mm256_loadu_pd(l[j] + x))
				     : box4_next(v[j - 1], e[j], l[j], x);
		if (keep)
			_mm256_storeu_pd(kq + x, v[3]);
		box4_transpose(v);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_pd(tmp + 4 * (x + j), v[j]);
	}
	for (; x < nx; x++) {
		double u;
		if (from) {
			u = box1_next(fq[x], e[0], l[0], x);
		} else {
			u = z[lo * nx + x];
			for (int64_t i = lo + 1; i <= hi; i++)
				u += z[i * nx + x];
		}
		tmp[4 * x] = u;
		for (int j = 1; j < 4; j++)
			tmp[4 * x + j] = u = box1_next(u, e[j], l[j], x);
		if (keep)
			kq[x] = u;
	}
}

__attribute__((target("avx2"))) void ffdp_cpu_box_yx4_to_t(const double *in, int64_t iqs, int64_t nx, int64_t ny,
							   int64_t y, int64_t ry, int64_t rx, double *out, int64_t oqs,
							   int nq, double *tmp, const double *from, double *keep)
{
	int64_t lo = y - ry > 0 ? y - ry : 0, hi = y + ry < ny ? y + ry : ny - 1;
	int64_t eo[4] = {0}, lof[4] = {0};
	int inner = 1, v;

	for (int j = 0; j < 4; j++) {
		eo[j] = y + j + ry < ny ? (y + j + ry) * nx : -1;
		lof[j] = y + j - ry - 1 >= 0 ? (y + j - ry - 1) * nx : -1;
		/* row y's own leaving and entering rows count only after a carry */
		inner &= (j == 0 && !from) || (eo[j] >= 0 && lof[j] >= 0);
	}
	v = (from != NULL) * 4 + inner * 2 + (keep != NULL);
	for (int q = 0; q < nq; q++) {
		const double *z = in + q * iqs, *e[4], *l[4], *fq = from ? from + q * nx : NULL;
		double *kq = keep ? keep + q * nx : NULL;
		for (int j = 0; j < 4; j++)
			e[j] = eo[j] >= 0 ? z + eo[j] : NULL, l[j] = lof[j] >= 0 ? z + lof[j] : NULL;
		switch (v) {
		case 0: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 0, 0, 0); break;
		case 1: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 0, 0, 1); break;
		case 2: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 0, 1, 0); break;
		case 3: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 0, 1, 1); break;
		case 4: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 1, 0, 0); break;
		case 5: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 1, 0, 1); break;
		case 6: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 1, 1, 0); break;
		default: box4_yx(z, e, l, lo, hi, nx, fq, kq, tmp, 1, 1, 1); break;
		}
		box4_run(tmp, out + q * oqs, nx, rx);
	}
}
#endif
