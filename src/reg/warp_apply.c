/* Resampling through phi = T + u, and the ANTs form of the displacement.
 * Both take and return host data (the CLI's and the tests' volumes); on a
 * backend with its own memory ffdp_warp_volume uploads the inputs and
 * downloads the result. */
#include <string.h>

#include "reg_internal.h"
#ifdef FFDP_HAVE_MPI
#include "ffdp/dist.h"
#endif

/* The sample, with moving, u and out already in be's memory. */
static ffdp_status warp_on_backend(ffdp_backend *be, const ffdp_volume *moving, const ffdp_grid *ref,
				   const ffdp_mat4 *T, const ffdp_field *u, ffdp_interp interp, float *out,
				   ffdp_error *err)
{
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(&moving->grid);
	ffdp_mat4 W = ffdp_mat4_mul(p2i, ffdp_mat4_mul(*T, ffdp_grid_index_to_phys(ref)));
	ffdp_vec uv;
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = reg_img(moving);
	memcpy(a.W, W.m, 12 * sizeof(double));
	reg_linear3(&p2i, a.B);
	if (u) {
		uv = reg_vec(u);
		a.u = &uv;
	}
	a.out = (ffdp_img){out, {ref->n[0], ref->n[1], ref->n[2]}};
	a.interp = interp;
	a.pad = FFDP_PAD_ZERO;
	return ffdp_op_sample(be, &a, err);
}

/* Upload, sample, download: for backends whose memory is not the host's. */
static ffdp_status warp_via_device(ffdp_backend *be, const ffdp_volume *moving, const ffdp_grid *ref,
				   const ffdp_mat4 *T, const ffdp_field *u, ffdp_interp interp, ffdp_volume *out,
				   ffdp_error *err)
{
	ffdp_volume dm = {0}, dout = {0};
	ffdp_field du = {0};
	ffdp_status s = reg_volume_upload(be, moving, &dm, err);
	if (!s && u)
		s = reg_field_upload(be, u, &du, err);
	if (!s)
		s = reg_volume_alloc(be, ref, &dout, err);
	if (!s)
		s = warp_on_backend(be, &dm, ref, T, u ? &du : NULL, interp, dout.data, err);
	if (!s)
		s = ffdp_buf_download(be, out->data, dout.data, (size_t)ffdp_grid_voxels(ref) * sizeof(float), err);
	reg_volume_free(be, &dm);
	reg_field_free(be, &du);
	reg_volume_free(be, &dout);
	return s;
}

ffdp_status ffdp_warp_volume(ffdp_backend *be, const ffdp_volume *moving, const ffdp_grid *ref, const ffdp_mat4 *T,
			     const ffdp_field *u, ffdp_interp interp, ffdp_volume *out, ffdp_error *err)
{
	if (u && !ffdp_grid_same(&u->grid, ref, 1e-4))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp: the displacement field is not on the reference grid");
	if (ffdp_grid_dim(ref) != ffdp_grid_dim(&moving->grid))
		return ffdp_fail(err, FFDP_ERR_DATA, "warp: %d-D image on a %d-D reference grid",
				 ffdp_grid_dim(&moving->grid), ffdp_grid_dim(ref));
	ffdp_status s = ffdp_volume_alloc(out, ref, err);
	if (s)
		return s;
	if (ffdp_backend_host_memory(be))
		s = warp_on_backend(be, moving, ref, T, u, interp, out->data, err);
	else
		s = warp_via_device(be, moving, ref, T, u, interp, out, err);
	if (s)
		ffdp_volume_free(out);
	return s;
}

#ifdef FFDP_HAVE_MPI
ffdp_status ffdp_warp_volume_dist(struct ffdp_dist *d, ffdp_backend *be, const ffdp_volume *moving,
				  const ffdp_grid *ref, const ffdp_mat4 *T, const ffdp_field *u, ffdp_interp interp,
				  float *out, ffdp_error *err)
{
	ffdp_slab sl = ffdp_slab_of(ref->n[2], ffdp_dist_rank(d), ffdp_dist_size(d));
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(&moving->grid);
	ffdp_mat4 W = ffdp_mat4_mul(p2i, ffdp_mat4_mul(*T, ffdp_grid_index_to_phys(ref)));
	ffdp_vec uv;
	ffdp_sample_args a;
	if (!ffdp_backend_host_memory(be))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp: host-memory backends only");
	memset(&a, 0, sizeof(a));
	memcpy(a.W, W.m, 12 * sizeof(double));
	reg_linear3(&p2i, a.B);
	if (u) {
		uv = reg_vec(u);
		a.u = &uv;
	}
	a.out = (ffdp_img){out, {ref->n[0], ref->n[1], sl.z1 - sl.z0}};
	a.lo[2] = sl.z0;
	a.interp = interp;
	a.pad = FFDP_PAD_ZERO;
	ffdp_dist_image m = {.own = moving->data, .n = {moving->grid.n[0], moving->grid.n[1], moving->grid.n[2]}};
	return ffdp_dist_sample(d, be, &a, &m, NULL, err);
}
#endif

/* Host data in and out: runs the op on a CPU backend of its own. */
ffdp_status ffdp_warp_to_ants(const ffdp_field *u, const ffdp_mat4 *T, ffdp_field *w, ffdp_error *err)
{
	ffdp_mat4 L = *T, Linv;
	L.m[3] = L.m[7] = L.m[11] = 0;
	ffdp_status s = ffdp_mat4_inverse(L, &Linv, err);
	ffdp_backend *cpu = NULL;
	if (!s)
		s = ffdp_backend_open(FFDP_BACKEND_CPU, 0, &cpu, err);
	if (!s) /* u's components: a one-plane slab of a 3-D field keeps three */
		s = ffdp_field_alloc_comps(w, &u->grid, u->ncomp, err);
	if (!s) {
		double A[9];
		reg_linear3(&Linv, A);
		s = ffdp_op_vec_linear(cpu, reg_vec(u), A, reg_vec(w), err);
		if (s)
			ffdp_field_free(w);
	}
	ffdp_backend_close(cpu);
	return s;
}
