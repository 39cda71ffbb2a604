"""`nemo-vtp data convert --source NAME --in PATH --out DIR [--image-root DIR] [--strict] [--allow-outside-root]`."""

import sys

from nemo_vtp.data.converters import CONVERTERS, convert
from nemo_vtp.data.io import DataError


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, choices=sorted(CONVERTERS), help="the public dataset's schema")
    parser.add_argument("--in", dest="in_path", required=True,
                        help="input .jsonl/.json/.parquet file (geometry3k: also an Inter-GPS folder)")
    parser.add_argument("--out", required=True, help="output folder; image paths are written relative to it")
    parser.add_argument("--image-root", default=None, help="folder the source's image paths are relative to "
                        "(default: the input file's folder)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable record")
    parser.add_argument("--max-image-pixels", type=int, default=50_000_000,
                        help="skip records whose image has more pixels than this")
    parser.add_argument("--allow-outside-root", action="store_true", help="accept absolute and '..' image "
                        "paths in the source (by default they are skipped and counted)")


def run(args) -> int:
    try:
        out_file, summary = convert(args.source, args.in_path, args.out, image_root=args.image_root,
                                    strict=args.strict, max_image_pixels=args.max_image_pixels,
                                    allow_outside_root=args.allow_outside_root)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{summary} -> {out_file}")
    return 0
