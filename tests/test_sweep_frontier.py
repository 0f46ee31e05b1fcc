"""Frontier queries against brute-force references on random points (pure Python, fast)."""

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from leanbits.results import Row
from leanbits.sweep import frontier

# Small integer grids make ties and duplicates common, which is where bugs hide.
points_st = st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 10).map(lambda a: a / 10)), max_size=30
)


def _dominated(p, q):
    """q dominates p."""
    return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])


@settings(max_examples=200, deadline=None)
@given(points_st)
def test_pareto_front_matches_brute_force(points):
    front = frontier.pareto_front(points)
    expected_set = {p for p in points if not any(_dominated(p, q) for q in points)}
    assert {points[i] for i in front} == expected_set
    assert len(front) == len(expected_set)  # duplicates kept once
    bits = [points[i][0] for i in front]
    accs = [points[i][1] for i in front]
    assert bits == sorted(bits) and len(set(bits)) == len(bits)
    assert accs == sorted(accs) and len(set(accs)) == len(accs)
    for i in front:  # the first of identical points is the one kept
        assert points.index(points[i]) == i


@settings(max_examples=200, deadline=None)
@given(points_st, st.integers(0, 11).map(lambda a: a / 10))
def test_min_bits_for_accuracy_matches_brute_force(points, level):
    i = frontier.bits_for_accuracy(points, level)
    reaching = [p for p in points if p[1] >= level]
    if not reaching:
        assert i is None
        return
    assert points[i][0] == min(p[0] for p in reaching)
    assert points[i][1] >= level
    # ...and the frontier alone gives the same answer: the step function is exact.
    front = [points[j] for j in frontier.pareto_front(points)]
    assert front[frontier.bits_for_accuracy(front, level)][0] == points[i][0]


@settings(max_examples=200, deadline=None)
@given(points_st, st.integers(-1, 21))
def test_accuracy_within_bits_matches_brute_force(points, budget):
    i = frontier.accuracy_within_bits(points, budget)
    fitting = [p for p in points if p[0] <= budget]
    if not fitting:
        assert i is None
        return
    assert points[i][1] == max(p[1] for p in fitting)
    assert points[i][0] <= budget


def test_missing_and_nan_points_are_ignored():
    pts = [(None, 0.9), (10, None), (5, math.nan), (math.nan, 0.99), (20, 0.5)]
    assert frontier.pareto_front(pts) == [4]
    assert frontier.bits_for_accuracy(pts, 0.6) is None
    assert frontier.accuracy_within_bits(pts, 100) == 4


def test_min_bits_table_names_the_configuration():
    rows = [Row(point=0, total_bits=100, val_acc=0.95, test_acc=0.96),
            Row(point=1, total_bits=40, val_acc=0.97, test_acc=0.93),
            Row(point=2, total_bits=300, val_acc=0.99, test_acc=0.98),
            Row(point=3, total_bits=None, val_acc=1.0, test_acc=1.0)]
    table = frontier.min_bits_table(rows, [0.9, 0.98, 0.999])
    assert [(t["bits"], t["row"].point if t["row"] else None, t["test_acc"])
            for t in table] == [(40, 1, 0.93), (300, 2, 0.98), (None, None, None)]


@given(st.lists(st.tuples(st.integers(1, 10**6), st.floats(0.5, 1.0), st.floats(0.5, 1.0)),
                min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_min_bits_choice_ignores_test_accuracy(points, rnd):
    """Issue 12: the chosen rows do not move when the test accuracies are shuffled."""
    rows = [Row(point=i, total_bits=b, val_acc=v, test_acc=t)
            for i, (b, v, t) in enumerate(points)]
    tests = [r.test_acc for r in rows]
    rnd.shuffle(tests)
    shuffled = [dataclasses.replace(r, test_acc=t) for r, t in zip(rows, tests, strict=True)]
    levels = [0.6, 0.8, 0.9, 0.95, 0.99]
    chosen = [t["row"] and t["row"].point for t in frontier.min_bits_table(rows, levels)]
    assert chosen == [t["row"] and t["row"].point
                      for t in frontier.min_bits_table(shuffled, levels)]
