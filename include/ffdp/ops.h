/* The backend-neutral operation API.
 *
 * reg/ and dist/ call only these functions; each dispatches once to the
 * backend's table (src/ops/backend.h).  Buffers live in the backend's memory
 * (host for CPU, device for CUDA) and are described by views that carry
 * explicit sizes.  No op allocates a full volume unless its documentation
 * says so; scratch is O(slab) or O(bins^2).
 *
 * Index conventions (DESIGN.md): x fastest, idx = (z*ny + y)*nx + x,
 * 64-bit.  A 2-D problem has n[2] == 1 everywhere and fields with two
 * components; matrices keep their full 3x4 / 3x3 shape and the z row and
 * column are ignored.
 *
 * Shards: an op works on a box of the global fixed grid.  lo[] is the
 * global index of the box's voxel 0; sample points are computed from the
 * global index, so a shard passes the same W as the whole volume.
 */
#ifndef FFDP_OPS_H
#define FFDP_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- backends and their memory ---------------------------------------- */

typedef enum ffdp_backend_kind {
	FFDP_BACKEND_CPU = 0,
	FFDP_BACKEND_CUDA = 1,
} ffdp_backend_kind;

typedef struct ffdp_backend ffdp_backend;

/* device: CUDA device ordinal (ignored for CPU).  CUDA is FFDP_ERR_UNSUPPORTED
 * when not compiled in, FFDP_ERR_BACKEND when no device is present. */
ffdp_status ffdp_backend_open(ffdp_backend_kind kind, int device, ffdp_backend **out,
			      ffdp_error *err);
void ffdp_backend_close(ffdp_backend *be);
const char *ffdp_backend_name(const ffdp_backend *be);
/* Waits until every operation issued to be has finished (GPU backends
 * queue their work); FFDP_OK at once on the CPU. */
ffdp_status ffdp_backend_sync(ffdp_backend *be, ffdp_error *err);

/* Zero-filled, 64-byte (CPU) / 256-byte (CUDA) aligned. */
void *ffdp_buf_alloc(ffdp_backend *be, size_t bytes, ffdp_error *err);
void ffdp_buf_free(ffdp_backend *be, void *p);
ffdp_status ffdp_buf_upload(ffdp_backend *be, void *dst, const void *host_src, size_t bytes,
			    ffdp_error *err);
ffdp_status ffdp_buf_download(ffdp_backend *be, void *host_dst, const void *src, size_t bytes,
			      ffdp_error *err);
