/* LNCC for windows of radius R = 1..4 (k = 3, 5, 7, 9) fixed at compile
 * time: the same math, tile and z march as lncc_kernel (cuda_lncc.cu's
 * header), built so that every loop has a constant trip count, each
 * thread's work items are the same on every plane and their state stays in
 * registers.  Part of cuda_lncc.cu (included after lncc_k and ln_cc);
 * cuda_lncc.cu falls back to lncc_kernel for other windows and when
 * the shared memory below does not fit.
 *
 * A block owns a 32 x 16 output tile (512 threads) and a chunk of planes.
 * Per step (planes pa = pc + R added, ps = pc - R - 1 removed):
 *   A  f and m of both planes on the input region (IX x IY) into shared
 *      memory (minus the shift, as doubles, where they fit, else floats);
 *      the next step's loads are issued at once so that they fly during
 *      the other stages.  Voxels outside
 *      the image or planes outside [0, nz) are staged as the shift (cf, cm):
 *      they add nothing, and no stage branches on them.
 *   B  each thread owns LB coefficient-region columns of one row: the x
 *      running sum of P(pa) - P(ps) (the five shifted products, double) is
 *      added to its z-windowed, x-boxed sums, kept in registers from step to
 *      step, and published to shared memory (X, double).
 *   C  y running sums of X down LC rows per thread, cc and the
 *      coefficients (exact: to shared memory as floats; ANTs: the gradient).
 *   D  (exact) x running sums of the coefficients (double, 8 outputs a
 *      thread), E y sums (direct, double), and per output column a running z
 *      sum in double over a ring of 2R + 1 planes of its own: the gradient
 *      of plane pc - R.
 * Stages B and C run side by side on their own warps, with E (all
 * threads) of the step before; D and the staging of the next step follow
 * after a barrier: 2 barriers per step (1 for the ANTs gradient).
 *
 * Flat windows.  A window where f is 0 at every voxel has cov = 0 and a
 * variance 0, so its cc and coefficients are exactly 0 (ln_cc).  The
 * barrier that ends a step's staging ORs whether the added plane has a
 * non-zero f in the block's input region (__syncthreads_or: no extra
 * barrier or shared word); stage C writes those zeros without its sums
 * when no plane of its window has one.  Skull-stripped brains are mostly
 * background, where C (the longer of the step's two paths) then has
 * nothing to do.  The running sums would have left rounding residue of the
 * planes that left the window there; 0 is the value without it.  (m's
 * zeros too need a second OR: the version with a shared word and atomics,
 * which also tested the values next to their loads, cost dense images
 * 5-25 %.)  A block whose region has no non-zero f on any
 * plane of its chunk (flagged before by lf_flat_kernel) writes its zeros
 * and leaves.  Neither in the SPLIT kernels (k = 7, 9 with gm and gf),
 * which spill already: the branch cost dense images 8-10 % there; stage
 * C's skip only where it adds no spill (lf_geom's CFLAT).
 *
 * Precision.  As lncc_kernel: shifted products and all their sums in
 * double, the coefficients rounded to float once, their box sums in
 * double, the ring in float.  1/n comes from a table.
 */
#ifndef FFDP_CUDA_LNCC_FIXED_CUH
#define FFDP_CUDA_LNCC_FIXED_CUH

#include <type_traits>

/* The fewest rows a stage C item (see lf_geom) such that the rows nci
 * items a column leave, one a thread, fit nb threads. */
static constexpr int lf_pick_lc(int cy, int cx, int nci, int nb)
{
	for (int l = 1; l < 16; l++)
		if ((cy - (nci * l < cy ? nci * l : cy)) * cx <= nb)
			return l;
	return 16;
}

