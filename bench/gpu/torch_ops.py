#!/usr/bin/env python3
"""Plain-PyTorch baselines for the ops of bench_ops_gpu (ffdp issue #5).

For each op of bench_ops_gpu.c that has a natural PyTorch form, the version a
researcher would write (float32, autograd for gradients), timed like
bench_ops_gpu: CUDA-event median of 10 runs after 3 warm-ups, same shapes.
Every version is first checked against an independent double-precision
numpy reference (torch_ref.py) at a small odd shape on the same device; an
op whose check fails is not timed.

usage: torch_ops.py [--device cuda|cpu] [--sizes N ...] [--ops SUBSTR ...]
                    [--check-shape NX,NY,NZ] [--no-check] [--table FILE]

An op runs at the sizes listed for it (as in bench_ops_gpu) that are among
--sizes; a size listed for no op at all (e.g. 32) runs every op: a smoke test.

Output, one line per op and size, tab-separated:
    torch <op name as bench_ops_gpu prints it> <n> <ms> <peak MiB>
    torch <op> <n> failed: <reason>      (or skipped: <reason>)
    check <op> ok|FAILED <max error> <what>
and a human-readable table at the end (also written to --table).  Peak MiB
= torch.cuda.max_memory_allocated over the 10 timed runs minus what was
allocated once the inputs existed: it includes the outputs and the gradient
tensors (bench_ops_gpu writes into buffers allocated with its inputs),
autograd's saved tensors and any cached grid; "-" on the CPU.
Exit status: 1 when a check failed or CUDA is missing, else 0 (an op that
runs out of memory is reported, not fatal).

Data: uniform random values in the ranges bench_ops_gpu uses (images in
[0, 1), displacements in [-2, 2) mm, second moments in [0.5, 1)), from
torch's generator rather than bench_ops_gpu's LCG: the same distribution,
not the same bits.  Layouts: images [1, 1, nz, ny, nx]; displacement fields
channel-last [nz, ny, nx, 3] with components (x, y, z), the grid_sample and
FireANTs convention; fields that are only smoothed are [1, 3, nz, ny, nx]
(three planes, like ffdp's ffdp_vec).
"""
import argparse
import math
import statistics
import sys
import time

try:
	import torch
	import torch.nn.functional as F
except ImportError:
	print("torch_ops.py: PyTorch is not installed (python3 -c 'import torch' fails)", file=sys.stderr)
	sys.exit(1)

# ---- the arguments bench_ops_gpu.c passes -----------------------------------------

W_OBLIQUE = [[1.02, 0.03, -0.02, 0.7], [-0.03, 0.99, 0.04, -1.3], [0.02, -0.04, 1.01, 0.4]]
B_OBLIQUE = [[0.95, 0.05, 0.0], [-0.05, 1.05, 0.02], [0.01, -0.02, 0.9]]
C_OBLIQUE = [[0.9, 0.1, -0.05], [-0.1, 1.1, 0.02], [0.05, -0.02, 0.95]]
A_IDENTITY = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
LNCC_K, LNCC_EPS = 7, 1e-5
MI_BINS, MI_LO, MI_HI = 32, 0.0, 1.0
SMOOTH_SIGMA, SMOOTH_TRUNCATE = 1.0, 2.0
ADAM_T, ADAM_B1, ADAM_B2, ADAM_EPS = 5, 0.9, 0.999, 1e-8
WARP_STEP = -0.25
WARMUP, RUNS = 3, 10


# ---- coordinates -------------------------------------------------------------------
# ffdp works in continuous voxel indices p = (x, y, z); grid_sample in
# normalised coordinates t in [-1, 1].  With align_corners=True voxel centres
# sit at t = 2 p / (n - 1) - 1, exactly ffdp's lattice (align_corners=False
# would put them at (2 p + 1) / n - 1: a half-voxel shift).  padding_mode
# 'zeros' is per corner, as FFDP_PAD_ZERO.  Shapes need n >= 2 on every axis.

def index_to_norm(shape, dev):
	"""4x4 homogeneous S with t = S [p; 1] for a volume of shape (nz, ny, nx)."""
	nz, ny, nx = shape
	S = torch.eye(4, dtype=torch.float64, device=dev)
	for a, n in enumerate((nx, ny, nz)):
		S[a, a] = 2.0 / (n - 1)
		S[a, 3] = -1.0
	return S


