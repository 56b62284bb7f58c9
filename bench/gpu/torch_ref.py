"""Independent double-precision references for torch_ops.py (numpy loops).

Each reference follows ffdp's definition of the op (include/ffdp/ops.h),
not the PyTorch code: explicit corner loops for trilinear sampling with
zero padding, neighbour loops for the Jacobian, integral-image window sums
and finite differences for the LNCC and MI gradients, 7-bin Parzen windows
as ffdp's MI.  check_all runs every op of torch_ops at a small odd shape on
the given device and compares.
"""
import math

import numpy as np
import torch

import torch_ops as T

TOL_VALUE, TOL_GRAD = 1e-4, 2e-3


def np64(x):
	return x.detach().double().cpu().numpy()


# ---- trilinear, zero padded ---------------------------------------------------------

def tri(V, p):
	"""Value and d/dp at p = (x, y, z) of V [nz, ny, nx]; corners outside count 0."""
	nz, ny, nx = V.shape
	f = [math.floor(c) for c in p]
	t = [p[a] - f[a] for a in range(3)]
	val, grad = 0.0, np.zeros(3)
	for dz in (0, 1):
		for dy in (0, 1):
			for dx in (0, 1):
				x, y, z = f[0] + dx, f[1] + dy, f[2] + dz
				if not (0 <= x < nx and 0 <= y < ny and 0 <= z < nz):
					continue
				w = [t[a] if d else 1 - t[a] for a, d in enumerate((dx, dy, dz))]
				dw = [1.0 if d else -1.0 for d in (dx, dy, dz)]
				v = V[z, y, x]
				val += v * w[0] * w[1] * w[2]
				grad += v * np.array([dw[0] * w[1] * w[2], w[0] * dw[1] * w[2], w[0] * w[1] * dw[2]])
	return val, grad


def corners(shape, p):
	"""[(z, y, x, weight)] of the inside corners of p."""
	nz, ny, nx = shape
	f = [math.floor(c) for c in p]
	t = [p[a] - f[a] for a in range(3)]
	out = []
	for dz in (0, 1):
		for dy in (0, 1):
			for dx in (0, 1):
				x, y, z = f[0] + dx, f[1] + dy, f[2] + dz
				if 0 <= x < nx and 0 <= y < ny and 0 <= z < nz:
					w = 1.0
					for a, d in enumerate((dx, dy, dz)):
						w *= t[a] if d else 1 - t[a]
					out.append((z, y, x, w))
	return out


def voxels(shape):
	nz, ny, nx = shape
	for z in range(nz):
		for y in range(ny):
			for x in range(nx):
				yield z, y, x


def ref_sample(M, W, B, u):
	"""out, d out/dp per voxel, p per voxel; p = W [i; 1] (+ B u)."""
	shape = M.shape
	out, dp, P = np.zeros(shape), np.zeros(shape + (3,)), np.zeros(shape + (3,))
	for z, y, x in voxels(shape):
		p = W @ np.array([x, y, z, 1.0])
		if u is not None:
			p = p + B @ u[z, y, x]
		out[z, y, x], dp[z, y, x] = tri(M, p)
		P[z, y, x] = p
	return out, dp, P


def ref_compose(u, d, C):
	out = np.array(d)
	for z, y, x in voxels(d.shape[:3]):
		q = np.array([x, y, z], dtype=float) + C @ d[z, y, x]
		for c in range(3):
			out[z, y, x, c] += tri(u[..., c], q)[0]
	return out


def ref_jacobian(u, A, G):
	shape = u.shape[:3]
	out = np.zeros(shape)
	for z, y, x in voxels(shape):
		D = np.zeros((3, 3))
		i = (x, y, z)
		for k in range(3):
			n = shape[2 - k]
			lo, hi = max(i[k] - 1, 0), min(i[k] + 1, n - 1)
			a, b = list(i), list(i)
			a[k], b[k] = lo, hi
			D[:, k] = (u[b[2], b[1], b[0]] - u[a[2], a[1], a[0]]) / (hi - lo)
		out[z, y, x] = np.linalg.det(A + D @ G)
	return out


def ref_moments(x):
	w = np.maximum(x, 0)
	Z, Y, X = np.indices(x.shape, dtype=float)
	c = [X, Y, Z]
	pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
	return np.array([w.sum()] + [(w * c[a]).sum() for a in range(3)] +
			[(w * c[a] * c[b]).sum() for a, b in pairs])


def box_sum(v, r):
	"""Window sums over boxes of radius r clipped to the volume (integral image)."""
	S = np.zeros(tuple(n + 1 for n in v.shape))
	S[1:, 1:, 1:] = v.cumsum(0).cumsum(1).cumsum(2)
	lo = [np.clip(np.arange(n) - r, 0, n) for n in v.shape]
	hi = [np.clip(np.arange(n) + r + 1, 0, n) for n in v.shape]
	out = 0
	for sz, iz in ((1, hi[0]), (-1, lo[0])):
		for sy, iy in ((1, hi[1]), (-1, lo[1])):
			for sx, ix in ((1, hi[2]), (-1, lo[2])):
				out = out + sz * sy * sx * S[np.ix_(iz, iy, ix)]
	return out


