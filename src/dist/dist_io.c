/* One output file from every rank's z-slab (dist.h; the serial pieces are
 * src/io/nifti_pieces.c).  Every step that can fail on some rank ends in an
 * agreement, so that all ranks take the same branch and no rank waits on a
 * collective that another has skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "io/nifti_pieces.h"

struct ffdp_dist_writer {
	ffdp_dist *d;
	ffdp_nifti_layout L;
	char path[FFDP_PATH_MAX];
	char tmp[FFDP_PATH_MAX];
	ffdp_atomic_file a; /* rank 0 */
	int64_t head_end;
	ffdp_nifti_pieces P;
	ffdp_status st; /* first local failure, reported at commit */
	ffdp_error e;
};

/* Did any rank fail?  Then every rank returns the lowest failing rank's
 * status and message. */
static ffdp_status agree(ffdp_dist *d, ffdp_status mine, const ffdp_error *mine_err, ffdp_error *err)
{
	int me = mine ? d->rank : d->size, first = d->size;
	MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, d->comm);
	if (first == d->size)
		return FFDP_OK;
	struct {
		int code;
		char msg[FFDP_ERROR_MSG_LEN];
	} m;
	memset(&m, 0, sizeof(m));
	if (d->rank == first) {
		m.code = (int)mine;
		snprintf(m.msg, sizeof(m.msg), "%s", mine_err->msg);
	}
	MPI_Bcast(&m, (int)sizeof(m), MPI_BYTE, first, d->comm);
	if (d->size == 1)
		return ffdp_fail(err, (ffdp_status)m.code, "%s", m.msg);
	return ffdp_fail(err, (ffdp_status)m.code, "%s (rank %d of %d)", m.msg, first, d->size);
}

/* The slabs must tile [0, nz) in rank order: the file's order. */
static ffdp_status check_slabs(ffdp_dist *d, const ffdp_slab *s, int64_t nz, ffdp_error *err)
{
	int64_t mine[2] = {s->z0, s->z1}, *all = malloc((size_t)d->size * 2 * sizeof(int64_t));
	if (!all)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist write: out of memory");
	MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, d->comm);
	int64_t at = 0;
	int ok = 1;
	for (int r = 0; r < d->size; r++) {
		ok = ok && all[2 * r] == at && all[2 * r + 1] >= at;
		at = all[2 * r + 1];
	}
	free(all);
	if (!ok || at != nz)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist write: the ranks' slabs do not tile planes [0, %lld) "
				 "in rank order", (long long)nz);
	return FFDP_OK;
}

void ffdp_dist_writer_abort(ffdp_dist_writer *w)
{
	if (!w)
		return;
	ffdp_nifti_pieces_close(&w->P);
	ffdp_atomic_abort(&w->a);
	free(w);
}

ffdp_status ffdp_dist_writer_open(ffdp_dist *d, const char *path, const ffdp_grid *whole, int ncomp,
				  ffdp_write_type type, const ffdp_value_range *range, const ffdp_slab *s,
				  ffdp_dist_writer **out, ffdp_error *err)
{
	ffdp_error e = {0};
	ffdp_dist_writer *w = calloc(1, sizeof(*w));
	*out = NULL;
	ffdp_status st = w ? FFDP_OK : ffdp_fail(&e, FFDP_ERR_NOMEM, "cannot write %s: out of memory", path);
	if (w) {
		w->d = d, w->P.fd = -1;
		for (int c = 0; c < 3; c++)
			w->P.p[c].fd = -1;
		st = ffdp_nifti_layout_make(path, whole, ncomp, type, range, &w->L, &e);
	}
	if (st == FFDP_OK && strlen(path) >= sizeof(w->path))
		st = ffdp_fail(&e, FFDP_ERR_ARG, "output path %.200s... is too long", path);
	if (st == FFDP_OK)
		snprintf(w->path, sizeof(w->path), "%s", path);
	ffdp_error se = {0};
	ffdp_status sst = check_slabs(d, s, whole ? whole->n[2] : 0, &se); /* collective: on every rank */
	if (st == FFDP_OK && sst)
		st = sst, e = se;
	if (st == FFDP_OK && d->rank == 0) {
		st = ffdp_nifti_begin(&w->L, w->path, &w->a, &w->head_end, &e);
		snprintf(w->tmp, sizeof(w->tmp), "%s", w->a.tmp);
	}
	st = agree(d, st, &e, err);
	if (st == FFDP_OK) {
		MPI_Bcast(w->tmp, (int)sizeof(w->tmp), MPI_CHAR, 0, d->comm);
		MPI_Bcast(&w->head_end, 1, MPI_INT64_T, 0, d->comm);
		st = ffdp_nifti_pieces_open(&w->P, &w->L, w->path, w->tmp, s->z0, s->z1,
					    d->rank == 0 ? w->head_end : -1, &e);
		st = agree(d, st, &e, err);
	}
	if (st) {
		if (w)
			ffdp_dist_writer_abort(w);
		return st;
	}
	*out = w;
	return FFDP_OK;
}

