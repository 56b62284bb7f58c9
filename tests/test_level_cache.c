/* The pair's level cache (src/reg/level.c): a coarse level made once is
 * handed out again (the same buffers, with the values a fresh level would
 * have), a level's free leaves cached buffers alone, a deformable stage's
 * full-resolution level (take16) empties the cache, and a level made after
 * that has the first one's values.  With and without unorm16 images, an
 * oblique anisotropic grid of odd size, and a fixed mask. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "reg/reg_internal.h"
#include "testutil.h"

/* The level's images and mask to the host (n floats each). */
static float *level_copy(ffdp_backend *be, const reg_level *lv, int64_t n, ffdp_error *err)
{
	float *h = (float *)malloc((size_t)n * 3 * sizeof(float));
	if (!h)
		return NULL;
	memset(h, 0, (size_t)n * 3 * sizeof(float));
	if (ffdp_buf_download(be, h, lv->F.data, (size_t)n * sizeof(float), err) ||
	    ffdp_buf_download(be, h + n, lv->M.data, (size_t)n * sizeof(float), err) ||
	    (lv->fmask && ffdp_buf_download(be, h + 2 * n, lv->fmask, (size_t)n * sizeof(float), err))) {
		free(h);
		return NULL;
	}
	return h;
}

static void one_case(ffdp_backend *be, tu_rng *rng, int images16)
{
	ffdp_error err;
	const int64_t n[3] = {37, 29, 23};
	ffdp_volume fixed = {0}, moving = {0}, mask = {0};
	ffdp_grid g = tu_random_grid(rng, n[0], n[1], n[2]);
	CHECK_OK(ffdp_volume_alloc(&fixed, &g, &err), &err, "fixed");
	CHECK_OK(ffdp_volume_alloc(&moving, &g, &err), &err, "moving");
	CHECK_OK(ffdp_volume_alloc(&mask, &g, &err), &err, "mask");
	tu_fill_smooth(rng, fixed.data, n, 0.1);
	tu_fill_smooth(rng, moving.data, n, 0.1);
	tu_fill_uniform(rng, mask.data, n[0] * n[1] * n[2], 0.0, 1.0);
	ffdp_reg_opts o;
	memset(&o, 0, sizeof(o));
	o.fixed_mask = &mask;
	o.min_level_size = 4;
	o.images16 = images16;
	reg_pair p;
	CHECK_OK(reg_pair_init(&p, be, &fixed, &moving, &o, &err), &err, "pair (images16 %d)", images16);
	CHECK(p.lc != NULL, "one process: the pair has a level cache");

	reg_level a, b, c, d;
	CHECK_OK(reg_level_make(&p, 2.0, 0, &a, &err), &err, "level at shrink 2");
	const int64_t nv = a.nvox;
	CHECK(a.cached && p.lc->n == 1, "the level went to the cache (%d entries)", p.lc->n);
	float *ha = level_copy(be, &a, nv, &err);
	const float *fa = a.F.data, *ma = a.M.data, *ka = a.fmask;
	reg_level_free(&p, &a);
	CHECK(p.lc->n == 1 && p.lc->e[0].F.data == fa, "freeing a cached level keeps its buffers");

	/* a deformable stage's coarse level (take16) is the same level */
	CHECK_OK(reg_level_make(&p, 2.0, 1, &b, &err), &err, "level at shrink 2 again");
	CHECK(b.F.data == fa && b.M.data == ma && b.fmask == ka && !b.F16 && !b.M16,
	      "the second make hands out the cached buffers");
	float *hb = level_copy(be, &b, nv, &err);
	CHECK(ha && hb && !memcmp(ha, hb, (size_t)nv * 3 * sizeof(float)), "with the same values");
	CHECK(b.nvox == nv && ffdp_grid_same(&b.F.grid, &p.lc->e[0].F.grid, 0.0), "and the same grid");
	reg_level_free(&p, &b);

	CHECK_OK(reg_level_make(&p, 4.0, 0, &c, &err), &err, "level at shrink 4");
	CHECK(p.lc->n == 2 && c.nvox < nv, "a second scale, a second entry");
	reg_level_free(&p, &c);

	/* a deformable stage's full-resolution level empties the cache */
	CHECK_OK(reg_level_make(&p, 1.0, 1, &c, &err), &err, "full resolution, take16");
	CHECK(p.lc->n == 0, "the cache is empty at a deformable stage's full-resolution level");
	CHECK(!c.cached && c.nvox == n[0] * n[1] * n[2], "the full level is the pair's own");
	reg_level_free(&p, &c);

	CHECK_OK(reg_level_make(&p, 2.0, 0, &d, &err), &err, "shrink 2 after the cache was emptied");
	float *hd = level_copy(be, &d, nv, &err);
	CHECK(ha && hd && d.nvox == nv && !memcmp(ha, hd, (size_t)nv * 3 * sizeof(float)),
	      "a level remade after the cache was emptied has the first one's values");
	reg_level_free(&p, &d);
	free(ha), free(hb), free(hd);
	reg_pair_free(&p);
	CHECK(p.lc == NULL, "the pair's free releases the cache");
	ffdp_volume_free(&fixed), ffdp_volume_free(&moving), ffdp_volume_free(&mask);
}

int main(void)
{
	ffdp_error err;
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(20261124);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend");
	if (be) {
		one_case(be, &rng, 0);
		one_case(be, &rng, 1);
		ffdp_backend_close(be);
	}
	return check_done();
}
