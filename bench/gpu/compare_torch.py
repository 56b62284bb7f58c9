#!/usr/bin/env python3
"""The ffdp-against-PyTorch table of issue #5, in markdown.

usage: compare_torch.py BENCH_LOG TORCH_LOG

BENCH_LOG: bench_ops_gpu's output (its printf columns: op, n, ms, floor MB,
fl@2.96, fl@meas, t/floor, FFDP ms, FFDP/us, peak MiB; or "op n failed: why").
TORCH_LOG: torch_ops.py's output ("torch<TAB>op<TAB>n<TAB>ms<TAB>peak MiB" or
"torch<TAB>op<TAB>n<TAB>failed|skipped: why").  Either may be missing or
empty (that side is then "-").  Rows follow bench_ops_gpu's order; ops or
sizes that only torch_ops ran (a smaller size that fitted in memory) come
last.  Exit status 1 only when neither log holds a row.
"""
import re
import sys

FAILED = re.compile(r"^(?P<name>\S.*?)\s+(?P<n>\d+)\s+(?P<why>failed: .*)$")


def parse_bench(lines):
	"""{(op, n): (ms or None, peak MiB or None, note)} in file order."""
	rows = {}
	for line in lines:
		line = line.rstrip("\n")
		m = FAILED.match(line)
		if m:
			rows[(m["name"], int(m["n"]))] = (None, None, m["why"].strip())
			continue
		tok = line.split()
		if len(tok) < 10:
			continue
		try:  # the last 9 columns are numbers (or "-" for FFDP anchors)
			n, ms, peak = int(tok[-9]), float(tok[-8]), float(tok[-1])
		except ValueError:
			continue  # the device line, the header
		rows[(" ".join(tok[:-9]), n)] = (ms, peak, "")
	return rows


def parse_torch(lines):
	rows = {}
	for line in lines:
		f = line.rstrip("\n").split("\t")
		if len(f) < 4 or f[0] != "torch":
			continue
		try:
			key = (f[1], int(f[2]))
		except ValueError:
			continue
		if f[3].startswith(("failed", "skipped")):
			rows[key] = (None, None, f[3])
			continue
		try:
			ms = float(f[3])
		except ValueError:
			continue
		peak = None
		if len(f) > 4:
			try:
				peak = float(f[4])
			except ValueError:
				peak = None
		rows[key] = (ms, peak, "")
	return rows


def read(path):
	try:
		with open(path) as fh:
			return fh.readlines()
	except OSError as e:
		print("compare_torch.py: %s: %s" % (path, e.strerror), file=sys.stderr)
		return []


def cell(v, fmt):
	return "-" if v is None else fmt % v


def table(bench, torch):
	keys = list(bench) + [k for k in torch if k not in bench]
	out = ["| op | n | ffdp ms | PyTorch ms | PyTorch/ffdp | ffdp peak MiB | PyTorch peak MiB |",
	       "| --- | --- | --- | --- | --- | --- | --- |"]
	for k in keys:
		fm, fp, fnote = bench.get(k, (None, None, "not run"))
		tm, tp, tnote = torch.get(k, (None, None, "not run"))
		ratio = "-"
		if tm is not None and fm:
			ratio = ("%.2f×" if tm / fm < 10 else "%.1f×") % (tm / fm)
		out.append("| %s | %d | %s | %s | %s | %s | %s |" % (
			k[0], k[1], fnote or cell(fm, "%.3f"), tnote or cell(tm, "%.3f"), ratio,
			cell(fp, "%.1f") if not fnote else "-", cell(tp, "%.1f") if not tnote else "-"))
	return "\n".join(out) + "\n"


def main(argv):
	if len(argv) != 2:
		print(__doc__.split("\n\n")[1], file=sys.stderr)
		return 2
	bench, torch = parse_bench(read(argv[0])), parse_torch(read(argv[1]))
	if not bench and not torch:
		print("compare_torch.py: no rows in %s or %s" % (argv[0], argv[1]), file=sys.stderr)
		return 1
	sys.stdout.write(table(bench, torch))
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
