#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <nifti1.h>

tu_rng tu_rng_make(uint64_t seed)
{
	tu_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull};
	return r;
}

uint64_t tu_next(tu_rng *r)
{
	/* splitmix64 */
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r)
{
	return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double tu_normal(tu_rng *r)
{
	double u1 = tu_uniform(r), u2 = tu_uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_random_rotation(tu_rng *r, double R[9])
{
	double q[4], n = 0;
	for (int i = 0; i < 4; i++)
		q[i] = tu_normal(r), n += q[i] * q[i];
	n = sqrt(n);
	double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
	double m[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
		       2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
		       2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
	for (int i = 0; i < 9; i++)
		R[i] = m[i];
}

ffdp_grid tu_random_grid(tu_rng *r, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_grid g = ffdp_grid_make(nx, ny, nz, 0.6 + 1.2 * tu_uniform(r), 0.6 + 1.2 * tu_uniform(r),
				     0.6 + 1.2 * tu_uniform(r));
	tu_random_rotation(r, g.dir);
	for (int a = 0; a < 3; a++)
		g.origin[a] = 40.0 * (tu_uniform(r) - 0.5);
	return g;
}

void tu_fill_uniform(tu_rng *r, float *x, int64_t n, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(lo + (hi - lo) * tu_uniform(r));
}

void tu_fill_smooth(tu_rng *r, float *x, const int64_t n[3], double noise)
{
	enum { NB = 6 };
	double c[NB][3], w[NB], s[NB];
	for (int b = 0; b < NB; b++) {
		for (int a = 0; a < 3; a++)
			c[b][a] = tu_uniform(r) * (double)n[a];
		w[b] = 0.3 + 0.7 * tu_uniform(r);
		double m = (double)(n[0] > n[1] ? n[0] : n[1]);
		s[b] = (0.15 + 0.25 * tu_uniform(r)) * m;
	}
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t xx = 0; xx < n[0]; xx++) {
				double v = 0;
				for (int b = 0; b < NB; b++) {
					double dx = (double)xx - c[b][0], dy = (double)y - c[b][1];
					double dz = n[2] > 1 ? (double)z - c[b][2] : 0.0;
					v += w[b] * exp(-(dx * dx + dy * dy + dz * dz) / (2 * s[b] * s[b]));
				}
				x[(z * n[1] + y) * n[0] + xx] = (float)(v + noise * tu_normal(r));
			}
}

double tu_max_abs(const double *b, int64_t n)
{
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs(b[i]));
	return m;
}

double tu_rel_err(const float *a, const double *b, int64_t n, double floor)
{
	double d = 0, m = fmax(tu_max_abs(b, n), floor);
	for (int64_t i = 0; i < n; i++)
		d = fmax(d, fabs((double)a[i] - b[i]));
	return d / m;
}

void tu_mkdirs(const char *path)
{
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0777);
			*p = '/';
		}
	mkdir(tmp, 0777);
}

const char *tu_path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
	return buf;
}

void tu_write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

int tu_count_temporaries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strstr(e->d_name, ".tmp-") != NULL;
	if (d)
		closedir(d);
	return n;
}

double tu_mean_dice(const ffdp_volume *a, const ffdp_volume *b)
{
	ffdp_label_eval e;
	ffdp_error err = {0};
	if (ffdp_eval_labels(a, b, 0, &e, &err))
		return -1;
	double d = e.mean_dice;
	ffdp_label_eval_free(&e);
	return d;
}

tfield tu_field_new(int64_t nx, int64_t ny, int64_t nz)
{
	tfield f = {{NULL, NULL, NULL}, {nx, ny, nz}, nx * ny * nz, nz == 1 ? 2 : 3};
	for (int c = 0; c < f.nc; c++)
		f.c[c] = calloc((size_t)f.nv, sizeof(float));
	return f;
}

