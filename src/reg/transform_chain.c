/* Resampling through a chain of transforms in ANTs order (include/ffdp/chain.h).
 *
 * The mapped point of reference voxel i is kept as P(i) = M x(i) + D(i):
 *   affine A:  P <- A P       M <- A M,  D <- A_lin D
 *   field w:   P <- P + w(P)  D <- D + w sampled at P
 * and the input is finally sampled at P.  With x(i) = Xref [i;1], sampling
 * an image G at P is the fused sampler with W = (G phys->index) M Xref,
 * B = linear part of (G phys->index) and u = D. */
#include <string.h>

#include "ffdp/chain.h"
#include "ffdp/grid.h"

/* Scratch for one slab of sampled displacements (voxels per component). */
#define CHAIN_SLAB_VOXELS ((int64_t)1 << 18)

static ffdp_img img_of(float *p, const int64_t n[3])
{
	return (ffdp_img){p, {n[0], n[1], n[2]}};
}

/* The sampler's W and B for an image on grid g, given M and the reference grid. */
static void sampler_mats(const ffdp_grid *g, const ffdp_mat4 *M, const ffdp_grid *ref, double W[12], double B[9])
{
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	ffdp_mat4 w = ffdp_mat4_mul(p2i, ffdp_mat4_mul(*M, ffdp_grid_index_to_phys(ref)));
	memcpy(W, w.m, 12 * sizeof(double));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			B[3 * r + c] = p2i.m[4 * r + c];
}

static ffdp_status check_items(const ffdp_volume *in, const ffdp_grid *ref, const ffdp_chain_item *items, int n,
			       ffdp_error *err)
{
	int dim = ffdp_grid_dim(ref);
	if (!in->data)
		return ffdp_fail(err, FFDP_ERR_ARG, "apply: empty input image");
	if (ffdp_grid_dim(&in->grid) != dim)
		return ffdp_fail(err, FFDP_ERR_DATA, "apply: %d-D input image on a %d-D reference grid",
				 ffdp_grid_dim(&in->grid), dim);
	for (int k = 0; k < n; k++) {
		const ffdp_chain_item *it = &items[k];
		if (it->kind == FFDP_CHAIN_AFFINE)
			continue;
		if (it->kind != FFDP_CHAIN_FIELD || !it->w || !it->w->c[0])
			return ffdp_fail(err, FFDP_ERR_ARG, "apply: transform %d is neither an affine nor a field", k + 1);
		if (it->invert)
			return ffdp_fail(err, FFDP_ERR_ARG,
					 "apply: transform %d is a displacement field, which cannot be inverted by "
					 "[FILE,1]; pass the inverse warp instead",
					 k + 1);
		int wd = ffdp_grid_dim(&it->w->grid);
		if (wd != dim || it->w->ncomp != dim)
			return ffdp_fail(err, FFDP_ERR_DATA,
					 "apply: transform %d is a %d-D field with %d components, the reference is %d-D",
					 k + 1, wd, it->w->ncomp, dim);
	}
	return FFDP_OK;
}

/* D <- L D, L the linear part of A (z row and column unused in 2-D). */
static void rotate_displacement(ffdp_field *D, const ffdp_mat4 *A)
{
	int64_t n = ffdp_grid_voxels(&D->grid);
	int nc = D->ncomp;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		double d[3] = {D->c[0][i], D->c[1][i], nc > 2 ? D->c[2][i] : 0.0}, r[3];
		ffdp_mat4_apply_vector(A, d, r);
		for (int c = 0; c < nc; c++)
			D->c[c][i] = (float)r[c];
	}
}

/* First field of the chain: D = w(M x), nothing to add to, so sample straight into D. */
static ffdp_status field_first(ffdp_backend *be, const ffdp_field *w, const ffdp_mat4 *M, const ffdp_grid *ref,
			       ffdp_field *D, ffdp_error *err)
{
	ffdp_status s = ffdp_field_alloc(D, ref, err);
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	sampler_mats(&w->grid, M, ref, a.W, a.B);
	a.interp = FFDP_INTERP_LINEAR;
	a.pad = FFDP_PAD_ZERO;
	for (int c = 0; c < w->ncomp && !s; c++) {
		a.moving = img_of(w->c[c], w->grid.n);
		a.out = img_of(D->c[c], ref->n);
		s = ffdp_op_sample(be, &a, err);
	}
	return s;
}

/* Later fields: D += w(M x + D).  Every component must be sampled at the
 * old P before D changes, so each slab's samples go to scratch first. */