/* Within the backend's memory; dst and src do not overlap. */
ffdp_status ffdp_buf_copy(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
/* bytes of zeros at dst (backend memory). */
ffdp_status ffdp_buf_zero(ffdp_backend *be, void *dst, size_t bytes, ffdp_error *err);
/* 1 when the backend's buffers are host memory (CPU): host arrays may then
 * be given to its ops directly, without an upload. */
int ffdp_backend_host_memory(const ffdp_backend *be);

/* ---- views -------------------------------------------------------------- */

/* A scalar volume (or box of one). */
typedef struct ffdp_img {
	float *p;
	int64_t n[3];
} ffdp_img;

/* A vector field, one plane per component; ncomp is 2 or 3. */
typedef struct ffdp_vec {
	float *c[3];
	int64_t n[3];
	int ncomp;
} ffdp_vec;

typedef enum ffdp_pad {
	FFDP_PAD_ZERO = 0,   /* corners outside the image contribute 0 */
	FFDP_PAD_BORDER = 1, /* coordinates clamped to the image */
} ffdp_pad;

typedef enum ffdp_interp {
	FFDP_INTERP_LINEAR = 0,
	FFDP_INTERP_NEAREST = 1,
	FFDP_INTERP_LABEL = 2, /* label with the largest summed trilinear weight */
} ffdp_interp;

/* ---- 16-bit images ---------------------------------------------------------
 * An image in [0, 1] (registration maps intensities there) may be stored as
 * unorm16: q = round(x 65535), read as x = q * FFDP_UNORM16_STEP, 2 bytes a
 * voxel instead of 4.  The step (1.5e-5 of the range) is below the noise
 * of 8- and 16-bit scans.  The sampler's moving image and the losses' f
 * may be given so (moving16, f16); a backend that does not read them
 * itself gets a float copy for the call, with the same result. */
#define FFDP_UNORM16_STEP (1.0f / 65535.0f)

/* q = round(clamp(x, 0, 1) 65535) (NaN to 0), and x = q * FFDP_UNORM16_STEP;
 * q holds x.n's voxels in backend memory. */
ffdp_status ffdp_op_unorm16_pack(ffdp_backend *be, ffdp_img x, uint16_t *q, ffdp_error *err);
ffdp_status ffdp_op_unorm16_unpack(ffdp_backend *be, const uint16_t *q, ffdp_img x, ffdp_error *err);

/* ---- fused sampler -------------------------------------------------------
 * For each voxel j of the output box, global index i = lo + j:
 *     p   = W [i; 1] + B u(j)          (moving continuous index)
 *     out(j) (=|+=) M(p)
 * W = (moving phys->index) T (fixed index->phys), B = linear part of
 * (moving phys->index): u is in moving-frame mm.  No grid is materialised.
 * LABEL: out = the corner label whose summed trilinear weight is largest
 * (ties: smallest label); corners outside are ignored (zero pad) or clamped.
 */
typedef struct ffdp_sample_args {
	ffdp_img moving;
	/* A moving sub-box (shards): moving holds the voxels of the whole moving
	 * volume of size m_full from index m_lo on.  p is computed and clamped,
	 * and padding decided, in the whole volume; only the integer corner
	 * indices move into the box, so the bits are the whole volume's.  The
	 * box must hold every corner read: along each axis the clamped
	 * [floor(min p), floor(max p) + 1].  m_full all 0: moving is the whole
	 * volume (m_lo must then be 0). */
	int64_t m_lo[3];
	int64_t m_full[3];
	/* A z gate (3-D; gate[1] > gate[0] turns it on): only the voxels
	 * whose point's first z corner, clamped into the whole volume (the
	 * nearest plane for NEAREST), lies in [gate[0], gate[1]) are sampled;
	 * the others' out (and gu) are left as they are.  The box must hold
	 * planes [gate[0], gate[1] + 1).  Moving slabs passed around a ring of
	 * ranks thus sample each point once, with the whole volume's bits. */
	int64_t gate[2];
	double W[12];      /* 3x4 row-major */
	double B[9];       /* 3x3 row-major; used only when u is given */
	const ffdp_vec *u; /* on the output box, or NULL (pure linear) */
	int64_t lo[3];
	ffdp_img out;
	ffdp_interp interp;
	ffdp_pad pad;
	int accumulate; /* out += sample */
	/* The moving image as unorm16 (see "16-bit images"), moving.p NULL and
	 * moving.n its size; or NULL. */
	const uint16_t *moving16;
	/* W in backend memory, as ffdp_op_linear_step writes it, instead of W
	 * (the linear stages' loop: no W crosses to the host); or NULL.
	 * Linear, no u, no gate, no accumulation, the whole moving volume; the
	 * CUDA backend's fast 3-D kernels trust Wq (w->fault says where it
	 * does not hold). */
	const struct ffdp_linear_w *W_dev;
} ffdp_sample_args;

ffdp_status ffdp_op_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err);

/* The z extent of a's points (a->W, a->B, a->u, a->lo on a->out's box;
 * the moving image is not read): *lo, *hi = min and max over the voxels
 * of the continuous moving z index p_z, in double (the linear 3-D
 * sampler forms its points in a fixed-point frame within ~1e-6 voxel of
 * this, inside the one-plane margin a fetch adds); *nan = 1 when some p_z
 * is NaN (left out of lo and hi).  An empty box
 * gives lo = +inf, hi = -inf.  What a shard fetches of a distributed
 * moving image (src/dist). */
ffdp_status ffdp_op_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				  ffdp_error *err);

/* Backward of the LINEAR sampler with upstream gradient gout = dL/dout.
 * Outputs may be NULL.  gu is written (or added to when accumulate_gu),
 * gW is added to (12 doubles), gM is added to (scatter).  On the CPU, gW's
 * sum is reproducible (see "similarity losses"): rows, then z planes in
 * order; gW_z (optional, host-memory backends) receives each plane's 12. */
