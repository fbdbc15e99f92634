"""The model graph view: the int8 model's ops as one inline SVG, laid out at render time (no torch, no matplotlib).

Layout: rank = longest path from the inputs, one row per rank, top to bottom; ops of one rank side by side in
execution order, each in the lane of its first input where free (so a branch opens a lane and an add closes it).
An edge between adjacent ranks is a short curve; a longer one (a skip connection) runs down the gutter right of
its lower lane, one track per overlapping edge. A deep model wraps into columns, cut only where a single op feeds
everything below (that op is drawn again, faded, at the top of the next column).
"""

from __future__ import annotations

import math
import re

from markupsafe import escape

from qreport.render.fmt import dom_id, fmt_db

NODE_W, NODE_H = 156, 30  # an op with its own kernel (int8 or float)
PASS_W, PASS_H = 112, 18  # an int8 pass-through op (it runs on its input's scale)
ROW = 46  # vertical pitch of one rank
GUTTER, TRACK = 16, 7  # space right of each lane, and between the long edges routed through it
COLUMN_GAP, PAD, STRIP = 36, 8, 6
ROWS_PER_COLUMN, MAX_COLUMNS = 22, 6  # wrap deep models; more rows per column rather than more than 6 columns

SCALE = ((35.0, "#7dcea0", "isolated ≥ 35 dB"), (25.0, "#f4d35e", "25–35 dB"), (15.0, "#f2a154", "15–25 dB"),
         (-math.inf, "#e5675a", "< 15 dB"))
NOT_COMPARED = "#e6e8eb"
INK, EDGE, OUTLINE = "#1f2328", "#8a8f98", "#5b636e"


def sqnr_colour(db) -> str:
    """The fill for an SQNR on the fixed scale (``exact`` is green, missing is grey)."""
    if db is None or (isinstance(db, float) and math.isnan(db)):
        return NOT_COMPARED
    return next(colour for lo, colour, _ in SCALE if db >= lo)


def _base(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"(.*?)_(\d+)", name)
    return (m.group(1), int(m.group(2)) + 1) if m else (name, 0)


def resolve(graph_rows, names) -> dict[str, list[str]]:
    """Graph nodes for each name: a node itself; a node FX renamed (tables' ``add`` = graph's ``add_1``: same base
    name, same count, paired in order); else every node of that module path."""
    nodes = [r["node"] for r in sorted(graph_rows, key=lambda r: r["order"])]
    known = set(nodes)
    groups: dict[str, list[str]] = {}
    for n in nodes:
        groups.setdefault(_base(n)[0], []).append(n)
    asked: dict[str, list[str]] = {}
    for n in sorted(set(names)):
        asked.setdefault(_base(n)[0], []).append(n)
    renamed = {}
    for base, ours in asked.items():
        theirs = groups.get(base, [])
        if len(ours) == len(theirs) and not set(ours) <= known:
            renamed.update(zip(sorted(ours, key=lambda n: _base(n)[1]), theirs))
    by_fqn: dict[str, list[str]] = {}
    for r in sorted(graph_rows, key=lambda r: r["order"]):
        by_fqn.setdefault(r["layer_fqn"], []).append(r["node"])
    out = {}
    for n in names:
        found = [renamed[n]] if n in renamed else [n] if n in known else by_fqn.get(n, [])
        if found:
            out[n] = found
    return out


def _columns(rank: dict, edges: list) -> list[tuple[int, int, str | None]]:
    """(first rank, last rank, op repeated on top) per column; cuts only where one op feeds all that follows."""
    total = max(rank.values()) + 1
    per = max(ROWS_PER_COLUMN, math.ceil(total / MAX_COLUMNS))
    k = math.ceil(total / per)
    clean = {}
    for r in range(total - 1):
        crossing = {u for u, v in edges if rank[u] <= r < rank[v]}
        if len(crossing) <= 1 and all(rank[u] == r for u in crossing):
            clean[r] = next(iter(crossing), None)
    cuts = []
    for i in range(1, k):
        target = i * total / k - 1
        options = [r for r in clean if r > (cuts[-1] if cuts else -1) + 2 and r < total - 3]
        if options:
            cuts.append(min(options, key=lambda r: (abs(r - target), r)))
    bounds = [-1] + cuts + [total - 1]
    return [(bounds[i] + 1, bounds[i + 1], clean.get(bounds[i])) for i in range(len(bounds) - 1)]