static ffdp_status field_add(ffdp_backend *be, const ffdp_field *w, const ffdp_mat4 *M, const ffdp_grid *ref,
			     ffdp_field *D, ffdp_error *err)
{
	const int64_t *n = ref->n;
	int64_t plane = n[0] * n[1], S = CHAIN_SLAB_VOXELS / plane;
	S = S < 1 ? 1 : S > n[2] ? n[2] : S;
	int nc = D->ncomp;
	float *scratch = ffdp_alloc((size_t)nc * (size_t)(S * plane) * sizeof(float), err);
	if (!scratch)
		return err ? err->code : FFDP_ERR_NOMEM;
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	sampler_mats(&w->grid, M, ref, a.W, a.B);
	a.interp = FFDP_INTERP_LINEAR;
	a.pad = FFDP_PAD_ZERO;
	ffdp_status s = FFDP_OK;
	for (int64_t z0 = 0; z0 < n[2] && !s; z0 += S) {
		int64_t depth = z0 + S < n[2] ? S : n[2] - z0, count = depth * plane;
		int64_t box[3] = {n[0], n[1], depth};
		ffdp_vec dv = {{NULL, NULL, NULL}, {n[0], n[1], depth}, nc};
		for (int c = 0; c < nc; c++)
			dv.c[c] = D->c[c] + z0 * plane;
		a.u = &dv;
		a.lo[2] = z0;
		for (int c = 0; c < nc && !s; c++) {
			a.moving = img_of(w->c[c], w->grid.n);
			a.out = img_of(scratch + c * count, box);
			s = ffdp_op_sample(be, &a, err);
		}
		for (int c = 0; c < nc && !s; c++) {
			float *d = dv.c[c];
			const float *add = scratch + c * count;
#pragma omp parallel for schedule(static)
			for (int64_t i = 0; i < count; i++)
				d[i] += add[i];
		}
	}
	ffdp_free(scratch);
	return s;
}

/* The final resampling of the input at P. */
static ffdp_status sample_input(ffdp_backend *be, const ffdp_volume *in, const ffdp_grid *ref, const ffdp_mat4 *M,
				const ffdp_field *D, ffdp_interp interp, ffdp_volume *out, ffdp_error *err)
{
	ffdp_sample_args a;
	ffdp_vec dv;
	memset(&a, 0, sizeof(a));
	sampler_mats(&in->grid, M, ref, a.W, a.B);
	a.moving = img_of(in->data, in->grid.n);
	if (D->c[0]) {
		dv = (ffdp_vec){{D->c[0], D->c[1], D->c[2]}, {ref->n[0], ref->n[1], ref->n[2]}, D->ncomp};
		a.u = &dv;
	}
	a.out = img_of(out->data, ref->n);
	a.interp = interp;
	a.pad = FFDP_PAD_ZERO;
	return ffdp_op_sample(be, &a, err);
}

ffdp_status ffdp_chain_resample(ffdp_backend *be, const ffdp_volume *in, const ffdp_grid *ref,
				const ffdp_chain_item *items, int n, ffdp_interp interp, ffdp_volume *out,
				ffdp_error *err)
{
	memset(out, 0, sizeof(*out));
	ffdp_status s = ffdp_grid_check(ref, err);
	if (s || (s = check_items(in, ref, items, n, err)))
		return s;
	ffdp_mat4 M = ffdp_mat4_identity();
	ffdp_field D = {0};
	for (int k = 0; k < n && !s; k++) {
		const ffdp_chain_item *it = &items[k];
		if (it->kind == FFDP_CHAIN_AFFINE) {
			ffdp_mat4 A = it->A;
			if (it->invert && ffdp_mat4_inverse(it->A, &A, NULL))
				s = ffdp_fail(err, FFDP_ERR_DATA, "apply: transform %d ([FILE,1]) is a singular affine",
					      k + 1);
			M = ffdp_mat4_mul(A, M);
			if (!s && D.c[0])
				rotate_displacement(&D, &A);
		} else if (!D.c[0]) {
			s = field_first(be, it->w, &M, ref, &D, err);
		} else {
			s = field_add(be, it->w, &M, ref, &D, err);
		}
	}
	if (!s && !(s = ffdp_volume_alloc(out, ref, err)))
		s = sample_input(be, in, ref, &M, &D, interp, out, err);
	ffdp_field_free(&D);
	if (s)
		ffdp_volume_free(out);
	return s;
}
