/* ffdp: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *usage;
} command;

static const command commands[] = {
	{"info", ffdp_cmd_info, "describe images: size, spacing, orientation, datatype, range",
	 "usage: ffdp info [-q] FILE...\n"
	 "  Prints, for each NIfTI-1/2 file (.nii, .nii.gz): size, voxel size (mm),\n"
	 "  orientation code (nibabel axis codes), datatype, scaling, which of\n"
	 "  qform/sform sets the geometry (ITK's rule), origin (LPS mm) and the\n"
	 "  intensity range.  Exit status 1 if any file cannot be read.\n"},
	{"register", ffdp_cmd_register, "register a moving image to a fixed image",
	 "usage: ffdp register -f FIXED -m MOVING -o PREFIX [options]\n"
	 "  Pipeline: a preset (--rigid, --affine, --greedy, --syn, --preset default:\n"
	 "  moments -> rigid -> affine -> SyN, the default) or ANTs-like stages:\n"
	 "    --transform Moments[order] | Rigid[lr] | Affine[lr] | Greedy[lr,sgrad,swarp] | SyN[lr,sgrad,swarp]\n"
	 "    --metric CC[k(,exact|ants)] | MI[bins(,gaussian|bspline)] | MSE\n"
	 "    --convergence 200x100x50 or [200x100x50,tol,window]\n"
	 "    --shrink-factors 4x2x1\n"
	 "  (each --metric/--convergence/--shrink-factors applies to the last --transform)\n"
	 "  Other: --fixed-mask FILE, --moving-mask FILE (weights on the moving grid, e.g. 0 on a\n"
	 "         lesion: they follow the moving image through each iteration's transform),\n"
	 "         --initial-transform ITK.txt|.mat, --device N, --no-inverse, -q,\n"
	 "         --backend auto|cpu|cuda (auto, the default: the GPU when one is present),\n"
	 "         --moments bf16|f32 (Adam's moments; bf16, the default, takes 12 B a voxel less),\n"
	 "         --images f32|u16 (u16: the images in 16 bits, 2 B a voxel less each on the GPU),\n"
	 "         --winsorize-image-intensities [lo,hi] (clip each image at these quantiles, e.g.\n"
	 "         [0.005,0.995], before mapping it to [0, 1]; MI's bins then see the tissue).\n"
	 "  Writes PREFIX_warped.nii.gz, PREFIX_affine.txt (ITK), PREFIX_warp.nii.gz and\n"
	 "  PREFIX_inverse_warp.nii.gz (ANTs fields), PREFIX_report.json, PREFIX_qc.png;\n"
	 "  --output-names ants: antsRegistration's names instead (PREFIXWarped.nii.gz,\n"
	 "  PREFIX0GenericAffine.mat, PREFIX1Warp.nii.gz, PREFIX1InverseWarp.nii.gz, PREFIXreport.json,\n"
	 "  PREFIXqc.png).\n"
	 "  Apply with: ffdp apply -r FIXED -i MOVING -o OUT -t PREFIX_warp.nii.gz -t PREFIX_affine.txt\n"
	 "  Under mpirun -np N (built with MPI): one registration over N ranks, the same result\n"
	 "  (GPUs: one per rank, NCCL between them; the same to rounding); each rank reads and\n"
	 "  writes its own planes of the files.\n"},
	{"demo", ffdp_cmd_demo, "register a synthetic phantom pair with a known warp (no input needed)",
	 "usage: ffdp demo [-o DIR] [--size NX,NY,NZ] [--spacing MM] [--amplitude MM] [--seed N] [-q]\n"
	 "  Generates a brain-like phantom and a copy deformed by a known smooth\n"
	 "  invertible warp (peak --amplitude, default 8 mm), writes DIR/fixed.nii.gz,\n"
	 "  DIR/moving.nii.gz, their label maps, the true displacement\n"
	 "  DIR/true_warp.nii.gz (ANTs convention) and DIR/demo_qc.png; then registers\n"
	 "  the pair (moments, affine, greedy), writes DIR/reg_*, and prints label Dice\n"
	 "  and the endpoint error against the truth, before and after.\n"
	 "  Default DIR: ffdp-demo; default size 96,112,96 at 1.5 mm.\n"},
	{"synth", ffdp_cmd_synth, "write a synthetic phantom pair of any size, slab by slab (MPI: rank by rank)",
	 "usage: ffdp synth -o PREFIX --size NXxNYxNZ [--spacing MM] [--amplitude MM] [--seed N]\n"
	 "                  [--labels] [--truth] [--slab PLANES] [-q]\n"
	 "  Writes the phantom of 'ffdp demo' (textured brain-like object, fixed and a\n"
	 "  copy deformed by a known smooth invertible warp of peak --amplitude mm,\n"
	 "  default 8) as PREFIX_fixed.nii.gz and PREFIX_moving.nii.gz; --labels adds\n"
	 "  PREFIX_{fixed,moving}_labels.nii.gz, --truth the true displacement\n"
	 "  PREFIX_true_warp.nii.gz (ANTs convention).  Default spacing 1 mm.\n"
	 "  Never holds a whole volume: it generates and writes --slab planes at a\n"
	 "  time (default: about 4 M voxels).  Under mpirun each rank generates and\n"
	 "  writes its own z-slab of the same files.\n"},
	{"apply", ffdp_cmd_apply, "resample an image through transforms given in ANTs order",
	 "usage: ffdp apply -r REFERENCE -i INPUT -o OUTPUT -t T1 [-t T2 ...]\n"
	 "                  [--interp linear|nearest|label] [-q]\n"
	 "  Resamples INPUT on REFERENCE's grid.  Transforms are given as for\n"
	 "  antsApplyTransforms and applied to the reference POINT in the order listed:\n"
	 "  '-t warp.nii.gz -t affine.txt' maps x to A(x + w(x)): the outputs of a\n"
	 "  registration of INPUT (moving) to REFERENCE (fixed), in the order that\n"
	 "  brings INPUT onto REFERENCE.  The other way round (REFERENCE = the moving\n"
	 "  image) is '-t [affine.txt,1] -t inverse_warp.nii.gz'.\n"
	 "  T: an ITK affine (.txt, .tfm, or ANTs' binary .mat; [FILE,1] inverts it) or an ANTs\n"
	 "  displacement field (.nii, .nii.gz; LPS mm, zero outside its grid; it\n"
	 "  cannot be inverted with [FILE,1]).  'identity' is accepted.\n"
	 "  --interp (or -n): linear (default, float32 output); nearest or label (the\n"
	 "  label with the largest trilinear weight) write int16 labels when the\n"
	 "  input holds integers.  Outside the input the output is 0.\n"},
	{"convert", ffdp_cmd_convert, "convert an ITK linear transform between text and .mat, or invert it",
	 "usage: ffdp convert IN OUT [--invert] [-q]\n"
	 "  Reads an ITK linear transform (text .txt/.tfm, or ITK's binary .mat as\n"
	 "  antsRegistration writes PREFIX0GenericAffine.mat; AffineTransform,\n"
	 "  MatrixOffsetTransformBase, Euler3D, VersorRigid3D, Similarity3D,\n"
	 "  Translation, Rigid2D) and writes it as AffineTransform_double_3_3 in the\n"
	 "  form OUT's extension names (.txt/.tfm text, .mat binary); --invert writes\n"
	 "  its inverse.  Prints the 4x4 (fixed LPS mm -> moving LPS mm).\n"},
	{"eval", ffdp_cmd_eval, "Dice, HD95, warp folding and similarity of a registration",
	 "usage: ffdp eval [--labels-fixed A --labels-moved B] [--warp W [--jacobian OUT]]\n"
	 "                 [--fixed-image F --moved-image M] [--lncc-window K] [--json FILE]\n"
	 "  Label maps (same grid; background 0 ignored): Dice and HD95 per label\n"
	 "  (95th percentile of the pooled boundary-to-boundary distances in mm, both\n"
	 "  directions), and their means over the labels present in both maps.\n"
	 "  --warp: an ANTs displacement field w; folding of x -> x + w(x): the voxels\n"
	 "  with det(I + dw/dx) <= 0, and min/mean/max of the determinant; --jacobian\n"
	 "  writes that determinant per voxel (float32 NIfTI on the warp's grid).\n"
	 "  Images (same grid): global NCC, and lncc2, the mean SQUARED local\n"
	 "  correlation in a KxKxK window (default 9) as the LNCC metric defines it.\n"
	 "  Prints a table; --json also writes the numbers to FILE.\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_help(void)
{
	printf("ffdp %s: image registration from a 1 mm brain to gigavoxel microscopy\n\n", ffdp_version());
	printf("usage: ffdp COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	printf("  %-10s %s\n", "help", "this text, or 'ffdp help COMMAND' for one command");
	printf("\noptions for every command:\n  -q, --quiet   errors only, no progress bars\n"
	       "  -v, --verbose debug messages\n\nffdp --version prints the build (threads, CUDA, MPI).\n");
}

static const command *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_help();
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		char info[512];
		ffdp_build_info(info, sizeof(info));
		fputs(info, stdout);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		if (argc > 2) {
			const command *c = find(argv[2]);
			if (!c)
				return ffdp_cli_usage("help", "unknown command '%s'", argv[2]);
			fputs(c->usage, stdout);
			return 0;
		}
		print_help();
		return 0;
	}
	const command *c = find(cmd);
	if (!c) {
		ffdp_log_error("unknown command '%s' (try 'ffdp help')", cmd);
		return 2;
	}
	/* Global verbosity flags, accepted anywhere after the command. */
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			ffdp_log_set_level(FFDP_LOG_QUIET);
		else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			ffdp_log_set_level(FFDP_LOG_DEBUG);
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(c->usage, stdout);
			return 0;
		}
	}
	return c->run(argc - 1, argv + 1);
}