void tu_field_free(tfield *f)
{
	for (int c = 0; c < 3; c++) {
		free(f->c[c]);
		f->c[c] = NULL;
	}
}

ffdp_vec tu_field_vec(const tfield *f)
{
	ffdp_vec v = {{f->c[0], f->c[1], f->c[2]}, {f->n[0], f->n[1], f->n[2]}, f->nc};
	return v;
}

unsigned char *tu_read_file(const char *path, int decompress, size_t *n)
{
	size_t cap = 1 << 20, len = 0;
	unsigned char *buf = NULL;
	*n = 0;
	if (!decompress) {
		FILE *f = fopen(path, "rb");
		if (!f)
			return NULL;
		buf = malloc(cap);
		while (buf && (len += fread(buf + len, 1, cap - len, f)) == cap)
			buf = realloc(buf, cap *= 2);
		fclose(f);
		*n = len;
		return buf;
	}
	gzFile gz = gzopen(path, "rb");
	int got;
	if (!gz)
		return NULL;
	buf = malloc(cap);
	while (buf && (got = gzread(gz, buf + len, (unsigned)(cap - len))) > 0)
		if ((len += (size_t)got) == cap)
			buf = realloc(buf, cap *= 2);
	gzclose(gz);
	*n = len;
	return buf;
}

int tu_same_file_bytes(const char *a, const char *b, int decompress)
{
	size_t na, nb;
	unsigned char *x = tu_read_file(a, decompress, &na), *y = tu_read_file(b, decompress, &nb);
	int same = x && y && na == nb && na > 0 && memcmp(x, y, na) == 0;
	free(x);
	free(y);
	return same;
}

void tu_nifti_store(int datatype, void *data, int64_t i, double v)
{
	switch (datatype) {
	case DT_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
	case DT_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
	case DT_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
	case DT_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
	case DT_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
	case DT_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
	case DT_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
	case DT_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
	case DT_FLOAT32: ((float *)data)[i] = (float)v; break;
	case DT_FLOAT64: ((double *)data)[i] = v; break;
	default: break; /* complex, rgb: left zero */
	}
}

double tu_field_mean_diff(const ffdp_field *a, const ffdp_field *b)
{
	int64_t n = ffdp_grid_voxels(&a->grid);
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		double e2 = 0;
		for (int c = 0; c < a->ncomp; c++) {
			double d = (double)a->c[c][i] - (double)b->c[c][i];
			e2 += d * d;
		}
		s += sqrt(e2);
	}
	return s / (double)n / a->grid.spacing[0];
}

float tu_bf16_half(float w, int half)
{
	uint32_t b;
	memcpy(&b, &w, 4);
	b = half ? b << 16 : b & 0xffff0000u;
	float x;
	memcpy(&x, &b, 4);
	return x;
}

float tu_bf16_word(float m, float v)
{
	uint32_t a, b;
	memcpy(&a, &m, 4);
	memcpy(&b, &v, 4);
	a = (a & 0xffff0000u) | b >> 16;
	float w;
	memcpy(&w, &a, 4);
	return w;
}

double tu_bf16_ulp(double x)
{
	return x == 0.0 ? 0.0 : ldexp(1.0, ilogb(x) - 7);
}

ffdp_sample_args tu_sample_args(float *M, const int64_t mn[3], float *out, const int64_t on[3], const ffdp_vec *u,
				ffdp_interp interp, ffdp_pad pad)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = (ffdp_img){M, {mn[0], mn[1], mn[2]}};
	a.out = (ffdp_img){out, {on[0], on[1], on[2]}};
	a.W[0] = 0.9, a.W[1] = 0.1, a.W[3] = 0.5, a.W[5] = 1.05, a.W[7] = -0.3, a.W[10] = 0.95, a.W[11] = 0.2;
	for (int k = 0; k < 9; k += 4)
		a.B[k] = 1.0;
	a.u = u;
	a.interp = interp;
	a.pad = pad;
	return a;
}
