"""``python -m nas_data download cifar10[:ROOT]`` / ``python -m nas_data info SPEC``."""

from __future__ import annotations

from ._datasets import load_data, parse_spec


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m nas_data", description="Inspect or fetch datasets.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="download a dataset that needs it (cifar10[:ROOT])")
    d.add_argument("spec")
    i = sub.add_parser("info", help="load a dataset and print its description")
    i.add_argument("spec")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "download":
            kind, _ = parse_spec(args.spec)
            if kind != "cifar10":
                raise ValueError(f"data: only cifar10 is downloadable; {args.spec!r} is local")
            data = load_data(args.spec, download=True)
        else:
            data = load_data(args.spec)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(data.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
