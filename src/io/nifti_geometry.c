/* NIfTI qform/sform <-> LPS grid.
 *
 * Which matrix is used: ITK 5.x's rule (NiftiImageIO::SetImageIOOrientation-
 * FromNIfTI in Modules/IO/NIFTI/src/itkNiftiImageIO.cxx, ITK 5.3/5.4), so
 * that ffdp and ANTs put the same file in the same place:
 *   1. qform_code == 0 and sform_code == 0: no orientation.  ITK then uses
 *      origin 0, identity direction (in LPS) and pixdim spacing.
 *   2. prefer_sform = "qform and sform agree": 3x3 parts equal within 1e-5
 *      element-wise, translation columns and bottom rows within 1e-7.
 *   3. If not, or if sform_code != 0, and the sform is "decomposable without
 *      skew" (invertible affine whose column-normalised 3x3 R has
 *      R*R^T = I within 1e-4):
 *        - qform_code == 0 (sform_code != 0)      -> sform;
 *        - sform_code == 1 (NIFTI_XFORM_SCANNER_ANAT) -> sform;
 *        - both codes != 0 -> sform only if the two are "very similar":
 *          ITK compares SVD factors (U, singular values) and offsets within
 *          1e-4; we compare the same quantities as normalised columns,
 *          column norms and offsets within 1e-4 (equal for matrices with
 *          orthogonal columns, which a decomposable sform has).
 *   4. sform if preferred, else the qform if qform_code != 0.  Otherwise ITK
 *      throws "No orthonormal definition found"; ffdp instead takes the sform
 *      when its axes are orthogonal within 1e-3 (orthonormalising it) and
 *      refuses it with a clear message when the shear is larger.
 * Deviations from ITK, on purpose: spacing is the column norm of the chosen
 * matrix (nibabel's reading; ITK takes pixdim and warns when the sform's
 * column norms differ from it), and the direction is the polar factor of the
 * normalised columns, so it is orthonormal to double precision.
 */
#include "io/nifti_geometry.h"

#include <float.h>
#include <math.h>
#include <string.h>

const char *ffdp_xform_source_name(ffdp_xform_source s)
{
	return s == FFDP_XFORM_SFORM ? "sform" : s == FFDP_XFORM_QFORM ? "qform" : "none";
}

ffdp_mat4 ffdp_ras_lps_flip(ffdp_mat4 m)
{
	for (int c = 0; c < 4; c++) {
		m.m[c] = -m.m[c];
		m.m[4 + c] = -m.m[4 + c];
	}
	return m;
}

ffdp_mat4 ffdp_mat4_from_nifti(const nifti_dmat44 *m)
{
	ffdp_mat4 out;
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 4; c++)
			out.m[4 * r + c] = m->m[r][c];
	return out;
}

nifti_dmat44 ffdp_mat4_to_nifti(const ffdp_mat4 *m)
{
	nifti_dmat44 out;
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 4; c++)
			out.m[r][c] = m->m[4 * r + c];
	return out;
}

static double det3(const double a[9])
{
	return a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) +
	       a[2] * (a[3] * a[7] - a[4] * a[6]);
}

static int inv3(const double a[9], double out[9])
{
	double d = det3(a);
	if (!(fabs(d) > 1e-300) || !isfinite(d))
		return -1;
	out[0] = (a[4] * a[8] - a[5] * a[7]) / d;
	out[1] = (a[2] * a[7] - a[1] * a[8]) / d;
	out[2] = (a[1] * a[5] - a[2] * a[4]) / d;
	out[3] = (a[5] * a[6] - a[3] * a[8]) / d;
	out[4] = (a[0] * a[8] - a[2] * a[6]) / d;
	out[5] = (a[2] * a[3] - a[0] * a[5]) / d;
	out[6] = (a[3] * a[7] - a[4] * a[6]) / d;
	out[7] = (a[1] * a[6] - a[0] * a[7]) / d;
	out[8] = (a[0] * a[4] - a[1] * a[3]) / d;
	return 0;
}

int ffdp_polar3(const double a[9], double q[9])
{
	/* X <- (X + X^-T) / 2 converges quadratically to the orthogonal polar factor. */
	double x[9];
	memcpy(x, a, sizeof(x));
	for (int it = 0; it < 100; it++) {
		double xi[9], nx[9], diff = 0.0;
		if (inv3(x, xi))
			return -1;
		for (int r = 0; r < 3; r++)
			for (int c = 0; c < 3; c++) {
				nx[3 * r + c] = 0.5 * (x[3 * r + c] + xi[3 * c + r]);
				diff = fmax(diff, fabs(nx[3 * r + c] - x[3 * r + c]));
			}
		memcpy(x, nx, sizeof(x));
		if (diff < 1e-15)
			break;
	}
	memcpy(q, x, sizeof(x));
	return 0;
}

