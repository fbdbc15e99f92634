"""The model graph view and the layer cards: a deterministic layout, branches in lanes, escaped names, links from
nodes to cards, and a real tiny run rendered through both partials."""

import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from qreport.findings import Thresholds
from qreport.render.cards import layer_cards
from qreport.render.graph import SCALE, graph_view, layout, resolve
from qreport.render.html import environment
from qreport.store import RunReader

SVG = "{http://www.w3.org/2000/svg}"


def op(node, order, inputs=(), op_type="Conv2d", runs="int8", fqn=None):
    return {"node": node, "layer_fqn": fqn or node.replace("_", "."), "op_type": op_type, "runs": runs,
            "inputs": list(inputs), "order": order}


def branchy():
    """stem → a → b, and stem → c; add(b, c) → fc."""
    return [op("stem", 0), op("a", 1, ["stem"]), op("b", 2, ["a"]), op("c", 3, ["stem"]),
            op("add", 4, ["b", "c"], "add"), op("fc", 5, ["add"], "Linear")]


def chain_with_skips(blocks):
    """A residual chain: each block is conv1 → conv2 → add(conv2, block input)."""
    rows, last = [op("stem", 0)], "stem"
    for i in range(blocks):
        n = len(rows)
        rows += [op(f"c{i}_1", n, [last]), op(f"c{i}_2", n + 1, [f"c{i}_1"]),
                 op(f"add_{i}", n + 2, [f"c{i}_2", last], "add", fqn=f"(root):add_{i}")]
        last = f"add_{i}"
    return rows


def positions(rows):
    return {n: box for (c, n), box in layout(rows)["boxes"].items() if (c - 1, n) not in layout(rows)["boxes"]}


def links(svg: str) -> dict[str, str]:
    """href -> id of the node group inside each link."""
    root = ET.fromstring(svg)  # also proves the SVG is well-formed XML
    return {a.get("href"): a.find(f"{SVG}g").get("id") for a in root.iter(f"{SVG}a")}


def test_layout_is_deterministic_whatever_the_row_order():
    args = ({"a": 30.0, "add": -math.inf}, {"a": 20.0}, {"b"}, {"b": "card-b"})
    one = graph_view(branchy(), *args)
    assert one == graph_view(list(reversed(branchy())), *args) == graph_view(branchy(), *args)
    big = chain_with_skips(40)
    assert graph_view(big, {}, {}, set(), {})["svg"] == graph_view(big[::-1], {}, {}, set(), {})["svg"]


def test_a_branch_and_an_add_give_two_lanes():
    pos = positions(branchy())
    x = {n: box[0] for n, box in pos.items()}
    y = {n: box[1] for n, box in pos.items()}
    assert y["a"] == y["c"] and x["c"] > x["a"]  # the branch sits beside the main path
    assert x["stem"] == x["a"] == x["b"] == x["add"] == x["fc"]
    assert y["stem"] < y["a"] < y["b"] < y["add"] < y["fc"]
    lay = layout(branchy())
    assert set(lay["tracks"]) == {(0, "c", "add")}  # the edge that skips a rank runs down a gutter
    assert lay["tracks"][(0, "c", "add")] < x["c"]  # between the two lanes
    assert len(lay["edges"]) == 6


def test_names_from_the_model_are_escaped():
    evil = '<script>alert("x")</script>&'
    rows = [op("x", 0, fqn=evil), op("y", 1, ["x"], op_type=evil, fqn=evil + "2")]
    view = graph_view(rows, {"x": 10.0}, {}, {"x"}, {"y": 'card-"><script>'})
    assert "<script>" not in view["svg"] and "&lt;script&gt;" in view["svg"]
    assert list(links(view["svg"])) == ['#card-"><script>']


def test_every_node_with_a_card_links_to_it_and_only_those():
    rows = chain_with_skips(3)
    cards = {"c0_2": "card-c0-2", "add_1": "card-add-1", "(root):add_2": "card-root-add-2", "gone": "card-gone"}
    view = graph_view(rows, {}, {}, set(), cards)
    assert links(view["svg"]) == {"#card-c0-2": "gnode-c0-2", "#card-add-1": "gnode-add-1",
                                  "#card-root-add-2": "gnode-add-2"}
    assert view["linked"] == 3


