#!/usr/bin/env python3
"""Cross-check ffdp's transform files with ITK (SimpleITK, `pip install SimpleITK`).

usage: itk_crosscheck.py FIXED MOVING PREFIX [FFDP]

PREFIX is an `ffdp register` output prefix (PREFIX_affine.txt, PREFIX_warp.nii.gz,
PREFIX_inverse_warp.nii.gz).  ITK reads the affine as an ITK transform file and the
warps as displacement-field images, composes them as antsApplyTransforms does
(`-t warp -t affine`: the warp is applied to the point first) and resamples:
  forward:  MOVING onto FIXED's grid,   compared with `ffdp apply -t warp -t affine`
  inverse:  FIXED onto MOVING's grid,   compared with `ffdp apply -t [affine,1] -t inverse_warp`
Both use linear interpolation and 0 outside, but their rules at the edge of the input
differ: ITK takes the edge voxel's value up to half a voxel outside the image and 0
beyond, ffdp blends linearly to 0 over the voxel outside.  So the comparison is made on
the voxels whose sample point lies at least one voxel inside the input (ITK resamples a
mask for that), and the voxels near the edge are counted apart.  Prints the largest and
mean difference as a fraction of the intensity range; exits 1 if the largest interior
difference exceeds 1e-3.
FFDP is the ffdp binary (default ./build/ffdp).
"""
import os
import subprocess
import sys
import tempfile

import SimpleITK as sitk


def itk_resample(ref, img, transforms):
    """transforms in the order they act on a point; ITK's composite applies the last
    added first, so they are added in reverse."""
    comp = sitk.CompositeTransform(3)
    for t in reversed(transforms):
        comp.AddTransform(t)
    return sitk.Resample(img, ref, comp, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def field_transform(path):
    f = sitk.ReadImage(path, sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(f)


def interior(ref, img, transforms):
    """1 where the sample point lies at least one voxel inside img."""
    ones = sitk.Image(img.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(img)
    size = img.GetSize()
    inner = sitk.ConstantPad(sitk.Crop(ones, [1] * 3, [1] * 3), [1] * 3, [1] * 3, 0.0) if min(size) > 2 else ones
    m = itk_resample(ref, inner, transforms)
    return sitk.GetArrayFromImage(m) > 0.999


def compare(name, a, b, inside, rng):
    d = sitk.GetArrayFromImage(sitk.Abs(sitk.Cast(a, sitk.sitkFloat32) - sitk.Cast(b, sitk.sitkFloat32)))
    mx, mean = float(d[inside].max()) / rng, float(d[inside].mean()) / rng
    edge = d[~inside]
    nbad = int((edge > 1e-3 * rng).sum())
    print(f"{name:8s} interior ({int(inside.sum())} voxels): max |itk - ffdp| {mx:.2e} of the range, mean "
          f"{mean:.2e}; within a voxel of the input's edge: {nbad} of {edge.size} differ by > 1e-3")
    return mx


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    fixed_p, moving_p, prefix = sys.argv[1:4]
    ffdp = sys.argv[4] if len(sys.argv) > 4 else "./build/ffdp"
    fixed = sitk.ReadImage(fixed_p, sitk.sitkFloat32)
    moving = sitk.ReadImage(moving_p, sitk.sitkFloat32)
    affine = sitk.ReadTransform(prefix + "_affine.txt")
    warp = field_transform(prefix + "_warp.nii.gz")
    inv = field_transform(prefix + "_inverse_warp.nii.gz")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        fwd_p, inv_p = os.path.join(tmp, "fwd.nii.gz"), os.path.join(tmp, "inv.nii.gz")
        subprocess.run([ffdp, "apply", "-q", "-r", fixed_p, "-i", moving_p, "-o", fwd_p, "-t",
                        prefix + "_warp.nii.gz", "-t", prefix + "_affine.txt"], check=True)
        subprocess.run([ffdp, "apply", "-q", "-r", moving_p, "-i", fixed_p, "-o", inv_p, "-t",
                        "[" + prefix + "_affine.txt,1]", "-t", prefix + "_inverse_warp.nii.gz"], check=True)
        mrange = float(sitk.GetArrayViewFromImage(moving).max() - sitk.GetArrayViewFromImage(moving).min())
        frange = float(sitk.GetArrayViewFromImage(fixed).max() - sitk.GetArrayViewFromImage(fixed).min())
        fwd_t, inv_t = [warp, affine], [affine.GetInverse(), inv]  # x -> T(x + w(x)); y -> z + w_inv(z), z = T^-1 y
        worst = max(worst, compare("forward", itk_resample(fixed, moving, fwd_t), sitk.ReadImage(fwd_p),
                                   interior(fixed, moving, fwd_t), mrange))
        worst = max(worst, compare("inverse", itk_resample(moving, fixed, inv_t), sitk.ReadImage(inv_p),
                                   interior(moving, fixed, inv_t), frange))
    print("ITK agrees" if worst <= 1e-3 else "ITK DISAGREES", f"(worst {worst:.2e}, limit 1e-3)")
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
