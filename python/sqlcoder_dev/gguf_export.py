"""Write the suite's tiny Llama models as GGUF files, for the ``llama_cpp`` backend.

llama.cpp's own converter (``convert_hf_to_gguf.py``) refuses tokenizers it
does not know by hash, and the tiny models train their own byte-level BPE; so
this module writes the file itself with the ``gguf`` package (the library that
converter uses): the same tensor names, the same Q/K row permutation (Hugging
Face rotates halves, llama.cpp rotates pairs) and a ``gpt2`` BPE vocabulary with
GPT-2's pre-tokenizer, which is what the tiny tokenizers use.

Also :func:`write_random_gguf`: a random-weight model of any Llama shape, written
a tensor at a time, for sizing the CPU backend without the real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["GGUF_NAME", "convert_llama", "ensure_gguf", "main", "write_random_gguf"]

#: File name of the converted model inside a model directory.
GGUF_NAME = "model-f32.gguf"

_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def _permute(w: Any, n_head: int) -> Any:
    """Hugging Face's q/k rows (rotate-half RoPE) in llama.cpp's order (interleaved pairs), per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")  # model.layers.N.<module...>.weight
    if parts[:2] == ["model", "layers"]:
        module = ".".join(parts[3:-1])
        if module in _LAYER_NAMES:
            return f"blk.{parts[2]}.{_LAYER_NAMES[module]}.{parts[-1]}"
    raise ValueError(f"unexpected tensor {hf_name!r} (only Llama models are converted)")


def _vocab(model_dir: Path) -> tuple[list[str], list[int], list[str], dict[str, int]]:
    """Tokens (byte-level strings), their types, the merges and the special ids, from tokenizer.json."""
    import gguf

    data = json.loads((model_dir / "tokenizer.json").read_text())
    model = data["model"]
    if model.get("type") != "BPE":
        raise ValueError("only byte-level BPE tokenizers are converted")
    by_id = {i: t for t, i in model["vocab"].items()}
    special = {}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        if added.get("special"):
            special[added["content"]] = added["id"]
    tokens = [by_id[i] for i in range(len(by_id))]
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    ids = {name: special[cfg[f"{name}_token"]] for name in ("bos", "eos", "unk")
           if isinstance(cfg.get(f"{name}_token"), str) and cfg[f"{name}_token"] in special}
    return tokens, types, merges, ids


def _header(writer: Any, config: dict, file_type: Any) -> None:
    heads = config["num_attention_heads"]
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)


def convert_llama(model_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the Hugging Face Llama model in ``model_dir`` (safetensors) as a float32 GGUF file."""
    import gguf
    from safetensors.numpy import load_file

    src, out = Path(model_dir), Path(out_path)
    config = json.loads((src / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"{src}: model_type {config.get('model_type')!r}; only llama is converted")
    tokens, types, merges, ids = _vocab(src)
    weights = load_file(str(src / "model.safetensors"))
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(src.name)
    _header(writer, config, gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    if "unk" in ids:
        writer.add_unk_token_id(ids["unk"])
    writer.add_add_bos_token(True)  # as the Hugging Face tokenizer's post-processor does
    writer.add_add_eos_token(False)
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    for name, w in weights.items():
        if name.endswith("q_proj.weight"):
            w = _permute(w, heads)
        elif name.endswith("k_proj.weight"):
            w = _permute(w, kv_heads)
        writer.add_tensor(_gguf_name(name), w.astype("float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.chmod(0o644)
    os.replace(tmp, out)
    return out


def ensure_gguf(model_dir: str | os.PathLike) -> Path:
    """``model_dir``/model-f32.gguf, converted once (the model directories are cached between runs)."""
    src = Path(model_dir)
    out = src / GGUF_NAME
    if not out.exists() or out.stat().st_mtime < (src / "model.safetensors").stat().st_mtime:
        convert_llama(src, out)
    return out


# --------------------------------------------------------------------------- random models of a real shape


def _random_tensors(config: dict, seed: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    h, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    yield "token_embd.weight", (v, h)
    for i in range(config["num_hidden_layers"]):
        for name, shape in (("attn_norm", (h,)), ("attn_q", (h, h)), ("attn_k", (kv, h)), ("attn_v", (kv, h)),
                            ("attn_output", (h, h)), ("ffn_norm", (h,)), ("ffn_gate", (ff, h)),
                            ("ffn_up", (ff, h)), ("ffn_down", (h, ff))):
            yield f"blk.{i}.{name}.weight", shape
    yield "output_norm.weight", (h,)
    yield "output.weight", (v, h)


def write_random_gguf(out_path: str | os.PathLike, config: dict, seed: int = 0) -> Path:
    """A float16 GGUF of a Llama shape with random weights and a byte-only vocabulary, streamed to disk.

    Quantize it with llama.cpp (``llama_cpp.llama_model_quantize``) to size a
    real model's memory and speed; its output is noise.
    """
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    out = Path(out_path)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("random")
    _header(writer, config, gguf.LlamaFileType.MOSTLY_F16)
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tokens = ["<unk>", "<s>", "</s>"] + byte_tokens
    tokens += [f"tok{i}" for i in range(config["vocab_size"] - len(tokens))]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([int(gguf.TokenType.CONTROL)] * 3 + [int(gguf.TokenType.BYTE)] * 256
                           + [int(gguf.TokenType.NORMAL)] * (len(tokens) - 259))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    shapes = list(_random_tensors(config, seed))
    for name, shape in shapes:
        dtype = np.float32 if len(shape) == 1 else np.float16
        writer.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _name, shape in shapes:
        if len(shape) == 1:
            writer.write_tensor_data(np.ones(shape, dtype=np.float32))
        else:
            writer.write_tensor_data((rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16))
    writer.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sqlcoder_dev.gguf_export", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="a tiny Llama model directory (safetensors + tokenizer.json)")
    p.add_argument("out", nargs="?", help=f"output file (default: MODEL_DIR/{GGUF_NAME})")
    args = p.parse_args(argv)
    out = convert_llama(args.model_dir, args.out or Path(args.model_dir) / GGUF_NAME)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
