/* Quality-control pictures (PNG through libpng).
 *
 * Three orthogonal planes through the centre of image a, resampled
 * (trilinear, from physical coordinates) on axis-aligned LPS planes with
 * square pixels of a's finest spacing, covering a's physical bounding box,
 * so that oblique and anisotropic images look right.  Side by side, 4 black
 * pixels apart, in radiological convention (patient left on image right):
 *   axial     anterior up,  patient left on the right
 *   coronal   superior up,  patient left on the right
 *   sagittal  superior up,  anterior on the left
 * A 2-D image (nz = 1) gives the one panel its plane lies closest to.
 */
#ifndef FFDP_QC_H
#define FFDP_QC_H

#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ffdp_qc_mode {
	FFDP_QC_GRAY = 0,     /* a alone, gray */
	FFDP_QC_OVERLAY,      /* a in green, b in magenta: grey where they agree */
	FFDP_QC_CHECKER,      /* checkerboard of a and b */
	FFDP_QC_LABELS,       /* a gray, b a label map drawn as coloured outlines */
} ffdp_qc_mode;

/* b is ignored for FFDP_QC_GRAY; it is sampled through its own geometry
 * (trilinear, or nearest for LABELS).  Intensities are windowed to the
 * 1st..99th percentile of each image (on a subsample).  8-bit RGB, written
 * to a temporary name beside path and renamed. */
ffdp_status ffdp_qc_write_png(const char *path, const ffdp_volume *a, const ffdp_volume *b,
			      ffdp_qc_mode mode, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
