"""Command line: materialize datasets into the on-disk format, or print a dataset's summary.

    python -m advhash.data materialize fashion-mnist fashion-mosaic --root data
    python -m advhash.data materialize cifar10 --root data --source path/to/cifar10-jpeg.zip
    python -m advhash.data summary fashion-mosaic --root data
"""

from __future__ import annotations

import argparse
import sys

from .registry import DATASETS, MATERIALIZABLE, load_dataset, materialize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m advhash.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("materialize", help="write <root>/<name>/{images,labels,texts}.npy and meta.json")
    make.add_argument("names", nargs="+", choices=sorted(MATERIALIZABLE), metavar="NAME",
                      help=f"one or more of {', '.join(sorted(MATERIALIZABLE))}")
    make.add_argument("--root", default="data", help="data root folder (default: data)")
    make.add_argument("--source", default=None, help="cifar10 only: a cifar-10-batches-py parent, ImageFolder or zip")
    show = commands.add_parser("summary", help="print a dataset's split sizes and label / tag statistics")
    show.add_argument("name", choices=sorted(DATASETS), metavar="NAME")
    show.add_argument("--root", default="data")
    args = parser.parse_args(argv)

    if args.command == "materialize":
        for name in args.names:
            kwargs = {"source": args.source} if name == "cifar10" and args.source else {}
            result = materialize(name, args.root, **kwargs)
            changed = [file for file, was_written in result["written"].items() if was_written]
            print(f"{name}: {result['items']} items, {result['megabytes']} MB in {result['folder']}, "
                  f"{result['seconds']} s ({'wrote ' + ', '.join(changed) if changed else 'unchanged'})")
    else:
        print(load_dataset(args.name, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