def theta_from_W(W, shape_in, shape_out):
	"""affine_grid's theta (1x3x4) for p = W [i; 1]; differentiable in W."""
	dev = W.device
	Wh = torch.cat([W, torch.tensor([[0, 0, 0, 1.0]], dtype=W.dtype, device=dev)])
	th = index_to_norm(shape_in, dev) @ Wh @ torch.linalg.inv(index_to_norm(shape_out, dev))
	return th[:3].float().unsqueeze(0)


def norm_linear(A, shape):
	"""A (3x3, index offset per mm) in normalised units: diag(2/(n-1)) A, float32."""
	S = index_to_norm(shape, A.device)[:3, :3]
	return (S @ A).float()


def identity_grid(shape, dev):
	"""The normalised identity grid [1, nz, ny, nx, 3] (compose caches it: a
	researcher keeps it; its memory counts in the peak)."""
	return F.affine_grid(torch.eye(3, 4, device=dev).unsqueeze(0), [1, 1, *shape], align_corners=True)


def sample_field(u, grid):
	"""Trilinear, zero-padded sample of a channel-last field u [nz,ny,nx,3] at
	grid [1,...,3]: channel-last [.., 3] result."""
	s = F.grid_sample(u.permute(3, 0, 1, 2).unsqueeze(0), grid, mode="bilinear", padding_mode="zeros",
			  align_corners=True)
	return s[0].permute(1, 2, 3, 0)


# ---- the ops -------------------------------------------------------------------------
# Each op: setup(shape, dev, gen) -> state dict of inputs; optional
# prepare(state) run once after the input memory is measured (graphs that a
# backward-only op needs); run(state) -> result (the values torch_ref checks).

def cached(st, key, make):
	"""Small per-call constants (theta, the normalised B and C) are made once:
	a researcher holds them, and rebuilding 4x4 matrices on the GPU every call
	would add launch latency that is no part of the op.  Not when W needs a
	gradient: then theta is part of the graph."""
	if key not in st["cache"]:
		st["cache"][key] = make()
	return st["cache"][key]


def sampler_grid(st, with_u):
	"""grid = affine_grid(theta(W)) (+ B u in normalised units)."""
	shape = st["shape"]
	theta = (theta_from_W(st["W"], shape, shape) if st["W"].requires_grad else
		 cached(st, "theta", lambda: theta_from_W(st["W"], shape, shape)))
	grid = F.affine_grid(theta, [1, 1, *shape], align_corners=True)
	if with_u:
		grid = grid + st["u"] @ cached(st, "Bn", lambda: norm_linear(st["B"], shape).T)
	return grid


def sample(st, with_u):
	return F.grid_sample(st["M"], sampler_grid(st, with_u), mode="bilinear", padding_mode="zeros",
			     align_corners=True)


def setup_sample(shape, dev, gen):
	return {"shape": shape, "M": rand(gen, (1, 1, *shape), dev, 0, 1), "u": rand(gen, (*shape, 3), dev, -2, 2),
		"g": rand(gen, (1, 1, *shape), dev, -2, 2),
		"W": torch.tensor(W_OBLIQUE, dtype=torch.float64, device=dev),
		"B": torch.tensor(B_OBLIQUE, dtype=torch.float64, device=dev), "cache": {}}


def run_sample_affine(st):
	return sample(st, False)


def run_sample_u(st):
	return sample(st, True)


def run_sample_fwd_bwd_u(st):
	"""Forward, then gout = g back to u (the moving image needs no gradient)."""
	u = st["u"].requires_grad_(True)
	u.grad = None
	out = sample(st, True)
	out.backward(st["g"])
	return out.detach(), u.grad


def prepare_sample_bwd_W_M(st):
	"""The backward alone is timed (as ffdp's op): build the forward graph once."""
	st["W"].requires_grad_(True)
	st["M"].requires_grad_(True)
	st["out"] = sample(st, False)


def run_sample_bwd_W_M(st):
	gW, gM = torch.autograd.grad(st["out"], (st["W"], st["M"]), st["g"], retain_graph=True)
	return gW.cpu(), gM


def setup_compose(shape, dev, gen):
	return {"shape": shape, "u": rand(gen, (*shape, 3), dev, -2, 2), "d": rand(gen, (*shape, 3), dev, -2, 2),
		"C": torch.tensor(C_OBLIQUE, dtype=torch.float64, device=dev), "cache": {}}


