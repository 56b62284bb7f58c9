#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "cli.h"

int ffdp_cli_fail(const ffdp_error *err)
{
	ffdp_log_error("%s", err->msg[0] ? err->msg : ffdp_status_name(err->code));
	return 1;
}

int ffdp_cli_usage(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ffdp_log_error("%s: %s (see 'ffdp help %s')", cmd, msg, cmd);
	return 2;
}

int ffdp_cli_parse_i64(const char *s, long long lo, long long hi, long long *out)
{
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || !end || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int ffdp_cli_parse_f64(const char *s, double lo, double hi, double *out)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || !end || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

long ffdp_cli_peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024; /* kB on Linux: VmHWM */
}

const ffdp_cli_names *ffdp_cli_names_of(int ants)
{
	static const ffdp_cli_names own = {"_warped.nii.gz", "_warp.nii.gz", "_inverse_warp.nii.gz", "_affine.txt",
					   "_qc.png", "_report.json"};
	static const ffdp_cli_names ants_names = {"Warped.nii.gz", "1Warp.nii.gz", "1InverseWarp.nii.gz",
						  "0GenericAffine.mat", "qc.png", "report.json"};
	return ants ? &ants_names : &own;
}