ffdp_status ffdp_dist_writer_append(ffdp_dist_writer *w, const float *const planes[], int64_t nplanes,
				    ffdp_error *err)
{
	if (w->st)
		return ffdp_fail(err, w->st, "%s", w->e.msg);
	const float *p[3] = {planes ? planes[0] : NULL, planes && w->L.ncomp > 1 ? planes[1] : NULL,
			     planes && w->L.ncomp > 2 ? planes[2] : NULL};
	w->st = ffdp_nifti_pieces_append(&w->P, p, nplanes, &w->e);
	return w->st ? ffdp_fail(err, w->st, "%s", w->e.msg) : FFDP_OK;
}

/* Offsets of this rank's pieces from every rank's sizes; *end the file length. */
static ffdp_status place(ffdp_dist_writer *w, const int64_t size[3], int64_t *end, ffdp_error *err)
{
	ffdp_dist *d = w->d;
	int64_t off[3], *all = malloc((size_t)d->size * 3 * sizeof(int64_t));
	ffdp_status st = FFDP_OK;
	if (!all)
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory", w->path);
	int ok = st == FFDP_OK, all_ok = 0;
	MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, d->comm);
	if (all_ok) {
		MPI_Allgather(size, 3, MPI_INT64_T, all, 3, MPI_INT64_T, d->comm);
		ffdp_nifti_pieces_offsets(w->L.ncomp, w->head_end, all, d->size, d->rank, off, end);
		st = ffdp_nifti_pieces_place(&w->P, off, err);
	} else if (st == FFDP_OK) {
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory on another rank", w->path);
	}
	free(all);
	return st;
}

ffdp_status ffdp_dist_writer_commit(ffdp_dist_writer *w, ffdp_error *err)
{
	ffdp_dist *d = w->d;
	ffdp_error e = w->e;
	int64_t size[3] = {0, 0, 0}, end = 0;
	ffdp_status st = w->st;
	if (st == FFDP_OK)
		st = ffdp_nifti_pieces_finish(&w->P, size, &e);
	st = agree(d, st, &e, err);
	if (st == FFDP_OK)
		st = agree(d, place(w, size, &end, &e), &e, err);
	ffdp_nifti_pieces_close(&w->P);
	/* Every rank's writes are done (the agreement above is a barrier). */
	ffdp_status last = FFDP_OK;
	if (st == FFDP_OK && d->rank == 0) {
		last = ffdp_nifti_verify_written(&w->L, w->tmp, end, w->path, &e);
		if (last == FFDP_OK)
			last = ffdp_atomic_commit(&w->a, &e);
	}
	if (st == FFDP_OK)
		st = agree(d, last, &e, err);
	ffdp_dist_writer_abort(w);
	return st;
}

ffdp_status ffdp_dist_image_write(ffdp_dist *d, const char *path, const ffdp_grid *whole, const float *planes,
				  const ffdp_slab *s, ffdp_write_type type, ffdp_error *err)
{
	ffdp_value_range r = {0}, g = {0};
	ffdp_dist_writer *w = NULL;
	if (type != FFDP_WRITE_FLOAT32) {
		int64_t n = (s->z1 - s->z0) * whole->n[0] * whole->n[1], sums[2], tot[2];
		ffdp_value_range_scan(planes, planes ? n : 0, &r);
		MPI_Allreduce(&r.min, &g.min, 1, MPI_DOUBLE, MPI_MIN, d->comm);
		MPI_Allreduce(&r.max, &g.max, 1, MPI_DOUBLE, MPI_MAX, d->comm);
		sums[0] = r.nonfinite, sums[1] = r.fractional;
		MPI_Allreduce(sums, tot, 2, MPI_INT64_T, MPI_SUM, d->comm);
		g.nonfinite = tot[0], g.fractional = tot[1];
	}
	ffdp_status st = ffdp_dist_writer_open(d, path, whole, 1, type, &g, s, &w, err);
	if (st)
		return st;
	const float *p[3] = {planes, NULL, NULL};
	ffdp_dist_writer_append(w, p, s->z1 - s->z0, NULL);
	return ffdp_dist_writer_commit(w, err);
}

ffdp_status ffdp_dist_field_write(ffdp_dist *d, const char *path, const ffdp_grid *whole, float *const c[3],
				  const ffdp_slab *s, ffdp_error *err)
{
	ffdp_dist_writer *w = NULL;
	ffdp_status st = ffdp_dist_writer_open(d, path, whole, ffdp_grid_dim(whole), FFDP_WRITE_FLOAT32, NULL, s,
					       &w, err);
	if (st)
		return st;
	const float *p[3] = {c[0], c[1], c[2]};
	ffdp_dist_writer_append(w, p, s->z1 - s->z0, NULL);
	return ffdp_dist_writer_commit(w, err);
}