typedef struct ffdp_sample_grad_args {
	const ffdp_sample_args *fwd; /* fwd->out is not read */
	ffdp_img gout;
	ffdp_vec *gu;
	int accumulate_gu;
	double *gW;
	ffdp_img *gM;
	double *gW_z;
	/* dL/dW (12) written, not added, into backend memory; or NULL.  With
	 * fwd->W_dev, instead of gW. */
	double *gW_dev;
} ffdp_sample_grad_args;

ffdp_status ffdp_op_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a,
				ffdp_error *err);

/* ---- the linear stages' step -----------------------------------------------
 * The rigid and affine stages' parameters, their Adam step and the
 * sampler's W, in backend memory (src/ops/linear_step.h has the math:
 * T(x) = A (x - c) + c + rho t; affine: A (9) and t; rigid: A = exp([w])
 * R0, w (3) and t).  With step: dL/dparams from gW, one Adam step
 * (FFDP_LINEAR_BETA1 and 2, eps 1e-8, the bias corrections c1, c2 given;
 * the state counts the steps),
 * then, step or not, w = the W of the parameters on this level:
 * m_p2i T f_i2p, with Wq = llrint(W 2^32) and fault = 1 where a row's
 * |W| sum passes 256 or a translation 2^28 (the samplers' fixed-point
 * frame).  On CUDA one thread of the device: the loop needs no host. */
typedef struct ffdp_linear_w {
	double W[12];   /* 3x4 row-major, as ffdp_sample_args.W */
	int64_t Wq[12]; /* W in 32.32 fixed point */
	int64_t fault;
} ffdp_linear_w;

#define FFDP_LINEAR_STATE 37 /* parameters (12), Adam's m (12) and v (12), the step count */
#define FFDP_LINEAR_BETA1 0.9
#define FFDP_LINEAR_BETA2 0.999

typedef struct ffdp_linear_step_args {
	int rigid; /* parameters: rigid w (3), t (3); affine A (9, row-major), t (3) */
	int dim;   /* 2: z kept out (its gradient terms 0) */
	int step;  /* 0: only w */
	double lr;
	double c1, c2; /* with step: Adam's bias corrections 1 - beta1^t, 1 - beta2^t (t counts steps from 1) */
	double c[3], rho, R0[9];
	double m_p2i[16], f_i2p[16]; /* the level's moving phys->index, fixed index->phys */
	double *state;               /* backend memory, FFDP_LINEAR_STATE doubles */
	const double *gW;            /* backend memory, 12 (with step) */
	ffdp_linear_w *w;            /* backend memory, out */
} ffdp_linear_step_args;

ffdp_status ffdp_op_linear_step(ffdp_backend *be, const ffdp_linear_step_args *a, ffdp_error *err);

/* ---- composition ----------------------------------------------------------
 * out(j) = d(j) + u(q),  q = i + C d(j)   (i = lo + j, global fixed index)
 * u is given on its own box starting at global index u_lo (the whole grid,
 * or a shard with halo); it is sampled trilinearly with pad.  C maps a
 * displacement in mm to a fixed-index offset (for T = identity: the fixed
 * phys->index linear part).  out may alias d, never u.
 */
typedef struct ffdp_compose_args {
	ffdp_vec u;
	int64_t u_lo[3];
	ffdp_vec d;
	int64_t lo[3];
	double C[9];
	ffdp_pad pad;
	ffdp_vec out;
} ffdp_compose_args;

ffdp_status ffdp_op_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err);

/* ---- field inverse ---------------------------------------------------------
 * Safeguarded Newton steps towards v with (Id + v) = (Id + w)^-1, both
 * displacements in mm.  Per voxel j of v's box, i = lo + j, from
 * x = v(j) (then kept in double between steps):
 *     p = i + C x,  r = x + w(p),  J = I + (dw/dp)(p) C,
 *     delta = J^-1 r, shortened to at most one voxel (|C delta|_inf <= 1),
 *     x = x - delta,
 * w trilinear with border padding on its box at w_lo, dw/dp the exact
 * derivative of that interpolant; where det J <= 1e-6 (w folded or nearly
 * singular there) delta = r, the plain fixed-point step.  Each voxel takes
 * up to iters steps (0 counts as 1) and stops, without stepping, as soon as
 * its |r|_inf <= tol (mm); out(j) = x.  *resid = max over voxels of the last
 * |r|_inf each one evaluated (for iters = 1: the residual of v itself).
 * Voxels are independent, so many steps in one pass cost only the voxels
 * that need them: most converge in two or three, a few far-moved ones take
 * one capped voxel a step.  A point moves at most iters - 1 voxels from
 * i + C v(j): a shard of w needs that many more planes.  The plain fixed
 * point v <- -w(i + C v) converges only where |dw/dz| < 1; strong local
 * expansion (common in SyN's halves) makes it oscillate, Newton does not.
 * out may not alias v or w.  C = the grid's phys->index linear part. */
