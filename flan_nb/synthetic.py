"""Built-in synthetic task suite: training families and benchmark-shaped evaluation sets.

Everything here is generated locally from a seed (no downloads), so the whole pipeline can run
on a laptop. Each *family* is a small task type with a generator; `generate` turns a family,
a count and a seed into raw training examples in the project's raw-example schema. Some
families are *held out* of training, like the paper's held-out benchmarks, and
`benchmark_data` builds clearly-synthetic evaluation sets in exactly the raw record schemas of
MMLU, BBH, TyDiQA and MGSM so the real prompt builders run on them unchanged.

Split disjointness does not rely on seeds: every example's content is hashed into a bucket
(train 70%, validation 10%, test 20%), and a split only keeps examples whose bucket it owns.
So no test item can ever appear in a train set, whatever seeds the caller uses.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SOURCE = "synthetic"
SPLITS = ("train", "validation", "test")
# Buckets out of 100 owned by each split (see module docstring).
_SPLIT_BUCKETS = {"train": (0, 70), "validation": (70, 80), "test": (80, 100)}
LETTERS = "ABCDEFGHIJ"


class NotEnoughExamples(ValueError):
    """A family has fewer distinct items for a split than were asked for."""


@dataclass(frozen=True)
class FamilyInfo:
    """Metadata of one synthetic task family."""

    name: str
    category: str
    has_options: bool
    has_cot: bool
    held_out: bool
    fields: tuple[str, ...]  # extra per-example fields that templates may use
    description: str


# ---------------------------------------------------------------- word lists (written for this suite)

_NAMES = [
    ("Maya", "she"), ("Tom", "he"), ("Lena", "she"), ("Omar", "he"), ("Priya", "she"),
    ("Jonas", "he"), ("Aiko", "she"), ("Diego", "he"), ("Nora", "she"), ("Felix", "he"),
    ("Zara", "she"), ("Ravi", "he"), ("Ines", "she"), ("Kofi", "he"), ("Mila", "she"),
    ("Arlo", "he"),
]
_SURNAMES = ["Okafor", "Lindqvist", "Tanaka", "Moreau", "Haddad", "Petrov", "Castillo", "Brennan",
             "Nakamura", "Osei", "Varga", "Quinlan", "Reyes", "Sorensen"]
_CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Valparaiso", "Perth", "Bergen",
           "Tucson", "Hanoi", "Accra", "Ghent", "Cusco", "Tallinn", "Dundee", "Leipzig"]
_JOBS = ["teacher", "carpenter", "nurse", "pilot", "baker", "librarian", "chemist", "gardener",
         "translator", "plumber", "photographer", "surveyor"]
_SHOPS = ["bakery", "bookshop", "bicycle repair shop", "flower shop", "tea room", "pottery studio",
          "music store", "toy shop"]
_PETS = ["Biscuit", "Pepper", "Juniper", "Rocket", "Maple", "Noodle", "Pixel", "Clover", "Bruno",
         "Sprout"]
_ITEMS = ["stickers", "marbles", "pencils", "cookies", "stamps", "beads", "shells", "cards",
          "buttons", "crayons"]
_GOODS = ["notebooks", "mugs", "candles", "tickets", "plants", "scarves", "puzzles"]
_COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "brown"]

# Category -> words. Words are unique across categories so membership is unambiguous.
_CATEGORY_WORDS: dict[str, list[str]] = {
    "fruit": ["apple", "banana", "cherry", "mango", "pear", "plum", "kiwi", "grape", "peach",
              "apricot", "lemon", "papaya"],
    "vegetable": ["carrot", "cabbage", "onion", "potato", "leek", "celery", "spinach", "radish",
                  "turnip", "broccoli", "pumpkin"],
    "animal": ["tiger", "rabbit", "horse", "otter", "zebra", "camel", "beaver", "wolf", "sheep",
               "donkey", "badger", "moose"],
    "tool": ["hammer", "wrench", "chisel", "screwdriver", "saw", "pliers", "drill", "shovel",
             "rake", "crowbar"],
    "musical instrument": ["violin", "trumpet", "flute", "piano", "cello", "drum", "harp",
                           "clarinet", "banjo", "trombone", "accordion"],
    "vehicle": ["bus", "tractor", "bicycle", "truck", "scooter", "canoe", "taxi", "tram", "ferry",
                "van"],
    "piece of furniture": ["sofa", "wardrobe", "bookcase", "stool", "dresser", "bench", "desk",
                           "armchair", "cupboard"],
}
_CATEGORY_PLURAL = {"fruit": "fruits", "vegetable": "vegetables", "animal": "animals",
                    "tool": "tools", "musical instrument": "musical instruments",
                    "vehicle": "vehicles", "piece of furniture": "pieces of furniture"}
# Plural forms for object counting.
_PLURALS = {"cherry": "cherries", "mango": "mangoes", "peach": "peaches", "potato": "potatoes",
            "radish": "radishes", "wolf": "wolves", "sheep": "sheep", "moose": "moose",
            "bus": "buses", "taxi": "taxis", "ferry": "ferries", "bench": "benches",
            "wrench": "wrenches", "pliers": "pliers", "spinach": "bunches of spinach",
            "celery": "stalks of celery", "broccoli": "heads of broccoli"}
_COUNTING_CATEGORIES = ["fruit", "vegetable", "animal", "musical instrument", "vehicle"]
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

_VOCAB = sorted({
    "anchor", "blossom", "canyon", "dolphin", "ember", "falcon", "glacier", "harbor", "island",
    "jasmine", "kettle", "lantern", "meadow", "nectar", "orchid", "pebble", "quartz", "ribbon",
    "saddle", "thistle", "umbrella", "velvet", "walnut", "yonder", "zephyr", "acorn", "basket",
    "candle", "desert", "engine", "forest", "garden", "hollow", "insect", "jungle", "kitten",
    "ladder", "marble", "needle", "oyster", "parrot", "quiver", "rocket", "silver", "tunnel",
    "valley", "window", "yellow", "zipper", "bridge", "castle", "dragon", "feather", "granite",
    "helmet", "igloo", "journey", "knight", "lizard", "mirror", "noodle", "object", "pillow",
    "riddle", "shadow", "timber", "unicorn", "voyage", "wizard", "blanket", "compass", "drizzle",
    "echo", "fossil", "gravel", "horizon", "icicle", "jigsaw", "kayak", "lemonade", "magnet",
    "nutmeg", "orbit", "puzzle", "rhubarb", "saffron", "trumpet", "vessel", "whistle", "banner",
    "cobweb", "dune", "estuary", "fiddle", "goblet", "hammock", "ivory", "juggler", "kiosk",
    "lobster", "mosaic", "nomad", "olive", "pepper", "raven", "sparrow", "tulip", "walrus",
    "strawberry", "mississippi", "bookkeeper", "committee", "balloon", "coffee", "letter",
})


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(word: str) -> str:
    return _PLURALS.get(word, word + "s")


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _fmt_num(x: float) -> str:
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _mc(rng: random.Random, answer: str, distractors: list[str]) -> tuple[list[str], int]:
    options = [answer, *distractors]
    rng.shuffle(options)
    return options, options.index(answer)


def _listed_choices(question: str, options: list[str]) -> dict[str, str]:
    """The MMLU-shaped fields of a question whose training input lists the choices inline."""
    choices = ", ".join(options)
    return {"inputs": f"{question.removesuffix('?')}: {choices}?", "question": question,
            "choices": choices}


# ---------------------------------------------------------------- training families


def _arithmetic_word(rng: random.Random) -> dict[str, Any]:
    name, pr = rng.choice(_NAMES)
    cap = pr.capitalize()
    kind = rng.randrange(5)
    if kind == 0:
        item = rng.choice(_ITEMS)
        a, b, c = rng.randint(3, 40), rng.randint(2, 9), rng.randint(2, 12)
        total = a + b * c
        d = rng.randint(1, total - 1)
        ans = total - d
        q = (f"{name} has {a} {item}. {cap} buys {b} packs of {item} with {c} {item} in each pack. "
             f"Then {pr} gives {d} {item} to a friend. How many {item} does {name} have now?")
        steps = [f"{b} packs with {c} {item} each hold {b} * {c} = {b * c} {item}.",
                 f"After buying them, {name} has {a} + {b * c} = {total} {item}.",
                 f"After giving away {d}, {name} has {total} - {d} = {ans} {item}."]
    elif kind == 1:
        item = rng.choice(_GOODS)
        price, qty = rng.randint(2, 15), rng.randint(2, 6)
        cost = price * qty
        bill = next(b for b in (20, 50, 100) if b >= cost)
        ans = bill - cost
        q = (f"At a market, {item} cost ${price} each. {name} buys {qty} {item} and pays with a "
             f"${bill} bill. How many dollars of change does {name} get back?")
        steps = [f"{qty} {item} at ${price} each cost {qty} * {price} = ${cost}.",
                 f"The change is {bill} - {cost} = ${ans}."]
    elif kind == 2:
        a, m = rng.randint(5, 30), rng.randint(2, 3)
        tue = a * m
        f = rng.randint(1, tue - 1)
        wed = tue - f
        ans = a + tue + wed
        times = {2: "twice", 3: "three times"}[m]
        q = (f"{name} reads {a} pages on Monday and {times} as many pages on Tuesday. On Wednesday, "
             f"{pr} reads {f} fewer pages than on Tuesday. How many pages does {name} read over "
             f"the three days?")
        steps = [f"On Tuesday {name} reads {a} * {m} = {tue} pages.",
                 f"On Wednesday {pr} reads {tue} - {f} = {wed} pages.",
                 f"Over the three days that is {a} + {tue} + {wed} = {ans} pages."]
    elif kind == 3:
        rows, per = rng.randint(3, 12), rng.randint(4, 15)
        total = rows * per
        removed = rng.randint(1, total // 3)
        left = total - removed
        seated = rng.randint(1, left - 1)
        ans = left - seated
        q = (f"A hall has {rows} rows of chairs with {per} chairs in each row. Workers carry "
             f"{removed} chairs out, and then {seated} guests sit down. How many empty chairs are "
             f"left in the hall?")
        steps = [f"The hall starts with {rows} * {per} = {total} chairs.",
                 f"After {removed} are carried out, {total} - {removed} = {left} chairs remain.",
                 f"With {seated} guests seated, {left} - {seated} = {ans} chairs are empty."]
    else:
        friends = rng.randint(2, 6)
        share = rng.randint(2, 9)
        extra = rng.randint(1, 12)
        baked = friends * share + extra
        kept = extra
        q = (f"{name} bakes {baked} muffins. {cap} keeps {kept} for the family and shares the rest "
             f"equally among {friends} friends. How many muffins does each friend get?")
        ans = share
        steps = [f"{name} shares {baked} - {kept} = {baked - kept} muffins.",
                 f"Split among {friends} friends, each gets {baked - kept} / {friends} = {ans} "
                 f"muffins."]
    return {"inputs": q, "targets": str(ans), "rationale": " ".join(steps), "question": q}


def _word_sorting(rng: random.Random) -> dict[str, Any]:
    words = rng.sample(_VOCAB, rng.randint(4, 8))
    ordered = sorted(words)
    firsts = ", ".join(w[0] for w in words)
    return {
        "inputs": f"Sort the following words alphabetically: {' '.join(words)}",
        "targets": " ".join(ordered),
        "rationale": (f"The words begin with the letters {firsts}. Comparing them letter by "
                      f"letter puts them in the order {', '.join(ordered)}."),
        "words": " ".join(words),
    }


def _object_counting(rng: random.Random) -> dict[str, Any]:
    cat = rng.choice(_COUNTING_CATEGORIES)
    others = [c for c in _COUNTING_CATEGORIES if c != cat]
    wanted = rng.sample(_CATEGORY_WORDS[cat], rng.randint(2, 4))
    noise = [rng.choice(_CATEGORY_WORDS[rng.choice(others)]) for _ in range(rng.randint(1, 3))]
    noise = list(dict.fromkeys(w for w in noise if w not in wanted))
    counts = {w: rng.randint(1, 4) for w in wanted + noise}
    order = wanted + noise
    rng.shuffle(order)

    def phrase(w: str) -> str:
        k = counts[w]
        return _article(w) if k == 1 else f"{_NUMBER_WORDS[k]} {_plural(w)}"

    listed = [phrase(w) for w in order]
    items = ", ".join(listed[:-1]) + f", and {listed[-1]}" if len(listed) > 2 else " and ".join(listed)
    plural_cat = _CATEGORY_PLURAL[cat]
    q = f"I have {items}. How many {plural_cat} do I have?"
    ans = sum(counts[w] for w in wanted)
    in_order = [w for w in order if w in wanted]
    rationale = (f"The {plural_cat} in the list are: "
                 + ", ".join(f"{phrase(w)} ({counts[w]})" for w in in_order)
                 + f". Adding them up: {' + '.join(str(counts[w]) for w in in_order)} = {ans}.")
    return {"inputs": q, "targets": str(ans), "rationale": rationale, "question": q}


def _list_ops(rng: random.Random) -> dict[str, Any]:
    nums = [rng.randint(0, 99) for _ in range(rng.randint(4, 8))]
    shown = ", ".join(map(str, nums))
    op = rng.choice(["reverse", "max", "sum", "nth"])
    if op == "reverse":
        question = "Reverse the order of the numbers in the list."
        target = ", ".join(map(str, reversed(nums)))
        rationale = f"Reading the list from its last number back to its first gives {target}."
    elif op == "max":
        question = "What is the largest number in the list?"
        target = str(max(nums))
        rationale = f"Going through {shown} and keeping the biggest value seen, we end with {target}."
    elif op == "sum":
        question = "What is the sum of the numbers in the list?"
        target = str(sum(nums))
        rationale = f"Adding the numbers: {' + '.join(map(str, nums))} = {target}."
    else:
        k = rng.randint(1, len(nums))
        question = f"What is the {_ordinal(k)} number in the list?"
        target = str(nums[k - 1])
        rationale = f"Counting from the left, position {k} of {shown} holds {target}."
    return {"inputs": f"{question}\nList: [{shown}]", "targets": target, "rationale": rationale,
            "numbers": shown, "op_question": question}


def _string_transform(rng: random.Random) -> dict[str, Any]:
    text = " ".join(rng.sample(_VOCAB, rng.randint(1, 3)))
    op = rng.choice(["reverse", "upper", "novowels", "title"])
    if op == "reverse":
        instruction, target = "Write the text backwards, letter by letter.", text[::-1]
    elif op == "upper":
        instruction, target = "Rewrite the text in capital letters.", text.upper()
    elif op == "novowels":
        instruction = "Delete every vowel (a, e, i, o, u) from the text."
        target = "".join(ch for ch in text if ch not in "aeiou")
    else:
        instruction, target = "Capitalize the first letter of every word.", text.title()
    return {"inputs": f"{instruction}\nText: {text}", "targets": target, "rationale": "",
            "text": text, "op_instruction": instruction}


def _letter_counting(rng: random.Random) -> dict[str, Any]:
    # one or two words: single words alone give only ~2k distinct items
    word = " ".join(rng.sample(_VOCAB, 1 if rng.random() < 0.4 else 2))
    letters = word.replace(" ", "")
    letter = rng.choice(letters) if rng.random() < 0.75 else rng.choice(string.ascii_lowercase)
    positions = [i + 1 for i, ch in enumerate(letters) if ch == letter]
    spelled = " ".join("-".join(w) for w in word.split())
    if positions:
        where = ", ".join(map(str, positions))
        rationale = (f"Spelling it out: {spelled}. The letter \"{letter}\" is at letter position(s) "
                     f"{where}, which is {len(positions)} occurrence(s).")
    else:
        rationale = f"Spelling it out: {spelled}. The letter \"{letter}\" never occurs."
    return {"inputs": f"How many times does the letter \"{letter}\" appear in \"{word}\"?",
            "targets": str(len(positions)), "rationale": rationale, "word": word, "letter": letter}


def _sequence_continuation(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["arith", "geom", "square", "fib"])
    k = rng.randint(4, 6)
    if kind == "arith":
        start, step = rng.randint(-50, 150), rng.choice([d for d in range(-15, 16) if abs(d) > 1])
        seq = [start + step * i for i in range(k + 1)]
        rule = (f"Each number is {abs(step)} {'more' if step > 0 else 'less'} than the one before "
                f"it, so the next is {seq[-2]} {'+' if step > 0 else '-'} {abs(step)} = {seq[-1]}.")
    elif kind == "geom":
        start, ratio = rng.randint(1, 12), rng.choice([2, 3, 4, 5])
        seq = [start * ratio**i for i in range(k + 1)]
        rule = (f"Each number is {ratio} times the one before it, so the next is "
                f"{seq[-2]} * {ratio} = {seq[-1]}.")
    elif kind == "square":
        off = rng.randint(1, 20)
        seq = [(off + i) ** 2 for i in range(k + 1)]
        rule = (f"These are the squares {', '.join(f'{off + i}*{off + i}' for i in range(k))}, so "
                f"the next is {off + k}*{off + k} = {seq[-1]}.")
    else:
        a, b = rng.randint(1, 15), rng.randint(1, 15)
        seq = [a, b]
        while len(seq) < k + 1:
            seq.append(seq[-1] + seq[-2])
        rule = (f"Each number is the sum of the two before it, so the next is "
                f"{seq[-3]} + {seq[-2]} = {seq[-1]}.")
    shown = ", ".join(map(str, seq[:-1]))
    return {"inputs": f"What number comes next in the sequence {shown}, ...?",
            "targets": str(seq[-1]), "rationale": rule, "sequence": shown}


def _comparison(rng: random.Random) -> dict[str, Any]:
    a = rng.randint(10, 9999)
    if rng.random() < 0.5:  # near misses make the task less trivial
        digits = list(str(a))
        rng.shuffle(digits)
        b = int("".join(digits)) if digits[0] != "0" else a + rng.randint(1, 9)
    else:
        b = rng.randint(10, 9999)
    if a == b:
        b = a + rng.choice([-1, 1]) * rng.randint(1, 20)
    relation = rng.choice(["greater than", "less than"])
    holds = a > b if relation == "greater than" else a < b
    options = ["yes", "no"]
    target = "yes" if holds else "no"
    return {"inputs": f"Is {a} {relation} {b}?", "targets": target,
            "rationale": f"Comparing the two numbers, {a} is {'greater' if a > b else 'less'} "
                         f"than {b}.",
            "options": options, "answer_index": options.index(target),
            "a": str(a), "b": str(b), "relation": relation}


def _extractive_qa(rng: random.Random) -> dict[str, Any]:
    (first, pr), last = rng.choice(_NAMES), rng.choice(_SURNAMES)
    cap = pr.capitalize()
    full = f"{first} {last}"
    city, city2 = rng.sample(_CITIES, 2)
    year, years = str(rng.randint(1931, 2001)), rng.randint(2, 19)
    job, shop, pet = rng.choice(_JOBS), rng.choice(_SHOPS), rng.choice(_PETS)
    sentences = [f"{full} was born in {city} in {year}.",
                 f"{cap} worked as a {job} for {years} years.",
                 f"Later, {pr} moved to {city2}, where {pr} opened a small {shop}.",
                 f"{cap} shares a house with a dog named {pet}."]
    tail = sentences[1:]
    rng.shuffle(tail)
    context = " ".join([sentences[0], *tail])
    question, answer = rng.choice([
        (f"Where was {full} born?", city),
        (f"In which year was {full} born?", year),
        (f"What did {full} work as?", job),
        (f"Which city did {full} move to?", city2),
        (f"What kind of business did {full} open?", shop),
        (f"What is the name of {full}'s dog?", pet),
    ])
    return {"inputs": f"{context}\n\nQuestion: {question}", "targets": answer, "rationale": "",
            "context": context, "question": question}


def _parity(rng: random.Random) -> dict[str, Any]:
    n = rng.randint(1, 99999)
    last = n % 10
    options = ["even", "odd"]
    target = options[n % 2]
    return {"inputs": f"Is {n} even or odd?", "targets": target,
            "rationale": f"The last digit of {n} is {last}, which is {options[last % 2]}.",
            "options": options, "answer_index": n % 2, "number": str(n)}


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


# ---------------------------------------------------------------- registry

_Generator = Callable[[random.Random], dict[str, Any]]
_REGISTRY: dict[str, tuple[FamilyInfo, _Generator]] = {}


def _register(name: str, category: str, gen: _Generator, *, options: bool, cot: bool,
              held_out: bool, fields: tuple[str, ...], description: str) -> None:
    _REGISTRY[name] = (FamilyInfo(name, category, options, cot, held_out, fields, description), gen)


_register("arithmetic_word", "math word problems", _arithmetic_word, options=False, cot=True,
          held_out=False, fields=("question",), description="multi-step arithmetic stories")
_register("word_sorting", "sorting", _word_sorting, options=False, cot=True, held_out=False,
          fields=("words",), description="sort words alphabetically")
_register("object_counting", "counting", _object_counting, options=False, cot=True,
          held_out=False, fields=("question",), description="count objects of one category")
_register("list_ops", "list manipulation", _list_ops, options=False, cot=True, held_out=False,
          fields=("numbers", "op_question"), description="reverse / max / sum / nth of a list")
_register("string_transform", "string manipulation", _string_transform, options=False, cot=False,
          held_out=False, fields=("text", "op_instruction"),
          description="reverse, uppercase, remove vowels, capitalize")
_register("letter_counting", "counting", _letter_counting, options=False, cot=True,
          held_out=False, fields=("word", "letter"), description="count a letter in a word")
_register("sequence_continuation", "pattern completion", _sequence_continuation, options=False,
          cot=True, held_out=False, fields=("sequence",), description="next number of a sequence")
_register("comparison", "comparison", _comparison, options=True, cot=True, held_out=False,
          fields=("a", "b", "relation"), description="is a greater/less than b (yes/no)")
_register("extractive_qa", "extractive question answering", _extractive_qa, options=False,
          cot=False, held_out=False, fields=("context", "question"),
          description="answer is a span of a short biography")
_register("parity", "classification", _parity, options=True, cot=True, held_out=False,
          fields=("number",), description="is a number even or odd")
_register("largest_number", "multiple-choice comparison", _largest_number, options=True, cot=True,
          held_out=True, fields=("question", "choices"),
          description="pick the largest/smallest of four numbers")
_register("odd_one_out", "multiple-choice categorization", _odd_one_out, options=True, cot=True,
          held_out=True, fields=("question", "choices"),
          description="pick the word from another category")
_register("word_category", "multiple-choice categorization", _word_category, options=True,
          cot=True, held_out=True, fields=("question", "category", "choices"),
          description="pick the word that belongs to a category")
_register("unit_conversion", "multiple-choice arithmetic", _unit_conversion, options=True,
          cot=True, held_out=True,
          fields=("question", "quantity", "from_unit", "to_unit", "choices"),
          description="convert between units")
_register("boolean_logic", "logic", _boolean_logic, options=False, cot=True,
          held_out=True, fields=("expression",), description="evaluate a Boolean expression")
_register("date_shift", "date arithmetic", _date_shift, options=True, cot=True, held_out=True,
          fields=("question", "date", "days", "direction"),
          description="date N days after/before a date, MM/DD/YYYY")
_register("tracking_swaps", "state tracking", _tracking_swaps, options=False, cot=True,
          held_out=True, fields=("question",), description="track objects through swaps")
_register("multistep_arithmetic", "arithmetic", _multistep_arithmetic, options=False, cot=True,
          held_out=True, fields=("expression",), description="evaluate nested integer arithmetic")

FAMILIES: tuple[str, ...] = tuple(_REGISTRY)
MMLU_SUBJECTS = ("largest_number", "odd_one_out", "word_category", "unit_conversion")
BBH_SUBTASKS = ("boolean_logic", "date_shift", "tracking_swaps", "multistep_arithmetic")
PSEUDO_LANGUAGES = ("synth_en", "synth_xx", "synth_yy")
_BBH_DESCRIPTIONS = {
    "boolean_logic": "Work out whether a Boolean expression is True or False.",
    "date_shift": "Find the date that lies a given number of days before or after another date.",
    "tracking_swaps": "Follow a series of swaps and say who ends up holding what.",
    "multistep_arithmetic": "Compute the value of a nested arithmetic expression.",
}


def family_info(name: str) -> FamilyInfo:
    """Metadata of a family; KeyError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown synthetic family {name!r}; known: {', '.join(FAMILIES)}")
    return _REGISTRY[name][0]


