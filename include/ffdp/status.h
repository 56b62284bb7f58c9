/* Status codes and error messages.
 *
 * Every public function that can fail returns an ffdp_status and takes an
 * optional ffdp_error *err (may be NULL) that receives one human-readable
 * message naming the file or argument at fault.  No global "last error":
 * the caller owns the message.
 */
#ifndef FFDP_STATUS_H
#define FFDP_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ffdp_status {
	FFDP_OK = 0,
	FFDP_ERR_ARG,         /* invalid argument or option */
	FFDP_ERR_NOMEM,       /* allocation failed */
	FFDP_ERR_IO,          /* file missing, unreadable or unwritable */
	FFDP_ERR_FORMAT,      /* not a valid or supported file */
	FFDP_ERR_DATA,        /* valid file, unusable content (NaN, 4-D, ...) */
	FFDP_ERR_UNSUPPORTED, /* feature not built in or not implemented */
	FFDP_ERR_BACKEND,     /* device or runtime failure */
	FFDP_ERR_PEER,        /* another MPI rank failed (its message is its own) */
} ffdp_status;

#define FFDP_ERROR_MSG_LEN 1024

typedef struct ffdp_error {
	ffdp_status code;
	char msg[FFDP_ERROR_MSG_LEN];
} ffdp_error;

/* Record code and a printf-style message in err (if not NULL); returns code
 * so that failures read "return ffdp_fail(err, FFDP_ERR_IO, ...)". */
ffdp_status ffdp_fail(ffdp_error *err, ffdp_status code, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 3, 4)))
#endif
	;

/* Clear err to FFDP_OK with an empty message. */
void ffdp_error_clear(ffdp_error *err);

/* Short constant name of a status ("io error", ...). */
const char *ffdp_status_name(ffdp_status s);

#ifdef __cplusplus
}
#endif
#endif
