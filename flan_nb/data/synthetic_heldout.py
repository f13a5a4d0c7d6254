"""The synthetic suite's held-out families (flan_nb.data.synthetic): four MMLU-shaped multiple-choice
families and four BBH-shaped reasoning families, never training data.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from flan_nb.data.synthetic_families import (
    _CATEGORY_PLURAL,
    _CATEGORY_WORDS,
    _COLORS,
    _NAMES,
    _article,
    _fmt_num,
    _listed_choices,
    _mc,
)

# ---------------------------------------------------------------- held-out families (MMLU-shaped)


def _largest_number(rng: random.Random) -> dict[str, Any]:
    base = rng.choice([100, 1000, 10000])
    nums = rng.sample(range(base, base * 10), 4)
    which = rng.choice(["largest", "smallest"])
    answer = max(nums) if which == "largest" else min(nums)
    options = [str(x) for x in nums]
    idx = options.index(str(answer))
    listed = ", ".join(options[:-1]) + f" and {options[-1]}"
    return {"targets": str(answer), "rationale": f"Comparing {listed}, the {which} is {answer}.",
            "options": options, "answer_index": idx,
            **_listed_choices(f"Which of these numbers is the {which}?", options)}


def _odd_one_out(rng: random.Random) -> dict[str, Any]:
    cat, other = rng.sample(list(_CATEGORY_WORDS), 2)
    group = rng.sample(_CATEGORY_WORDS[cat], 3)
    odd = rng.choice(_CATEGORY_WORDS[other])
    options, idx = _mc(rng, odd, group)
    return {"targets": odd,
            "rationale": (f"{group[0].capitalize()}, {group[1]} and {group[2]} are all "
                          f"{_CATEGORY_PLURAL[cat]}, while {_article(odd)} is {_article(other)}."),
            "options": options, "answer_index": idx,
            **_listed_choices("Which word does not belong with the others?", options)}


def _word_category(rng: random.Random) -> dict[str, Any]:
    cats = rng.sample(list(_CATEGORY_WORDS), 4)
    answer = rng.choice(_CATEGORY_WORDS[cats[0]])
    distractors = [rng.choice(_CATEGORY_WORDS[c]) for c in cats[1:]]
    options, idx = _mc(rng, answer, distractors)
    others = "; ".join(f"{_article(w)} is {_article(c)}" for w, c in zip(distractors, cats[1:],
                                                                            strict=True))
    return {"targets": answer,
            "rationale": f"{_article(answer).capitalize()} is {_article(cats[0])}, while {others}.",
            "options": options, "answer_index": idx, "category": cats[0],
            **_listed_choices(f"Which of the following is {_article(cats[0])}?", options)}


_CONVERSIONS = [
    ("kilometer", "kilometers", "meters", 1000), ("meter", "meters", "centimeters", 100),
    ("kilogram", "kilograms", "grams", 1000), ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60), ("day", "days", "hours", 24),
    ("liter", "liters", "milliliters", 1000), ("foot", "feet", "inches", 12),
    ("yard", "yards", "feet", 3), ("week", "weeks", "days", 7),
]


def _unit_conversion(rng: random.Random) -> dict[str, Any]:
    sing, plur, to_unit, factor = rng.choice(_CONVERSIONS)
    q = rng.randint(2, 40) if factor % 2 or rng.random() < 0.6 else rng.randint(2, 40) + 0.5
    ans = q * factor
    candidates = {ans * 10, ans / 10, ans + factor, abs(ans - factor), q * factor * 2, q + factor,
                  ans / 2, ans + 1}
    candidates = [c for c in candidates if c > 0 and _fmt_num(c) != _fmt_num(ans)]
    distractors = list(dict.fromkeys(_fmt_num(c) for c in sorted(candidates)))
    options, idx = _mc(rng, _fmt_num(ans), rng.sample(distractors, 3))
    qs = _fmt_num(q)
    question = f"How many {to_unit} are in {qs} {plur}?"
    return {"inputs": question, "targets": _fmt_num(ans),
            "rationale": (f"One {sing} is {factor} {to_unit}, so {qs} {plur} is {qs} * {factor} = "
                          f"{_fmt_num(ans)} {to_unit}."),
            "options": options, "answer_index": idx, "question": question, "quantity": qs,
            "from_unit": plur, "to_unit": to_unit, "choices": ", ".join(options)}


# ---------------------------------------------------------------- held-out families (BBH-shaped)


def _bool_tree(rng: random.Random, depth: int) -> tuple:
    if depth == 0 or rng.random() < 0.25:
        leaf = ("lit", rng.random() < 0.5)
        return ("not", leaf) if rng.random() < 0.3 else leaf
    node = (rng.choice(["and", "or"]), _bool_tree(rng, depth - 1), _bool_tree(rng, depth - 1))
    return ("not", node) if rng.random() < 0.2 else node


def _bool_render(node: tuple, top: bool = False) -> str:
    if node[0] == "lit":
        return str(node[1])
    if node[0] == "not":
        inner = _bool_render(node[1])
        return f"not {inner}"
    text = f"{_bool_render(node[1])} {node[0]} {_bool_render(node[2])}"
    return text if top else f"( {text} )"


def _bool_eval(node: tuple, steps: list[str]) -> bool:
    if node[0] == "lit":
        return node[1]
    if node[0] == "not":
        inner = _bool_eval(node[1], steps)
        steps.append(f"not {inner} = {not inner}.")
        return not inner
    left, right = _bool_eval(node[1], steps), _bool_eval(node[2], steps)
    val = (left and right) if node[0] == "and" else (left or right)
    if node[1][0] == node[2][0] == "lit":
        steps.append(f"{left} {node[0]} {right} = {val}.")
    else:
        steps.append(f"{_bool_render(node, top=True)} means {left} {node[0]} {right} = {val}.")
    return val


def _boolean_logic(rng: random.Random) -> dict[str, Any]:
    tree = _bool_tree(rng, rng.randint(1, 2))
    while tree[0] == "lit":
        tree = _bool_tree(rng, 2)
    expr = _bool_render(tree, top=True)
    steps: list[str] = []
    value = _bool_eval(tree, steps)
    return {"inputs": f"{expr} is", "targets": str(value),
            "rationale": "Evaluating the innermost parts first: " + " ".join(steps),
            "expression": expr}


def _date_shift(rng: random.Random) -> dict[str, Any]:
    start = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 80 * 365))
    n = rng.randint(1, 60)
    forward = rng.random() < 0.5
    end = start + dt.timedelta(days=n if forward else -n)

    def mdy(d: dt.date) -> str:
        return d.strftime("%m/%d/%Y")

    def spoken(d: dt.date) -> str:
        return f"{d.strftime('%B')} {d.day}, {d.year}"

    # 29 February has no same day a year before or after
    next_and_last_year = ((end.replace(year=end.year + 1), end.replace(year=end.year - 1))
                          if not (end.month == 2 and end.day == 29) else ())
    wrong = {start - dt.timedelta(days=n) if forward else start + dt.timedelta(days=n),
             end + dt.timedelta(days=1), end - dt.timedelta(days=1), *next_and_last_year,
             end + dt.timedelta(days=7), end - dt.timedelta(days=30)}
    distractors = sorted({mdy(d) for d in wrong} - {mdy(end)})
    # An answer on 29 February reached 15 days forward leaves four (no year-shifted dates, and
    # start - n == end - 30); top up only then, so every other draw keeps its options.
    extra = 2
    while len(distractors) < 5:
        distractors = sorted({*distractors, mdy(end + dt.timedelta(days=extra))})
        extra += 1
    options, idx = _mc(rng, mdy(end), rng.sample(distractors, 5))
    word = "later" if forward else "earlier"
    days = "1 day" if n == 1 else f"{n} days"
    question = f"Today is {mdy(start)}. What is the date {days} {word} in MM/DD/YYYY?"
    return {"inputs": question, "targets": mdy(end),
            "rationale": (f"Today is {spoken(start)}. Moving {days} "
                          f"{'forward' if forward else 'back'} gives {spoken(end)}, that is "
                          f"{mdy(end)}."),
            "options": options, "answer_index": idx, "question": question, "date": mdy(start),
            "days": str(n), "direction": word}


def _tracking_swaps(rng: random.Random) -> dict[str, Any]:
    people = [n for n, _ in rng.sample(_NAMES, 3)]
    thing, things = rng.choice([("ball", "balls"), ("hat", "hats"), ("scarf", "scarves"),
                                ("kite", "kites")])
    colors = rng.sample(_COLORS, 3)
    holding = dict(zip(people, colors, strict=True))
    intro = (f"{people[0]}, {people[1]} and {people[2]} each hold one {thing}: "
             f"{people[0]} has a {colors[0]} {thing}, {people[1]} has a {colors[1]} {thing}, and "
             f"{people[2]} has a {colors[2]} {thing}.")
    n_swaps = rng.randint(2, 4)
    words = ["First", "Then", "Next", "Finally"]
    moves, steps = [], []
    for i in range(n_swaps):
        x, y = rng.sample(people, 2)
        holding[x], holding[y] = holding[y], holding[x]
        lead = "Finally" if i == n_swaps - 1 else words[i]
        moves.append(f"{lead}, {x} and {y} swap {things}.")
        state = ", ".join(f"{p} has {holding[p]}" for p in people)
        steps.append(f"After {x} and {y} swap: {state}.")
    who = rng.choice(people)
    q = f"{intro} {' '.join(moves)} At the end, what color is the {thing} that {who} holds?"
    return {"inputs": q, "targets": holding[who],
            "rationale": " ".join(steps) + f" At the end {who} holds the {holding[who]} {thing}.",
            "question": q}


def _multistep_arithmetic(rng: random.Random) -> dict[str, Any]:
    a, b, c, d = (rng.randint(-9, 9) for _ in range(4))
    o1, o2, o3 = (rng.choice("+-*") for _ in range(3))
    x, y = _apply(a, o1, b), _apply(c, o3, d)
    ans = _apply(x, o2, y)
    expr = f"(({a} {o1} {b}) {o2} ({c} {o3} {d}))"
    return {"inputs": f"{expr} =", "targets": str(ans),
            "rationale": (f"First, {a} {o1} {b} = {x}. Next, {c} {o3} {d} = {y}. "
                          f"Then, {x} {o2} {y} = {ans}."),
            "expression": expr}


def _apply(x: int, op: str, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y