def training_families() -> list[str]:
    return [n for n in FAMILIES if not _REGISTRY[n][0].held_out]


def held_out_families() -> list[str]:
    return [n for n in FAMILIES if _REGISTRY[n][0].held_out]


# ---------------------------------------------------------------- generation


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _content_key(ex: dict[str, Any]) -> str:
    # Sorted options: a reordering of the same choices is the same item for disjointness.
    return ex["inputs"] + "\x1f" + "\x1f".join(sorted(ex.get("options", [])))


def _split_of(family: str, key: str) -> str:
    bucket = int(_digest(f"split|{family}|{key}")[:8], 16) % 100
    for split, (lo, hi) in _SPLIT_BUCKETS.items():
        if lo <= bucket < hi:
            return split
    raise AssertionError(bucket)  # buckets cover 0..99


def generate(family: str, n: int, seed: int, split: str = "train") -> list[dict[str, Any]]:
    """`n` unique raw examples of `family` for `split`; the same arguments give identical output."""
    info = family_info(family)
    gen = _REGISTRY[family][1]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for synthetic family {family!r}; use {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n} for synthetic family {family!r}")
    rng = random.Random(int(_digest(f"{family}|{seed}|{split}")[:16], 16))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts, limit = 0, 1000 + 60 * n
    while len(out) < n:
        attempts += 1
        if attempts > limit:
            raise NotEnoughExamples(f"synthetic family {family!r}: only {len(out)} unique {split} examples "
                             f"of {n} requested after {limit} draws (seed {seed})")
        ex = gen(rng)
        key = _content_key(ex)
        if key in seen or _split_of(family, key) != split:
            continue
        seen.add(key)
        record: dict[str, Any] = {
            "task": f"synthetic_{family}",
            "inputs": ex["inputs"],
            "targets": ex["targets"],
            "rationale": ex.get("rationale", "") if info.has_cot else "",
            "options": list(ex.get("options", [])),
            "example_id": f"synthetic/{family}/{split}/{_digest(key)[:16]}",
            "source": SOURCE,
        }
        if info.has_options:
            record["answer_index"] = ex["answer_index"]
        for field in info.fields:
            record[field] = ex[field]
        out.append(record)
    return out


