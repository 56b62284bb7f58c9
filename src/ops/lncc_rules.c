/* The position rules of the reproducible LNCC (ops.h): where its running
 * sums restart, which planes a shard needs, and the intensity shift, shared
 * by the CPU op and the distributed loss so that both compute the same. */
#include "backend.h"

int64_t ffdp_lncc_anchor_block(int k)
{
	/* at least two windows (4 r + 2 planes), so the restart collections of
	 * the lead and the lag never overlap (cpu_lncc.c); 32 keeps their cost
	 * small */
	int64_t two = 2 * (int64_t)(k > 1 ? k : 1);
	return two > 32 ? two : 32;
}

/* Largest a <= g with a + off a multiple of b. */
static int64_t anchor_at_or_below(int64_t g, int64_t off, int64_t b)
{
	int64_t m = (g + off) % b;
	if (m < 0)
		m += b;
	return g - m;
}

void ffdp_lncc_ranges(int64_t r, int64_t b, int exact, int64_t z_full, int64_t o0, int64_t o1, int64_t rng[4])
{
	/* scored planes: for the exact gradient from the gradient anchor below o0 */
	int64_t s0 = exact ? anchor_at_or_below(o0, 0, b) - r : o0, s1 = exact ? o1 + r : o1;
	s0 = s0 > 0 ? s0 : 0;
	s1 = s1 < z_full ? s1 : z_full;
	/* window sums from the sums' anchor (planes a with a + r = 0 mod b) below s0 */
	int64_t v0 = anchor_at_or_below(s0, r, b) - r, v1 = s1 + r;
	rng[0] = s0, rng[1] = s1;
	rng[2] = v0 > 0 ? v0 : 0;
	rng[3] = v1 < z_full ? v1 : z_full;
}

void ffdp_lncc_planes(int k, int exact_grad, int64_t z_full, int64_t o0, int64_t o1, int64_t *lo, int64_t *hi)
{
	int64_t r = (k - 1) / 2, rng[4];
	r = r < z_full - 1 ? r : z_full - 1;
	ffdp_lncc_ranges(r > 0 ? r : 0, ffdp_lncc_anchor_block(k), exact_grad, z_full, o0, o1, rng);
	*lo = rng[2], *hi = rng[3];
}

static int64_t shift_step(int64_t n)
{
	return (n + 63) / 64;
}

double ffdp_lncc_shift_part(const float *x, const int64_t n[3], int64_t z)
{
	int64_t sz = shift_step(n[2]), sx = shift_step(n[0]);
	const float *row = x + (n[1] / 2) * n[0];
	double s = 0.0;

	if (z % sz)
		return 0.0;
	for (int64_t i = 0; i < n[0]; i += sx)
		s += row[i];
	return s;
}

int64_t ffdp_lncc_shift_count(const int64_t n[3])
{
	int64_t sz = shift_step(n[2]), sx = shift_step(n[0]);
	return ((n[2] + sz - 1) / sz) * ((n[0] + sx - 1) / sx);
}
