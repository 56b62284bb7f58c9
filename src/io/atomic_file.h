/* Write-then-rename: every writer in src/io creates its output under a
 * temporary name beside the target (same directory, so rename() is atomic,
 * and the same extension, so format libraries that look at the name write
 * the right thing), then renames it into place.  On any failure the
 * temporary is removed and the target is untouched.
 */
#ifndef FFDP_IO_ATOMIC_FILE_H
#define FFDP_IO_ATOMIC_FILE_H

#include <stddef.h>

#include "ffdp/status.h"

#define FFDP_PATH_MAX 4096

typedef struct ffdp_atomic_file {
	char target[FFDP_PATH_MAX];
	char tmp[FFDP_PATH_MAX]; /* dir/.stem.tmp-XXXXXX.ext, exists while active */
	int active;
} ffdp_atomic_file;

/* Refuse a target that is a directory or whose directory is missing or not
 * writable; create an empty temporary (mode 0666 less umask) and record it. */
ffdp_status ffdp_atomic_begin(ffdp_atomic_file *a, const char *target, ffdp_error *err);

/* Flush the temporary to disk and rename it onto the target.  On failure
 * the temporary is removed. */
ffdp_status ffdp_atomic_commit(ffdp_atomic_file *a, ffdp_error *err);

/* Remove the temporary if it still exists; safe to call twice. */
void ffdp_atomic_abort(ffdp_atomic_file *a);

/* n bytes as the whole file at path, through a temporary (text_file.c). */
ffdp_status ffdp_write_bytes(const char *path, const void *data, size_t n, ffdp_error *err);

/* The extension of a file name: ".nii.gz", ".nii", ".txt", "" (a ".gz" takes
 * the component before it along). */
const char *ffdp_path_extension(const char *path);

#endif
