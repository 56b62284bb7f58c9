/* ITK's linear transform types as a 4x4 (itk_params.h).
 *
 * Every one of them is a MatrixOffsetTransformBase: y = A (x - c) + c + t,
 * A from the type's parameters, t its translation, c the centre (the
 * FixedParameters; 0 when absent).  As a 4x4: linear part A, offset
 * t + c - A c.  The parameters, in the order ITK stores them:
 *   AffineTransform, MatrixOffsetTransformBase: A row-major, then t
 *   Euler3DTransform: angles ax, ay, az (radians), t; A = Rz Rx Ry, or
 *     Rz Ry Rx when a fourth fixed parameter (ITK's ComputeZYX) is non-zero
 *   VersorRigid3DTransform: the unit quaternion's vector part (its scalar
 *     part sqrt(1 - |v|^2)), t; A its rotation
 *   Similarity3DTransform: the versor, t, then the scale s; A = s R
 *   TranslationTransform: t; A = I (no centre)
 *   Rigid2DTransform, Euler2DTransform: the angle, t
 * with Rx, Ry, Rz the right-handed rotations about each axis.
 * antsRegistration writes AffineTransform (collapsed outputs), Euler3D for
 * Rigid stages and Similarity3D for Similarity stages when not collapsed;
 * other ITK tools (Slicer's BRAINSFit) write VersorRigid3D.
 */
#include <math.h>
#include <string.h>

#include "io/itk_params.h"

typedef struct itk_kind {
	const char *name;
	int kind, dim;
} itk_kind;

static const itk_kind kinds[] = {
	{"AffineTransform", ITK_AFFINE, 0},
	{"MatrixOffsetTransformBase", ITK_AFFINE, 0},
	{"Euler3DTransform", ITK_EULER3D, 3},
	{"VersorRigid3DTransform", ITK_VERSOR3D, 3},
	{"Similarity3DTransform", ITK_SIMILARITY3D, 3},
	{"TranslationTransform", ITK_TRANSLATION, 0},
	{"Rigid2DTransform", ITK_RIGID2D, 2},
	{"Euler2DTransform", ITK_RIGID2D, 2},
};

int ffdp_itk_type_parse(const char *type, ffdp_itk_params *t)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].name);
		if (strncmp(type, kinds[i].name, n) != 0 || type[n] != '_')
			continue;
		const char *rest = type + n + 1;
		if (!strncmp(rest, "double_", 7))
			rest += 7;
		else if (!strncmp(rest, "float_", 6))
			rest += 6;
		else
			return 0;
		int d = !strcmp(rest, "3_3") ? 3 : !strcmp(rest, "2_2") ? 2 : 0;
		if (!d || (kinds[i].dim && kinds[i].dim != d))
			return 0;
		t->kind = kinds[i].kind, t->dim = d;
		return d;
	}
	return 0;
}

ffdp_status ffdp_itk_type_refused(const char *path, const char *type, ffdp_error *err)
{
	return ffdp_fail(err, FFDP_ERR_FORMAT,
			 "%s: transform type '%s' is not supported (want a linear one: AffineTransform, "
			 "MatrixOffsetTransformBase, Euler3DTransform, VersorRigid3DTransform, Similarity3DTransform, "
			 "TranslationTransform, Rigid2DTransform or Euler2DTransform, _double_ or _float_)",
			 path, type);
}

/* a = b c for 3x3 row-major matrices */
static void mul3(const double *b, const double *c, double *a)
{
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < 3; k++)
			a[3 * r + k] = b[3 * r] * c[k] + b[3 * r + 1] * c[3 + k] + b[3 * r + 2] * c[6 + k];
}

