#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *ffdp_path_extension(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *last = strrchr(base, '.');
	if (!last || last == base)
		return path + strlen(path);
	if (strcmp(last, ".gz") == 0) {
		/* ".nii.gz": step back to the dot before ".gz", if the stem keeps a name. */
		for (const char *p = last - 1; p > base; p--)
			if (*p == '.')
				return p;
	}
	return last;
}

/* Split target into its directory ("." if none) and basename. */
static int split_path(const char *target, char *dir, size_t ndir, const char **base)
{
	const char *slash = strrchr(target, '/');
	if (!slash) {
		*base = target;
		return snprintf(dir, ndir, ".") >= (int)ndir;
	}
	*base = slash + 1;
	size_t len = slash == target ? 1 : (size_t)(slash - target);
	if (len >= ndir)
		return 1;
	memcpy(dir, target, len);
	dir[len] = '\0';
	return 0;
}

static ffdp_status check_target(const char *target, const char *dir, ffdp_error *err)
{
	struct stat st;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode))
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: it is a directory", target);
	if (stat(dir, &st) != 0)
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: directory %s: %s", target, dir,
				 strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: %s is not a directory", target, dir);
	return FFDP_OK;
}

/* Six characters from [A-Za-z0-9]; uniqueness comes from O_EXCL, the
 * randomness only keeps retries rare. */
static void random_tag(char tag[7], uint64_t seed)
{
	static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	uint64_t z = seed + 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	for (int i = 0; i < 6; i++, z /= 62)
		tag[i] = alnum[z % 62];
	tag[6] = '\0';
}

ffdp_status ffdp_atomic_begin(ffdp_atomic_file *a, const char *target, ffdp_error *err)
{
	char dir[FFDP_PATH_MAX];
	const char *base;
	memset(a, 0, sizeof(*a));
	if (!target || !*target)
		return ffdp_fail(err, FFDP_ERR_ARG, "output path is empty");
	if (strlen(target) >= sizeof(a->target) || split_path(target, dir, sizeof(dir), &base))
		return ffdp_fail(err, FFDP_ERR_ARG, "output path %.200s... is too long", target);
	if (!*base)
		return ffdp_fail(err, FFDP_ERR_ARG, "output path %s names a directory, not a file", target);
	ffdp_status s = check_target(target, dir, err);
	if (s)
		return s;
	const char *ext = ffdp_path_extension(base);
	int stem = (int)(ext - base);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
			(uint64_t)(uintptr_t)a;
	for (int attempt = 0; attempt < 100; attempt++) {
		char tag[7];
		random_tag(tag, seed + (uint64_t)attempt * 7919u);
		int n = snprintf(a->tmp, sizeof(a->tmp), "%s/.%.*s.tmp-%s%s", dir, stem, base, tag, ext);
		if (n < 0 || n >= (int)sizeof(a->tmp))
			return ffdp_fail(err, FFDP_ERR_ARG, "output path %.200s... is too long", target);
		int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
			close(fd);
			snprintf(a->target, sizeof(a->target), "%s", target);
			a->active = 1;
			return FFDP_OK;
		}
		if (errno != EEXIST)
			return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: cannot create a file in %s: %s",
					 target, dir, strerror(errno));
	}
	return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: no free temporary name in %s", target, dir);
}

ffdp_status ffdp_atomic_commit(ffdp_atomic_file *a, ffdp_error *err)
{
	if (!a->active)
		return ffdp_fail(err, FFDP_ERR_ARG, "internal: commit without an active temporary file");
	/* Data on disk before the name points at it: a crash leaves old or new, never half. */
	int fd = open(a->tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		ffdp_atomic_abort(a);
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: flushing the temporary file failed: %s",
				 a->target, strerror(e));
	}
	close(fd);
	if (rename(a->tmp, a->target) != 0) {
		int e = errno;
		ffdp_atomic_abort(a);
		return ffdp_fail(err, FFDP_ERR_IO, "cannot write %s: rename from temporary failed: %s",
				 a->target, strerror(e));
	}
	a->active = 0;
	return FFDP_OK;
}

void ffdp_atomic_abort(ffdp_atomic_file *a)
{
	if (a->active)
		unlink(a->tmp);
	a->active = 0;
}
