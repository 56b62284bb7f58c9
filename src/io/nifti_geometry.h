/* NIfTI geometry <-> ffdp_grid (private to src/io).
 *
 * NIfTI stores index -> RAS mm (qform: quaternion + offset + pixdim; sform:
 * a 3x4 matrix).  ffdp works in ITK/ANTs LPS mm: LPS = diag(-1,-1,1) * RAS,
 * applied to the whole 4x4 (rows x and y negated).  The same flip maps back.
 */
#ifndef FFDP_IO_NIFTI_GEOMETRY_H
#define FFDP_IO_NIFTI_GEOMETRY_H

#include <nifti2_io.h>

#include "ffdp/grid.h"
#include "ffdp/mat4.h"
#include "ffdp/status.h"

typedef enum ffdp_xform_source {
	FFDP_XFORM_NONE = 0, /* both codes 0: pixdim spacing, identity direction, origin 0 */
	FFDP_XFORM_QFORM,
	FFDP_XFORM_SFORM,
} ffdp_xform_source;

/* "none", "qform", "sform" */
const char *ffdp_xform_source_name(ffdp_xform_source s);

/* diag(-1,-1,1,1) * m: RAS -> LPS, and (the same flip) LPS -> RAS. */
ffdp_mat4 ffdp_ras_lps_flip(ffdp_mat4 m);
ffdp_mat4 ffdp_mat4_from_nifti(const nifti_dmat44 *m);
nifti_dmat44 ffdp_mat4_to_nifti(const ffdp_mat4 *m);

/* Which of qform/sform ITK 5.x would use for this header (rule documented
 * in nifti_geometry.c).  *shear_only is set when the answer is the sform
 * although ITK would refuse it (shear, and no qform to fall back on). */
ffdp_xform_source ffdp_nifti_choose_xform(const nifti_image *nim, int *shear_only);

/* The LPS grid of a header (sizes nx, ny, nz; extra dims ignored).  path
 * names the file in messages. */
ffdp_status ffdp_nifti_grid(const nifti_image *nim, const char *path, ffdp_grid *g, ffdp_xform_source *src,
			    ffdp_error *err);

/* Set pixdim[1..3], qform and sform (both code 1, NIFTI_XFORM_SCANNER_ANAT,
 * as ITK writes), qfac and units (mm, s) of nim from g. */
void ffdp_nifti_set_geometry(nifti_image *nim, const ffdp_grid *g);

/* Nearest orthogonal matrix (polar factor, Newton iteration); keeps the
 * sign of the determinant.  -1 if a is singular. */
int ffdp_polar3(const double a[9], double q[9]);

#endif