def as_dataset(family: str, n: int, seed: int, split: str = "train"):
    """`generate` as a `datasets.Dataset` with explicit features (stable types across families)."""
    import datasets  # heavy import, only needed here

    rows = generate(family, n, seed, split)
    info = family_info(family)
    feats = {"task": datasets.Value("string"), "inputs": datasets.Value("string"),
             "targets": datasets.Value("string"), "rationale": datasets.Value("string"),
             "options": datasets.Sequence(datasets.Value("string")),
             "example_id": datasets.Value("string"), "source": datasets.Value("string")}
    if info.has_options:
        feats["answer_index"] = datasets.Value("int64")
    for field in info.fields:
        feats[field] = datasets.Value("string")
    return datasets.Dataset.from_list(rows, features=datasets.Features(feats))


# ---------------------------------------------------------------- pseudo-languages


@functools.cache  # translate() runs per field of every item; the table is fixed per language
def _cipher_table(lang: str) -> dict[int, str] | None:
    if lang == "synth_en":
        return None
    rng = random.Random(int(_digest(f"cipher|{lang}")[:16], 16))
    lower = list(string.ascii_lowercase)
    rng.shuffle(lower)
    table = {ord(a): b for a, b in zip(string.ascii_lowercase, lower, strict=True)}
    table.update({ord(a.upper()): b.upper() for a, b in zip(string.ascii_lowercase, lower,
                                                            strict=True)})
    return table


