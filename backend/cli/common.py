"""Arguments several verbs share, so they read the same everywhere."""

from __future__ import annotations

import argparse

from backend.model.analysis import ModelAnalysis, analyze, parse_input_shapes


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX file, or a built-in model name (see `omdp zoo list`)")
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="value for symbolic input dims, e.g. images=1,3,640,640 (repeatable)",
    )


def add_bandwidth_arg(p: argparse.ArgumentParser) -> None:
    """--bw: link bandwidths as LINK=MBPS, repeatable (parsed by the use case)."""
    p.add_argument(
        "--bw",
        "--bandwidth",
        dest="bandwidth",
        action="append",
        default=[],
        metavar="LINK=MBPS",
        help="a link's bandwidth in Mbit/s, e.g. glasses-phone=20 (repeatable)",
    )


def add_link_args(p: argparse.ArgumentParser) -> None:
    """--bw and --latency: link values as LINK=VALUE, repeatable (parsed by the use case)."""
    add_bandwidth_arg(p)
    p.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="LINK=MS",
        help="a link's latency in ms, e.g. glasses-phone=5",
    )


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def load_analysis(args: argparse.Namespace) -> ModelAnalysis:
    return analyze(args.model, parse_input_shapes(args.input_shape))
