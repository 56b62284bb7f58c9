/* Writing a NIfTI file in pieces, one per component of a process's planes
 * (nifti_pieces.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/nifti_pieces.h"

enum { COPY_BYTES = 4 << 20 };

static ffdp_status open_piece(ffdp_nifti_pieces *P, int c, int64_t head_end, ffdp_error *err)
{
	const ffdp_nifti_layout *L = P->L;
	ffdp_nifti_piece *q = &P->p[c];
	int direct = !L->gz || (c == 0 && P->z0 == 0 && head_end >= 0);
	int fd = P->fd;
	if (direct) {
		q->start = L->gz ? head_end : L->header_bytes + (c * L->nz + P->z0) * L->plane * L->nbyper;
	} else {
		ffdp_status s = ffdp_atomic_begin(&q->part, P->path, err);
		if (s)
			return s;
		fd = q->fd = open(q->part.tmp, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: part file %s: %s", P->path,
					 q->part.tmp, strerror(errno));
	}
	return ffdp_nifti_data_sink_open(L, &q->sink, fd, q->start, P->path, err);
}

ffdp_status ffdp_nifti_pieces_open(ffdp_nifti_pieces *P, const ffdp_nifti_layout *L, const char *path,
				   const char *tmp, int64_t z0, int64_t z1, int64_t head_end, ffdp_error *err)
{
	memset(P, 0, sizeof(*P));
	P->L = L, P->path = path, P->z0 = z0, P->z1 = z1, P->next = z0;
	P->fd = -1;
	for (int c = 0; c < 3; c++)
		P->p[c].fd = -1;
	if (z0 < 0 || z1 < z0 || z1 > L->nz)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: planes [%lld, %lld) of %lld", path,
				 (long long)z0, (long long)z1, (long long)L->nz);
	P->fd = open(tmp, O_WRONLY | O_CLOEXEC);
	if (P->fd < 0)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: opening the temporary %s: %s", path, tmp,
				 strerror(errno));
	ffdp_status s = FFDP_OK;
	for (int c = 0; c < L->ncomp && z1 > z0 && s == FFDP_OK; c++)
		s = open_piece(P, c, head_end, err);
	if (s)
		ffdp_nifti_pieces_close(P);
	return s;
}

ffdp_status ffdp_nifti_pieces_append(ffdp_nifti_pieces *P, const float *const planes[3], int64_t nplanes,
				     ffdp_error *err)
{
	if (nplanes < 0 || P->next + nplanes > P->z1)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %lld planes past plane %lld of [%lld, %lld)",
				 P->path, (long long)nplanes, (long long)P->next, (long long)P->z0,
				 (long long)P->z1);
	for (int c = 0; c < P->L->ncomp && nplanes > 0; c++) {
		if (!planes[c])
			return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: component %d has no data", P->path, c);
		ffdp_status s = ffdp_nifti_encode_write(P->L, &P->p[c].sink, planes[c], nplanes * P->L->plane, err);
		if (s)
			return s;
	}
	P->next += nplanes;
	return FFDP_OK;
}

ffdp_status ffdp_nifti_pieces_finish(ffdp_nifti_pieces *P, int64_t size[3], ffdp_error *err)
{
	size[0] = size[1] = size[2] = 0;
	if (P->next != P->z1)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: only %lld of planes [%lld, %lld) were given",
				 P->path, (long long)(P->next - P->z0), (long long)P->z0, (long long)P->z1);
	for (int c = 0; c < P->L->ncomp && P->z1 > P->z0; c++) {
		ffdp_status s = ffdp_sink_flush(&P->p[c].sink, err);
		if (s)
			return s;
		size[c] = P->p[c].sink.pos - P->p[c].start;
	}
	return FFDP_OK;
}

static ffdp_status copy_part(ffdp_nifti_pieces *P, ffdp_nifti_piece *q, int64_t off, unsigned char *buf,
			     ffdp_error *err)
{
	int64_t n = q->sink.pos;
	for (int64_t pos = 0; pos < n;) {
		size_t k = n - pos < COPY_BYTES ? (size_t)(n - pos) : COPY_BYTES;
		ssize_t got = pread(q->fd, buf, k, (off_t)pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: reading back part file %s: %s",
					 P->path, q->part.tmp, got < 0 ? strerror(errno) : "short file");
		if (ffdp_pwrite_all(P->fd, buf, (size_t)got, off + pos))
			return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", P->path, strerror(errno));
		pos += got;
	}
	return FFDP_OK;
}

ffdp_status ffdp_nifti_pieces_place(ffdp_nifti_pieces *P, const int64_t off[3], ffdp_error *err)
{
	unsigned char *buf = NULL;
	ffdp_status s = FFDP_OK;
	for (int c = 0; c < P->L->ncomp && P->z1 > P->z0 && s == FFDP_OK; c++) {
		ffdp_nifti_piece *q = &P->p[c];
		if (!q->part.active) {
			if (off[c] != q->start)
				s = ffdp_fail(err, FFDP_ERR_ARG, "internal: piece %d of %s written at %lld, "
						  "belongs at %lld", c, P->path, (long long)q->start, (long long)off[c]);
			continue;
		}
		if (!buf && !(buf = malloc(COPY_BYTES)))
			s = ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory for a copy buffer",
				      P->path);
		if (s == FFDP_OK)
			s = copy_part(P, q, off[c], buf, err);
	}
	free(buf);
	return s;
}

void ffdp_nifti_pieces_close(ffdp_nifti_pieces *P)
{
	for (int c = 0; c < 3; c++) {
		ffdp_nifti_piece *q = &P->p[c];
		ffdp_sink_free(&q->sink);
		if (q->fd >= 0)
			close(q->fd);
		q->fd = -1;
		ffdp_atomic_abort(&q->part);
	}
	if (P->fd >= 0)
		close(P->fd);
	P->fd = -1;
}

void ffdp_nifti_pieces_offsets(int ncomp, int64_t head_end, const int64_t *size, int nproc, int rank,
			       int64_t off[3], int64_t *end)
{
	int64_t pos = head_end;
	off[0] = off[1] = off[2] = 0;
	for (int c = 0; c < ncomp; c++)
		for (int r = 0; r < nproc; r++) {
			if (r == rank)
				off[c] = pos;
			pos += size[3 * r + c];
		}
	*end = pos;
}
