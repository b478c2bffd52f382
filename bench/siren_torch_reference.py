#!/usr/bin/env python3
"""Fit one SIREN per image with PyTorch, as a reference for rapid-inr's GPU encoder.

The fit follows src/inr/encode.ts: pixel p = y * R + x maps (x, y) in [-1, 1]
to RGB in [0, 1] through `--layers` sine layers sin(w0 (W h + b)) of width
`--width` and one linear output layer. Weights and biases start uniform in
+-1/2 (first layer) and +-sqrt(6 / width) / w0 (later layers). The loss is the
MSE over all pixels and channels of each image, and the optimizer is Adam
(0.9, 0.999, 1e-8). The learning rate decays from `--lr` to 0 as
lr * (1 + cos(pi t / iterations)) / 2. Each image keeps the weights of its
best PSNR, scored before the step that changes them; a tie keeps the earlier
weights.
Images are fitted in batches with batched matrix products, each with its own
weights; Adam is elementwise, so one optimizer over the batch is the same as
one per image.

Input is either an image folder (<root>/<class>/<file>, the first
`--per-class` files of each class in sorted order, decoded with Pillow) or a
raw file of u8 RGB [N][R][R][3], such as the one `bench/encode_compare.ts
--save-raw` writes, so that both sides fit identical pixels.

Example:
  python3 bench/siren_torch_reference.py --root ../shared/data/cifar10/train \\
      --per-class 100 --iterations 1000 --lr 5e-4 --layers 5 --width 13 --out json
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Fit one SIREN per image with PyTorch (CPU) and print the mean PSNR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="image folder: <root>/<class>/<image files>")
    source.add_argument("--raw", help="raw u8 RGB file [N][R][R][3]; needs --side")
    parser.add_argument("--per-class", type=int, default=None,
                        help="with --root: keep the first K sorted files of each class (default: all)")
    parser.add_argument("--side", type=int, default=None,
                        help="image side R in pixels; required with --raw, checked with --root")
    parser.add_argument("--count", type=int, default=None, help="with --raw: use only the first N images")
    parser.add_argument("--iterations", type=int, default=5000, help="Adam iterations per image")
    parser.add_argument("--lr", type=float, default=5e-4, help="initial learning rate")
    parser.add_argument("--layers", type=int, default=5, help="sine layers")
    parser.add_argument("--width", type=int, default=13, help="width of every sine layer")
    parser.add_argument("--w0", type=float, default=30.0, help="frequency factor inside every sine")
    parser.add_argument("--batch", type=int, default=256, help="images fitted together")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the weight initialization")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", choices=("text", "json"), default="text", help="output format on stdout")
    args = parser.parse_args(argv)

    for name in ("per_class", "side", "count", "iterations", "layers", "width", "batch", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if args.raw is not None and args.side is None:
        parser.error("--raw needs --side (the image side in pixels)")
    return args


def list_image_folder(root, per_class):
    """Return the image paths, first `per_class` sorted files of each sorted class folder."""
    if not os.path.isdir(root):
        raise SystemExit(f"Image folder {root} not found. Pass --root with <root>/<class>/<files>.")
    classes = sorted(name for name in os.listdir(root)
                     if not name.startswith(".") and os.path.isdir(os.path.join(root, name)))
    if not classes:
        raise SystemExit(f"{root} contains no class folders. Pass --root with <root>/<class>/<files>.")
    paths = []
    for name in classes:
        folder = os.path.join(root, name)
        files = []
        for parent, folders, names in os.walk(folder):
            folders[:] = [f for f in folders if not f.startswith(".")]
            for file in names:
                if not file.startswith(".") and file.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(parent, file), folder))
        files.sort()
        if per_class is not None:
            files = files[:per_class]
        paths.extend(os.path.join(folder, file) for file in files)
    return paths


def load_images(args):
    """Return u8 images [N][R][R][3] from --root or --raw."""
    if args.raw is not None:
        data = np.fromfile(args.raw, dtype=np.uint8)
        image_bytes = args.side * args.side * 3
        if data.size == 0 or data.size % image_bytes != 0:
            raise SystemExit(f"{args.raw} has an invalid size of {data.size} bytes: not a multiple of "
                             f"{args.side} x {args.side} x 3. Check --side.")
        images = data.reshape(-1, args.side, args.side, 3)
        return images[:args.count] if args.count is not None else images

    from PIL import Image

    arrays = []
    for path in list_image_folder(args.root, args.per_class):
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        if array.shape[0] != array.shape[1] or (args.side is not None and array.shape[0] != args.side):
            raise SystemExit(f"{path} is {array.shape[1]}x{array.shape[0]}; this script does not resize. "
                             "Use square images of one size, or --raw with pixels written by "
                             "bench/encode_compare.ts --save-raw.")
        if arrays and array.shape != arrays[0].shape:
            raise SystemExit(f"{path} is {array.shape[1]}x{array.shape[0]}, unlike the first image. "
                             "All images must have one size.")
        arrays.append(array)
    if not arrays:
        raise SystemExit(f"No .png, .jpg or .jpeg files found below {args.root}.")
    return np.stack(arrays)


def layer_shapes(layers, width):
    """Return (inputs, outputs) of every layer: the sine layers, then the linear RGB layer."""
    shapes = [(2, width)] + [(width, width)] * (layers - 1) + [(width, 3)]
    return shapes


def init_batch(count, layers, width, w0, generator):
    """Return per-layer (W [count][out][in], b [count][out]) with the SIREN bounds."""
    params = []
    for index, (inputs, outputs) in enumerate(layer_shapes(layers, width)):
        bound = 1.0 / inputs if index == 0 else math.sqrt(6.0 / inputs) / w0
        weight = (torch.rand(count, outputs, inputs, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(count, outputs, generator=generator) * 2 - 1) * bound
        params.append((weight.requires_grad_(), bias.requires_grad_()))
    return params


def coordinates(side):
    """Return [P][2] (x, y) of pixel p = y * side + x, each in [-1, 1]."""
    axis = torch.linspace(-1.0, 1.0, side) if side > 1 else torch.zeros(1)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def forward(params, inputs, w0):
    """Evaluate every image's SIREN at `inputs` [count][P][2]; returns [count][P][3]."""
    h = inputs
    for index, (weight, bias) in enumerate(params):
        z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        h = torch.sin(w0 * z) if index < len(params) - 1 else z
    return h