def translate(text: str, lang: str) -> str:
    """English -> pseudo-language `lang` by a fixed letter substitution (keeps spans and digits)."""
    if lang not in PSEUDO_LANGUAGES:
        raise ValueError(f"unknown pseudo-language {lang!r}; known: {PSEUDO_LANGUAGES}")
    table = _cipher_table(lang)
    return text if table is None else text.translate(table)


# ---------------------------------------------------------------- benchmark-shaped eval sets


def _mmlu(n: int, seed: int) -> dict[str, Any]:
    test, dev, cot = {}, {}, {}
    for subject in MMLU_SUBJECTS:
        def rec(ex: dict[str, Any], subject: str = subject) -> dict[str, Any]:
            return {"subject": subject, "question": ex["question"], "choices": list(ex["options"]),
                    "answer": int(ex["answer_index"])}

        test_ex = generate(subject, n, seed, "test")
        dev_ex = generate(subject, 5, seed, "validation")
        test[subject] = [rec(e) for e in test_ex]
        dev[subject] = [rec(e) for e in dev_ex]
        blocks = []
        for e in dev_ex:
            choices = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(e["options"]))
            blocks.append(f"Q: {e['question']}\n{choices}\nA: Let's think step by step. "
                          f"{e['rationale']} The answer is ({LETTERS[e['answer_index']]}).")
        header = ("The following are multiple choice questions (with answers) about "
                  f"{subject.replace('_', ' ')}.\n\n")
        cot[subject] = header + "\n\n".join(blocks)
    # "items"/"exemplars" alias the same lists for flan_nb.benchmark_data.from_mapping.
    return {"test": test, "dev": dev, "cot_prompts": cot, "items": test, "exemplars": dev}


