#!/usr/bin/env python3
"""How well MiniLM's sentence embedding alone carries the world's held-out wording to the right class.

A linear probe (multinomial logistic regression, torch) is trained on the normalised mean-pooled embeddings
(sentence-transformers' all-MiniLM-L6-v2 output) of captions in the *training* wording, then read on captions
with held-out synonyms, held-out templates, or both. An image model conditioned on the same text learns the
classes from training wording only, so these accuracies indicate how much of evaluate-base's held-out bar the
text conditioning can carry; the per-word lines show which held-out synonyms it carries at all. `mce evaluate-base` reports the simpler nearest-centroid version (`textProbe`).

The vocabulary and templates are read from the Swift sources (Sources/Testbed/World/Vocabulary.swift and
Captions.swift), so there is one list of words. Needs the venv of scripts/setup_python.sh.

    .venv/bin/python scripts/world/heldout_text_probe.py [--extra-synonyms FILE] [MINILM_DIR]
                                                               (default ~/.cache/mce/minilm)

--extra-synonyms FILE adds words to the training wording (`class: word, word, …` per line, e.g.
scripts/world/extra_synonyms.txt): does a larger training vocabulary let the probe reach the held-out words?
"""
import os
import random
import re
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]


def read_vocabulary():
    """{class: (training synonyms, held-out synonyms)} from the `("name", .dataset, s(...) + h(...))` rows."""
    text = (REPO / "Sources/Testbed/World/Vocabulary.swift").read_text()
    classes = {}
    for m in re.finditer(r'\("([^"]+)", \.(?:fashionMNIST|animalMNIST), s\(([^)]*)\) \+ h\(([^)]*)\)\)', text):
        words = lambda args: re.findall(r'"([^"]+)"', args)  # noqa: E731
        classes[m.group(1)] = (words(m.group(2)), words(m.group(3)))
    colours = re.findall(r'NamedColor\("([a-z]+)"', text)
    assert len(classes) == 20 and len(colours) >= 8, "could not parse Vocabulary.swift"
    return classes, colours


def read_templates():
    text = (REPO / "Sources/Testbed/World/Captions.swift").read_text()
    block = lambda name: re.findall(r'"([^"]*\{obj\}[^"]*)"', text.split(f"let {name} = [")[1].split("]")[0])  # noqa: E731
    return block("train"), block("heldOut")


def render(template, noun, colour, bg):
    """As CaptionGrammar.render: {a_obj}/{a} become the article of the word that follows them (plural nouns
    keep theirs here, which a probe of word meaning does not care about)."""
    def article(word):
        w = word.lower()
        if any(w.startswith(p) for p in ("ewe", "uni", "use", "eu", "one")):
            return "a"
        return "an" if w[0] in "aeiou" else "a"
    s = template.replace("{color}", colour).replace("{obj}", noun).replace("{bg}", bg)
    return re.sub(r"\{a(?:_obj)?\} (\S+)", lambda m: f"{article(m.group(1))} {m.group(1)}", s)


def sample_captions(classes, colours, templates, n, seed, held_out_synonyms=False):
    """n captions cycling through the classes (in `classes`' order): two distinct colours, a synonym of the class
    (training or held-out), a template, drawn in that order from random.Random(seed). Returns (texts, nouns, labels)."""
    r = random.Random(seed)
    names = list(classes)
    texts, nouns, labels = [], [], []
    for i in range(n):
        k = i % len(names)
        colour, bg = r.sample(colours, 2)
        noun = r.choice(classes[names[k]][1 if held_out_synonyms else 0])
        texts.append(render(r.choice(templates), noun, colour, bg))
        nouns.append(noun)
        labels.append(k)
    return texts, nouns, labels


def add_extra_synonyms(classes, path):
    """Appends the file's words to each class's training synonyms; refuses held-out words and unknown classes."""
    if not Path(path).is_file():
        sys.exit(f"--extra-synonyms: no such file {path}")
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if ":" not in line:
            sys.exit(f"{path}: expected `class: word, word, …`, got {line!r}")
        name, words = line.split(":", 1)
        name, words = name.strip(), [w.strip() for w in words.split(",") if w.strip()]
        if name not in classes:
            sys.exit(f"{path}: unknown class {name!r}")
        train, held = classes[name]
        if set(words) & set(held):
            sys.exit(f"{path}: {sorted(set(words) & set(held))} are held-out words of {name}")
        classes[name] = (train + words, held)


def main():
    args = sys.argv[1:]
    extra = None
    if args[:1] == ["--extra-synonyms"]:
        if len(args) < 2:
            sys.exit("--extra-synonyms needs a file")
        extra, args = args[1], args[2:]
    directory = args[0] if args else os.path.expanduser("~/.cache/mce/minilm")
    tok, model = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()
    classes, colours = read_vocabulary()
    if extra:
        add_extra_synonyms(classes, extra)
    train_t, held_t = read_templates()
    names = list(classes)

    def embed(texts):
        out = []
        for i in range(0, len(texts), 256):
            b = tok(texts[i:i + 256], padding=True, return_tensors="pt")
            with torch.no_grad():
                h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out)

    def captions(held_syn, held_tmpl, n, seed):
        texts, _, labels = sample_captions(classes, colours, held_t if held_tmpl else train_t, n, seed, held_syn)
        return embed(texts), torch.tensor(labels)

    torch.manual_seed(0)
    x, y = captions(False, False, 2000, 1)
    lin = torch.nn.Linear(x.shape[1], len(names))
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + 1e-4 * lin.weight.pow(2).sum()
        loss.backward()
        opt.step()
    print("linear probe on MiniLM sentence embeddings, trained on 2,000 training-wording captions"
          + (f" (training synonyms + {extra})" if extra else ""))
    for label, hs, ht in [("held-in wording", False, False), ("held-out synonyms", True, False),
                          ("held-out templates", False, True), ("held-out both", True, True)]:
        xe, ye = captions(hs, ht, 400, 7)
        pred = lin(xe).argmax(1)
        per = [float((pred[ye == k] == k).float().mean()) for k in range(len(names))]
        print(f"  {label:<20} {float((pred == ye).float().mean()):.3f}   "
              + " ".join(f"{n}:{p:.2f}" for n, p in zip(names, per)) if hs else
              f"  {label:<20} {float((pred == ye).float().mean()):.3f}")

    # Which held-out words the encoder carries: the same probe per word, on training templates.
    r = random.Random(11)
    print("  per held-out synonym (40 captions each, training templates)")
    for k, n in enumerate(names):
        row = []
        for noun in classes[n][1]:
            texts = [render(r.choice(train_t), noun, *r.sample(colours, 2)) for _ in range(40)]
            row.append(f"{noun} {float((lin(embed(texts)).argmax(1) == k).float().mean()):.2f}")
        print(f"    {n:<11} " + ", ".join(row))


if __name__ == "__main__":
    main()