template <int R, bool EXACT, int NQ> struct lf_geom {
	enum {
		OY = 16, NT = 32 * OY,
		HC = EXACT ? R : 0,
		IX = 32 + 2 * (R + HC), IY = OY + 2 * (R + HC), /* input region */
		CX = 32 + 2 * HC, CY = OY + 2 * HC,             /* coefficient region */
		/* stage B items (LB columns of a row), on the first NBW threads */
		LB = 4, NSB = (CX + LB - 1) / LB, NB = IY * NSB, NBW = (NB + 31) / 32 * 32,
		IXP = (NSB * LB + 2 * R) | 1, /* staged row stride: odd, covers the last segment's reads */
		CXP = CX | 1,
		LD = 8, NSD = 32 / LD, ND = NQ * NSD * CY, /* stage D items */
		DXP = 33,
		NS = 2 * R + 1,
		NA = (IX * IY + NT - 1) / NT, /* staged columns per thread */
		NTAB = NS * NS * NS + 1,
		/* shared memory in 4-byte words: X (two buffers), 1/n, staging
		 * (two buffers; one for the exact gradient, staged in phase 2),
		 * coefficients, their x sums, the ring.  The staged values are
		 * doubles, shifted and converted once, where that fits the 227
		 * KiB of an H100 or H200 block, else floats. */
		NFS = EXACT ? 1 : 2,
		W_X = 2 * 2 * 5 * IY * CXP, W_TAB = 2 * NTAB, W_FS1 = 4 * IY * IXP,
		W_CS = EXACT ? NQ * CY * CXP : 0, W_DS = EXACT ? 2 * NQ * CY * DXP : 0, W_RING = EXACT ? NS * NQ * NT : 0,
		W_REST = W_X + W_TAB + W_DS + W_CS + W_RING,
		SD = W_REST + 2 * NFS * W_FS1 <= 232448 / 4,
		W_FS = NFS * W_FS1 * (SD ? 2 : 1),
		WORDS = W_REST + W_FS,
		/* stage C: NSC items of LC rows a column (rows [0, RC)) on the
		 * threads after B's.  Where B's staging is floats (B converts and
		 * multiplies: the longer path) and both gradients are wanted
		 * (SPLIT), the rows left (N1) go one a thread to B's threads after
		 * their B item, LC the fewest rows whose leftover they can take:
		 * k = 7 gm+gf 1.64 -> 1.20 ms.  Elsewhere that split was slower
		 * (k = 5 gm+gf 0.89 -> 0.93, k = 7 gm 0.98 -> 1.02, k = 5 gm 0.74
		 * -> 0.81: spills, B's sums live across the row), so C takes the
		 * fewest rows that fit beside B, at least 3 (k = 3 and 5: 3,
		 * k = 7: 5; 2 at k = 3 gained nothing). */
		NCI = (NT - NBW) / CX, SPLIT = EXACT && NQ == 5 && !SD, LC0 = lf_pick_lc(CY, CX, NCI, 0),
		LC = !EXACT ? 2 : SPLIT ? lf_pick_lc(CY, CX, NCI, NB) : LC0 > 3 ? LC0 : 3,
		NSC = SPLIT && NCI < (CY + LC - 1) / LC ? NCI : (CY + LC - 1) / LC, NC = CX * NSC,
		RC = NSC * LC < CY ? NSC * LC : CY, N1 = (CY - RC) * CX,
		/* stage C skips flat steps (the header's "Flat windows"), but in
		 * the exact kernels only at k = 5 (the presets'): elsewhere its
		 * branch made spills (k = 7: 0 -> 8 bytes, +7 % on dense images;
		 * k = 3: 0 -> 4); their flat blocks still leave at once */
		CFLAT = !EXACT || R == 2,
	};
};

/* f's loads as raw bits (a float's, or a unorm16 in the low half), turned
 * into values only where they are used: a conversion next to its load
 * made the thread wait for the load before the step's barrier, which cost
 * the unorm16 kernel 23 % (k = 5, 256^3: 0.983 against 0.802 ms). */
template <bool F16> static __device__ __forceinline__ uint32_t lf_fraw_at(const lncc_k &k, int64_t p, int o)
{
	return F16 ? (uint32_t)__ldg(k.f16 + p + o) : __float_as_uint(__ldg(k.f + p + o));
}

/* The same at voxel v (lf_fraw_at: offset o of plane p, the step's loads:
 * one 64-bit plane address, then 32-bit offsets). */
template <bool F16> static __device__ __forceinline__ uint32_t lf_fraw(const lncc_k &k, int64_t v)
{
	return lf_fraw_at<F16>(k, v, 0);
}

template <bool F16> static __device__ __forceinline__ float lf_fval(uint32_t b)
{
	return F16 ? cu_val((uint16_t)b) : __uint_as_float(b);
}

