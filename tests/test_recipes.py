"""The parity recipes hold the references' values: every value of ``pipeline/recipes.py``'s table, read from
each ``configs/*_gpu.yaml`` through ``load_config`` (defaults included, protocols applied), and nothing left
out — every resolved key is tabled or listed as not a recipe value. The citations are checked against the
references' code when a copy is at hand, and the generated docs/README tables must be current.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline import recipes
from pipeline.config import ExperimentConfig, load_config
from pipeline.models.pretrained import resolve_normalization
from pipeline.objectives import pretrain_method
from pipeline.objectives.supervised import DEFAULT_STARTS
from stages.protocols import protocol_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(recipes.TABLE)


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)  # model.kwargs.<name>: a dict
    return obj


def _effective(cfg: ExperimentConfig, key: str):
    """What the code uses for the keys of ``recipes.EFFECTIVE`` ("" = the method's / objective's own)."""
    if key in ("model.mean", "model.std"):
        if cfg.model.pretrained and not Path(cfg.model.pretrained).exists():
            # weights a recipe names but the user fetches (FARE's CLIP folder): what the tag's own folder
            # carries, i.e. timm's pretrained_cfg for model.name's tag
            file = Path(cfg.model.pretrained) / "model.safetensors"  # absent: only the tag can say
            mean, std, _ = resolve_normalization(cfg.model.name, cfg.model.mean, cfg.model.std, file)
            return list(mean if key == "model.mean" else std)
        mean, std, _ = cfg.model.normalization()
        return list(mean if key == "model.mean" else std)
    if key in ("pretrain.crop_interpolation", "pretrain.head"):
        method = pretrain_method(cfg.pretrain, cfg.pretrain.epochs)
        return method.crop_interpolation if key.endswith("interpolation") else method.head
    objective = cfg.finetune.objective_name()
    if key == "finetune.objective":
        return objective
    return cfg.finetune.attack.start or DEFAULT_STARTS.get(objective, "uniform")  # finetune.attack.start


def resolve(cfg: ExperimentConfig, key: str, cache: dict | None = None):
    """The value a recipe runs for a table key (``slf:``/``alf:``/``aff:`` = that protocol's config)."""
    if ":" in key:
        protocol, key = key.split(":", 1)
        if cache is not None and protocol not in cache:
            cache[protocol] = protocol_config(cfg, protocol)
        cfg = cache[protocol] if cache is not None else protocol_config(cfg, protocol)
    value = _effective(cfg, key) if key in recipes.EFFECTIVE else _get(cfg, key)
    return (
        OmegaConf.to_container(OmegaConf.create({"v": value}))["v"]
        if isinstance(value, (list, dict))
        else value
    )


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def mismatches(name: str, cfg: ExperimentConfig | None = None) -> list[str]:
    cfg = cfg or load_config(ROOT / "configs" / name)
    cache: dict = {}
    return [
        f"{v.key}: recipe has {resolve(cfg, v.key, cache)!r}, the table ({v.cite}) {v.value!r}"
        for v in recipes.TABLE[name]
        if not _same(resolve(cfg, v.key, cache), v.value)
    ]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_holds_every_reference_value(name):
    assert mismatches(name) == []


def test_every_gpu_recipe_is_tabled_or_named_not_parity():
    on_disk = {p.name for p in (ROOT / "configs").glob("*_gpu.yaml")}
    assert on_disk == set(recipes.TABLE) | set(recipes.NOT_PARITY), on_disk ^ (
        set(recipes.TABLE) | set(recipes.NOT_PARITY)
    )


def test_deviations_and_as_ran_values_say_why():
    for entries in recipes.TABLE.values():
        for v in entries:
            assert bool(v.deviation) == bool(v.summary), v.key
            assert not v.ran or len(v.ran) > 40, v.key


def test_each_key_is_tabled_once():
    for name, entries in recipes.TABLE.items():
        keys = [v.key for v in entries]
        assert len(keys) == len(set(keys)), (name, sorted({k for k in keys if keys.count(k) > 1}))


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _inactive(cfg: ExperimentConfig) -> tuple[str, ...]:
    p = cfg.pretrain
    if cfg.finetune.init == "scratch":
        return recipes.INACTIVE["scratch"] + recipes.INACTIVE["scratch_protocols"] + recipes.inert_keys(cfg)
    out = recipes.INACTIVE[p.method] + recipes.inert_keys(cfg)
    if not p.rcs.fraction:
        out += recipes.INACTIVE["no_rcs"]
    if not p.lpaft.enabled:
        out += recipes.INACTIVE["no_lpaft"]
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_every_resolved_key_is_tabled_or_not_a_recipe_value(name):
    """A config field the table forgets (a new one, or one a recipe leaves at its default) fails here."""
    cfg = load_config(ROOT / "configs" / name)
    tabled = {v.key for v in recipes.TABLE[name]}
    skip = tuple(recipes.NOT_RECIPE_VALUES) + _inactive(cfg)
    keys = [k for k in _leaves(OmegaConf.to_container(OmegaConf.structured(cfg)))]
    untabled = [k for k in keys if k not in tabled and not k.startswith(skip)]
    assert untabled == []
    if (
        cfg.finetune.init != "scratch"
    ):  # SLF and ALF (when run): every fine-tuning key of AFF's is tabled for them too
        ft = [
            k
            for k in tabled
            if k.startswith("finetune.")
            and k not in ("finetune.beta", "finetune.dual_bn", "finetune.protocol")
        ]
        for protocol in [p for p in ("slf", "alf") if p in cfg.protocols.names]:  # those the recipe runs
            needed = [k for k in ft if protocol == "alf" or not k.startswith("finetune.attack.")]
            assert sorted(f"{protocol}:{k}" for k in needed if f"{protocol}:{k}" not in tabled) == []


@pytest.mark.parametrize("name", [n for n in RECIPES if "trades_scratch" not in n])
def test_make_finetune_runs_the_protocols_aff(name):
    """``make finetune`` (the finetune section) and ``make protocols``' AFF fine-tune the same way."""
    cfg = load_config(ROOT / "configs" / name)
    aff = protocol_config(cfg, "aff")
    section, protocol = (OmegaConf.to_container(OmegaConf.structured(c.finetune)) for c in (cfg, aff))
    for key in ("name", "objective"):
        section.pop(key), protocol.pop(key)
    assert section == protocol
    assert cfg.finetune.objective_name() == aff.finetune.objective_name()


# ---- the citations, against the references' code ----------------------------------------------------------


def _reference_text(repo: str, path: str) -> str | None:
    """``ROBUSTPRETRAIN_REFERENCES`` (default /work/.mirror): a folder of ``owner+name/repo`` git mirrors (as the
    project's ``fetch`` makes them) or of plain ``name/`` checkouts."""
    base = Path(os.environ.get("ROBUSTPRETRAIN_REFERENCES", "/work/.mirror"))
    full, commit, root = recipes.REPOS[repo]
    git_dir = base / full.replace("/", "+") / "repo"
    if git_dir.is_dir():
        out = subprocess.run(
            ["git", "-C", str(git_dir), "show", f"{commit}:{root}{path}"], capture_output=True
        )
        return out.stdout.decode() if out.returncode == 0 else None
    plain = base / full.split("/")[1] / root / path
    return plain.read_text() if plain.is_file() else None


def test_citations_point_at_the_cited_text():
    """Every cited line range contains its ``match`` text, at the commit the table names."""
    checked, missing, wrong = 0, set(), []
    for name, entries in recipes.TABLE.items():
        for v in entries:
            text = _reference_text(v.repo, v.path)
            if text is None:
                missing.add(f"{v.repo} {v.path}")
                continue
            a, b = v.lines
            lines = text.replace("\r", "").splitlines()
            span = "\n".join(lines[a - 1 : b])
            if v.match not in span:
                wrong.append(f"{name} {v.key}: {v.cite} lacks {v.match!r} (has {span.strip()[:100]!r})")
            checked += 1
    if not checked:
        pytest.skip("no copy of the reference repositories (set ROBUSTPRETRAIN_REFERENCES)")
    assert wrong == []
    assert not missing, f"cited files not found: {sorted(missing)}"


# ---- the generated tables --------------------------------------------------------------------------------


def test_docs_table_is_current():
    assert recipes.DOCS.read_text() == recipes.render_docs(), "run: python -m pipeline.recipes --write"


def test_readme_summary_is_current():
    text = recipes.README.read_text()
    assert recipes.README_BEGIN in text and recipes.README_END in text
    assert text == recipes.readme_with_summary(text), "run: python -m pipeline.recipes --write"