def _bbh_record(ex: dict[str, Any]) -> dict[str, str]:
    if ex["options"]:
        lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(ex["options"]))
        return {"input": f"{ex['inputs']}\nOptions:\n{lines}",
                "target": f"({LETTERS[ex['answer_index']]})"}
    return {"input": ex["inputs"], "target": ex["targets"]}


def _bbh(n: int, seed: int) -> dict[str, Any]:
    tasks, prompts = {}, {}
    for sub in BBH_SUBTASKS:
        tasks[sub] = [_bbh_record(e) for e in generate(sub, n, seed, "test")]
        blocks = []
        for e in generate(sub, 3, seed, "validation"):
            r = _bbh_record(e)
            blocks.append(f"Q: {r['input']}\nA: Let's think step by step.\n{e['rationale']} "
                          f"So the answer is {r['target']}.")
        prompts[sub] = _BBH_DESCRIPTIONS[sub] + "\n\n" + "\n\n".join(blocks)
    return {"tasks": tasks, "cot_prompts": prompts, "items": tasks, "exemplars": prompts}


def _tydiqa(n: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"dev": {}, "train": {}}
    for part, split in (("dev", "test"), ("train", "train")):
        base = generate("extractive_qa", n, seed, split)
        for lang in PSEUDO_LANGUAGES:
            out[part][lang] = [
                {"id": f"synth-tydiqa-{lang}-{part}-{e['example_id'].rsplit('/', 1)[1]}",
                 "context": translate(e["context"], lang),
                 "question": translate(e["question"], lang),
                 "answers": [translate(e["targets"], lang)]}
                for e in base]
    out["items"] = out["dev"]
    # benchmark_data wants one-shot candidates in order of preference: shortest first.
    out["exemplars"] = {lang: sorted(rows, key=lambda r: (len(r["context"]) + len(r["question"]),
                                                          r["id"]))
                        for lang, rows in out["train"].items()}
    return out