typedef struct ffdp_invert_args {
	ffdp_vec w;
	int64_t w_lo[3];
	ffdp_vec v;
	int64_t lo[3];
	double C[9];
	ffdp_vec out;
	int iters;
	double tol;
} ffdp_invert_args;

ffdp_status ffdp_op_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err);

/* Jacobian determinant of x -> A x + u(x):  out = det(A + (du/di) G),
 * G = fixed phys->index linear part, du/di by central differences
 * (one-sided at the box faces). */
ffdp_status ffdp_op_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9],
				 const double G[9], ffdp_img out, ffdp_error *err);

/* Intensity moments in index coordinates, for the moments initialiser:
 * out[0] = sum w, out[1..3] = sum w i, out[4..9] = sum w i_a i_b for
 * (a,b) = xx, xy, xz, yy, yz, zz, with w = max(x, 0), accumulated in double. */
ffdp_status ffdp_op_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err);
/* The same per z plane of a box whose plane 0 is global plane z_lo (the
 * index coordinates are the whole volume's): 10 doubles a plane in out_z.
 * On the CPU ffdp_op_moments is their sum in plane order (z_lo = 0), so
 * z-slabs adding the gathered planes in order get its bits.  Host-memory
 * backends only. */
ffdp_status ffdp_op_moments_planes(ffdp_backend *be, ffdp_img x, int64_t z_lo, double *out_z, ffdp_error *err);

/* ---- similarity losses ------------------------------------------------------
 * All losses are to be minimised and are means over the voxels of the box
 * (or mask-weighted means: sum(w loss)/sum(w)).  For shards, denom > 0
 * replaces the local count/weight so ranks can divide by the global one,
 * and *sum receives the unnormalised local sum.  Gradients (gf, gm: NULL to
 * skip) are written, already multiplied by `scale` (the upstream dL/dloss;
 * 1 for a plain gradient), and equal the exact gradient of the reported
 * value.
 *
 * Reproducible sums (CPU): each z plane's sum is formed in a fixed order
 * (its rows' sums in row order) and the total is the planes' sums added in
 * plane order, so it has the same bits for any thread count, and ranks
 * holding z-slabs get the same total by adding the gathered zsum in
 * global plane order.
 */
/* A scalar result that may reach the host after its op returns (a GPU's
 * reduction still on its way).  ffdp_scalar_get gives its value, waiting
 * for that value alone, not for the work queued since.  A backend keeps a
 * small ring of such results: read one before FFDP_SCALAR_RING more are
 * requested from the same backend (an overwritten one is an error, never
 * a wrong value). */
typedef struct ffdp_scalar {
	double value; /* valid once ready */
	int ready;
	/* pending (the backend's): value = sign * (the sum in slot) / div */
	int slot;
	uint64_t seq;
	double sign, div;
} ffdp_scalar;

#define FFDP_SCALAR_RING 16

ffdp_status ffdp_scalar_get(ffdp_backend *be, ffdp_scalar *x, double *value, ffdp_error *err);

typedef struct ffdp_loss_args {
	ffdp_img f;          /* fixed (or "first") image */
	ffdp_img m;          /* moving (warped) image, same box */
	const float *mask;   /* optional weights on the box */
	double denom;        /* 0: local count or mask sum */
	double scale;
	float *gf;
	float *gm;
	double *loss;        /* out: sum / denom */
	double *sum;         /* out, optional: unnormalised sum */
	double *zsum;        /* out, optional (host-memory backends): the
			      * unnormalised sum of each z plane, n[2] doubles */
	const uint16_t *f16; /* f as unorm16 (see "16-bit images"), f.p NULL; or NULL */
	/* optional, instead of loss (which may then be NULL; no sum, zsum):
	 * the loss, pending where the backend reduces on its device (CUDA's
	 * LNCC, MSE, and MI without histograms in or out and with no mask or
	 * one of known maximum: no wait for the GPU in the call), else ready.  The value has the bits *loss
	 * would have got. */
	ffdp_scalar *later;
} ffdp_loss_args;