template <bool D> struct lf_stage_type {
	typedef float t; /* f and m as they are */
};
template <> struct lf_stage_type<true> {
	typedef double t; /* f - cf and m - cm */
};

/* One staged column of stage B: the five products' change P(pa) - P(ps). */
template <typename T>
static __device__ __forceinline__ void lf_diff(const T *fa, const T *ma, const T *fs, const T *ms, int i, double cf,
					       double cm, double d[5])
{
	const double sf = sizeof(T) == 8 ? 0.0 : cf, sm = sizeof(T) == 8 ? 0.0 : cm;
	const double a1 = (double)fa[i] - sf, b1 = (double)ma[i] - sm;
	const double a0 = (double)fs[i] - sf, b0 = (double)ms[i] - sm;
	d[0] = a1 - a0, d[1] = b1 - b0;
	d[2] = fma(a1, a1, -(a0 * a0)), d[3] = fma(b1, b1, -(b0 * b0)), d[4] = fma(a1, b1, -(a0 * b0));
}

/* Voxels of the window along one axis, in 32 bits (the kernel's step
 * bookkeeping is int: 64-bit step and plane arithmetic had been 15 % of
 * its instructions, on the uniform datapath).  At least 1: stage C also
 * evaluates the tile's positions past the image's far edge (weight 0),
 * whose windows can miss the image altogether; a count of 0 or less there
 * indexed 1/n's table out of range, and garbage in shared memory made an
 * occasional NaN loss (and could have made a NaN gradient). */
static __device__ __forceinline__ int lf_count(int i, int n, int r)
{
	const int lo = i - r < 0 ? 0 : i - r, hi = i + r > n - 1 ? n - 1 : i + r;
	return hi - lo + 1 > 1 ? hi - lo + 1 : 1;
}

/* Stage B: row bi, columns [bx, bx + LB): x running sums of the change
 * of staged planes fb, added to the z-windowed sums xz and published to x. */
template <class G, int R, typename T>
static __device__ __forceinline__ void lf_stage_b(const T *fb, double *x, double xz[][5], int bi, int bx,
						  double cf, double cm)
{
	const int w = G::IY * G::IXP;
	const T *fa = fb + bi * G::IXP + bx, *ma = fa + w, *fs = ma + w, *ms = fs + w;
	double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0}, d[5], e[5];
#pragma unroll
	for (int i = 0; i <= 2 * R; i++) {
		lf_diff(fa, ma, fs, ms, i, cf, cm, d);
#pragma unroll
		for (int q = 0; q < 5; q++)
			acc[q] += d[q];
	}
#pragma unroll
	for (int j = 0; j < G::LB; j++) {
		if (j) {
			lf_diff(fa, ma, fs, ms, j + 2 * R, cf, cm, d);
			lf_diff(fa, ma, fs, ms, j - 1, cf, cm, e);
#pragma unroll
			for (int q = 0; q < 5; q++)
				acc[q] += d[q] - e[q];
		}
		if (bx + j < G::CX)
#pragma unroll
			for (int q = 0; q < 5; q++) {
				xz[j][q] += acc[q];
				x[(q * G::IY + bi) * G::CXP + bx + j] = xz[j][q];
			}
	}
}

/* A block's output tile (x0, y0), chunk [z0, z1) and the planes whose
 * cc it computes, [pc_lo, pc_hi] (both kernels below). */
struct lf_blk {
	int x0, y0, z0, z1, pc_lo, pc_hi;
};

template <class G> static __device__ __forceinline__ lf_blk lf_block(const lncc_k &k)
{
	const int nz = (int)k.nz, chunk = (int)(blockIdx.x / k.ntiles);
	const int tile = (int)(blockIdx.x - chunk * k.ntiles), ty = tile / (int)k.ntx, tx = tile - ty * (int)k.ntx;
	lf_blk b;
	b.x0 = tx * 32, b.y0 = ty * G::OY;
	b.z0 = chunk * (int)k.zc, b.z1 = b.z0 + (int)k.zc < nz ? b.z0 + (int)k.zc : nz;
	b.pc_lo = b.z0 - G::HC > 0 ? b.z0 - G::HC : 0, b.pc_hi = b.z1 - 1 + G::HC;
	return b;
}

/* Staged column i of the input region: its offset in a plane, -1 outside
 * the image or the region. */