def compose(st, u, d):
	"""d + u(i + C d): grid_sample of u at Id + d (d in mm, via C)."""
	shape = st["shape"]
	grid = cached(st, "id", lambda: identity_grid(shape, u.device)) + d @ cached(st, "Cn", lambda: norm_linear(st["C"], shape).T)
	return d + sample_field(u, grid)


def run_compose(st):
	return compose(st, st["u"], st["d"])


def setup_jacobian(shape, dev, gen):
	return {"u": rand(gen, (*shape, 3), dev, -2, 2), "A": torch.tensor(A_IDENTITY, device=dev),
		"G": torch.tensor(C_OBLIQUE, device=dev)}


def run_jacobian(st):
	"""det(A + (du/di) G); torch.gradient: central differences, one-sided at
	the faces (edge_order=1), as ffdp.  The determinant by cofactors, as
	voxelmorph writes it (torch.linalg.det on N 3x3 matrices is an LU per
	voxel, far slower)."""
	u = st["u"]
	dx, dy, dz = torch.gradient(u, dim=(2, 1, 0))
	J = st["A"] + torch.stack([dx, dy, dz], dim=-1) @ st["G"]  # [..., component, axis]
	a, b, c = J[..., 0, 0], J[..., 0, 1], J[..., 0, 2]
	d, e, f = J[..., 1, 0], J[..., 1, 1], J[..., 1, 2]
	g, h, i = J[..., 2, 0], J[..., 2, 1], J[..., 2, 2]
	return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def setup_moments(shape, dev, gen):
	return {"x": rand(gen, shape, dev, 0, 1), "cache": {}}


def run_moments(st):
	"""sum w, sum w i, sum w i_a i_b, w = max(x, 0), summed in double
	(products in float32 before the double sums)."""
	x = st["x"]
	nz, ny, nx = x.shape
	ar = lambda n: torch.arange(n, dtype=torch.float32, device=x.device)
	X, Y, Z = cached(st, "coords", lambda: (ar(nx).view(1, 1, nx), ar(ny).view(1, ny, 1), ar(nz).view(nz, 1, 1)))
	w = x.clamp(min=0)
	wx, wy, wz = w * X, w * Y, w * Z
	terms = [w, wx, wy, wz, wx * X, wx * Y, wx * Z, wy * Y, wy * Z, wz * Z]
	return torch.stack([t.sum(dtype=torch.float64) for t in terms]).cpu()


def setup_loss(shape, dev, gen):
	return {"f": rand(gen, (1, 1, *shape), dev, 0, 1), "m": rand(gen, (1, 1, *shape), dev, 0, 1), "cache": {}}


def loss_and_grad(st, loss_fn):
	"""loss(f, m), loss.backward() for dL/dm only (bench_ops_gpu asks for gm)."""
	m = st["m"].requires_grad_(True)
	m.grad = None
	loss = loss_fn(st, st["f"], m)
	loss.backward()
	return loss.item(), m.grad


def mse(st, f, m):
	return F.mse_loss(m, f)


def box_count(st, shape, r, dev):
	"""Voxels in each window clipped to the volume: a product of 1-D counts
	(made once, kept).  FireANTs' and voxelmorph's LNCC divide by
	k^3 everywhere instead; ffdp (and this version) clip the window."""
	def counts():
		i = [torch.arange(n, device=dev) for n in shape]
		c = [(torch.clamp(t + r, max=n - 1) - torch.clamp(t - r, min=0) + 1).float() for t, n in zip(i, shape)]
		return c[0].view(-1, 1, 1) * c[1].view(1, -1, 1) * c[2].view(1, 1, -1)

	return cached(st, "count", counts)


def lncc(st, f, m):
	"""The usual box-sum LNCC: window sums of f, m, f^2, m^2, f m by conv3d
	with a ones kernel and zero padding (= windows clipped at the faces), then
	cc = cov^2 / (var_f var_m + eps) on sums, loss = -mean(cc).
	autograd's backward through the convolutions is the exact gradient."""
	k, r = LNCC_K, LNCC_K // 2
	ones = torch.ones(1, 1, k, k, k, device=f.device, dtype=f.dtype)
	box = lambda x: F.conv3d(x, ones, padding=r)
	n = box_count(st, f.shape[2:], r, f.device)
	sf, sm, sff, smm, sfm = box(f), box(m), box(f * f), box(m * m), box(f * m)
	cov = sfm - sf * sm / n
	vf = (sff - sf * sf / n).clamp(min=0)
	vm = (smm - sm * sm / n).clamp(min=0)
	cc = cov * cov / (vf * vm + LNCC_EPS)
	return -cc.mean()


