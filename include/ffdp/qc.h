/* Quality-control pictures (PNG through libpng).
 *
 * Three orthogonal mid-planes through a physical point (default: the centre
 * of the first image), resampled on axis-aligned LPS planes at the finest
 * spacing so that oblique and anisotropic images look right, shown side by
 * side in radiological-neutral display order: axial, coronal, sagittal,
 * with superior/anterior up.
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

/* b is ignored for FFDP_QC_GRAY.  Intensities are windowed to the 1st..99th
 * percentile of each image.  Written to a temporary name and renamed. */
ffdp_status ffdp_qc_write_png(const char *path, const ffdp_volume *a, const ffdp_volume *b,
			      ffdp_qc_mode mode, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
