"""`nemo-vtp data check FILE.jsonl [--strict]`: read a sample file as training would and report."""

import sys

from nemo_vtp.data.io import DataError, read_samples


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a sample JSONL file")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable row")
    parser.add_argument("--max-image-pixels", type=int, default=50_000_000)
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept absolute and '..' image paths (data.allow_outside_root)")


def run(args) -> int:
    try:
        _, summary = read_samples(args.path, strict=args.strict, max_image_pixels=args.max_image_pixels,
                                  allow_outside_root=args.allow_outside_root)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary)
    for line in summary.examples:
        print(f"  {line}")
    return 0 if not summary.num_skipped else 1