def mi(st, f, m):
	"""Mattes MI with Gaussian Parzen windows as FireANTs' PyTorch loss
	computes it: N x B weight matrices for each image (the memory blow-up ffdp
	avoids), joint histogram by one matmul.  Bin coordinate s = (x - lo) B /
	(hi - lo) clamped to [0, B], centres j + 0.5, sigma 0.5 bin, weights
	normalised over the bins.  ffdp keeps only the 7 bins around s (the rest
	weigh < 2.3e-11 of the nearest): the same value to float precision."""
	B, sig = MI_BINS, 0.5
	centres = torch.arange(B, device=f.device, dtype=f.dtype) + 0.5

	def weights(x):
		s = ((x.reshape(-1, 1) - MI_LO) * (B / (MI_HI - MI_LO))).clamp(0, B)
		w = torch.exp(-0.5 * ((s - centres) / sig) ** 2)
		return w / w.sum(dim=1, keepdim=True)

	wf, wm = weights(f), weights(m)
	p = wf.T @ wm / wf.shape[0]
	pf, pm = p.sum(dim=1, keepdim=True), p.sum(dim=0, keepdim=True)
	tiny = 1e-30  # 0 log 0 = 0; the clamp keeps log(0) out of the backward
	return -(p * (torch.log(p.clamp(min=tiny)) - torch.log((pf * pm).clamp(min=tiny)))).sum()


def run_mse(st):
	return loss_and_grad(st, mse)


def run_lncc(st):
	return loss_and_grad(st, lncc)


def run_mi(st):
	return loss_and_grad(st, mi)


def gauss_taps(sigma, dev):
	"""Sampled Gaussian on [-r, r], r = ceil(truncate sigma), sum 1 (as ffdp)."""
	r = math.ceil(SMOOTH_TRUNCATE * sigma)
	k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma * sigma))
	return (k / k.sum()).float().to(dev), r


def smooth(st, x, renormalize):
	"""Separable Gaussian: three depthwise conv3d passes with zero padding.
	renormalize divides each pass by the kernel mass inside the volume (a 1-D
	vector, broadcast), as ffdp's image smoothing; without it outside counts
	as zero (fields, FireANTs' separable_filtering)."""
	c = x.shape[1]
	k, r = cached(st, "taps", lambda: gauss_taps(SMOOTH_SIGMA, x.device))
	for axis in (2, 3, 4):  # z, y, x
		shp = [1, 1, 1, 1, 1]
		shp[axis] = k.numel()
		pad = [0, 0, 0]
		pad[axis - 2] = r
		wt = cached(st, ("taps", c, axis), lambda: k.view(shp).expand(c, *shp[1:]).contiguous())
		x = F.conv3d(x, wt, padding=tuple(pad), groups=c)
		if renormalize:
			n = x.shape[axis]
			view = [1, 1, 1, 1, 1]
			view[axis] = n
			ones = lambda: torch.ones(1, 1, n, device=x.device)
			mass = cached(st, ("mass", axis), lambda: F.conv1d(ones(), k.view(1, 1, -1), padding=r).view(view))
			x = x / mass
	return x


def setup_smooth(shape, dev, gen):
	return {"x": rand(gen, (1, 1, *shape), dev, -2, 2), "cache": {}}


def setup_smooth_vec(shape, dev, gen):
	return {"x": rand(gen, (1, 3, *shape), dev, -2, 2), "cache": {}}


def run_smooth(st):
	return smooth(st, st["x"], True)


def run_smooth_vec(st):
	return smooth(st, st["x"], False)


def setup_adam(shape, dev, gen):
	return {"shape": shape, "g": rand(gen, (*shape, 3), dev, -2, 2), "m": rand(gen, (*shape, 3), dev, -2, 2),
		"v": rand(gen, (*shape, 3), dev, 0.5, 1), "u": rand(gen, (*shape, 3), dev, -2, 2),
		"C": torch.tensor(C_OBLIQUE, dtype=torch.float64, device=dev), "cache": {}}