ffdp_status ffdp_op_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err);

/* LNCC: odd box window k (k^3, or k^2 in 2-D), windows truncated at the box
 * faces; per voxel cc = cov^2 / (var_f var_m + eps) from window
 * sums; loss = -mean(cc).  exact_grad = 0 gives ANTs' approximation (only
 * the window centred on the voxel).  Scratch is O(slab), never a 5-volume
 * buffer; cost does not grow with k.  eps is absolute: with intensities of
 * order 1 (the registration normalises to [0, 1]) the running sums'
 * rounding residue is ~1e-9 of the gradients; with intensities of ~100
 * beside exact zeros, windows whose f or m is 0 everywhere keep a residue
 * that eps no longer masks (gradient errors up to ~1e-1 there). */
typedef struct ffdp_lncc_opts {
	int k;
	int exact_grad;
	double eps; /* 0 -> 1e-5 */
	/* Shards (3-D only).  The box holds planes [z_lo, z_lo + n[2]) of a
	 * volume of z_full planes (0: the box is the volume); only the box
	 * planes [o_z0, o_z1) get loss (sum, zsum) and gradients (other planes
	 * of gf, gm, zsum are not written); the box must hold the planes
	 * ffdp_lncc_planes names for them.  CUDA clips windows at the box's
	 * faces, which is the volume's answer for those planes when the box
	 * holds that range and ends at the volume's faces where it reaches
	 * them; it forms the sums from each tile's own shift (below), so a
	 * shard's planes equal the whole volume's to rounding, not in bits. */
	int64_t z_lo, z_full, o_z0, o_z1;
	/* Intensity shifts (precision only: cc does not depend on them): with
	 * shifts_given, cf and cm are used as they are (for shards: the whole
	 * volume's ffdp_lncc_shift); otherwise the op takes ffdp_lncc_shift of
	 * the box.  The CPU's rule; CUDA shifts each tile by one of its
	 * voxels and ignores these. */
	int shifts_given;
	float cf, cm;
} ffdp_lncc_opts;

ffdp_status ffdp_op_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o,
			 ffdp_error *err);

/* Reproducible LNCC on the CPU: window sums run along z (the streamed
 * axis) from anchor planes at fixed global positions, where they restart
 * from zero, so every plane's sums, hence its cc and gradient, are the same
 * bits wherever a box, shard or thread's range starts.  Anchor spacing: */
int64_t ffdp_lncc_anchor_block(int k);

/* Global planes [*lo, *hi) of a z_full-plane volume that a box must hold
 * to produce planes [o0, o1) (global) with window k (exact gradient or not). */
void ffdp_lncc_planes(int k, int exact_grad, int64_t z_full, int64_t o0, int64_t o1, int64_t *lo, int64_t *hi);

/* The shift rule: the mean of a fixed sample of the whole volume (size n):
 * row n[1] / 2 of every ceil(n[2] / 64)-th plane, every ceil(n[0] / 64)-th
 * voxel.  ffdp_lncc_shift_part is global plane z's part of the sum (0 when
 * it is not sampled; x: the plane, host memory), ffdp_lncc_shift_count the
 * number of samples; the shift is (float)(sum of parts in plane order /
 * count). */
double ffdp_lncc_shift_part(const float *x, const int64_t n[3], int64_t z);
int64_t ffdp_lncc_shift_count(const int64_t n[3]);

/* Mattes mutual information with Parzen windows, never a B x N array.
 * Intensities map to bins with the given (global) ranges; per-voxel kernel
 * weights are normalised over bins.  loss = -MI.  hist (optional, length
 * bins*bins + 2*bins) receives the unnormalised joint then marginal sums so
 * that ranks can all-reduce them; hist_in, when given, is used instead of
 * computing the histograms (the second half of a distributed call): only its
 * joint part is read, the marginals are recomputed from it. */
