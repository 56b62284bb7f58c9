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
	{"demo", ffdp_cmd_demo, "make a synthetic phantom pair and show it (no input needed)",
	 "usage: ffdp demo [-o DIR] [--size NX,NY,NZ] [--spacing MM] [--seed N] [-q]\n"
	 "  Generates a brain-like phantom and a copy deformed by a known smooth\n"
	 "  invertible warp, writes DIR/fixed.nii.gz, DIR/moving.nii.gz, their label\n"
	 "  maps, the true displacement DIR/true_warp.nii.gz (ANTs convention) and\n"
	 "  DIR/demo_qc.png.  Default DIR: ffdp-demo; default size 96,112,96 at 1.5 mm.\n"},
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
