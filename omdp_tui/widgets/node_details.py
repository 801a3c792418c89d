"""The selected node: its inputs and outputs with shapes, and the cut right after it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from backend import units
from backend.model.analysis import ModelAnalysis, TensorInfo


def _tensor_line(t: TensorInfo, const: bool) -> str:
    kind = " (weight)" if const else ""
    return f"{t.name} {units.shape(t.shape)} {t.dtype} {units.size(t.bytes)}{kind}"


def describe_node(analysis: ModelAnalysis, index: int, candidate: bool) -> Text:
    node = analysis.nodes[index]
    cut = analysis.cuts[index + 1]
    inits = analysis.index.initializers
    text = Text(no_wrap=False)
    text.append(f"#{node.index} {node.name}", style="bold")
    text.append(f"  {node.op}  params {units.count(node.params)}  FLOPs {units.count(node.flops)}")
    if node.static:
        text.append("  static (never a cut)", style="italic")
    text.append("\n")
    for t in node.inputs:
        text.append(" in  ", style="bold")
        text.append(_tensor_line(t, t.name in inits) + "\n")
    for t in node.outputs:
        text.append(" out ", style="bold")
        text.append(_tensor_line(t, False) + "\n")
    mark = "◆ candidate" if candidate else "not a candidate (m marks it)"
    text.append(
        f" cut after p={cut.position}: {len(cut.tensors)} tensor(s), "
        f"{units.size(cut.bytes)} — {mark}\n",
        style="bold",
    )
    for name in cut.tensors:
        info = analysis.tensors.get(name)
        text.append(
            f"   {name} {units.shape(info.shape) if info else '?'} "
            f"{units.size(info.bytes) if info else '?'}\n"
        )
    if cut.unknown:
        text.append(f"   size unknown: {', '.join(cut.unknown)}\n", style="italic")
    return text


class NodeDetails(Static):
    """Scrollable text block; the graph screen feeds it on every highlight."""

    can_focus = False