def adam_direction(m, v):
	bc1, bc2 = 1 - ADAM_B1 ** ADAM_T, 1 - ADAM_B2 ** ADAM_T
	return (m / bc1) / ((v / bc2).sqrt() + ADAM_EPS)


def run_adam_moments(st):
	"""m, v updated in place; the largest |d|_2 back to the host (ffdp's max_norm)."""
	m, v, g = st["m"], st["v"], st["g"]
	m.mul_(ADAM_B1).add_(g, alpha=1 - ADAM_B1)
	v.mul_(ADAM_B2).addcmul_(g, g, value=1 - ADAM_B2)
	return adam_direction(m, v).norm(dim=-1).max().item()


def run_warp_add(st):
	st["u"] = st["u"] + WARP_STEP * adam_direction(st["m"], st["v"])
	return st["u"]


def run_warp_compose(st):
	"""u <- delta + u o (Id + C delta), delta = step d (the new u replaces the old)."""
	delta = WARP_STEP * adam_direction(st["m"], st["v"])
	st["u"] = compose(st, st["u"], delta)
	return st["u"]


def rand(gen, shape, dev, lo, hi):
	return lo + (hi - lo) * torch.rand(shape, generator=gen, device=dev, dtype=torch.float32)


# name (as bench_ops_gpu prints it), sizes (as bench_ops_gpu), setup, prepare, run;
# run None: no plain PyTorch form, with the reason.
OPS = [
	("sample fwd, affine", (256, 512), setup_sample, None, run_sample_affine),
	("sample fwd, +u", (256, 512), setup_sample, None, run_sample_u),
	("sample fwd+bwd to u", (128, 256), setup_sample, None, run_sample_fwd_bwd_u),
	("sample bwd to W, M", (256,), setup_sample, prepare_sample_bwd_W_M, run_sample_bwd_W_M),
	("sample label, +u", (256,), None, None,
	 "no plain PyTorch form: FireANTs' one-hot trilinear + argmax needs integer labels"),
	("compose", (256, 512), setup_compose, None, run_compose),
	("jacobian det", (256,), setup_jacobian, None, run_jacobian),
	("moments", (256,), setup_moments, None, run_moments),
	("mse fwd+bwd", (256,), setup_loss, None, run_mse),
	("lncc k7 exact fwd+bwd", (256,), setup_loss, None, run_lncc),
	("mi 32 fwd+bwd", (256,), setup_loss, None, run_mi),
	("smooth scalar s=1", (256,), setup_smooth, None, run_smooth),
	("smooth vec s=1", (256,), setup_smooth_vec, None, run_smooth_vec),
	("adam moments", (256,), setup_adam, None, run_adam_moments),
	("warp step add", (256,), setup_adam, None, run_warp_add),
	("warp step compose", (256,), setup_adam, None, run_warp_compose),
]


# ---- timing ----------------------------------------------------------------------------

def sync(dev):
	if dev.type == "cuda":
		torch.cuda.synchronize(dev)


def time_op(op, n, dev, seed):
	"""(median ms of RUNS after WARMUP, peak extra MiB or None)."""
	_, _, setup, prepare, run = op
	gen = torch.Generator(device=dev)
	gen.manual_seed(seed)
	st = setup((n, n, n), dev, gen)
	cuda = dev.type == "cuda"
	sync(dev)
	base = torch.cuda.memory_allocated(dev) if cuda else 0
	if prepare:
		prepare(st)
	for _ in range(WARMUP):
		run(st)
	sync(dev)
	if cuda:
		torch.cuda.reset_peak_memory_stats(dev)
	ms = []
	for _ in range(RUNS):
		if cuda:
			e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
			e0.record()
			run(st)
			e1.record()
			e1.synchronize()
			ms.append(e0.elapsed_time(e1))
		else:
			t0 = time.perf_counter()
			run(st)
			ms.append(1e3 * (time.perf_counter() - t0))
	peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20 if cuda else None
	return statistics.median(ms), peak


def free_memory(dev):
	if dev.type == "cuda":
		torch.cuda.empty_cache()


def is_oom(e):
	oom = getattr(torch.cuda, "OutOfMemoryError", ())
	return (oom and isinstance(e, oom)) or "out of memory" in str(e)