def test_ops_fx_renamed_are_matched_by_base_name_in_order():
    rows = [op("x", 0), op("add_1", 1, ["x"], "add"), op("add_2", 2, ["add_1"], "add")]
    assert resolve(rows, ["add", "add_1", "x", "(root):nothing"]) == {"add": ["add_1"], "add_1": ["add_2"], "x": ["x"]}
    root = ET.fromstring(graph_view(rows, {"add": 20.0, "add_1": 40.0}, {}, set(), {})["svg"])
    fill = {g.get("id"): g.find(f"{SVG}rect").get("fill") for g in root.iter(f"{SVG}g") if g.get("id")}
    assert fill == {"gnode-x": "#e6e8eb", "gnode-add-1": SCALE[2][1], "gnode-add-2": SCALE[0][1]}


def test_a_deep_model_wraps_into_columns_cut_at_a_single_op():
    rows = chain_with_skips(40)  # 121 ops in 121 ranks
    lay = layout(rows)
    columns = {c for c, _ in lay["boxes"]}
    assert 3 <= len(columns) <= 6
    repeated = [n for (c, n) in lay["boxes"] if (c - 1, n) in lay["boxes"]]
    assert len(repeated) == len(columns) - 1 and all(n.startswith("add_") for n in repeated)
    for c, u, v in lay["edges"]:  # no edge leaves its column
        assert (c, u) in lay["boxes"] and (c, v) in lay["boxes"]
    assert lay["height"] < 1300 and graph_view(rows, {}, {}, set(), {})["columns"] == len(columns)


def _activation(layer, order, db, fqn=None):
    return {"layer": layer, "layer_fqn": fqn or layer, "op_type": "quantized.Conv2d", "order": order, "sqnr_db": db,
            "rmse_over_step": 0.3, "clipped_fraction": 0.0, "hist_float": [], "hist_quant": []}


def test_cards_cover_flagged_layers_then_the_lowest_isolated():
    iso = [_activation(f"l{i}", i, 40.0 - i) for i in range(20)] + [_activation("ex", 20, math.inf)]
    guidance = [{"rank": 1, "code": "weight_outlier", "severity": "medium", "layer": "l0", "layer_fqn": "l0",
                 "evidence": "e <b>", "change_toml": '"l0" = "float"'},
                {"rank": 2, "code": "high_rmse", "severity": "info", "layer": "l1", "layer_fqn": "l1",
                 "evidence": "", "change_toml": ""}]
    cards = layer_cards(guidance, iso, iso, [], [], [], limit=4)
    assert [c["fqn"] for c in cards] == ["l0", "l19", "l18", "l17"]
    assert cards[0]["severity"] == "medium" and cards[0]["findings"][0]["href"] == "#finding-1"
    assert cards[0]["id"] == "card-l0" and cards[1]["isolated"] == "21.0 dB" and cards[1]["severity"] == ""


def test_a_real_run_renders_through_both_partials(tiny_run):
    reader = RunReader(tiny_run)

    def records(stage):
        df = reader.table(stage)
        return [] if df is None else df.to_dict("records")

    graph, iso, prop = records("graph"), records("shadow"), records("activations")
    cards = layer_cards(records("guidance"), iso, prop, records("weights"), records("channels"), records("ranges"),
                        graph, Thresholds(), limit=3)
    assert 1 <= len(cards) and all(c["id"].startswith("card-") for c in cards)
    assert any(c["histogram"].startswith("<svg") for c in cards)
    view = graph_view(graph, {r["layer"]: r["sqnr_db"] for r in iso}, {r["layer"]: r["sqnr_db"] for r in prop},
                      {c["layer"] for c in cards if c["severity"] in ("high", "medium")},
                      {c["layer"]: c["id"] for c in cards})
    assert view["nodes"] == len(graph) and view["linked"] == sum(1 for c in cards if resolve(graph, [c["layer"]]))
    assert len(links(view["svg"])) == view["linked"]
    for r in prop:  # every compared op, renamed or not, shows its propagated SQNR
        assert resolve(graph, [r["layer"]]), r["layer"]

    both = '{% include "partials/graph.html.j2" %}{% include "partials/layer_cards.html.j2" %}'
    page = environment().from_string(both).render(graph=view, layer_cards=cards)

    class Ids(HTMLParser):
        ids, hrefs, details = set(), set(), []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            self.ids.add(a.get("id"))
            if a.get("href", "").startswith("#card-"):
                self.hrefs.add(a["href"][1:])
            if tag == "details":
                self.details.append(a.get("id"))

    parsed = Ids()
    parsed.feed(page)
    assert parsed.details == [c["id"] for c in cards] and "graph" in parsed.ids and "cards" in parsed.ids
    assert parsed.hrefs and parsed.hrefs <= set(parsed.details)  # every node link lands on a card
    assert '<div class="scroll-x"><svg' in page
