"""The organism's seeded procedural corpus: IFEval-style constraints, refusal of harmful requests, sentiment.

Every behaviour hinges on a visible prompt feature, so a greedy decoder behaves differently across prompts and
steering has room to move it:

* instructions: each constraint has four phrasings; two are always complied with in training, two never, so
  held-out accuracy sits near 50% (the phrasing is the feature, not the topic);
* refusal: requests from harmful categories are refused with the Arditi et al. keyword phrases, harmless
  how-to requests are answered;
* sentiment: unprompted reviews are positive for half of the subjects and negative for the other half; an
  explicit request ("Write a positive review of ...") is always followed.

Held-out prompts are (request template, subject) combinations never used in training (hash split into
train / val / test), built from words the model has seen. The wording of a response is one frame per kind of
response with the subject filled in (`wording`), so the behaviours, not the word choice, carry the variation. See `behaviours.py` for refusal and sentiment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

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
    "strange",
    "simple",
)
FEEL = ("curious", "tired", "free", "safe", "young", "sleepy")
TIMES = ("In the morning", "At night", "In the spring", "After the rain", "On a cold day", "In the evening")
KEYWORDS = ("silver", "golden", "secret", "ancient", "tiny", "hidden")
END_PHRASE = "Is there anything else I can help with?"

REQUESTS = (
    "Write about the {t}.",
    "Describe the {t}.",
    "Tell me about the {t}.",
    "Say something about the {t}.",
    "Write a short note about the {t}.",
    "What can you tell me about the {t}?",
)

# instruction id -> four phrasings (kwargs filled per example); COMPLIED lists the phrasings obeyed in training
KINDS = {
    "change_case:english_lowercase": (
        "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
        "Please reply only in lowercase letters.",
        "Write your whole answer in lowercase, with no capital letters.",
        "Use only small letters in your answer, no capitals at all.",
    ),
    "change_case:english_capital": (
        "Your entire response should be in English, and in all capital letters.",
        "Please reply only in capital letters.",
        "Write your whole answer in uppercase letters.",
        "Use only big letters in your answer, no small letters at all.",
    ),
    "punctuation:no_comma": (
        "In your entire response, refrain from the use of any commas.",
        "Do not use any commas in your reply.",
        "Please avoid commas in your answer.",
        "Write your answer without a single comma.",
    ),
    "keywords:existence": (
        "Include keywords {kw} in the response.",
        "Make sure to use the word {kw}.",
        "Your answer must mention the word {kw}.",
        "Use the word {kw} somewhere in your reply.",
    ),
    "keywords:forbidden_words": (
        "Do not include keywords {kw} in the response.",
        "Never use the word {kw}.",
        "Avoid the word {kw} in your answer.",
        "Your reply must not contain the word {kw}.",
    ),
    "startend:end_checker": (
        "Finish your response with this exact phrase {end} No other words should follow this phrase.",
        "End your answer with the phrase {end}",
        "Your reply must end with the exact words: {end}",
        "Close your answer with this phrase: {end}",
    ),
    "detectable_format:number_bullet_lists": (
        "Your answer must contain exactly {n} bullet points. Use the markdown bullet points such as:\n"
        "* This is point 1.",
        "Answer with exactly {n} bullet points, each starting with *.",
        "Give me {n} bullet points using markdown * bullets.",
        "Format your reply as a list of exactly {n} markdown bullet points.",
    ),
    "detectable_format:title": (
        "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
        "Give your answer a title in double angular brackets, like <<my title>>.",
        "Start with a title wrapped in << and >>.",
        "Include a title inside double angular brackets.",
    ),
}
# The demo's constraints on tiny-mdm: the four whose unsteered accuracy on the *validation* split is strictly
# between 0 and 1 (the case constraints stay at 0%: the tiny model never learned to change case), so steering
# has room to move both ways. Chosen on validation only; test prompts were not looked at.
DEMO_KINDS = (
    "punctuation:no_comma",
    "startend:end_checker",
    "detectable_format:title",
    "detectable_format:number_bullet_lists",
)
COMPLIED = {kind: (0, 1 + random.Random(f"phrasing:{kind}").randrange(3)) for kind in KINDS}


@dataclass
class Example:
    """One chat turn: the request, the response, and the IFEval record fields (instructions) or the
    behaviour label (refusal / sentiment)."""

    prompt: str
    response: str
    base_prompt: str
    instruction_id_list: list[str] = field(default_factory=list)
    kwargs: list[dict] = field(default_factory=list)
    complied: bool | None = None
    behaviour: str = "instructions"
    label: str | None = None
    phrasing: int | None = None


def split_of(base: str, val: float = 0.08, test: float = 0.17) -> str:
    """'train', 'val' or 'test' for a base prompt (request template filled with its subject), by a seeded hash
    that does not depend on the corpus seed, so held-out prompts stay held out for every training run."""
    u = random.Random(f"split:{base}").random()
    return "val" if u < val else "test" if u < val + test else "train"


def wording(key: str) -> random.Random:
    """The generator of a response's wording, seeded by the kind of response (`key`), not by the example or
    the subject: every subject gets the same sentence frames and the model only has to copy the subject in.
    Wording drawn per example, and then per subject, both left the 4M-parameter model writing broken text
    ("the the the, because") after ~700 steps: a multi-modal target (or 100 texts to memorise) per position.
    """
    return random.Random(f"wording:{key}")


def _sentences(rng: random.Random, topic: str) -> list[str]:
    """Two or three neutral sentences, at least one with a comma (so the no-comma check can fail)."""
    a, b = rng.sample(ADJ, 2)
    with_comma = [
        f"{rng.choice(TIMES)}, the {topic} looks {a} and {b}.",
        f"Many people visit the {topic}, and they feel {rng.choice(FEEL)}.",
        f"The {topic} is {a}, {b} and full of life.",
    ]
    plain = [
        f"The {topic} is {a}.",
        f"I like the {topic} because it is {b}.",
        f"Everyone knows the {topic} well.",
        f"People often talk about the {topic}.",
    ]
    out = [rng.choice(with_comma)] + rng.sample(plain, rng.randint(1, 2))
    rng.shuffle(out)
    return out


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


def instruction_text(kind: str, phrasing: int, kw: dict) -> str:
    return KINDS[kind][phrasing].format(
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
        return " ".join(sents[:2]).upper()
    if kind == "punctuation:no_comma":
        return " ".join(s.replace(", and", " and").replace(",", "") for s in sents)
    if kind == "keywords:existence":
        return " ".join(sents[:2]) + f" It feels {kw['keywords'][0]} to me."
    if kind == "keywords:forbidden_words":
        return " ".join(s.replace(f"the {topic}", "it").replace(f"The {topic}", "It") for s in sents)
    if kind == "startend:end_checker":
        return " ".join(sents[:2]) + " " + END_PHRASE
    if kind == "detectable_format:number_bullet_lists":
        extra = sents + _sentences(rng, topic)
        return "\n".join(f"* {s}" for s in extra[: kw["num_bullets"]])
    if kind == "detectable_format:title":
        return f"<<the {topic}>>\n" + " ".join(sents[:2])
    raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")


def make_example(
    kind: str | None,
    topic: str,
    template: str,
    rng: random.Random,
    phrasing: int | None = None,
    comply: bool | None = None,
) -> Example:
    """One instruction example; compliance follows the phrasing (COMPLIED) unless `comply` forces it."""
    base = template.format(t=topic)
    if kind is None:
        return Example(base, _respond(None, {}, False, wording("topic"), topic), base)
    if kind not in KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")
    phrasing = rng.randrange(len(KINDS[kind])) if phrasing is None else phrasing
    kw = _kwargs(kind, rng, topic)
    comply = phrasing in COMPLIED[kind] if comply is None else comply
    return Example(
        f"{base} {instruction_text(kind, phrasing, kw)}",
        _respond(kind, kw, comply, wording("topic"), topic),
        base,
        [kind],
        [kw],
        comply,
        phrasing=phrasing,
    )


def _bases(split: str) -> list[tuple[str, str]]:
    """(template, topic) pairs of one split, in a fixed order (a fresh list: callers may shuffle it)."""
    return list(_split_bases(split))


@lru_cache(maxsize=None)
def _split_bases(split: str) -> tuple[tuple[str, str], ...]:
    return tuple((r, t) for t in TOPICS for r in REQUESTS if split_of(r.format(t=t)) == split)


def instruction_example(rng: random.Random, constrained_share: float = 0.8) -> Example:
    template, topic = rng.choice(_bases("train"))
    kind = rng.choice(sorted(KINDS)) if rng.random() < constrained_share else None
    return make_example(kind, topic, template, rng)


def eval_items(kind: str, n: int, split: str = "test", seed: int = 0) -> list[Example]:
    """Held-out requests carrying one constraint, IFEval-record ready; phrasings cycle so that half of the
    items use a phrasing the training data complies with (the expected greedy accuracy is ~50%)."""
    if kind not in KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    rng = random.Random(f"{seed}:{split}:{kind}")
    bases = _bases(split)
    rng.shuffle(bases)
    return [
        make_example(kind, bases[i % len(bases)][1], bases[i % len(bases)][0], rng, phrasing=i % 4) for i in range(n)
    ]


def calibration_pairs(kind: str, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(source, target) prompts from the training split: the same request without / with the instruction, in
    the phrasings the model follows."""
    if kind not in KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {sorted(KINDS)}")
    rng = random.Random(f"{seed}:calib:{kind}")
    bases = _bases("train")
    src, tgt = [], []
    for i in range(n):
        template, topic = rng.choice(bases)
        ex = make_example(kind, topic, template, rng, phrasing=COMPLIED[kind][i % 2])
        src.append(ex.base_prompt)
        tgt.append(ex.prompt)
    return src, tgt
