/* The ffdp command line: one file per subcommand. */
#ifndef FFDP_CLI_H
#define FFDP_CLI_H

#include "ffdp/ffdp.h"

/* Each returns the process exit code: 0 success, 1 failure, 2 usage error. */
int ffdp_cmd_info(int argc, char **argv);
int ffdp_cmd_demo(int argc, char **argv);
int ffdp_cmd_register(int argc, char **argv);
int ffdp_cmd_apply(int argc, char **argv);
int ffdp_cmd_eval(int argc, char **argv);
int ffdp_cmd_synth(int argc, char **argv);

/* Print err's message as one "ffdp: error: ..." line and return 1. */
int ffdp_cli_fail(const ffdp_error *err);
/* Report a usage problem for cmd and return 2. */
int ffdp_cli_usage(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
/* Strict integer / real parsing of option values; 0 on success. */
int ffdp_cli_parse_i64(const char *s, long long lo, long long hi, long long *out);
int ffdp_cli_parse_f64(const char *s, double lo, double hi, double *out);
/* Peak resident memory of this process so far (VmHWM), MiB. */
long ffdp_cli_peak_rss_mb(void);

#endif