def layout(graph_rows) -> dict:
    """Positions in px: ``boxes`` {(column, node): (x, y, w, h)} (an op repeated atop the next column is keyed with
    that column too), ``edges`` [(column, u, v)], ``tracks`` {(column, u, v): gutter x} and ``width``/``height``."""
    rows = sorted(graph_rows, key=lambda r: (r["order"], r["node"]))
    info = {r["node"]: r for r in rows}
    rank, edges = {}, []
    for r in rows:
        ins = [i for i in dict.fromkeys(r["inputs"]) if i in rank]
        rank[r["node"]] = 1 + max(rank[i] for i in ins) if ins else 0
        edges += [(i, r["node"]) for i in ins]
    boxes, placed, tracks, x0, height = {}, [], {}, PAD, 0
    for c, (lo, hi, ghost) in enumerate(_columns(rank, edges) if rows else []):
        top = rank[ghost] if ghost else lo
        lane, used = {}, {}
        for n in ([ghost] if ghost else []) + [r["node"] for r in rows if lo <= rank[r["node"]] <= hi]:
            pref = next((lane[i] for i in info[n]["inputs"] if i in lane), 0)
            free = used.setdefault(rank[n], set())
            lane[n] = min((k for k in range(pref + len(free) + 1) if k not in free), key=lambda k: (abs(k - pref), -k))
            free.add(lane[n])
        col_edges = [(u, v) for u, v in edges if u in lane and v in lane]
        load = [[] for _ in range(max(lane.values()) + 1)]  # per gutter: the rank each track is busy to
        gutter = {}
        for u, v in sorted(col_edges, key=lambda e: (rank[e[0]], rank[e[1]], info[e[1]]["order"])):
            if rank[v] - rank[u] > 1:
                g = min(lane[u], lane[v])
                t = next((k for k, end in enumerate(load[g]) if end <= rank[u]), len(load[g]))
                load[g][t:t + 1] = [rank[v]]
                gutter[(u, v)] = (g, t)
        lane_x = [x0]
        for g in load[:-1]:
            lane_x.append(lane_x[-1] + NODE_W + GUTTER + TRACK * len(g))
        for n, k in lane.items():
            w, h = (PASS_W, PASS_H) if info[n]["runs"] == "int8 pass-through" else (NODE_W, NODE_H)
            boxes[(c, n)] = (lane_x[k] + (NODE_W - w) // 2, PAD + (rank[n] - top) * ROW + (NODE_H - h) // 2, w, h)
        for (u, v), (g, t) in gutter.items():
            tracks[(c, u, v)] = lane_x[g] + NODE_W + GUTTER // 2 + TRACK * t
        placed += [(c, u, v) for u, v in col_edges]
        height = max(height, PAD + (hi - top) * ROW + NODE_H + PAD)
        x0 = lane_x[-1] + NODE_W + GUTTER + TRACK * len(load[-1]) + COLUMN_GAP
    return {"boxes": boxes, "edges": placed, "tracks": tracks, "width": max(0, x0 - COLUMN_GAP + PAD),
            "height": height}


def _clip(text: str, n: int, keep_end: bool = False) -> str:
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1):] if keep_end else text[:n - 1] + "…"


def _edge(box_u, box_v, gx, slot: int) -> str:
    """An edge's path; ``slot`` shifts where it enters v, so the inputs of an add arrive side by side."""
    xu, yu = box_u[0] + box_u[2] // 2, box_u[1] + box_u[3]
    xv, yv = box_v[0] + box_v[2] // 2 + slot, box_v[1]
    if gx is None:
        if xu == xv:
            return f"M{xu} {yu}V{yv}"
        ym = (yu + yv) // 2
        return f"M{xu} {yu}C{xu} {ym} {xv} {ym} {xv} {yv}"
    below = yu + (NODE_H - box_u[3]) // 2 + (ROW - NODE_H) // 2  # the middle of the gap under u's row
    above = yv - (NODE_H - box_v[3]) // 2 - (ROW - NODE_H) // 2
    return f"M{xu} {yu}C{xu} {below} {xu} {below} {gx} {below}V{above}C{xv} {above} {xv} {above} {xv} {yv}"


def _swatch(fill: str, stroke: str = OUTLINE, width: float = 1, dash: str = "", opacity: str = "",
            strip: str = "") -> str:
    extra = (f' stroke-dasharray="{dash}"' if dash else "") + (f' opacity="{opacity}"' if opacity else "")
    inner = f'<rect x="1.5" y="1.5" width="5" height="11" fill="{strip}"/>' if strip else ""
    return (f'<svg width="22" height="14" viewBox="0 0 22 14" aria-hidden="true" style="vertical-align:middle">'
            f'<rect x="1.5" y="1.5" width="19" height="11" rx="2" fill="{fill}"/>{inner}'
            f'<rect x="1.5" y="1.5" width="19" height="11" rx="2" fill="none" stroke="{stroke}" '
            f'stroke-width="{width}"{extra}/></svg>')