def fit_batch(images, args, generator):
    """Fit one batch of u8 images [count][R][R][3]; returns best PSNR per image."""
    count, side = images.shape[0], images.shape[1]
    target = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(count, side * side, 3)
    inputs = coordinates(side).unsqueeze(0).expand(count, -1, -1)
    params = init_batch(count, args.layers, args.width, args.w0, generator)
    flat = [tensor for pair in params for tensor in pair]
    optimizer = torch.optim.Adam(flat, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: (1 + math.cos(math.pi * t / args.iterations)) / 2)
    best_psnr = torch.full((count,), -math.inf)
    best = [tensor.detach().clone() for tensor in flat]

    for _ in range(args.iterations):
        optimizer.zero_grad(set_to_none=True)
        output = forward(params, inputs, args.w0)
        mse = ((output - target) ** 2).mean(dim=(1, 2))
        with torch.no_grad():
            psnr = -10.0 * torch.log10(mse.detach().clamp_min(1e-30))
            improved = psnr > best_psnr
            best_psnr = torch.where(improved, psnr, best_psnr)
            for best_tensor, tensor in zip(best, flat):
                best_tensor[improved] = tensor[improved]
        # Sum of per-image MSEs: each image's gradient is that of its own MSE.
        mse.sum().backward()
        optimizer.step()
        schedule.step()
    return best_psnr.numpy()


def main(argv):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    images = load_images(args)
    generator = torch.Generator().manual_seed(args.seed)

    started = time.perf_counter()
    psnr = np.concatenate([fit_batch(images[start:start + args.batch], args, generator)
                           for start in range(0, images.shape[0], args.batch)])
    seconds = time.perf_counter() - started

    report = {
        "images": int(images.shape[0]),
        "side": int(images.shape[1]),
        "layers": args.layers,
        "width": args.width,
        "w0": args.w0,
        "iterations": args.iterations,
        "learningRate": args.lr,
        "meanPsnr": float(psnr.mean()),
        "minPsnr": float(psnr.min()),
        "maxPsnr": float(psnr.max()),
        "seconds": seconds,
        "imagesPerSecond": images.shape[0] / seconds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "psnr": [round(float(value), 4) for value in psnr],
    }
    if args.out == "json":
        print(json.dumps(report))
    else:
        print(f"{report['images']} images of {report['side']} px, {args.layers} x {args.width}, "
              f"{args.iterations} iterations: mean PSNR {report['meanPsnr']:.3f} dB "
              f"(min {report['minPsnr']:.3f}, max {report['maxPsnr']:.3f}), {seconds:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
