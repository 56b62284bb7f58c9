/* Placeholders until the io files land (issue 2). Delete this file when
 * they do: each function here then has its real home. */
#include "ffdp/ffdp.h"

#define PENDING(what) return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, what " is not implemented yet")

ffdp_status ffdp_image_read(const char *path, unsigned flags, ffdp_volume *out, ffdp_image_info *info,
			    ffdp_error *err)
{
	(void)path, (void)flags, (void)out, (void)info;
	PENDING("image reading");
}
ffdp_status ffdp_image_read_header(const char *path, ffdp_grid *grid, ffdp_image_info *info, ffdp_error *err)
{
	(void)path, (void)grid, (void)info;
	PENDING("image reading");
}
ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type, ffdp_error *err)
{
	(void)path, (void)v, (void)type;
	PENDING("image writing");
}
ffdp_status ffdp_field_write(const char *path, const ffdp_field *u, ffdp_error *err)
{
	(void)path, (void)u;
	PENDING("field writing");
}
ffdp_status ffdp_field_read(const char *path, ffdp_field *out, ffdp_error *err)
{
	(void)path, (void)out;
	PENDING("field reading");
}
ffdp_status ffdp_affine_read(const char *path, ffdp_mat4 *T, ffdp_error *err)
{
	(void)path, (void)T;
	PENDING("transform reading");
}
ffdp_status ffdp_check_writable(const char *path, ffdp_error *err)
{
	(void)path;
	PENDING("output checking");
}
