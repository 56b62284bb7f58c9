/* Plain and gzip-member byte streams written with pwrite (byte_sink.h). */
#include "io/byte_sink.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

enum { PLAIN_BUFFER = 1 << 20 };

int ffdp_pwrite_all(int fd, const void *p, size_t n, int64_t off)
{
	const char *c = p;
	while (n > 0) {
		size_t k = n > (1u << 30) ? 1u << 30 : n;
		ssize_t w = pwrite(fd, c, k, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		c += w, n -= (size_t)w, off += w;
	}
	return 0;
}

ffdp_status ffdp_sink_open(ffdp_sink *s, int fd, int64_t pos, int gz, const char *name, ffdp_error *err)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd, s->pos = pos, s->gz = gz, s->name = name, s->level = FFDP_GZ_LEVEL;
	s->strategy = Z_DEFAULT_STRATEGY;
	s->npieces = gz ? omp_get_max_threads() : 1;
	if (s->npieces < 1)
		s->npieces = 1;
	s->cap = gz ? (size_t)s->npieces * FFDP_GZ_MEMBER_BYTES : PLAIN_BUFFER;
	s->in = malloc(s->cap);
	if (gz) {
		/* zlib's bound for its own wrapper, plus the larger gzip header and trailer */
		s->outcap = compressBound(FFDP_GZ_MEMBER_BYTES) + 64;
		s->out = calloc((size_t)s->npieces, sizeof(*s->out));
		s->outlen = calloc((size_t)s->npieces, sizeof(*s->outlen));
		for (int i = 0; s->out && i < s->npieces; i++)
			if (!(s->out[i] = malloc(s->outcap)))
				break;
	}
	if (!s->in || (gz && (!s->out || !s->outlen || !s->out[s->npieces - 1]))) {
		ffdp_sink_free(s);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: out of memory for write buffers", name);
	}
	return FFDP_OK;
}

void ffdp_sink_free(ffdp_sink *s)
{
	for (int i = 0; s->out && i < s->npieces; i++)
		free(s->out[i]);
	free(s->out);
	free(s->outlen);
	free(s->in);
	s->out = NULL, s->outlen = NULL, s->in = NULL;
}

/* One gzip member of n bytes; 0 on success.  Header fields are zlib's
 * defaults (no name, mtime 0), so the bytes depend on the data only. */
static int deflate_member(int level, int strategy, const unsigned char *in, size_t n, unsigned char *out, size_t cap, size_t *len)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, strategy) != Z_OK)
		return -1;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	*len = cap - z.avail_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}

static ffdp_status write_out(ffdp_sink *s, const void *p, size_t n, ffdp_error *err)
{
	if (ffdp_pwrite_all(s->fd, p, n, s->pos))
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", s->name, strerror(errno));
	s->pos += (int64_t)n;
	return FFDP_OK;
}

/* Deflate the buffered bytes, a piece per thread, and write the members in order. */
static ffdp_status write_members(ffdp_sink *s, ffdp_error *err)
{
	int n = (int)((s->fill + FFDP_GZ_MEMBER_BYTES - 1) / FFDP_GZ_MEMBER_BYTES), bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
	for (int i = 0; i < n; i++) {
		size_t off = (size_t)i * FFDP_GZ_MEMBER_BYTES, k = s->fill - off;
		k = k < FFDP_GZ_MEMBER_BYTES ? k : FFDP_GZ_MEMBER_BYTES;
		bad += deflate_member(s->level, s->strategy, s->in + off, k, s->out[i], s->outcap, &s->outlen[i]) != 0;
	}
	if (bad)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot write %s: compression failed (out of memory?)",
				 s->name);
	for (int i = 0; i < n; i++) {
		ffdp_status st = write_out(s, s->out[i], s->outlen[i], err);
		if (st)
			return st;
	}
	return FFDP_OK;
}

ffdp_status ffdp_sink_flush(ffdp_sink *s, ffdp_error *err)
{
	ffdp_status st = FFDP_OK;
	if (s->fill)
		st = s->gz ? write_members(s, err) : write_out(s, s->in, s->fill, err);
	s->fill = 0;
	return st;
}

ffdp_status ffdp_sink_write(ffdp_sink *s, const void *p, size_t n, ffdp_error *err)
{
	const unsigned char *c = p;
	s->raw += (int64_t)n;
	if (!s->gz && s->fill == 0 && n >= s->cap)
		return write_out(s, p, n, err); /* large plain writes skip the copy */
	while (n > 0) {
		size_t k = s->cap - s->fill < n ? s->cap - s->fill : n;
		memcpy(s->in + s->fill, c, k);
		s->fill += k, c += k, n -= k;
		if (s->fill == s->cap) {
			ffdp_status st = ffdp_sink_flush(s, err);
			if (st)
				return st;
		}
	}
	return FFDP_OK;
}