def graph_view(graph_rows, isolated_db_by_node, propagated_db_by_node, flagged_nodes, card_ids) -> dict:
    """The graph as ``{"svg", "legend", "nodes", "linked", "columns", "width", "height"}`` (None without ops); dicts
    are keyed by the tables' ``layer`` (or a module path): fill = isolated SQNR, left strip = propagated."""
    rows = [dict(r, inputs=list(r["inputs"])) for r in graph_rows]
    if not rows:
        return None
    info = {r["node"]: r for r in rows}
    names = list(isolated_db_by_node) + list(propagated_db_by_node) + list(flagged_nodes) + list(card_ids)
    found = resolve(rows, names)

    def spread(mapping) -> dict:
        out = {}
        for name in sorted(mapping, key=lambda n: (n not in info, n)):  # a node's own name wins over a module path
            for node in found.get(name, []):
                out.setdefault(node, mapping[name])
        return out

    iso = spread(isolated_db_by_node)
    prop = spread(propagated_db_by_node)
    cards = spread(card_ids)
    flagged = set(spread({n: True for n in flagged_nodes}))
    lay = layout(rows)
    w, h = lay["width"], lay["height"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="qgraph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'aria-label="Model graph: {len(rows)} ops coloured by isolated SQNR" '
           f'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif">',
           '<defs><marker id="qgraph-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
           f'orient="auto"><path d="M0 0L8 4L0 8z" fill="{EDGE}"/></marker></defs>',
           f'<g fill="none" stroke="{EDGE}" stroke-width="1.3" marker-end="url(#qgraph-arrow)">']
    for c, u, v in sorted(lay["edges"], key=lambda e: (e[0], info[e[2]]["order"], info[e[1]]["order"])):
        ins = [i for i in dict.fromkeys(info[v]["inputs"]) if (c, i) in lay["boxes"]]
        room = lay["boxes"][(c, v)][2] // 2 - 6
        slot = max(-room, min(room, (2 * ins.index(u) - len(ins) + 1) * 8))
        path = _edge(lay["boxes"][(c, u)], lay["boxes"][(c, v)], lay["tracks"].get((c, u, v)), slot)
        out.append(f'<path d="{path}"/>')
    out.append("</g>")
    ghosts = 0
    for (c, n), (x, y, bw, bh) in sorted(lay["boxes"].items(), key=lambda kv: (kv[0][0], kv[1][1], kv[1][0])):
        r = info[n]
        ghost = c > 0 and (c - 1, n) in lay["boxes"]
        ghosts += ghost
        fqn = r["layer_fqn"].removeprefix("(root):")
        small, is_float = r["runs"] == "int8 pass-through", r["runs"] == "float"
        tip = (f"{r['layer_fqn']} ({n})\n{r['op_type']} · runs {r['runs']}\n"
               f"isolated {fmt_db(iso.get(n))} · propagated {fmt_db(prop.get(n))}"
               + ("\nflagged in the guidance" if n in flagged else "")
               + ("\ncontinued from the previous column" if ghost else "")
               + ("\nclick for the layer's details" if n in cards else ""))
        stroke = (INK, 3) if n in flagged else (EDGE, 1) if small else (OUTLINE, 1)
        dash = ' stroke-dasharray="4 3"' if is_float else ""
        node = [f'<g id="{dom_id("gnode", n)}{"-" + str(c) if ghost else ""}"'
                + (' opacity="0.5"' if ghost else "") + ">", f"<title>{escape(tip)}</title>",
                f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="3" fill="{sqnr_colour(iso.get(n))}"/>',
                f'<rect x="{x}" y="{y}" width="{STRIP}" height="{bh}" fill="{sqnr_colour(prop.get(n))}"/>',
                f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="3" fill="none" stroke="{stroke[0]}" '
                f'stroke-width="{stroke[1]}"{dash}/>']
        if small:
            node.append(f'<text x="{x + bw // 2 + STRIP // 2}" y="{y + 13}" font-size="10" text-anchor="middle" '
                        f'fill="{INK}">{escape(_clip(r["op_type"], 17))}</text>')
        else:
            node.append(f'<text x="{x + STRIP + 5}" y="{y + 12}" font-size="11" font-weight="600" fill="{INK}">'
                        f'{escape(_clip(r["op_type"], 21))}</text>')
            node.append(f'<text x="{x + STRIP + 5}" y="{y + 25}" font-size="9.5" fill="{INK}" '
                        f'font-family="ui-monospace,Menlo,Consolas,monospace">{escape(_clip(fqn, 24, True))}</text>')
        node.append("</g>")
        if n in cards:
            node = [f'<a href="#{escape(cards[n])}">', *node, "</a>"]
        out.append("".join(node))
    out.append("</svg>")
    legend = [{"swatch": _swatch(colour), "label": label} for _, colour, label in SCALE]
    legend.append({"swatch": _swatch(NOT_COMPARED), "label": "not compared alone"})
    legend.append({"swatch": _swatch("#fff", strip=SCALE[3][1]), "label": "left strip: propagated SQNR, same scale"})
    if any(r["runs"] == "int8 pass-through" for r in rows):
        legend.append({"swatch": _swatch(NOT_COMPARED, EDGE), "label": "small: int8 pass-through (input's scale)"})
    if any(r["runs"] == "float" for r in rows):
        legend.append({"swatch": _swatch("#fff", OUTLINE, 1, "4 3"), "label": "dashed: runs in float"})
    if flagged:
        legend.append({"swatch": _swatch("#fff", INK, 3), "label": "thick outline: high or medium finding"})
    if ghosts:
        legend.append({"swatch": _swatch(NOT_COMPARED, opacity="0.5"),
                       "label": "faded: continued from the previous column"})
    return {"svg": "".join(out), "legend": legend, "nodes": len(rows), "linked": sum(n in cards for n in info),
            "columns": 1 + max((c for c, _ in lay["boxes"]), default=0), "width": w, "height": h}
