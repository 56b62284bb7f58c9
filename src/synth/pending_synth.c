/* Placeholders until the synth and QC files land (issue 2). Delete this file when
 * they do: each function here then has its real home. */
#include "ffdp/ffdp.h"

#define PENDING(what) return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, what " is not implemented yet")

ffdp_status ffdp_qc_write_png(const char *path, const ffdp_volume *a, const ffdp_volume *b, ffdp_qc_mode mode,
			      ffdp_error *err)
{
	(void)path, (void)a, (void)b, (void)mode;
	PENDING("PNG writing");
}
ffdp_phantom_opts ffdp_phantom_defaults(void)
{
	ffdp_phantom_opts o = {{96, 112, 96}, {1.5, 1.5, 1.5}, 4.0, 0.02, 1};
	return o;
}
ffdp_status ffdp_phantom_make(const ffdp_phantom_opts *o, ffdp_volume *fixed, ffdp_volume *moving,
			      ffdp_volume *fl, ffdp_volume *ml, ffdp_field *truth, ffdp_error *err)
{
	(void)o, (void)fixed, (void)moving, (void)fl, (void)ml, (void)truth;
	PENDING("the phantom");
}