template <class G, int R> static __device__ __forceinline__ int lf_aoff(const lncc_k &k, const lf_blk &b, int i)
{
	const int iy = i / G::IX, ix = i - iy * G::IX;
	const int gx = b.x0 - R - G::HC + ix, gy = b.y0 - R - G::HC + iy;
	return i < G::IX * G::IY && gx >= 0 && gx < (int)k.nx && gy >= 0 && gy < (int)k.ny ? gy * (int)k.nx + gx : -1;
}

/* flat[b] = whether f is 0 on block b's input region at every plane its
 * windows read (the header's "Flat windows"): eight planes' loads in
 * flight a barrier, from the middle plane out, so most blocks of a brain
 * stop at the first.  A kernel of its own: inside lncc_fixed_kernel the
 * scan made the exact kernels spill (k = 7: 4 -> 28 bytes, 11 %). */
template <int R, int NQ, bool EXACT, bool F16>
static __global__ void __launch_bounds__(lf_geom<R, EXACT, NQ>::NT) lf_flat_kernel(lncc_k k, uint8_t *flat)
{
	typedef lf_geom<R, EXACT, NQ> G;
	const lf_blk b = lf_block<G>(k);
	const int64_t np = k.nx * k.ny;
	int aoff[G::NA];
#pragma unroll
	for (int j = 0; j < G::NA; j++)
		aoff[j] = lf_aoff<G, R>(k, b, (int)threadIdx.x + j * G::NT);
	/* the planes of steps 0 .. nsteps - 1 (lncc_fixed_kernel's pa) */
	const int p0 = b.pc_lo - 1 - R > 0 ? b.pc_lo - 1 - R : 0;
	const int p1 = b.pc_hi + R < (int)k.nz ? b.pc_hi + R : (int)k.nz - 1;
	const int ng = (p1 - p0 + 8) / 8, mid = ng / 2;
	bool any = false;
	for (int i = 0; i < ng && !any; i++) {
		const int g = mid + i < ng ? mid + i : mid + i - ng;
		uint32_t o = 0;
#pragma unroll
		for (int u = 0; u < 8; u++) {
			const int p = p0 + 8 * g + u;
#pragma unroll
			for (int j = 0; j < G::NA; j++)
				if (p <= p1 && aoff[j] >= 0)
					o |= lf_fraw_at<F16>(k, p * np, aoff[j]);
		}
		any = __syncthreads_or((F16 ? o : o & 0x7fffffffu) != 0u);
	}
	if (threadIdx.x == 0)
		flat[blockIdx.x] = !any;
}

