#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"

/* The surest test is the one the writer will do: create (then remove) a
 * temporary beside the target.  access() alone is wrong for root and for
 * read-only file systems. */
ffdp_status ffdp_check_writable(const char *path, ffdp_error *err)
{
	ffdp_atomic_file a;
	ffdp_status s = ffdp_atomic_begin(&a, path, err);
	if (s)
		return s;
	ffdp_atomic_abort(&a);
	return FFDP_OK;
}
