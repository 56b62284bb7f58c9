/* Minimal test harness: every check prints what it checked, pass or fail;
 * check_done() prints "N passed, N failed" and gives the exit code. */
#ifndef FFDP_TEST_CHECK_H
#define FFDP_TEST_CHECK_H

#include <stdio.h>

static int check_npass, check_nfail;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		int check_ok_ = (cond) ? 1 : 0;                              \
		printf("%s ", check_ok_ ? "ok  " : "FAIL");                  \
		printf(__VA_ARGS__);                                         \
		if (!check_ok_)                                              \
			printf("   [%s:%d: %s]", __FILE__, __LINE__, #cond); \
		printf("\n");                                                \
		if (check_ok_)                                               \
			check_npass++;                                       \
		else                                                         \
			check_nfail++;                                       \
	} while (0)

/* Check an ffdp_status call succeeded, printing the error message if not. */
#define CHECK_OK(call, errp, ...)                                            \
	do {                                                                 \
		ffdp_status check_s_ = (call);                               \
		CHECK(check_s_ == FFDP_OK, __VA_ARGS__);                     \
		if (check_s_ != FFDP_OK)                                     \
			printf("     error: %s\n", (errp)->msg);             \
	} while (0)

static inline int check_done(void)
{
	printf("%d passed, %d failed\n", check_npass, check_nfail);
	return check_nfail == 0 && check_npass > 0 ? 0 : 1;
}

#endif
