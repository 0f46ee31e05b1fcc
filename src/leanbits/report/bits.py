"""The bits section: where the total bits of chosen packed models go, per part and per
layer, read from a row's ``bits_breakdown`` and ``layer_bits`` (of a configuration of
several seeds: mean ± std over its seeds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from leanbits.report import plots
from leanbits.report.document import Block, Figure, Heading, Table
from leanbits.report.overseeds import SeedColumn, seed_cells
from leanbits.results import Row
from leanbits.stats import estimate

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


def breakdown_blocks(chosen: Sequence[tuple[str, Sequence[Row]]],
                     note: Block | None = None) -> list[Block]:
    """Stacked bars and tables of the bit breakdown of chosen points.

    Args:
        chosen: ``(label, rows)`` of each point: its one row, or the rows of its seeds
            (then the bars are at the mean, the tables mean ± std over the seeds, each
            followed by ``note``).
        note: the line saying where each seed's values are.
    """
    several = any(len(rows) > 1 for _, rows in chosen)
    parts = [p for p in (*PARTS.values(), "other")
             if any(p in (bit_breakdown(r) or {}) for _, rows in chosen for r in rows)]
    per_seed = {p: [[(bit_breakdown(r) or {}).get(p, 0.0) for r in rows] for _, rows in chosen]
                for p in parts}
    values = {p: [v[0] if len(v) == 1 else estimate(v).mean for v in vs]
              for p, vs in per_seed.items()}
    labels = [lbl for lbl, _ in chosen]
    after = [note] if several and note is not None else []
    bits = SeedColumn[float]("", lambda v: v, digits=0)
    if several:
        table = Table(["point", "seeds", *parts, "total"],
                      [[lbl, len(rows), *(seed_cells(per_seed[p][i], [bits])[0] for p in parts),
                        seed_cells([r.total_bits for r in rows], [bits])[0]]
                       for i, (lbl, rows) in enumerate(chosen)],
                      "Bit breakdown (bits): mean ± std over seeds")
    else:
        table = Table(["point", *parts, "total"],
                      [[lbl, *(values[p][i] for p in parts), rows[0].total_bits]
                       for i, (lbl, rows) in enumerate(chosen)], "Bit breakdown (bits)")
    blocks: list[Block] = [
        Heading("Where the bits go", 3),
        Figure("bits", plots.stacked_bars(labels, values, "bits",
                                          "Bit breakdown of chosen frontier points"),
               "Total bits split into weight values, sparse positions, codebooks/scales, "
               "non-weight parameters and headers, for points spread along the frontier"
               + (" (means over seeds)." if several else ".")),
        table, *after,
    ]
    for lbl, rows in chosen:
        per_layer = [layer_breakdowns(r) for r in rows]
        if not any(per_layer):
            continue
        layers = list(dict.fromkeys(k for d in per_layer for k in d))
        cols = [p for p in PARTS.values() if any(p in d.get(k, {}) for d in per_layer
                                                 for k in layers)]
        if not several:
            blocks.append(Table(["layer", *cols, "sum"],
                                [[k, *(d.get(p) for p in cols), sum(d.values())]
                                 for k, d in per_layer[0].items()], f"Bits per layer: {lbl}"))
            continue
        columns = [*(SeedColumn[Mapping[str, float]](p, lambda d, p=p: d.get(p), digits=0)
                     for p in cols),
                   SeedColumn[Mapping[str, float]]("sum", lambda d: sum(d.values()), digits=0)]
        blocks += [Table(["layer", "seeds", *(c.header for c in columns)],
                         [[k, sum(k in d for d in per_layer),
                           *seed_cells([d[k] for d in per_layer if k in d], columns)]
                          for k in layers],
                         f"Bits per layer: {lbl}: mean ± std over seeds"), *after]
    return blocks
