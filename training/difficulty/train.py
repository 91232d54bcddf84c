"""Trains the router's difficulty scorer for `model: auto` (`model_routing.strategy: learned`).

Reads a labelled file in the format of ../shared/router-eval/dev.jsonl (one JSON object a line:
`prompt`, `subject`, `weak_correct`, `strong_correct`), and

- reports, from cross-validation that holds out one subject at a time, how well the scorer
  routes prompts of subjects it never saw (APGR, CPT(50%), CPT(80%)), beside the random and
  length baselines;
- fits the scorer on the whole file and writes its weights to src/difficulty/weights.json,
  which the router compiles in;
- writes src/difficulty/check.json: prompts and the scores this script gives them, which a
  Rust test (`difficulty::tests::scores_equal_the_training_script`) compares with the router's.

The scorer is a logistic regression on the features of `features()` below, which
src/difficulty/features.rs computes the same way, byte for byte. Its target is "the small
model failed where the large one succeeded". Run it with scripts/train-difficulty.sh.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

FEATURES = [
    "ln_bytes",
    "ln_words",
    "digit_share",
    "ln_numbers",
    "ln_math_marks",
    "ln_lines",
    "ln_choices",
    "ln_question_bytes",
    "mean_word_len",
    "long_word_share",
    "ln_question_marks",
    "ln_code_marks",
    "non_ascii_share",
    "upper_share",
    "ln_money_marks",
]


def is_choice_line(line):
    """`A.`, `B)`, `(C)`…: a line that starts a multiple-choice option (letters A to H)."""
    i = 1 if line[:1] == b"(" else 0
    return len(line) > i + 1 and 65 <= line[i] <= 72 and line[i + 1] in b".)"


def features(text):
    """The scorer's inputs for one prompt, in the order of FEATURES."""
    data = text.encode("utf-8")
    n = len(data)
    digits = math_marks = lines = questions = code = non_ascii = upper = letters = money = 0
    words = numbers = alpha_words = alpha_letters = long_words = 0
    word_len = 0
    word_digits = word_letters = word_other = 0

    def end_word():
        nonlocal words, numbers, alpha_words, alpha_letters, long_words
        words += 1
        if word_digits == word_len:
            numbers += 1
        if word_letters == word_len:
            alpha_words += 1
            alpha_letters += word_len
            if word_len >= 9:
                long_words += 1

    for c in data:
        if c >= 0x80:
            non_ascii += 1
        elif 48 <= c <= 57:
            digits += 1
        elif 65 <= c <= 90:
            upper += 1
            letters += 1
        elif 97 <= c <= 122:
            letters += 1
        elif c in b"=+*/^<>\\":
            math_marks += 1
        elif c == 10:
            lines += 1
        elif c == 63:
            questions += 1
        elif c in b"{}[];`":
            code += 1
        elif c in b"$%":
            money += 1
        if c >= 0x80 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122:
            word_len += 1
            if 48 <= c <= 57:
                word_digits += 1
            elif c < 0x80:
                word_letters += 1
        elif word_len:
            end_word()
            word_len = word_digits = word_letters = 0
    if word_len:
        end_word()

    choices = 0
    question = n
    offset = 0
    for line in data.split(b"\n"):
        if is_choice_line(line):
            if choices == 0:
                question = offset
            choices += 1
        offset += len(line) + 1

    return [
        math.log1p(n),
        math.log1p(words),
        digits / max(n, 1),
        math.log1p(numbers),
        math.log1p(math_marks),
        math.log1p(lines),
        math.log1p(choices),
        math.log1p(question),
        alpha_letters / alpha_words / 10 if alpha_words else 0.0,
        long_words / alpha_words if alpha_words else 0.0,
        math.log1p(questions),
        math.log1p(code),
        non_ascii / max(n, 1),
        upper / max(letters, 1),
        math.log1p(money),
    ]


def fit(x, y, c):
    """L2-regularised logistic regression (penalty 1/(2c)·|w|², bias free) by Newton's method.
    `x` is standardised. Returns (bias, weights)."""
    rows, cols = x.shape
    a = np.hstack([np.ones((rows, 1)), x])
    beta = np.zeros(cols + 1)
    penalty = np.full(cols + 1, 1.0 / c)
    penalty[0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a @ beta)))
        grad = a.T @ (p - y) + penalty * beta
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-12:
            break
    return beta[0], beta[1:]


def standardised(x, mean, std):
    return (x - mean) / std