MGSM_PREFIXES = {"question": "Question:", "answer": "Step-by-Step Answer:"}
# Kept in English in every pseudo-language: the shared answer extractor always accepts
# "The answer is", and a cipher of it would make scoring depend on per-language settings.
MGSM_ANSWER_SENTENCE = "The answer is"


def mgsm_prefixes(lang: str) -> dict[str, str]:
    """The exemplar prefixes of a pseudo-language (the real exemplars carry per-language ones)."""
    out = {k: translate(v, lang) for k, v in MGSM_PREFIXES.items()}
    out["answer_sentence"] = MGSM_ANSWER_SENTENCE
    return out


def _mgsm(n: int, seed: int) -> dict[str, Any]:
    test_ex = generate("arithmetic_word", n, seed, "test")
    shots = generate("arithmetic_word", 8, seed, "validation")
    test, exemplars = {}, {}
    prefixes = {lang: mgsm_prefixes(lang) for lang in PSEUDO_LANGUAGES}
    for lang, p in prefixes.items():
        test[lang] = [{"question": translate(e["question"], lang), "answer": e["targets"]}
                      for e in test_ex]
        exemplars[lang] = {
            str(i + 1): {"q": f"{p['question']} {translate(e['question'], lang)}",
                         "a": (f"{p['answer']} {translate(e['rationale'], lang)} "
                               f"{p['answer_sentence']} {e['targets']}.")}
            for i, e in enumerate(shots)}
    return {"test": test, "exemplars": exemplars, "prefixes": prefixes, "items": test}