template <int R, int NQ, bool EXACT, bool F16>
static __global__ void __launch_bounds__(lf_geom<R, EXACT, NQ>::NT, 1) lncc_fixed_kernel(lncc_k k)
{
	typedef lf_geom<R, EXACT, NQ> G;
	static_assert(G::NBW + G::NC <= G::NT, "stage B and C items side by side");
	static_assert(G::N1 <= G::NB && (G::SPLIT || !G::N1), "stage C's single rows on B's threads");
	static_assert(G::ND <= G::NT, "one stage D item per thread");
	extern __shared__ double lf_smem[];
	double *xbuf = lf_smem, *tab = xbuf + 2 * 5 * G::IY * G::CXP;
	typedef typename lf_stage_type<G::SD>::t T;
	double *ds = tab + G::NTAB;
	T *stage = (T *)(ds + G::W_DS / 2);
	float *cs = (float *)(ds + G::W_DS / 2) + G::W_FS, *ring = cs + G::W_CS;
	const int t = threadIdx.x, nx = (int)k.nx, ny = (int)k.ny;
	const int nz = (int)k.nz, oz0 = (int)k.oz0, oz1 = (int)k.oz1; /* nz < 2^30: lncc_launch */
	const int64_t np = k.nx * k.ny;
	const lf_blk blk = lf_block<G>(k);
	const int x0 = blk.x0, y0 = blk.y0, z0 = blk.z0, z1 = blk.z1;
	double lsum = 0.0;

	if (!G::SPLIT && k.flat && k.flat[blockIdx.x]) {
		/* no window of this block sees a non-zero f: zeros, no march */
		const int ex = x0 + (t & 31), ey = y0 + (t >> 5);
		const int za = z0 > oz0 ? z0 : oz0, zb = z1 < oz1 ? z1 : oz1;
		for (int z = za; NQ && ex < nx && ey < ny && z < zb; z++) {
			const int64_t v = z * np + (int64_t)ey * nx + ex;
			k.gm[v] = 0.0f;
			if (NQ == 5)
				k.gf[v] = 0.0f;
		}
		if (t == 0)
			k.part[blockIdx.x] = 0.0;
		return;
	}

	/* the shift: one voxel of this tile */
	const int64_t vref = ((int64_t)z0 * ny + (y0 + G::OY / 2 < ny ? y0 + G::OY / 2 : ny - 1)) * nx +
			     (x0 + 16 < nx ? x0 + 16 : nx - 1);
	const uint32_t cfraw = lf_fraw<F16>(k, vref);
	const float cff = lf_fval<F16>(cfraw), cmf = k.m[vref];
	const double cf = cff, cm = cmf;

	for (int i = t; i < G::NTAB; i += G::NT)
		tab[i] = i ? 1.0 / i : 0.0;
	for (int i = t; i < G::W_RING; i += G::NT)
		ring[i] = 0.0f;

	/* stage A: this thread's staged columns (offset in the plane, -1 outside) */
	int aoff[G::NA], aidx[G::NA];
	uint32_t cur[G::NA][4]; /* f's raw bits (lf_fraw), m's float bits */
	int curnz = 0;          /* the stored step's plane pa has a non-zero f here */
#pragma unroll
	for (int j = 0; j < G::NA; j++) {
		const int i = t + j * G::NT, iy = i / G::IX, ix = i - iy * G::IX;
		aidx[j] = i < G::IX * G::IY ? iy * G::IXP + ix : -1;
		aoff[j] = lf_aoff<G, R>(k, blk, i);
	}
	const int pc_lo = blk.pc_lo, pc_hi = blk.pc_hi;
	const int nsteps = G::NS + pc_hi - pc_lo + 1;
	/* step s adds plane pc(s) + R and removes pc(s) - R - 1; the first NS
	 * (warm-up) steps add the window of plane pc_lo - 1 */
	auto pa_of = [&](int s) { return s < G::NS ? pc_lo - 1 - R + s : pc_lo + s - G::NS + R; };
	auto load = [&](int s) {
		const int pa = pa_of(s);
		const int ps = s < G::NS ? -1 : pa - 2 * R - 1;
		const bool aok = pa >= 0 && pa < nz, sok = ps >= 0 && ps < nz;
		const int64_t fa = (aok ? pa : 0) * np, fs = (sok ? ps : 0) * np;
		const float *ma = k.m + fa, *ms = k.m + fs;
#pragma unroll
		for (int j = 0; j < G::NA; j++) {
			const int o = aoff[j];
			cur[j][0] = aok && o >= 0 ? lf_fraw_at<F16>(k, fa, o) : cfraw;
			cur[j][1] = __float_as_uint(aok && o >= 0 ? __ldg(ma + o) : cmf);
			cur[j][2] = sok && o >= 0 ? lf_fraw_at<F16>(k, fs, o) : cfraw;
			cur[j][3] = __float_as_uint(sok && o >= 0 ? __ldg(ms + o) : cmf);
		}
	};
	uint32_t hf = 0; /* bit i: step s - i's plane has a non-zero f (bit 0 from the last barrier) */
	auto store = [&](int s) {
		T *fb = stage + (s % G::NFS) * 4 * G::IY * G::IXP;
		/* the flags here, not at the load: a use next to the load would
		 * wait for it (as the unorm16 conversion did, above) */
		const int pa = pa_of(s);
		const bool aok = pa >= 0 && pa < nz;
		uint32_t fo = 0; /* OR of the added voxels' f bits */
#pragma unroll
		for (int j = 0; j < G::NA; j++)
			if (aok && aoff[j] >= 0)
				fo |= cur[j][0];
		curnz = (F16 ? fo : fo & 0x7fffffffu) != 0u;
#pragma unroll
		for (int j = 0; j < G::NA; j++)
			if (aidx[j] >= 0)
#pragma unroll
				for (int c = 0; c < 4; c++) {
					const float x = c & 1 ? __uint_as_float(cur[j][c]) : lf_fval<F16>(cur[j][c]);
					fb[c * G::IY * G::IXP + aidx[j]] = G::SD ? (T)((double)x - (c & 1 ? cm : cf)) : (T)x;
				}
	};

	/* stage B item (threads below NBW): row bi, columns [bx, bx + LB) */
	const bool is_b = t < G::NB;
	const int bi = t % G::IY, bx = t / G::IY * G::LB;
	double xz[G::LB][5];
#pragma unroll
	for (int j = 0; j < G::LB; j++)
#pragma unroll
		for (int q = 0; q < 5; q++)
			xz[j][q] = 0.0;

	/* stage C item (threads NBW ...): column ci, rows [cy0, cy0 + LC) */
	const int tc = t - G::NBW;
	const bool is_c = tc >= 0 && tc < G::NC;
	const int ci = is_c ? tc % G::CX : 0, cy0 = is_c ? tc / G::CX * G::LC : 0;
	const int cgx = x0 - G::HC + ci; /* (the ANTs gradient's prefetch) */

	/* stage E: output voxel (ex, ey) of the tile; z sums of the coefficients */
	const int ex = x0 + (t & 31), ey = y0 + (t >> 5);
	const bool eout = ex < nx && ey < ny;
	double zacc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
	int slot = 0;

	/* f and m at the voxels of the next gradient (E's voxel, or C's column) */
	uint32_t gfv[EXACT ? 1 : G::LC]; /* raw bits, as cur */
	float gmv[EXACT ? 1 : G::LC];
	auto load_g = [&](int u) {
		const int pg = EXACT ? pc_lo + u - G::NS - R : pc_lo + u - G::NS;
		const bool pok = NQ && u >= G::NS && u < nsteps && pg >= 0 && pg < nz;
#pragma unroll
		for (int j = 0; j < (EXACT ? 1 : G::LC); j++) {
			const int gx = EXACT ? ex : cgx, gy = EXACT ? ey : y0 + cy0 + j;
			const bool ok = pok && gx >= 0 && gx < nx && gy >= 0 && gy < ny && (EXACT || is_c);
			const int64_t v = (pok ? pg : 0) * np + (int64_t)gy * nx + gx;
			gfv[j] = ok ? lf_fraw<F16>(k, v) : 0u; /* 0: 0.0f either way */
			gmv[j] = ok ? __ldg(k.m + v) : 0.0f;
		}
	};

	/* Stage C, column ci, rows [cy0, cy0 + NR) of step uc (plane pc): y
	 * running sums of X, cc (the loss) and the coefficients (exact: to
	 * cs) or ANTs' gradient (the prefetched gfv, gmv of this thread's C
	 * item). */
	auto c_item = [&](int uc, int pc, int ci, int cy0, auto nrows, bool flat) {
		constexpr int NR = decltype(nrows)::value;
		const int cgx = x0 - G::HC + ci, cntx = lf_count(cgx, nx, R);
		const bool cxin = cgx < nx && cgx >= 0, cxtile = ci >= G::HC && ci < G::HC + 32;
		const bool inside = pc < nz;
		if (flat) { /* cc and the coefficients are 0 (the header) */
#pragma unroll
			for (int j = 0; j < NR; j++) {
				const int gy = y0 - G::HC + cy0 + j;
				if (cy0 + j >= G::CY)
					break;
				if (EXACT) {
#pragma unroll
					for (int q = 0; q < NQ; q++)
						cs[(q * G::CY + cy0 + j) * G::CXP + ci] = 0.0f;
				} else if (NQ && inside && cxin && gy >= 0 && gy < ny && pc >= oz0 && pc < oz1) {
					const int64_t v = pc * np + (int64_t)gy * nx + cgx;
					k.gm[v] = 0.0f;
					if (NQ == 5)
						k.gf[v] = 0.0f;
				}
			}
			return;
		}
		const bool in_loss = pc >= z0 && pc < z1 && pc >= oz0 && pc < oz1;
		const int cz = lf_count(pc, nz, R);
		const double *col = xbuf + (uc & 1) * 5 * G::IY * G::CXP + cy0 * G::CXP + ci;
		const int qs = G::IY * G::CXP;
		double sm[5];
#pragma unroll
		for (int q = 0; q < 5; q++) {
			double a = col[q * qs];
#pragma unroll
			for (int i = 1; i <= 2 * R; i++)
				a += col[q * qs + i * G::CXP];
			sm[q] = a;
		}
		/* the mask's offset of row j: wrow + j nx (no 64-bit index a row) */
		const int64_t wrow = pc * np + (int64_t)(y0 - G::HC + cy0) * nx + cgx;
#pragma unroll
		for (int j = 0; j < NR; j++) {
			if (cy0 + j >= G::CY)
				break;
			if (j)
#pragma unroll
				for (int q = 0; q < 5; q++)
					sm[q] += col[q * qs + (j + 2 * R) * G::CXP] - col[q * qs + (j - 1) * G::CXP];
			const int gy = y0 - G::HC + cy0 + j;
			const bool ok = inside && cxin && gy >= 0 && gy < ny;
			const bool ytile = cy0 + j >= G::HC && cy0 + j < G::HC + G::OY;
			if (EXACT) {
				/* every row computed (its sums are finite, its counts >= 1:
				 * lf_count), w = 0 off the image: no branch, no zeroing of c */
				const double inv = tab[cntx * lf_count(gy, ny, R) * cz];
				const double w = !ok ? 0.0 : k.w ? (double)__ldg(k.w + wrow + (int64_t)j * nx) : 1.0;
				double c[5];
				const double cc = ln_cc<NQ>(sm, inv, k.eps, w, c);
				if (in_loss && cxtile && ytile)
					lsum += w * cc;
#pragma unroll
				for (int q = 0; q < NQ; q++)
					cs[(q * G::CY + cy0 + j) * G::CXP + ci] = (float)c[q];
				continue;
			}
			double c[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
			if (ok) {
				const int64_t v = pc * np + (int64_t)gy * nx + cgx;
				const double inv = tab[cntx * lf_count(gy, ny, R) * cz];
				const double w = k.w ? (double)__ldg(k.w + v) : 1.0;
				const double cc = ln_cc<NQ>(sm, inv, k.eps, w, c);
				if (in_loss && cxtile && ytile)
					lsum += w * cc;
				if (NQ && pc >= oz0 && pc < oz1)
					ln_ants_grad<NQ>(k, v, (double)lf_fval<F16>(gfv[EXACT ? 0 : j]) - cf,
							 (double)gmv[EXACT ? 0 : j] - cm, c);
			}
		}
	};

	load(0);
	store(0);
	if (nsteps > 1)
		load(1);
	hf = __syncthreads_or(curnz) != 0;
	/* Step s, phase 1: B(s), C(s - 1), E(s - 2); phase 2 (exact): D(s - 1),
	 * staging of step s + 1.  Buffers: staging and X by step parity. */
	for (int s = 0; s < nsteps + (EXACT ? 2 : 1); s++) {
		/* C(s - 1)'s window: the planes of steps s - 1 - 2R .. s - 1 */
		const bool flat = G::CFLAT && !(hf & ((1u << (2 * R + 1)) - 1u) << 1);
		if (is_b && s < nsteps)
			lf_stage_b<G, R, T>(stage + (s % G::NFS) * 4 * G::IY * G::IXP, xbuf + (s & 1) * 5 * G::IY * G::CXP, xz, bi,
					 bx, cf, cm);
		const int uc = s - 1, pc = pc_lo + uc - G::NS; /* C's step and plane */
		if (uc >= G::NS && uc < nsteps) {
			if (is_c)
				c_item(uc, pc, ci, cy0, std::integral_constant<int, G::LC>(), flat);
			if (G::SPLIT && t < G::N1)
				c_item(uc, pc, t % G::CX, G::RC + t / G::CX, std::integral_constant<int, 1>(), flat);
		}
		const int ue = s - 2; /* E's step */
		if (EXACT && ue >= G::NS && ue < nsteps) {
			const int lx = t & 31, ly = t >> 5;
#pragma unroll
			for (int q = 0; q < NQ; q++) {
				double y = 0.0;
#pragma unroll
				for (int i = 0; i <= 2 * R; i++)
					y += ds[(q * G::CY + ly + i) * G::DXP + lx];
				float *rp = ring + (slot * NQ + q) * G::NT + t;
				const float yr = (float)y; /* the ring's one rounding */
				zacc[q] += (double)yr - (double)*rp;
				*rp = yr;
			}
			slot = slot + 1 < G::NS ? slot + 1 : 0;
			const int pg = pc_lo + ue - G::NS - R;
			if (eout && pg >= z0 && pg < z1 && pg >= oz0 && pg < oz1) {
				const int64_t v = pg * np + (int64_t)ey * nx + ex;
				const double df = (double)lf_fval<F16>(gfv[0]) - cf, dm = (double)gmv[0] - cm;
				k.gm[v] = (float)(k.gscale * (df * zacc[0] - dm * zacc[1] + zacc[2]));
				if (NQ == 5)
					k.gf[v] = (float)(k.gscale * (dm * zacc[0] - df * zacc[3] + zacc[4]));
			}
		}
		if (EXACT) {
			__syncthreads();
			/* D: x running sums of the coefficients of step s - 1, in
			 * double (float sums would add roundings to the one of
			 * the coefficients, and a float running sum would keep
			 * that of a large coefficient after it left the window) */
			if (t < G::ND && uc >= G::NS && uc < nsteps) {
				const int y = t % G::CY, rest = t / G::CY, sd = rest % G::NSD, q = rest / G::NSD;
				const float *src = cs + (q * G::CY + y) * G::CXP + sd * G::LD;
				double *dst = ds + (q * G::CY + y) * G::DXP + sd * G::LD, a = 0.0;
#pragma unroll
				for (int i = 0; i <= 2 * R; i++)
					a += (double)src[i];
				dst[0] = a;
#pragma unroll
				for (int j = 1; j < G::LD; j++) {
					a += (double)src[j + 2 * R] - (double)src[j - 1];
					dst[j] = a;
				}
			}
		}
		/* staging of step s + 1 (its buffer was last read by B(s - 1), or
		 * by B(s) before the barrier above) */
		curnz = 0;
		if (s + 1 < nsteps) {
			store(s + 1);
			if (s + 2 < nsteps)
				load(s + 2);
		}
		load_g(EXACT ? s - 1 : s); /* for the next E (exact) or C (ANTs) */
		hf = hf << 1 | (__syncthreads_or(curnz) != 0);
	}
	lsum = cu_tree_sum(lsum, xbuf); /* X is free after the last barrier */
	if (t == 0)
		k.part[blockIdx.x] = lsum;
}

typedef void (*lf_flat_fn)(lncc_k, uint8_t *);

/* The kernel for (r, coefficients, exact, f as unorm16), its shared
 * memory in bytes and its flat-block scan (NULL: the kernel reads no
 * flags); NULL when r is not 1..4.  f16 only with gm alone (nq 3:
 * greedy's loss; the caller makes floats otherwise). */
template <int R, int NQ, bool EXACT, bool F16> static void (*lf_one(size_t *smem, lf_flat_fn *flat))(lncc_k)
{
	*smem = (size_t)lf_geom<R, EXACT, NQ>::WORDS * 4;
	*flat = lf_geom<R, EXACT, NQ>::SPLIT ? NULL : lf_flat_kernel<R, NQ, EXACT, F16>;
	return lncc_fixed_kernel<R, NQ, EXACT, F16>;
}

template <int R> static void (*lf_mode(int nq, int exact, int f16, size_t *smem, lf_flat_fn *fl))(lncc_k)
{
	if (f16)
		return exact ? lf_one<R, 3, true, true>(smem, fl) : lf_one<R, 3, false, true>(smem, fl);
	if (!nq)
		return lf_one<R, 0, false, false>(smem, fl);
	if (exact)
		return nq == 5 ? lf_one<R, 5, true, false>(smem, fl) : lf_one<R, 3, true, false>(smem, fl);
	return nq == 5 ? lf_one<R, 5, false, false>(smem, fl) : lf_one<R, 3, false, false>(smem, fl);
}

static void (*lf_pick(int r, int nq, int exact, int f16, size_t *smem, lf_flat_fn *fl))(lncc_k)
{
	switch (r) {
	case 1: return lf_mode<1>(nq, exact, f16, smem, fl);
	case 2: return lf_mode<2>(nq, exact, f16, smem, fl);
	case 3: return lf_mode<3>(nq, exact, f16, smem, fl);
	case 4: return lf_mode<4>(nq, exact, f16, smem, fl);
	default: return NULL;
	}
}

#endif