static void linear_part(const nifti_dmat44 *m, double a[9])
{
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			a[3 * r + c] = m->m[r][c];
}

/* Column norms and the column-normalised matrix (zero columns left as they are). */
static void normalise_columns(const double a[9], double norm[3], double u[9])
{
	for (int c = 0; c < 3; c++) {
		norm[c] = sqrt(a[c] * a[c] + a[3 + c] * a[3 + c] + a[6 + c] * a[6 + c]);
		for (int r = 0; r < 3; r++)
			u[3 * r + c] = norm[c] > 0.0 ? a[3 * r + c] / norm[c] : a[3 * r + c];
	}
}

/* max |R R^T - I| for the column-normalised R of a (ITK's orthonormality test). */
static double shear_error(const double a[9])
{
	double norm[3], u[9], e = 0.0;
	normalise_columns(a, norm, u);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			double s = 0.0;
			for (int k = 0; k < 3; k++)
				s += u[3 * i + k] * u[3 * j + k];
			e = fmax(e, fabs(s - (i == j)));
		}
	return isfinite(e) ? e : INFINITY;
}

static int qform_sform_similar(const nifti_image *nim)
{
	const nifti_dmat44 *s = &nim->sto_xyz, *q = &nim->qto_xyz;
	double tcol = 0.0, brow = 0.0;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			if (!(fabs(s->m[r][c] - q->m[r][c]) <= 1e-5))
				return 0;
	for (int i = 0; i < 4; i++) {
		tcol += fabs(s->m[i][3] - q->m[i][3]);
		brow += fabs(s->m[3][i] - q->m[3][i]);
	}
	return tcol <= 1e-7 && brow <= 1e-7;
}

static int sform_decomposable(const nifti_image *nim)
{
	const nifti_dmat44 *s = &nim->sto_xyz;
	double a[9], norm[3], u[9];
	double bottom = fabs(s->m[3][3] - 1.0) + fabs(s->m[3][0]) + fabs(s->m[3][1]) + fabs(s->m[3][2]);
	if (bottom > FLT_EPSILON)
		return 0;
	linear_part(s, a);
	normalise_columns(a, norm, u);
	if (!(norm[0] > 0 && norm[1] > 0 && norm[2] > 0) || !(fabs(det3(u)) > 1e-6))
		return 0;
	return shear_error(a) <= 1e-4;
}

static int sform_qform_very_similar(const nifti_image *nim)
{
	double as[9], aq[9], ns[3], nq[3], us[9], uq[9];
	linear_part(&nim->sto_xyz, as);
	linear_part(&nim->qto_xyz, aq);
	normalise_columns(as, ns, us);
	normalise_columns(aq, nq, uq);
	for (int i = 0; i < 9; i++)
		if (!(fabs(us[i] - uq[i]) <= 1e-4))
			return 0;
	for (int i = 0; i < 3; i++)
		if (!(fabs(ns[i] - nq[i]) <= 1e-4) ||
		    !(fabs(nim->sto_xyz.m[i][3] - nim->qto_xyz.m[i][3]) <= 1e-4))
			return 0;
	return 1;
}

ffdp_xform_source ffdp_nifti_choose_xform(const nifti_image *nim, int *shear_only)
{
	int q = nim->qform_code, s = nim->sform_code;
	*shear_only = 0;
	if (q == NIFTI_XFORM_UNKNOWN && s == NIFTI_XFORM_UNKNOWN)
		return FFDP_XFORM_NONE;
	int prefer_sform = qform_sform_similar(nim);
	if ((!prefer_sform || s != NIFTI_XFORM_UNKNOWN) && sform_decomposable(nim)) {
		if (q == NIFTI_XFORM_UNKNOWN && s != NIFTI_XFORM_UNKNOWN)
			prefer_sform = 1;
		else if (s == NIFTI_XFORM_SCANNER_ANAT)
			prefer_sform = 1;
		else if (q != NIFTI_XFORM_UNKNOWN && s != NIFTI_XFORM_UNKNOWN)
			prefer_sform = sform_qform_very_similar(nim);
	}
	if (prefer_sform)
		return FFDP_XFORM_SFORM;
	if (q != NIFTI_XFORM_UNKNOWN)
		return FFDP_XFORM_QFORM;
	*shear_only = 1;
	return FFDP_XFORM_SFORM;
}

static double pixdim_or_one(double p)
{
	p = fabs(p);
	return p > 0.0 && isfinite(p) ? p : 1.0;
}

/* A 2-D file may have an all-zero third column: rebuild it as the normal of the
 * other two, with pixdim spacing.  Two missing columns cannot be repaired. */