def one_line(e):
	return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def bench_op(op, n, dev, out, rows):
	"""Time op at n; out of memory: say so and try halves down to 32, so the
	largest size that fits is on record.  Rows get (name, n, ms, peak, note)."""
	name = op[0]
	while True:
		try:
			ms, peak = time_op(op, n, dev, seed=n)
			pk = "-" if peak is None else "%.1f" % peak
			out("torch\t%s\t%d\t%.3f\t%s" % (name, n, ms, pk))
			rows.append((name, n, "%.3f" % ms, pk, ""))
			return
		except Exception as e:  # noqa: BLE001: one failing op must not stop the rest
			free_memory(dev)
			oom = is_oom(e)
			why = "out of memory" if oom else "%s: %s" % (type(e).__name__, one_line(e))
			out("torch\t%s\t%d\tfailed: %s" % (name, n, why))
			rows.append((name, n, "-", "-", "failed: " + why))
			if not oom or n // 2 < 32:
				return
			n //= 2
		finally:
			free_memory(dev)


# ---- main --------------------------------------------------------------------------------

def pick_device(want):
	if want == "cpu":
		return torch.device("cpu")
	if not torch.cuda.is_available():
		built = torch.version.cuda or "none"
		print("torch_ops.py: CUDA is not available to PyTorch %s (built for CUDA %s): no GPU, or a CPU-only "
		      "build; run with --device cpu to time on the CPU" % (torch.__version__, built), file=sys.stderr)
		return None
	return torch.device("cuda", torch.cuda.current_device())


def sizes_for(op, sizes):
	listed = {s for o in OPS for s in o[1]}
	return [n for n in sizes if n in op[1] or n not in listed]


def human_table(rows, dev_name):
	lines = ["PyTorch baselines on %s (median of %d after %d warm-ups)" % (dev_name, RUNS, WARMUP),
		 "%-24s %5s %10s %10s  %s" % ("op", "n", "ms", "peak MiB", "note")]
	for name, n, ms, pk, note in rows:
		lines.append("%-24s %5d %10s %10s  %s" % (name, n, ms, pk, note))
	return "\n".join(lines) + "\n"


def main(argv):
	ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
	ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
	ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
	ap.add_argument("--ops", nargs="+", default=None, help="run only ops whose name contains one of these")
	ap.add_argument("--check-shape", default="9,11,7", help="nx,ny,nz of the correctness check")
	ap.add_argument("--no-check", action="store_true", help="time without the correctness checks")
	ap.add_argument("--table", default=None, help="also write the human table to this file")
	ap.add_argument("--tf32", action="store_true",
			help="let cuDNN use TF32 in conv3d (PyTorch's default; off here: float32 work as ffdp)")
	a = ap.parse_args(argv)
	if any(n < 2 for n in a.sizes):
		ap.error("sizes must be >= 2")
	dev = pick_device(a.device)
	if dev is None:
		return 1
	torch.backends.cudnn.allow_tf32 = a.tf32
	torch.backends.cuda.matmul.allow_tf32 = a.tf32
	dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
	print("# torch %s, device %s, TF32 %s" % (torch.__version__, dev_name, "on" if a.tf32 else "off"), flush=True)
	out = lambda s: print(s, flush=True)
	ops = [o for o in OPS if not a.ops or any(s in o[0] for s in a.ops)]

	bad = set()
	if not a.no_check:
		import torch_ref
		nx, ny, nz = (int(t) for t in a.check_shape.split(","))
		t0 = time.perf_counter()
		bad = torch_ref.check_all(ops, (nz, ny, nx), dev, out)
		print("# checks: %d failed, %.0f s" % (len(bad), time.perf_counter() - t0), flush=True)

	rows = []
	for op in ops:
		for n in sizes_for(op, a.sizes):
			if isinstance(op[4], str):
				out("torch\t%s\t%d\tskipped: %s" % (op[0], n, op[4]))
				rows.append((op[0], n, "-", "-", "skipped: " + op[4]))
			elif op[0] in bad:
				out("torch\t%s\t%d\tfailed: correctness check failed" % (op[0], n))
				rows.append((op[0], n, "-", "-", "failed: correctness check failed"))
			else:
				bench_op(op, n, dev, out, rows)
	table = human_table(rows, dev_name)
	print(table, end="")
	if a.table:
		with open(a.table, "w") as fh:
			fh.write(table)
	return 1 if bad else 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