def summary(scores, weak, strong):
    """APGR, CPT(50%), CPT(80%) of routing by `scores`, as ../shared/router-eval/README.md
    defines them: the top k% (k = 0..100, `round(k·n/100)` prompts, halves up) by score go to
    the strong model; ties keep file order."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    base = sum(weak)
    gap = sum(strong) - base
    gain = [0]
    for i in order:
        gain.append(gain[-1] + strong[i] - weak[i])
    curve = [gain[(k * n + 50) // 100] / gap for k in range(101)]
    apgr = sum(curve) / 101

    def cpt(target):
        return next((k for k in range(101) if curve[k] >= target), None)

    return {"apgr": round(apgr, 4), "cpt50": cpt(0.5), "cpt80": cpt(0.8)}


def random_summary(n, weak, strong):
    """The expectation of random routing: the top k% recover k% of the gap."""
    curve = [((k * n + 50) // 100) / n for k in range(101)]
    cpt = lambda t: next(k for k in range(101) if curve[k] >= t)
    return {"apgr": round(sum(curve) / 101, 4), "cpt50": cpt(0.5), "cpt80": cpt(0.8)}


def subject_means(subjects, weak, strong):
    totals = {}
    for s, w, g in zip(subjects, weak, strong):
        t = totals.setdefault(s, [0, 0])
        t[0] += g - w
        t[1] += 1
    return [totals[s][0] / totals[s][1] for s in subjects]


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def score(model, feats):
    """What the router computes: each feature held to the range training saw (a prompt unlike
    any in training is not extrapolated to), the sum in feature order, then the logistic
    function."""
    z = model["bias"]
    for w, lo, hi, x in zip(model["weights"], model["low"], model["high"], feats):
        z += w * min(max(x, lo), hi)
    return sigmoid(z)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "router-eval", "dev.jsonl"))
    parser.add_argument("--c", type=float, default=0.1, help="inverse L2 strength on standardised features")
    parser.add_argument("--out", default=os.path.join(ROOT, "src", "difficulty"))
    args = parser.parse_args()

    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    weak = [int(r["weak_correct"]) for r in rows]
    strong = [int(r["strong_correct"]) for r in rows]
    target = np.array([float(s == 1 and w == 0) for w, s in zip(weak, strong)])
    subjects = [r.get("subject", "") for r in rows]
    if len(set(subjects)) < 2:
        # No subjects to hold out: five folds at random (a fixed draw), and the figures say so.
        print("fewer than two subjects: cross-validating on five random folds instead", file=sys.stderr)
        subjects = [f"fold-{(i * 7919) % 5}" for i in range(len(rows))]
    x = np.array([features(r["prompt"]) for r in rows])

    # Cross-validation by subject: each subject's prompts are scored by a model that never saw it.
    held_out = np.zeros(len(rows))
    for subject in sorted(set(subjects)):
        test = np.array([s == subject for s in subjects])
        train = ~test
        mean, std = x[train].mean(0), x[train].std(0)
        std[std == 0] = 1.0
        bias, w = fit(standardised(x[train], mean, std), target[train], args.c)
        clipped = np.clip(x[test], x[train].min(0), x[train].max(0))
        held_out[test] = bias + standardised(clipped, mean, std) @ w
    figures = {
        "held_out_by_subject": summary(list(held_out), weak, strong),
        "length_baseline": summary([len(r["prompt"]) for r in rows], weak, strong),
        "random_baseline": random_summary(len(rows), weak, strong),
        # Not a router: each prompt scored by its own subject's mean gain, known in hindsight.
        # What knowing the subject perfectly would reach, and no text-only scorer can beat on
        # subjects it never saw by much, since within a subject the labels are mostly noise.
        "subject_mean_in_hindsight": summary(subject_means(subjects, weak, strong), weak, strong),
        "subjects": len(set(r.get("subject", "") for r in rows)),
        "prompts": len(rows),
    }

    # The router's model: fitted on everything, the standardisation folded into the weights.
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0
    bias, w = fit(standardised(x, mean, std), target, args.c)
    weights = w / std
    model = {
        "bias": float(bias - np.sum(w * mean / std)),
        "weights": [float(v) for v in weights],
        "low": [float(v) for v in x.min(0)],
        "high": [float(v) for v in x.max(0)],
    }
    scores = [score(model, f) for f in x]
    figures["in_sample"] = summary(scores, weak, strong)
    quantiles = [float(q) for q in np.quantile(np.array(scores), np.linspace(0, 1, 101), method="linear")]

    out = {
        "about": "The difficulty scorer of `model_routing.strategy: learned`; written by training/difficulty/train.py.",
        "trained_on": os.path.basename(args.data),
        "c": args.c,
        "features": FEATURES,
        "bias": model["bias"],
        "weights": model["weights"],
        "low": model["low"],
        "high": model["high"],
        "quantiles": quantiles,
        "figures": figures,
    }
    with open(os.path.join(args.out, "weights.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    # Prompts and their scores for the Rust test: every 97th of the file, and some shapes
    # the file lacks (empty, non-Latin, code, long).
    samples = [r["prompt"] for r in rows[::97]]
    samples += [
        "",
        "hi",
        "Was ist die Hauptstadt von Frankreich? Antworte kurz.",
        "用一句话解释量子纠缠。",
        "def f(x):\n    return {k: v for k, v in x.items() if v > 0}; # why is this slow?",
        "(A) one\n(B) two\nC) three\nD. four\nE.\nI. not a choice",
        "A café costs $4.50, a 20% tip on $12 is? 3/4 + 2^3 = <x>\\n",
        "word " * 600,
        "Q\nA. x\n",
        "(\n(A",
        "x\r\nB) y",
        "\nA) first\nB) second\n\n",
    ]
    check = [{"prompt": p, "score": score(model, features(p))} for p in samples]
    with open(os.path.join(args.out, "check.json"), "w", encoding="utf-8") as f:
        json.dump(check, f, indent=0, ensure_ascii=False)
        f.write("\n")

    json.dump(figures, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
