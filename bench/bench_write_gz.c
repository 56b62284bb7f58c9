/* Writing .nii.gz: the old single-stream writer (zlib gzwrite, level 1, one
 * thread) against the gzip-member sink on 1 and 2 threads, and the sink's
 * size and time at zlib levels 1..6, for a displacement field (the phantom's
 * true warp, 3 float32 components) and a float32 image (the phantom) at the
 * and an int16 label map at the OASIS size (256x256x160) and at 1 mm MNI (182x218x182).
 * usage: bench_write_gz [DIR [quick]]   (scratch files in DIR, default /tmp;
 *        quick: old writer and members on 1 and 2 threads only)
 * Times: wall, best of 3, and (levels) the process CPU time of that run:
 * on a shared machine CPU time is the steadier measure of compression cost. */
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ffdp/ffdp.h"
#include "io/byte_sink.h"

static double cpu_now(void);
static double g_cpu; /* CPU seconds of the best run */

static double old_writer(const char *path, const void *p, size_t n, long *bytes)
{
	double best = 1e30;
	for (int rep = 0; rep < 3; rep++) {
		double t0 = ffdp_now(), c0 = cpu_now();
		gzFile gz = gzopen(path, "wb1");
		gzbuffer(gz, 1 << 20);
		for (size_t off = 0; off < n; off += 1u << 30) {
			size_t k = n - off < (1u << 30) ? n - off : 1u << 30;
			gzwrite(gz, (const char *)p + off, (unsigned)k);
		}
		gzclose(gz);
		double t = ffdp_now() - t0;
		if (t < best)
			best = t, g_cpu = cpu_now() - c0;
	}
	struct stat st;
	stat(path, &st);
	*bytes = (long)st.st_size;
	return best;
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static int g_strategy = Z_DEFAULT_STRATEGY;

static double sink_writer(const char *path, const void *p, size_t n, int level, int threads, long *bytes)
{
	double best = 1e30;
	omp_set_num_threads(threads);
	for (int rep = 0; rep < 3; rep++) {
		double t0 = ffdp_now(), c0 = cpu_now();
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		ffdp_sink s;
		ffdp_sink_open(&s, fd, 0, 1, path, NULL);
		s.level = level;
		s.strategy = g_strategy;
		ffdp_sink_write(&s, p, n, NULL);
		ffdp_sink_flush(&s, NULL);
		*bytes = (long)s.pos;
		ffdp_sink_free(&s);
		close(fd);
		double t = ffdp_now() - t0;
		if (t < best)
			best = t, g_cpu = cpu_now() - c0;
	}
	return best;
}

static int g_quick; /* only the old writer against the members, 1 and 2 threads */

/* is_float: the writer's choice, zlib's RLE strategy, for the member runs. */
static void run(const char *dir, const char *what, const void *p, size_t n, int is_float)
{
	char path[1024];
	long b;
	snprintf(path, sizeof(path), "%s/bench_write_gz.gz", dir);
	double t = old_writer(path, p, n, &b);
	printf("%-26s %7.1f MB | old gzwrite L1 1 thread: %.3f s (cpu %.3f), %.1f%% |", what, n / 1e6, t, g_cpu,
	       100.0 * b / n);
	g_strategy = is_float ? Z_RLE : Z_DEFAULT_STRATEGY;
	for (int th = 1; th <= 2; th++) {
		t = sink_writer(path, p, n, 1, th, &b);
		printf(" members L1%s %d thr: %.3f s (cpu %.3f) %.1f%%%s", is_float ? " rle" : "", th, t, g_cpu,
		       100.0 * b / n, th == 2 ? "" : ",");
	}
	g_strategy = Z_DEFAULT_STRATEGY;
	if (g_quick) {
		printf("\n");
		unlink(path);
		fflush(stdout);
		return;
	}
	printf("\n    levels (2 threads):");
	for (int level = 1; level <= 6; level++) {
		t = sink_writer(path, p, n, level, 2, &b);
		printf(" L%d %.3f s (cpu %.3f) %.1f%%%s", level, t, g_cpu, 100.0 * b / n, level < 6 ? "," : "\n");
	}
	static const struct {
		int s;
		const char *name;
	} strat[3] = {{Z_FILTERED, "filtered"}, {Z_RLE, "rle"}, {Z_HUFFMAN_ONLY, "huffman"}};
	printf("    strategies (L1, 1 thread):");
	for (int k = 0; k < 3; k++) {
		g_strategy = strat[k].s;
		t = sink_writer(path, p, n, 1, 1, &b);
		printf(" %s %.3f s (cpu %.3f) %.1f%%%s", strat[k].name, t, g_cpu, 100.0 * b / n, k < 2 ? "," : "\n");
	}
	g_strategy = Z_DEFAULT_STRATEGY;
	unlink(path);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	g_quick = argc > 2 && !strcmp(argv[2], "quick");
	static const int64_t sizes[2][3] = {{256, 256, 160}, {182, 218, 182}};
	static const char *names[2] = {"OASIS 256x256x160", "1 mm 182x218x182"};
	for (int k = 0; k < 2; k++) {
		ffdp_phantom_opts o = ffdp_phantom_defaults();
		ffdp_volume f = {0}, fl = {0};
		ffdp_field u = {0};
		ffdp_error err = {0};
		memcpy(o.n, sizes[k], sizeof(o.n));
		o.spacing[0] = o.spacing[1] = o.spacing[2] = 1.0;
		o.amplitude_mm = 8.0;
		if (ffdp_phantom_make(&o, &f, NULL, &fl, NULL, &u, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		int64_t nv = ffdp_grid_voxels(&f.grid);
		float *all = malloc((size_t)(3 * nv) * sizeof(float));
		for (int c = 0; c < 3; c++)
			memcpy(all + c * nv, u.c[c], (size_t)nv * sizeof(float));
		char what[64];
		snprintf(what, sizeof(what), "%s field", names[k]);
		run(dir, what, all, (size_t)(3 * nv) * sizeof(float), 1);
		snprintf(what, sizeof(what), "%s image", names[k]);
		run(dir, what, f.data, (size_t)nv * sizeof(float), 1);
		int16_t *lab = malloc((size_t)nv * sizeof(int16_t));
		for (int64_t i = 0; i < nv; i++)
			lab[i] = (int16_t)fl.data[i];
		snprintf(what, sizeof(what), "%s labels", names[k]);
		run(dir, what, lab, (size_t)nv * sizeof(int16_t), 0);
		free(lab);
		ffdp_volume_free(&fl);
		free(all);
		ffdp_volume_free(&f);
		ffdp_field_free(&u);
	}
	return 0;
}
