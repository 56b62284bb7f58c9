/* Small outputs (reports, ITK transforms, text or binary): written whole
 * through a temporary beside the target, then renamed. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"

ffdp_status ffdp_write_text(const char *path, const char *text, ffdp_error *err)
{
	return ffdp_write_bytes(path, text, strlen(text), err);
}

ffdp_status ffdp_write_bytes(const char *path, const void *data, size_t n, ffdp_error *err)
{
	if (!path || !*path)
		return ffdp_fail(err, FFDP_ERR_ARG, "output path is empty");
	ffdp_atomic_file a;
	ffdp_status s = ffdp_atomic_begin(&a, path, err);
	if (s)
		return s;
	FILE *f = fopen(a.tmp, "wb");
	if (!f) {
		ffdp_atomic_abort(&a);
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	}
	int bad = fwrite(data, 1, n, f) != n || ferror(f);
	if (fclose(f) != 0 || bad) {
		ffdp_atomic_abort(&a);
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
	}
	return ffdp_atomic_commit(&a, err);
}
