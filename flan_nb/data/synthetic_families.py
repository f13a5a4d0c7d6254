"""The synthetic suite's training families (flan_nb.data.synthetic): word lists written for this
suite and one generator per family, each `rng -> raw example fields`.
"""

from __future__ import annotations

import random
import string
from typing import Any

LETTERS = "ABCDEFGHIJ"
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
