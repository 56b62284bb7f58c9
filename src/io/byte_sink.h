/* An append-only byte stream into a file descriptor, starting at a given
 * offset and written with pwrite, so that several processes can each fill
 * their own range of one file.  Bytes go out as they are, or as a sequence
 * of gzip members.
 *
 * gzip: the stream is cut every FFDP_GZ_MEMBER_BYTES uncompressed bytes and
 * each piece is deflated on its own into a gzip member (header, deflate
 * data, CRC-32, length).  Concatenated members are one gzip file (RFC 1952,
 * 2.2: zlib's gzread, Python's gzip, nibabel and ITK read them).  A batch of
 * as many pieces as threads is deflated in parallel and written in order;
 * the cuts never depend on the thread count, so 1 and N threads write the
 * same bytes.
 */
#ifndef FFDP_IO_BYTE_SINK_H
#define FFDP_IO_BYTE_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "ffdp/status.h"

/* Chosen by measurement (docs/perf.md, "Writing .nii.gz"). */
enum { FFDP_GZ_MEMBER_BYTES = 4 << 20, FFDP_GZ_LEVEL = 1 };

typedef struct ffdp_sink {
	int fd;
	int gz;
	int level;    /* zlib level, FFDP_GZ_LEVEL (benchmarks try others) */
	int strategy; /* zlib strategy, Z_DEFAULT_STRATEGY; may be set after open */
	int64_t pos;  /* where the next byte goes in the file */
	int64_t raw;  /* bytes appended so far, uncompressed */
	const char *name; /* for messages: the target the user named */
	unsigned char *in; /* bytes not yet written */
	size_t fill, cap;
	int npieces;  /* gzip: pieces per batch */
	unsigned char **out; /* gzip: one compressed buffer per piece */
	size_t *outlen, outcap;
} ffdp_sink;

/* gz: 1 for gzip members.  name is kept (not copied) for messages. */
ffdp_status ffdp_sink_open(ffdp_sink *s, int fd, int64_t pos, int gz, const char *name, ffdp_error *err);
ffdp_status ffdp_sink_write(ffdp_sink *s, const void *p, size_t n, ffdp_error *err);
/* Write out what is buffered (for gzip the last, shorter member).  After it
 * s->pos is the end of what was written; the sink may be written again. */
ffdp_status ffdp_sink_flush(ffdp_sink *s, ffdp_error *err);
/* Frees the buffers; never closes fd.  Safe on a zeroed sink. */
void ffdp_sink_free(ffdp_sink *s);

/* pwrite all of p at off, retrying short writes; 0 or -1 (errno set). */
int ffdp_pwrite_all(int fd, const void *p, size_t n, int64_t off);

#endif