def ref_lncc_loss(f, m, k=T.LNCC_K, eps=T.LNCC_EPS):
	r = k // 2
	n = box_sum(np.ones_like(f), r)
	sf, sm = box_sum(f, r), box_sum(m, r)
	cov = box_sum(f * m, r) - sf * sm / n
	vf = np.maximum(box_sum(f * f, r) - sf * sf / n, 0)
	vm = np.maximum(box_sum(m * m, r) - sm * sm / n, 0)
	return -np.mean(cov * cov / (vf * vm + eps))


def parzen(x, bins, lo, hi):
	"""ffdp's windows: bins b-3..b+3 around s, clipped to [0, bins), sum 1.
	Dense [N, bins] here for the reference's own convenience."""
	s = np.clip((x.ravel() - lo) * bins / (hi - lo), 0, bins)
	w = np.zeros((s.size, bins))
	for v, sv in enumerate(s):
		b = min(int(sv), bins - 1)
		for j in range(max(b - 3, 0), min(b + 4, bins)):
			w[v, j] = math.exp(-0.5 * ((sv - j - 0.5) / 0.5) ** 2)
		w[v] /= w[v].sum()
	return w


def ref_mi_loss(f, m, bins=T.MI_BINS, lo=T.MI_LO, hi=T.MI_HI):
	wf, wm = parzen(f, bins, lo, hi), parzen(m, bins, lo, hi)
	p = wf.T @ wm / f.size
	pf, pm = p.sum(1), p.sum(0)
	nz = p > 0
	return -(p[nz] * np.log(p[nz] / np.outer(pf, pm)[nz])).sum()


def fd_grad(loss, f, m, h=1e-6):
	"""d loss(f, m) / dm by central differences, voxel by voxel."""
	g = np.zeros_like(m)
	for idx in np.ndindex(m.shape):
		mp, mm = m.copy(), m.copy()
		mp[idx] += h
		mm[idx] -= h
		g[idx] = (loss(f, mp) - loss(f, mm)) / (2 * h)
	return g


def ref_smooth(x, sigma, renormalize):
	"""x [c, nz, ny, nx], separable, taps looped explicitly."""
	r = math.ceil(T.SMOOTH_TRUNCATE * sigma)
	k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
	k /= k.sum()
	for axis in (1, 2, 3):
		n = x.shape[axis]
		y = np.zeros_like(x)
		for i in range(n):
			acc, mass = 0, 0.0
			for t in range(-r, r + 1):
				if 0 <= i + t < n:
					acc = acc + k[t + r] * np.take(x, i + t, axis=axis)
					mass += k[t + r]
			sl = [slice(None)] * 4
			sl[axis] = i
			y[tuple(sl)] = acc / mass if renormalize else acc
		x = y
	return x


def ref_adam_direction(m, v):
	bc1, bc2 = 1 - T.ADAM_B1 ** T.ADAM_T, 1 - T.ADAM_B2 ** T.ADAM_T
	return (m / bc1) / (np.sqrt(v / bc2) + T.ADAM_EPS)


# ---- checks: (torch result, reference) pairs, each with its tolerance ----------------

def chk_sample(st, res, with_u):
	ref, _, _ = ref_sample(np64(st["M"])[0, 0], np64(st["W"]), np64(st["B"]), np64(st["u"]) if with_u else None)
	return [("out", np64(res)[0, 0], ref, TOL_VALUE)]


def chk_fwd_bwd_u(st, res):
	out, dp, _ = ref_sample(np64(st["M"])[0, 0], np64(st["W"]), np64(st["B"]), np64(st["u"]))
	gu = np64(st["g"])[0, 0][..., None] * (dp @ np64(st["B"]))
	return [("out", np64(res[0])[0, 0], out, TOL_VALUE), ("gu", np64(res[1]), gu, TOL_GRAD)]


def chk_bwd_W_M(st, res):
	M, W, g = np64(st["M"])[0, 0], np64(st["W"]), np64(st["g"])[0, 0]
	_, dp, P = ref_sample(M, W, None, None)
	gW, gM = np.zeros((3, 4)), np.zeros_like(M)
	for z, y, x in voxels(M.shape):
		gW += np.outer(g[z, y, x] * dp[z, y, x], [x, y, z, 1.0])
		for cz, cy, cx, w in corners(M.shape, P[z, y, x]):
			gM[cz, cy, cx] += g[z, y, x] * w
	return [("gW", np64(res[0]), gW, TOL_GRAD), ("gM", np64(res[1])[0, 0], gM, TOL_GRAD)]


def chk_compose(st, res):
	return [("out", np64(res), ref_compose(np64(st["u"]), np64(st["d"]), np64(st["C"])), TOL_VALUE)]


