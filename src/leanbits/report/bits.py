"""The bits section: where the total bits of chosen packed models go, per part and per
layer, read from a row's ``bits_breakdown`` and ``layer_bits``."""

from __future__ import annotations

from collections.abc import Sequence

from leanbits.report import plots
from leanbits.report.document import Block, Figure, Heading, Table
from leanbits.results import Row

#: a row's bit parts as the report names them, in stacking order (padding is not a bit of
#: the model: it only fills the file's last byte)
PARTS = {"values": "values", "position": "positions", "codebook": "codebook",
         "nonweight": "non-weight", "header": "header"}


def bit_breakdown(row: Row) -> dict[str, float] | None:
    """Bits per part of :data:`PARTS` (plus ``other`` when the parts fall short of the
    row's total), or None when the row has no breakdown.

    Example:
        >>> bit_breakdown(Row(total_bits=130, bits_breakdown={"values": 100, "header": 20}))
        {'values': 100, 'header': 20, 'other': 10}
    """
    if not row.bits_breakdown:
        return None
    out = {name: row.bits_breakdown[part] for part, name in PARTS.items()
           if part in row.bits_breakdown}
    # Be honest about bits no part claims: show them rather than drop them.
    if row.total_bits is not None and row.total_bits - sum(out.values()) > 0.5:
        out["other"] = row.total_bits - sum(out.values())
    return out or None


def layer_breakdowns(row: Row) -> dict[str, dict[str, float]]:
    """Per layer: bits per part (only the parts a layer states)."""
    return {layer: {PARTS[p]: v for p, v in parts.items() if p in PARTS}
            for layer, parts in (row.layer_bits or {}).items()}


def breakdown_blocks(chosen: Sequence[tuple[str, Row]]) -> list[Block]:
    """Stacked bars and tables of the bit breakdown of ``(label, row)`` points."""
    parts = [p for p in (*PARTS.values(), "other")
             if any(p in (bit_breakdown(r) or {}) for _, r in chosen)]
    values = {p: [(bit_breakdown(r) or {}).get(p, 0.0) for _, r in chosen] for p in parts}
    labels = [lbl for lbl, _ in chosen]
    blocks: list[Block] = [
        Heading("Where the bits go", 3),
        Figure("bits", plots.stacked_bars(labels, values, "bits",
                                          "Bit breakdown of chosen frontier points"),
               "Total bits split into weight values, sparse positions, codebooks/scales, "
               "non-weight parameters and headers, for points spread along the frontier."),
        Table(["point", *parts, "total"],
              [[lbl, *(values[p][i] for p in parts), r.total_bits]
               for i, (lbl, r) in enumerate(chosen)], "Bit breakdown (bits)"),
    ]
    for lbl, r in chosen:
        per_layer = layer_breakdowns(r)
        if per_layer:
            cols = [p for p in PARTS.values() if any(p in d for d in per_layer.values())]
            blocks.append(Table(["layer", *cols, "sum"],
                                [[k, *(d.get(p) for p in cols), sum(d.values())]
                                 for k, d in per_layer.items()], f"Bits per layer: {lbl}"))
    return blocks
