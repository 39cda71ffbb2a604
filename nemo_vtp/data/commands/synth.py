"""`nemo-vtp data synth --out DIR --num N --seed S [--levels 1 2 3] [--families shapes bars ...]`."""

import time

from nemo_vtp.data.synth import WorldSpec, generate
from nemo_vtp.data.synth.scenes import FAMILIES


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (train.jsonl, val.jsonl, test.jsonl, images/)")
    parser.add_argument("--num", type=int, required=True, help="number of samples over all splits")
    parser.add_argument("--seed", type=int, default=0, help="world seed; the same seed gives the same bytes")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                        help="difficulty levels to include")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES),
                        help="scene families to include")
    parser.add_argument("--image-size", type=int, default=112, help="image side, pixels")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args) -> int:
    spec = WorldSpec(num=args.num, seed=args.seed, levels=tuple(args.levels), families=tuple(args.families),
                     image_size=args.image_size,
                     val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    start = time.perf_counter()
    counts = generate(spec, args.out, progress=args.progress)
    print(f"wrote {sum(counts.values())} samples to {args.out} ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