def chk_jacobian(st, res):
	return [("det", np64(res), ref_jacobian(np64(st["u"]), np64(st["A"]), np64(st["G"])), TOL_VALUE)]


def chk_moments(st, res):
	return [("moments", np64(res), ref_moments(np64(st["x"])), TOL_VALUE)]


def chk_loss(st, res, loss):
	f, m = np64(st["f"])[0, 0], np64(st["m"])[0, 0]
	return [("loss", np.array(res[0]), np.array(loss(f, m)), TOL_VALUE),
		("gm", np64(res[1])[0, 0], fd_grad(loss, f, m), TOL_GRAD)]


def chk_smooth(st, res, renormalize):
	return [("out", np64(res)[0], ref_smooth(np64(st["x"])[0], T.SMOOTH_SIGMA, renormalize), TOL_VALUE)]


def adam_moments_ref(st):
	g, m, v = np64(st["g"]), np64(st["m"]), np64(st["v"])
	m = T.ADAM_B1 * m + (1 - T.ADAM_B1) * g
	v = T.ADAM_B2 * v + (1 - T.ADAM_B2) * g * g
	return m, v


def chk_adam(st, res, before):
	m, v = before
	mn = np.linalg.norm(ref_adam_direction(m, v), axis=-1).max()
	return [("m", np64(st["m"]), m, TOL_VALUE), ("v", np64(st["v"]), v, TOL_VALUE),
		("max_norm", np.array(res), np.array(mn), TOL_VALUE)]


def warp_ref(st, compose):
	u, m, v = np64(st["u"]), np64(st["m"]), np64(st["v"])
	delta = T.WARP_STEP * ref_adam_direction(m, v)
	return ref_compose(u, delta, np64(st["C"])) if compose else u + delta


# name -> (reference computed before the run (inputs may be updated in place), check)
CHECKS = {
	"sample fwd, affine": (None, lambda st, r, _: chk_sample(st, r, False)),
	"sample fwd, +u": (None, lambda st, r, _: chk_sample(st, r, True)),
	"sample fwd+bwd to u": (None, lambda st, r, _: chk_fwd_bwd_u(st, r)),
	"sample bwd to W, M": (None, lambda st, r, _: chk_bwd_W_M(st, r)),
	"compose": (None, lambda st, r, _: chk_compose(st, r)),
	"jacobian det": (None, lambda st, r, _: chk_jacobian(st, r)),
	"moments": (None, lambda st, r, _: chk_moments(st, r)),
	"mse fwd+bwd": (None, lambda st, r, _: chk_loss(st, r, lambda f, m: np.mean((f - m) ** 2))),
	"lncc k7 exact fwd+bwd": (None, lambda st, r, _: chk_loss(st, r, ref_lncc_loss)),
	"mi 32 fwd+bwd": (None, lambda st, r, _: chk_loss(st, r, ref_mi_loss)),
	"smooth scalar s=1": (None, lambda st, r, _: chk_smooth(st, r, True)),
	"smooth vec s=1": (None, lambda st, r, _: chk_smooth(st, r, False)),
	"adam moments": (adam_moments_ref, chk_adam),
	"warp step add": (lambda st: warp_ref(st, False), lambda st, r, b: [("u", np64(r), b, TOL_VALUE)]),
	"warp step compose": (lambda st: warp_ref(st, True), lambda st, r, b: [("u", np64(r), b, TOL_VALUE)]),
}


def rel_err(a, b):
	a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
	if a.shape != b.shape:
		return math.inf
	scale = max(np.abs(b).max(), 1e-30)
	return float(np.abs(a - b).max() / scale) if a.size else 0.0


def check_op(op, shape, dev):
	"""(ok, worst relative error, what) for one op; exceptions propagate."""
	name, _, setup, prepare, run = op
	gen = torch.Generator(device=dev)
	gen.manual_seed(12345)
	st = setup(shape, dev, gen)
	before_fn, check = CHECKS[name]
	before = before_fn(st) if before_fn else None
	if prepare:
		prepare(st)
	res = run(st)
	worst, what, ok = 0.0, "", True
	for label, got, ref, tol in check(st, res, before):
		e = rel_err(got, ref)
		if e > tol or not np.isfinite(e):
			ok = False
		if e >= worst or not np.isfinite(e):
			worst, what = e, label
	return ok, worst, what


def check_all(ops, shape, dev, out):
	"""Check every op that has a PyTorch version; return the names that failed."""
	bad = set()
	for op in ops:
		name = op[0]
		if isinstance(op[4], str):
			continue
		try:
			ok, err, what = check_op(op, shape, dev)
			out("check\t%s\t%s\t%.2e\t%s at %dx%dx%d" % (name, "ok" if ok else "FAILED", err, what,
								    shape[2], shape[1], shape[0]))
		except Exception as e:  # noqa: BLE001
			ok = False
			out("check\t%s\tFAILED\t-\t%s: %s" % (name, type(e).__name__, T.one_line(e)))
		if not ok:
			bad.add(name)
	return bad