static int repair_columns(double norm[3], double u[9], const nifti_image *nim)
{
	double big = fmax(norm[0], fmax(norm[1], norm[2]));
	int bad = -1, nbad = 0;
	for (int c = 0; c < 3; c++)
		if (!(norm[c] > 1e-12 * big) || !isfinite(norm[c]))
			bad = c, nbad++;
	if (nbad == 0)
		return 0;
	if (nbad > 1 || !(big > 0) || !isfinite(big))
		return -1;
	int a = (bad + 1) % 3, b = (bad + 2) % 3;
	u[bad] = u[3 + a] * u[6 + b] - u[6 + a] * u[3 + b];
	u[3 + bad] = u[6 + a] * u[b] - u[a] * u[6 + b];
	u[6 + bad] = u[a] * u[3 + b] - u[3 + a] * u[b];
	norm[bad] = pixdim_or_one(nim->pixdim[bad + 1]);
	return 0;
}

ffdp_status ffdp_nifti_grid(const nifti_image *nim, const char *path, ffdp_grid *g, ffdp_xform_source *src,
			    ffdp_error *err)
{
	int shear_only = 0;
	ffdp_xform_source s = ffdp_nifti_choose_xform(nim, &shear_only);
	*g = ffdp_grid_make(nim->nx, nim->dim[0] >= 2 ? nim->ny : 1, nim->dim[0] >= 3 ? nim->nz : 1,
			    pixdim_or_one(nim->pixdim[1]), pixdim_or_one(nim->pixdim[2]),
			    pixdim_or_one(nim->pixdim[3]));
	if (src)
		*src = s;
	if (s == FFDP_XFORM_NONE)
		goto check;
	ffdp_mat4 lps =
	    ffdp_ras_lps_flip(ffdp_mat4_from_nifti(s == FFDP_XFORM_SFORM ? &nim->sto_xyz : &nim->qto_xyz));
	double a[9], norm[3], u[9];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			a[3 * r + c] = lps.m[4 * r + c];
	normalise_columns(a, norm, u);
	if (repair_columns(norm, u, nim))
		return ffdp_fail(err, FFDP_ERR_DATA, "%s: the %s matrix is singular (no usable geometry)",
				 path, ffdp_xform_source_name(s));
	if (shear_only && shear_error(u) > 1e-3)
		return ffdp_fail(err, FFDP_ERR_DATA,
				 "%s: the sform has shear (axes %.2g from orthogonal) and there is no qform; "
				 "ITK refuses such files too: resample it first",
				 path, shear_error(u));
	if (ffdp_polar3(u, g->dir))
		return ffdp_fail(err, FFDP_ERR_DATA, "%s: the %s matrix is singular (no usable geometry)",
				 path, ffdp_xform_source_name(s));
	/* "+ 0.0" turns the -0 of flipped zeros into 0, for tidy printing. */
	for (int i = 0; i < 3; i++) {
		g->spacing[i] = norm[i];
		g->origin[i] = lps.m[4 * i + 3] + 0.0;
	}
	for (int i = 0; i < 9; i++)
		g->dir[i] += 0.0;
check:;
	ffdp_error e2 = {0};
	if (ffdp_grid_check(g, &e2) != FFDP_OK)
		return ffdp_fail(err, FFDP_ERR_DATA, "%s: unusable geometry (%s): %s", path,
				 ffdp_xform_source_name(s), e2.msg);
	return FFDP_OK;
}

void ffdp_nifti_set_geometry(nifti_image *nim, const ffdp_grid *g)
{
	ffdp_mat4 lps = ffdp_grid_index_to_phys(g);
	ffdp_mat4 ras = ffdp_ras_lps_flip(lps);
	nifti_dmat44 m = ffdp_mat4_to_nifti(&ras);
	nim->dx = nim->pixdim[1] = g->spacing[0];
	nim->dy = nim->pixdim[2] = g->spacing[1];
	nim->dz = nim->pixdim[3] = g->spacing[2];
	nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
	nim->sto_xyz = m;
	nim->sto_ijk = nifti_dmat44_inverse(m);
	/* The quaternion carries the rotation; qfac = -1 flips the third axis when det < 0. */
	double qdx, qdy, qdz;
	nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
	nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
				&nim->qoffset_y, &nim->qoffset_z, &qdx, &qdy, &qdz, &nim->qfac);
	nim->qto_xyz =
	    nifti_quatern_to_dmat44(nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x,
				    nim->qoffset_y, nim->qoffset_z, nim->dx, nim->dy, nim->dz, nim->qfac);
	nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
	nim->xyz_units = NIFTI_UNITS_MM;
	nim->time_units = NIFTI_UNITS_SEC;
}
