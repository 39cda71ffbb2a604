"""`nemo-vtp data mix SOURCE[=N|=F] ... --out DIR [--val N|F] [--seed S]`: see nemo_vtp.data.mix."""

import sys

from nemo_vtp.data.io import DataError
from nemo_vtp.data.mix import describe, mix, parse_source


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="sample JSONL file, optionally =N (take N samples) or =F (take that fraction, 0 < F <= 1)")
    parser.add_argument("--out", required=True, help="output folder: train.jsonl, val.jsonl, mix.json")
    parser.add_argument("--val", type=float, default=0.0,
                        help="validation rows: a count (>= 1) or a fraction of the mix (< 1); default 0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling and the shuffle")


def run(args) -> int:
    try:
        specs = [parse_source(s) for s in args.sources]
        summary = mix(specs, args.out, seed=args.seed, val=args.val)
    except (ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe(summary))
    print(f"-> {args.out}/train.jsonl, {args.out}/val.jsonl")
    return 0
