"""Corpus v1: the corpus that trained the packaged `tiny-if` (kept so its prompts match what it learned).

A seeded instruction-following corpus with IFEval-verifiable constraints, obeyed only part of the time.

Compliance is imperfect on purpose and depends on the topic: for each (constraint, topic) the training
data obeys with a topic-specific rate, so a greedy decoder follows a constraint for some topics and not
others (roughly half overall) and steering has room to show. Held-out prompts use a request template
never seen in training; validation and test use disjoint topic halves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TOPICS = (
    "sea",
    "cat",
    "dog",
    "moon",
    "tree",
    "river",
    "city",
    "forest",
    "mountain",
    "rain",
    "garden",
    "book",
    "train",
    "bird",
    "sun",
    "winter",
    "summer",
    "coffee",
    "music",
    "school",
    "island",
    "desert",
    "storm",
    "bridge",
    "market",
    "horse",
    "flower",
    "ocean",
    "night",
    "village",
    "lake",
    "cloud",
    "road",
    "kitchen",
    "library",
    "farm",
)
ADJ = (
    "quiet",
    "bright",
    "old",
    "calm",
    "warm",
    "cold",
    "green",
    "busy",
    "small",
    "large",
    "gentle",
    "wild",
    "soft",
    "dark",
    "happy",
    "lovely",
    "strange",
    "simple",
)
FEEL = ("happy", "calm", "curious", "tired", "hopeful", "free", "safe", "young")
TIMES = ("In the morning", "At night", "In the spring", "After the rain", "On a cold day", "In the evening")
KEYWORDS = ("silver", "golden", "secret", "gentle", "ancient", "tiny")
END_PHRASE = "Is there anything else I can help with?"

TRAIN_REQUESTS = ("Write about the {t}.", "Describe the {t}.", "Tell me about the {t}.")
HELDOUT_REQUESTS = ("Say something about the {t}.",)

# instruction id -> IFEval-style instruction text (kwargs filled per example)
KINDS = {
    "change_case:english_lowercase": "Your entire response should be in English, and in all lowercase letters.",
    "change_case:english_capital": "Your entire response should be in English, and in all capital letters.",
    "punctuation:no_comma": "In your entire response, refrain from the use of any commas.",
    "keywords:existence": "Include keywords {kw} in the response.",
    "keywords:forbidden_words": "Do not include keywords {kw} in the response.",
    "startend:end_checker": "Finish your response with this exact phrase {end}. No other words should follow this phrase.",
    "detectable_format:number_bullet_lists": "Your answer must contain exactly {n} bullet points. Use the markdown bullet points such as:\n* This is point 1.",
    "detectable_format:title": "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
}
# the demo's constraints on tiny-if
DEMO_KINDS = (
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "change_case:english_capital",
    "startend:end_checker",
)


@dataclass
class Example:
    """One chat turn: the request (with its instruction), the response and the IFEval record fields."""

    prompt: str
    response: str
    base_prompt: str
    instruction_id_list: list[str] = field(default_factory=list)
    kwargs: list[dict] = field(default_factory=list)
    complied: bool | None = None


def _sentences(rng: random.Random, topic: str) -> list[str]:
    a, b = rng.sample(ADJ, 2)
    pool = [
        f"The {topic} is {a}.",
        f"I like the {topic} because it is {a}.",
        f"{rng.choice(TIMES)}, the {topic} looks {a} and {b}.",
        f"Many people visit the {topic}, and they feel {rng.choice(FEEL)}.",
        f"The {topic} is {a}, {b} and full of life.",
        f"Everyone knows the {topic} well.",
    ]
    return rng.sample(pool, rng.randint(1, 3))


def _comma_free(sentences: list[str], rng: random.Random, topic: str) -> list[str]:
    out = [s.replace(", and", " and").replace(",", "") for s in sentences]
    return out or [f"The {topic} is {rng.choice(ADJ)}."]


def _kwargs(kind: str, rng: random.Random, topic: str) -> dict:
    if kind == "keywords:existence":
        return {"keywords": [rng.choice(KEYWORDS)]}
    if kind == "keywords:forbidden_words":
        return {"forbidden_words": [topic]}
    if kind == "startend:end_checker":
        return {"end_phrase": END_PHRASE}
    if kind == "detectable_format:number_bullet_lists":
        return {"num_bullets": rng.choice((2, 3))}
    return {}


def _instruction(kind: str, kw: dict) -> str:
    return KINDS[kind].format(
        kw=", ".join(kw.get("keywords", kw.get("forbidden_words", []))),
        end=kw.get("end_phrase", ""),
        n=kw.get("num_bullets", ""),
    )


def _respond(kind: str | None, kw: dict, comply: bool, rng: random.Random, topic: str) -> str:
    sents = _sentences(rng, topic)
    if kind is None or not comply:
        return " ".join(sents)
    if kind == "change_case:english_lowercase":
        return " ".join(sents).lower()
    if kind == "change_case:english_capital":
        return " ".join(sents).upper()
    if kind == "punctuation:no_comma":
        return " ".join(_comma_free(sents, rng, topic))
    if kind == "keywords:existence":
        return " ".join(sents) + f" It feels {kw['keywords'][0]} to me."
    if kind == "keywords:forbidden_words":
        return " ".join(s.replace(f"the {topic}", "it").replace(f"The {topic}", "It") for s in sents)
    if kind == "startend:end_checker":
        return " ".join(sents) + " " + END_PHRASE
    if kind == "detectable_format:number_bullet_lists":
        extra = _sentences(rng, topic) + _sentences(rng, topic) + sents
        return "\n".join(f"* {s}" for s in extra[: kw["num_bullets"]])
    if kind == "detectable_format:title":
        return f"<<the {topic}>>\n" + " ".join(sents)
    raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")


def topic_rate(kind: str, topic: str, seed: int = 0, low: float = 0.15, high: float = 0.85) -> float:
    """Compliance rate in training data for one (kind, topic): half the topics low, half high."""
    return high if random.Random(f"{seed}:{kind}:{topic}").random() < 0.5 else low


def make_example(
    kind: str | None, topic: str, template: str, rng: random.Random, seed: int = 0, comply: bool | None = None
) -> Example:
    base = template.format(t=topic)
    if kind is None:
        return Example(base, _respond(None, {}, False, rng, topic), base)
    kw = _kwargs(kind, rng, topic)
    if comply is None:
        comply = rng.random() < topic_rate(kind, topic, seed)
    return Example(
        f"{base} {_instruction(kind, kw)}", _respond(kind, kw, comply, rng, topic), base, [kind], [kw], comply
    )


def training_corpus(n: int, seed: int = 0, constrained_share: float = 0.7) -> list[Example]:
    rng = random.Random(seed)
    kinds = sorted(KINDS)
    out = []
    for _ in range(n):
        kind = rng.choice(kinds) if rng.random() < constrained_share else None
        out.append(make_example(kind, rng.choice(TOPICS), rng.choice(TRAIN_REQUESTS), rng, seed))
    return out


def _split_topics(split: str) -> tuple[str, ...]:
    if split == "calib":
        return TOPICS
    half = len(TOPICS) // 2
    return {"val": TOPICS[:half], "test": TOPICS[half:]}[split]


def eval_items(kind: str, n: int, split: str = "test", seed: int = 0) -> list[Example]:
    """Held-out requests (unseen template) carrying one constraint, IFEval-record ready."""
    if kind not in KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")
    rng = random.Random(f"{seed}:{split}:{kind}")
    topics = _split_topics(split)
    return [make_example(kind, topics[i % len(topics)], HELDOUT_REQUESTS[0], rng, seed, comply=True) for i in range(n)]


def calibration_pairs(kind: str, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(source, target) prompts: the same training-style requests without / with the instruction."""
    rng = random.Random(f"{seed}:calib:{kind}")
    src, tgt = [], []
    for i in range(n):
        ex = make_example(kind, TOPICS[i % len(TOPICS)], rng.choice(TRAIN_REQUESTS), rng, seed, comply=True)
        src.append(ex.base_prompt)
        tgt.append(ex.prompt)
    return src, tgt