typedef enum ffdp_mi_kernel {
	FFDP_MI_GAUSSIAN = 0,
	FFDP_MI_BSPLINE3 = 1,
} ffdp_mi_kernel;

typedef struct ffdp_mi_opts {
	int bins;              /* 4..1024; 32 is the usual choice */
	ffdp_mi_kernel kernel;
	double f_lo, f_hi;     /* fixed intensity range */
	double m_lo, m_hi;     /* moving intensity range */
	double *hist;          /* out, optional */
	const double *hist_in; /* in, optional */
	/* out, optional (host-memory backends): each z plane's joint
	 * histogram, n[2] * bins^2 doubles.  The joint is their sum in plane
	 * order (each plane's voxels added in order), the same bits for any
	 * thread count, and for ranks that add the gathered planes in order. */
	double *hist_z;
	/* > 0: a->mask is finite and non-negative with this maximum (the
	 * caller has checked it, once for many calls): CUDA then reads nothing
	 * of the mask back and may return a pending loss.  0: unknown. */
	double mask_max;
} ffdp_mi_opts;

ffdp_status ffdp_op_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o,
		       ffdp_error *err);

/* ---- smoothing --------------------------------------------------------------
 * In-place separable Gaussian, sigma in voxels per axis (0 skips an axis),
 * kernel truncated at radius ceil(truncate * sigma) (truncate 0 -> 2) and
 * normalised to sum 1.  renormalize = 1 divides by the kernel mass inside
 * the box at the faces (images); 0 treats outside as zero (fields, as
 * FireANTs does).  Scratch is one line per thread. */
typedef struct ffdp_smooth_opts {
	double sigma[3];
	double truncate;
	int renormalize;
} ffdp_smooth_opts;

ffdp_status ffdp_op_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o,
			   ffdp_error *err);
ffdp_status ffdp_op_smooth_vec(ffdp_backend *be, ffdp_vec x, const ffdp_smooth_opts *o,
			       ffdp_error *err);
/* Out of place: out = the smoothing of x (same size, no overlap), x left as
 * it is; the same values as in place.  A backend that smooths out of place
 * natively (ffdp_op_smooth_native_to) makes one pass over the data where it
 * can; any other copies x into out and smooths out in place. */
ffdp_status ffdp_op_smooth_to(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o,
			      ffdp_error *err);
ffdp_status ffdp_op_smooth_vec_to(ffdp_backend *be, ffdp_vec x, ffdp_vec out, const ffdp_smooth_opts *o,
				  ffdp_error *err);
int ffdp_op_smooth_native_to(const ffdp_backend *be);

/* ---- pointwise ----------------------------------------------------------------
 * Whole-view maps and reductions: the glue between stages (intensity
 * normalisation, the linear part of T applied to a field, the inverse's
 * fixed point), so that no voxel has to visit the host.  Arithmetic is in
 * double, each product and sum rounded as written (no contraction) and the
 * result rounded once to float, so every backend returns the same bits. */

/* x = a x + b, in place. */
ffdp_status ffdp_op_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err);

/* x = x y per voxel, in place (the float product, rounded once). */
ffdp_status ffdp_op_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err);

/* x = lo where x < lo, hi where x > hi, in place (lo <= hi; NaN stays NaN). */
ffdp_status ffdp_op_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err);

/* *lo = min x, *hi = max x.  NaN voxels are ignored; when every voxel is
 * NaN both are NaN. */
ffdp_status ffdp_op_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err);

/* out(i) = A in(i) per voxel, A 3x3 row-major; a 2-D field (two
 * components) uses A's upper-left 2x2.  out may be in itself (the same
 * planes); no other overlap. */
ffdp_status ffdp_op_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out,
			       ffdp_error *err);

/* *out = max over voxels and components of |a - b|, in double; a NaN
 * difference counts as +inf (never "converged"). */
ffdp_status ffdp_op_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out,
				     ffdp_error *err);

