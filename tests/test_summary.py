"""Per-image summaries: areas, boxes and connected components."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from unetkit.inference.summary import count_components, summarize, write_summaries


def test_components_of_known_shapes():
    m = np.zeros((8, 10), bool)
    assert count_components(m) == 0
    m[1:3, 1:3] = True          # a square
    m[5:7, 6:9] = True          # a bar
    m[3, 3] = True              # touches the square at a corner: 8-connected, same component
    assert count_components(m) == 2
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    ring[3, 3] = True           # an island inside the ring
    assert count_components(ring) == 2
    u = np.zeros((5, 5), bool)  # a U: two arms joined only at the bottom row
    u[0:5, 0] = u[0:5, 4] = u[4, :] = True
    assert count_components(u) == 1


def test_components_match_an_independent_labeller_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for density in (0.2, 0.45, 0.6):
        m = rng.random((60, 80)) < density
        _, expected = ndimage.label(m, structure=np.ones((3, 3)))
        assert count_components(m) == expected


def test_summary_files(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[2:5, 3:9] = 1
    labels[10:12, 20:22] = 1
    labels[15, 0] = 2
    s = summarize("a.jpg", labels, ["background", "red", "green"])
    assert s["classes"]["red"] == {"area_px": 22, "area_fraction": round(22 / 600, 6),
                                   "bbox_xyxy": [3, 2, 21, 11], "components": 2}
    assert s["classes"]["green"]["bbox_xyxy"] == [0, 15, 0, 15]
    empty = summarize("b.jpg", np.zeros((4, 4), np.uint8), ["background", "red", "green"])
    assert empty["classes"]["red"] == {"area_px": 0, "area_fraction": 0.0, "bbox_xyxy": None,
                                       "components": 0}
    write_summaries(tmp_path, [s, empty])
    assert json.loads((tmp_path / "summary.json").read_text())[0] == s
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 4 and rows[0]["class"] == "red" and rows[0]["components"] == "2"
    assert rows[0]["bbox_x1"] == "21" and rows[2]["bbox_x0"] == ""