_BENCHMARKS = {"mmlu": _mmlu, "bbh": _bbh, "tydiqa": _tydiqa, "mgsm": _mgsm}


def benchmark_data(benchmark: str, n_per_subtask: int = 20, seed: int = 0) -> dict[str, Any]:
    """Synthetic stand-in for a benchmark, in the raw record schema its prompt builder reads.

    Items come from the held-out families' test split (MMLU, BBH) or from the test split of a
    training family (TyDiQA from extractive_qa, MGSM from arithmetic_word, mirroring how the paper
    trains on SQuAD-like QA and GSM8K yet evaluates on held-out TyDiQA and MGSM). Exemplars and
    CoT prompts come from the validation split, so they never coincide with a test item.
    The result carries `"meta": {"synthetic": True, ...}` so it cannot pass for real data, plus
    `"items"`/`"exemplars"` keys aliasing the same lists in the form
    `flan_nb.benchmark_data.from_mapping` reads (scored items; dev records, cot-prompt texts,
    one-shot candidates shortest first, or the 8 MGSM exemplars).
    """
    if benchmark not in _BENCHMARKS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {', '.join(_BENCHMARKS)}")
    data = _BENCHMARKS[benchmark](n_per_subtask, seed)
    data["meta"] = {"synthetic": True, "benchmark": benchmark, "seed": seed,
                    "n_per_subtask": n_per_subtask}
    return data
