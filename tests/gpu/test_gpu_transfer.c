/* Host <-> device copies on the CUDA backend: sizes below, at and above the
 * pinned pipeline's threshold, chunk counts odd and even, lengths that are
 * no multiple of a chunk or of 4, and unaligned host and device addresses;
 * every byte comes back, the device copy holds the uploaded bytes (checked
 * through a device-side copy), and the host source is left unchanged.
 * Needs a GPU: labelled "gpu". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(next(&seed) >> 29);
}

/* Upload n bytes at host offset ho to device offset doff, copy them on
 * the device, download the copy; compare. */
static void round_trip(ffdp_backend *be, size_t n, size_t ho, size_t doff, uint64_t seed)
{
	ffdp_error err = {0};
	unsigned char *src = malloc(n + ho), *keep = malloc(n), *back = malloc(n + 3);
	void *d = ffdp_buf_alloc(be, n + doff, &err), *d2 = ffdp_buf_alloc(be, n, &err);
	CHECK(src && keep && back && d && d2, "%zu bytes: buffers", n);
	if (!src || !keep || !back || !d || !d2)
		goto out;
	fill(src + ho, n, seed);
	memcpy(keep, src + ho, n);
	memset(back, 0xa5, n + 3);
	CHECK_OK(ffdp_buf_upload(be, (char *)d + doff, src + ho, n, &err), &err, "%zu bytes: upload", n);
	CHECK_OK(ffdp_buf_copy(be, d2, (char *)d + doff, n, &err), &err, "%zu bytes: device copy", n);
	CHECK_OK(ffdp_buf_download(be, back + 3, d2, n, &err), &err, "%zu bytes: download", n);
	CHECK(!memcmp(back + 3, keep, n), "%zu bytes (host offset %zu, device offset %zu) come back", n, ho, doff);
	CHECK(!memcmp(src + ho, keep, n), "%zu bytes: the source is untouched", n);
	CHECK(back[0] == 0xa5 && back[1] == 0xa5 && back[2] == 0xa5, "%zu bytes: nothing written before the destination", n);
	/* a download straight from the uploaded buffer too */
	memset(back, 0, n);
	CHECK_OK(ffdp_buf_download(be, back, (char *)d + doff, n, &err), &err, "%zu bytes: download of the upload", n);
	CHECK(!memcmp(back, keep, n), "%zu bytes: the upload itself comes back", n);
out:
	ffdp_buf_free(be, d);
	ffdp_buf_free(be, d2);
	free(src), free(keep), free(back);
}

int main(void)
{
	ffdp_backend *be = NULL;
	ffdp_error err = {0};
	if (ffdp_cuda_device_count() < 1) {
		printf("no CUDA device\n");
		return 1;
	}
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &be, &err), &err, "open the CUDA backend");
	if (!be)
		return check_done();
	const size_t mb = (size_t)1 << 20;
	/* around the pinned path's bar (256 MiB), then 10 and 11 of its chunks */
	const size_t sizes[] = {1, 4093, 97 * mb + 12345, 256 * mb - 1, 256 * mb, 320 * mb, 352 * mb + 12345};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		round_trip(be, sizes[i], i % 3, 4 * (i % 2) + (i == 5), 0x9e3779b97f4a7c15ull + i);
	CHECK_OK(ffdp_backend_sync(be, &err), &err, "sync");
	ffdp_backend_close(be);
	return check_done();
}
