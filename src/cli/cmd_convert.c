/* ffdp convert: an ITK linear transform from one file form to another
 * (text .txt/.tfm, ITK's binary .mat), optionally inverted; prints the 4x4.
 * ANTs' ConvertTransformFile for the linear case: e.g. an antsRegistration
 * 0GenericAffine.mat as text for tools that read only text. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int ffdp_cmd_convert(int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	int invert = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") || !strcmp(a, "--verbose"))
			continue;
		if (!strcmp(a, "--invert"))
			invert = 1;
		else if (a[0] == '-')
			return ffdp_cli_usage("convert", "unknown option '%s'", a);
		else if (!in)
			in = a;
		else if (!out)
			out = a;
		else
			return ffdp_cli_usage("convert", "one input and one output, not '%s' too", a);
	}
	if (!in || !out)
		return ffdp_cli_usage("convert", "an input and an output transform file are required");
	ffdp_error err = {0};
	ffdp_mat4 T, Ti;
	if (ffdp_affine_read(in, &T, &err))
		return ffdp_cli_fail(&err);
	if (invert) {
		if (ffdp_mat4_inverse(T, &Ti, &err)) {
			char msg[FFDP_ERROR_MSG_LEN];
			snprintf(msg, sizeof(msg), "%s", err.msg);
			ffdp_fail(&err, err.code, "%s: cannot invert: %s", in, msg);
			return ffdp_cli_fail(&err);
		}
		T = Ti;
	}
	if (ffdp_affine_write(out, &T, &err))
		return ffdp_cli_fail(&err);
	if (ffdp_log_get_level() >= FFDP_LOG_INFO)
		for (int r = 0; r < 4; r++)
			printf("%14.8f %14.8f %14.8f %14.8f\n", T.m[4 * r] + 0.0, T.m[4 * r + 1] + 0.0, T.m[4 * r + 2] + 0.0,
			       T.m[4 * r + 3] + 0.0); /* + 0.0: no -0 */
	return 0;
}