static void euler3(const double *ang, int zyx, double *A)
{
	const double cx = cos(ang[0]), sx = sin(ang[0]), cy = cos(ang[1]), sy = sin(ang[1]);
	const double cz = cos(ang[2]), sz = sin(ang[2]);
	const double Rx[9] = {1, 0, 0, 0, cx, -sx, 0, sx, cx};
	const double Ry[9] = {cy, 0, sy, 0, 1, 0, -sy, 0, cy};
	const double Rz[9] = {cz, -sz, 0, sz, cz, 0, 0, 0, 1};
	double t[9];
	mul3(Rz, zyx ? Ry : Rx, t);
	mul3(t, zyx ? Rx : Ry, A);
}

/* The rotation of the unit quaternion (w, v); 0 when |v| > 1. */
static int versor3(const double *v, double *A)
{
	const double x = v[0], y = v[1], z = v[2], n2 = x * x + y * y + z * z;
	if (!(n2 <= 1.0 + 1e-12))
		return 0;
	const double w = sqrt(n2 < 1.0 ? 1.0 - n2 : 0.0);
	const double R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - z * w),     2 * (x * z + y * w),
			     2 * (x * y + z * w),     1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
			     2 * (x * z - y * w),     2 * (y * z + x * w),     1 - 2 * (x * x + y * y)};
	memcpy(A, R, sizeof(R));
	return 1;
}

ffdp_status ffdp_itk_params_matrix(const ffdp_itk_params *t, const char *path, ffdp_mat4 *T, ffdp_error *err)
{
	const int d = t->dim;
	int np = 0, nc_max = d; /* parameters wanted, most fixed parameters */
	switch (t->kind) {
	case ITK_AFFINE: np = d * d + d; break;
	case ITK_EULER3D: np = 6, nc_max = 4; break;
	case ITK_VERSOR3D: np = 6; break;
	case ITK_SIMILARITY3D: np = 7; break;
	case ITK_TRANSLATION: np = d, nc_max = 0; break;
	case ITK_RIGID2D: np = 3; break;
	}
	if (t->np != np)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: %s needs %d parameters, the file has %d", path, t->type, np,
				 t->np);
	if (t->nc != 0 && t->nc != d && t->nc != nc_max)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: %s takes %d fixed parameters (the centre%s), the file has %d",
				 path, t->type, nc_max > d ? nc_max : d, nc_max > d ? ", then ComputeZYX" : "", t->nc);
	double A[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, tr[3] = {0, 0, 0}, off[3];
	switch (t->kind) {
	case ITK_AFFINE:
		for (int r = 0; r < d; r++) {
			for (int c = 0; c < d; c++)
				A[3 * r + c] = t->p[d * r + c];
			tr[r] = t->p[d * d + r];
		}
		break;
	case ITK_EULER3D:
		euler3(t->p, t->nc == 4 && t->c[3] != 0.0, A);
		memcpy(tr, t->p + 3, 3 * sizeof(double));
		break;
	case ITK_VERSOR3D:
	case ITK_SIMILARITY3D:
		if (!versor3(t->p, A))
			return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: %s's versor (%g, %g, %g) is longer than 1", path, t->type,
					 t->p[0], t->p[1], t->p[2]);
		for (int i = 0; t->kind == ITK_SIMILARITY3D && i < 9; i++)
			A[i] *= t->p[6];
		memcpy(tr, t->p + 3, 3 * sizeof(double));
		break;
	case ITK_TRANSLATION:
		memcpy(tr, t->p, (size_t)d * sizeof(double));
		break;
	case ITK_RIGID2D:
		A[0] = cos(t->p[0]), A[1] = -sin(t->p[0]), A[3] = sin(t->p[0]), A[4] = cos(t->p[0]);
		tr[0] = t->p[1], tr[1] = t->p[2];
		break;
	}
	for (int r = 0; r < 3; r++) { /* t + c - A c (c of d values; 0 beyond) */
		const double cr = r < d && t->nc ? t->c[r] : 0.0;
		off[r] = tr[r] + cr;
		for (int c = 0; c < d && t->nc; c++)
			off[r] -= A[3 * r + c] * t->c[c];
	}
	*T = ffdp_mat4_from_linear(A, off);
	return FFDP_OK;
}
