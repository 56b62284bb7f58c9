/* The ffdp command line: one file per subcommand. */
#ifndef FFDP_CLI_H
#define FFDP_CLI_H

#include "ffdp/ffdp.h"

/* Each returns the process exit code: 0 success, 1 failure, 2 usage error. */
int ffdp_cmd_info(int argc, char **argv);
int ffdp_cmd_demo(int argc, char **argv);
int ffdp_cmd_register(int argc, char **argv);
int ffdp_cmd_apply(int argc, char **argv);
int ffdp_cmd_convert(int argc, char **argv);
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
/* ---- running under mpirun (cli_mpi.c) ----------------------------------------
 * Under mpirun (one rank or more), MPI is initialised and a dist
 * context made; other ranks log errors only. */
typedef struct cli_mpi {
	struct ffdp_dist *dist; /* NULL: one process */
	int rank, size;
	int own_init;           /* we called MPI_Init */
} cli_mpi;

ffdp_status ffdp_cli_mpi_start(cli_mpi *m, int *argc, char ***argv, ffdp_error *err);
void ffdp_cli_mpi_end(cli_mpi *m);
/* Every rank reads its planes of each image (ffdp_slab_of along the
 * image's own z; v->grid is the whole image's), after rank 0 has checked
 * that probe is writable, that every header reads, and read T from init
 * (NULL: T kept), which all ranks then get.  *quiet: the failure was
 * printed by a lower rank. */
ffdp_status ffdp_cli_mpi_read(const cli_mpi *m, const char *const *paths, ffdp_volume *const *vols, int n,
			      const char *probe, const char *init, ffdp_mat4 *T, int *quiet, ffdp_error *err);
/* A 2-D pair under mpirun: z-slabs cannot split one plane, so rank 0 (which
 * holds it) registers alone; then every rank gets its status s and r but
 * the fields (empty slabs elsewhere, as ffdp_cli_mpi_write_images wants
 * them; g the fixed grid).  *quiet: rank 0 printed the failure. */
ffdp_status ffdp_cli_mpi_solo_result(const cli_mpi *m, ffdp_status s, ffdp_reg_result *r, const ffdp_grid *g,
				      int *quiet, ffdp_error *err);
/* What `ffdp register` appends to its output prefix for each file: ffdp's
 * own names (PREFIX_warped.nii.gz, ...) or antsRegistration's
 * (PREFIXWarped.nii.gz, PREFIX1Warp.nii.gz, PREFIX1InverseWarp.nii.gz,
 * PREFIX0GenericAffine.mat), so that scripts written for ANTs find them. */
typedef struct ffdp_cli_names {
	const char *warped, *warp, *inverse, *affine, *qc, *report;
} ffdp_cli_names;
const ffdp_cli_names *ffdp_cli_names_of(int ants);

/* The registration's images from every rank's planes (fixed, moving as
 * ffdp_cli_mpi_read gave them, r as ffdp_register under MPI): the warped
 * image, the warp and its inverse (.nii.gz, each rank its planes) and the
 * QC picture (rank 0, from previews), named by nm.  Collective. */
ffdp_status ffdp_cli_mpi_write_images(const cli_mpi *m, const char *prefix, const ffdp_cli_names *nm,
				      const ffdp_volume *fixed, const ffdp_volume *moving, const ffdp_reg_result *r,
				      ffdp_error *err);
/* Under mpirun, every rank's status s after a collective step: the lowest
 * rank with a failure of its own prints (*quiet = 0 there only), the
 * others stay quiet; the status on a rank that did not fail is
 * FFDP_ERR_PEER.  Without ranks, s. */
ffdp_status ffdp_cli_mpi_agree(const cli_mpi *m, ffdp_status s, int *quiet, ffdp_error *err);
/* This rank's index among the ranks on its host (0 without MPI). */
int ffdp_cli_mpi_local_rank(const cli_mpi *m);
/* How the ranks moved planes in the last registration: "mpi", "staged",
 * "nccl" (dist.h), or "none" without ranks. */
const char *ffdp_cli_mpi_transport(const cli_mpi *m);
/* Every rank's per-stage fetch traffic (received, sent, and what a ring
 * would have brought, in bytes) into all on rank 0:
 * all[(rank * nstages + stage) * FFDP_CLI_TRAFFIC + 0/1/2]. */
enum { FFDP_CLI_TRAFFIC = 3 };
void ffdp_cli_mpi_traffic(const cli_mpi *m, const ffdp_reg_result *r, uint64_t *all);

/* Strict integer / real parsing of option values; 0 on success. */
int ffdp_cli_parse_i64(const char *s, long long lo, long long hi, long long *out);
int ffdp_cli_parse_f64(const char *s, double lo, double hi, double *out);
/* Peak resident memory of this process so far (VmHWM), MiB. */
long ffdp_cli_peak_rss_mb(void);

#endif