/* ---- optimiser -----------------------------------------------------------------
 * The greedy step is split in two ops so that the global maximum can be
 * all-reduced between them:
 *  1. ffdp_op_adam_moments: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2 per
 *     component, and *max_norm = max over voxels of |d|_2 with
 *     d = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).  g is not modified.
 *  2. ffdp_op_warp_step: delta = step * d (d recomputed from m and v, never
 *     stored), then u <- delta + u o (Id + C delta) in place (the op keeps
 *     an O(slab) ring of the rows it still has to read), or u <- u + delta
 *     when compose == 0.  The caller picks step = -lr * h / max(1, max_norm).
 *     The ring must reach back ceil(max |(C delta)_z|) planes (rows in 2-D):
 *     passing adam_moments' max_norm for these m, v and t bounds that reach
 *     by |step| max_norm |C_z|; with max_norm = 0 the op spends one extra
 *     read of m and v to measure it.  A max_norm smaller than the truth is
 *     FFDP_ERR_ARG after the fact (u is then invalid).
 */
typedef enum ffdp_moment_store {
	FFDP_MOMENTS_F32 = 0,  /* m and v: float planes */
	FFDP_MOMENTS_BF16 = 1, /* m's planes hold one 32-bit word a voxel: bfloat16 m
				* in the high half (rounded to nearest), v in the low
				* half (rounded stochastically: index0 below); v is
				* unused (may be empty).  12 B/voxel less in 3-D. */
} ffdp_moment_store;

/* The step's scalars kept in backend memory (ffdp_buf_alloc, zeroed;
 * read back with ffdp_buf_download when the caller chooses), so that an
 * iteration needs no host round trip for them.  Not under MPI (dist.h
 * reduces max_norm across ranks on the host). */
typedef struct ffdp_step_state {
	double max_norm; /* set by adam_moments: max |d|_2, NaN if some |d| is not finite */
	int fault;       /* sticky bits: 1 a non-finite |d| (adam_moments), 2 a reach
			  * beyond the ring (warp_step: u then partly updated) */
} ffdp_step_state;

typedef struct ffdp_adam_opts {
	int t; /* 1-based step count */
	double beta1, beta2, eps;
	ffdp_moment_store store;
	/* BF16: global linear index of the box's first voxel (z0 nx ny for a
	 * z-slab).  v is rounded stochastically with bits hashed from
	 * (global index, component, t), so any split of the volume over
	 * ranks or threads stores the same words. */
	int64_t index0;
	/* Optional (backend memory): adam_moments writes max_norm and the fault
	 * there (its max_norm argument may then be NULL); warp_step then takes
	 * step / max(1, state->max_norm) as its step, bounds the ring's reach
	 * by |step| |C_z| (so max_norm is not read) and records a fault instead
	 * of failing. */
	ffdp_step_state *state;
	/* Optional: the moments take g smoothed as ffdp_op_smooth_vec(g,
	 * *smooth) would leave it, and g's contents are undefined afterwards
	 * (a backend with a fused pass only reads g; any other smooths it in
	 * place first).  warp_step ignores it. */
	const ffdp_smooth_opts *smooth;
} ffdp_adam_opts;

ffdp_status ffdp_op_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v,
				 const ffdp_adam_opts *o, double *max_norm, ffdp_error *err);

typedef struct ffdp_warp_step_opts {
	ffdp_adam_opts adam;
	double step;
	int compose;
	double C[9];
	ffdp_pad pad;
	double max_norm; /* optional bound on |d|_2 (see above); 0 = measure */
	/* Optional: the new u goes here (a field of u's size sharing no plane
	 * with u, m or v) and u is left as it is: the same values as the step
	 * in place.  A backend that composes out of place natively
	 * (ffdp_op_warp_step_native_out) needs no ring for it; any other copies
	 * u into out and steps out in place. */
	const ffdp_vec *out;
} ffdp_warp_step_opts;

ffdp_status ffdp_op_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
			      const ffdp_warp_step_opts *o, ffdp_error *err);
/* 1 when be writes warp_step's out itself (no copy of u first). */
int ffdp_op_warp_step_native_out(const ffdp_backend *be);

/* One half of FFDP_MOMENTS_BF16 words (half 0: m, 1: v) to float (get),
 * or float rounded to nearest even into that half, the other half kept
 * (put): the moments cross pyramid levels through float planes. */
ffdp_status ffdp_op_moments_get(ffdp_backend *be, ffdp_img words, int half, ffdp_img out, ffdp_error *err);
ffdp_status ffdp_op_moments_put(ffdp_backend *be, ffdp_img words, int half, ffdp_img in, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
