/* Streaming an image or field to a file plane by plane, in one process
 * (io.h; src/dist/dist_io.c does the same over MPI ranks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffdp/io.h"
#include "io/nifti_pieces.h"

struct ffdp_image_writer {
	ffdp_nifti_layout L;
	char path[FFDP_PATH_MAX];
	ffdp_atomic_file a;
	int64_t head_end;
	ffdp_nifti_pieces P;
};

ffdp_status ffdp_image_writer_open(const char *path, const ffdp_grid *g, int ncomp, ffdp_write_type type,
				   const ffdp_value_range *range, ffdp_image_writer **out, ffdp_error *err)
{
	*out = NULL;
	ffdp_image_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path ? path : "");
	for (int c = 0; c < 3; c++)
		w->P.p[c].fd = -1;
	w->P.fd = -1;
	ffdp_status s = ffdp_nifti_layout_make(path, g, ncomp, type, range, &w->L, err);
	if (s == FFDP_OK && strlen(path) >= sizeof(w->path))
		s = ffdp_fail(err, FFDP_ERR_ARG, "output path %.200s... is too long", path);
	if (s == FFDP_OK) {
		snprintf(w->path, sizeof(w->path), "%s", path);
		s = ffdp_nifti_begin(&w->L, w->path, &w->a, &w->head_end, err);
	}
	if (s == FFDP_OK)
		s = ffdp_nifti_pieces_open(&w->P, &w->L, w->path, w->a.tmp, 0, w->L.nz, w->head_end, err);
	if (s) {
		ffdp_image_writer_abort(w);
		return s;
	}
	*out = w;
	return FFDP_OK;
}

ffdp_status ffdp_image_writer_append(ffdp_image_writer *w, const float *const planes[], int64_t nplanes,
				     ffdp_error *err)
{
	const float *p[3] = {planes[0], w->L.ncomp > 1 ? planes[1] : NULL, w->L.ncomp > 2 ? planes[2] : NULL};
	return ffdp_nifti_pieces_append(&w->P, p, nplanes, err);
}

ffdp_status ffdp_image_writer_commit(ffdp_image_writer *w, ffdp_error *err)
{
	int64_t size[3], off[3], end = 0;
	ffdp_status s = ffdp_nifti_pieces_finish(&w->P, size, err);
	if (s == FFDP_OK) {
		ffdp_nifti_pieces_offsets(w->L.ncomp, w->head_end, size, 1, 0, off, &end);
		s = ffdp_nifti_pieces_place(&w->P, off, err);
	}
	ffdp_nifti_pieces_close(&w->P);
	if (s == FFDP_OK)
		s = ffdp_nifti_verify_written(&w->L, w->a.tmp, end, w->path, err);
	if (s == FFDP_OK)
		s = ffdp_atomic_commit(&w->a, err);
	ffdp_image_writer_abort(w);
	return s;
}

void ffdp_image_writer_abort(ffdp_image_writer *w)
{
	if (!w)
		return;
	ffdp_nifti_pieces_close(&w->P);
	ffdp_atomic_abort(&w->a);
	free(w);
}
