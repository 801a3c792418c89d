"""`omdp zoo list|build`: the built-in models, and writing one to a file to use elsewhere."""

from __future__ import annotations

import argparse
import re
from typing import Any

from backend import units
from backend.cli.format import emit_json, table
from backend.files import check_writable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo")
    verbs = p.add_subparsers(dest="zoo_verb", metavar="ACTION", parser_class=type(p))
    verbs.required = True

    ls = verbs.add_parser("list", help="the built-in models and their sizes")
    ls.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    ls.set_defaults(func=run_list)

    b = verbs.add_parser("build", help="write a built-in model to an ONNX file")
    b.add_argument("name", help="built-in model name (see `omdp zoo list`)")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="ONNX file to write")
    b.add_argument(
        "--seed", type=_seed, default=0, help="seed of the random weights, 0 or more (default 0)"
    )
    b.add_argument(
        "--no-fold",
        dest="fold",
        action="store_false",
        help="light models: write the file as the onnx wheel ships it (IR 3, "
        "ConstantOfShape placeholder weights)",
    )
    b.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    b.set_defaults(func=run_build)


def _seed(text: str) -> int:
    """A seed for numpy's generator: a whole number from 0 to 2^63 - 1."""
    if not re.fullmatch(r"[0-9]{1,19}", text.strip()) or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 2^63 - 1")
    return int(text)


def run_list(args: argparse.Namespace) -> int:
    from backend.model import zoo  # lazy: `omdp --help` should not pay for importing onnx

    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "family": e.family,
            "description": e.description,
            "input_shape": list(e.input_shape),
            "parameters": zoo.parameter_count(e.name),
        }
        for e in zoo.list_models()
    ]
    if args.json:
        emit_json(rows)
        return 0
    print(
        table(
            [
                (
                    r["name"],
                    r["family"],
                    "×".join(map(str, r["input_shape"])),
                    units.count(r["parameters"]),
                    r["description"],
                )
                for r in rows
            ],
            ["name", "family", "input", "params", "description"],
            "lllrl",
        )
    )
    return 0


def run_build(args: argparse.Namespace) -> int:
    from backend.model import zoo
    from backend.model.parameters import count_parameters

    zoo.entry(args.name)
    path = check_writable(args.output, "model.onnx")  # fail before building for seconds
    model = zoo.build(args.name, seed=args.seed, fold=args.fold)
    parameters = count_parameters(model.graph.initializer)
    external = zoo.external_data_path(path) if zoo.needs_external_data(model) else None
    zoo.save(model, path)
    size = path.stat().st_size + (external.stat().st_size if external else 0)
    result = {
        "name": args.name,
        "path": str(path),
        "bytes": size,
        "external_data": str(external) if external else None,
        "parameters": parameters,
        "seed": args.seed,
        "fold": args.fold,
    }
    if args.json:
        emit_json(result)
        return 0
    extra = f" (weights in {external})" if external else ""
    print(
        f"wrote {path}{extra}: {units.size(size)}, {parameters:,} parameters "
        f"({units.count(parameters)}), seed {args.seed}"
    )
    return 0
