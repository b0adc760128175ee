"""DynACL++ [0]: DynACL's post-processing, which uses no true labels (LP-AFT: linear probing, then
adversarial full fine-tuning, on pseudo-labels).

The reference is PKU-ML/DYNACL: ``assign_label.py`` (pseudo-labels) and ``LPAFT_AFF.py`` (the dual-BN
variant, whose output AFF fine-tunes; ``LPAFT.py`` is the same on the adversarial route alone). AIR's
``LP-AFF.py`` (DynACL-AIR++) is *not* the same code: its ``trades_loss_dual`` (``finetuning_utils.py``)
starts the attack at x + 0.001·N(0, 1) and takes the attack's target prediction from the *clean* BN branch
(``model(x_natural, 'normal')``); ``attack.start=normal attack_target_branch=clean`` select it.

1. pseudo-labels: features of every training image (``ToTensor`` only, shard order) from the backbone's
   *clean* BN branch in eval() — for DynACL the momentum encoder, which is what DynACL exports — clustered
   by k-means into ``clusters`` groups (10); the cluster id is the image's label from then on.
2. linear probe: a zero-initialised linear head on the *adversarial* branch, the network in eval(), only
   the head trained: CE on the pseudo-labels, 10 epochs, SGD lr 0.01 (momentum 0.9, decay 1e-4), constant.
3. TRADES on the pseudo-labels, whole network, every forward through the adversarial branch
   (``trades_loss_dual(..., natural_mode='pgd')``), β 6, PGD-10 of step 2/255 in ε 8/255 from x itself (no
   random start), 25 epochs, SGD lr 0.1 (momentum 0.9, decay 1e-4), ×0.1 after epochs 10 and 20.
Both phases: batch 512, drop_last, 4-px zero-padded random crop + flip. The head is dropped afterwards and
the backbone (both BN branches: the clean one as pretraining left it) is the stage's output.

k-means: scikit-learn's ``KMeans`` (kept: it is a dependency), seeded with ``run.seed`` — the reference's
kmeans_pytorch starts from random data points with numpy's unseeded RNG; we start from k-means++ (better
starts, same Lloyd iterations). ``tests/objectives/test_lpaft_parity.py`` checks both.

[0] Luo et al., Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning, ICLR 2023.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from torchvision import transforms as T

from data.epochs import epoch_steps, split_batches
from data.readers import keyed_pass, list_sample_ids, load_labeled
from data.spec import ShardSpec

from ..attacks import AttackConfig
from ..errors import UsageError
from ..models import bn_branch, eval_mode
from ..models.probe import LinearProbe
from ..objectives import SupervisedObjective
from ..run import settings_digest
from ..validation import check, check_choice
from .batches import per_process_batch
from .loop import TrainLoopConfig
from .optim import OptimConfig
from .skeleton import EpochCoverage, TrainingContext, TrainingRun


def _probe_loop() -> (
    TrainLoopConfig
):  # LPAFT_AFF.py: optimizer_head, MultiStepLR(milestones=[]), epochs_head 10
    return TrainLoopConfig(
        epochs=10,
        batch_size=512,
        drop_last=True,
        optim=OptimConfig(
            lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="constant", schedule_unit="epoch"
        ),
    )


def _trades_loop() -> TrainLoopConfig:  # LPAFT_AFF.py: optimizer, MultiStepLR([10, 20], 0.1), epochs 25
    return TrainLoopConfig(
        epochs=25,
        batch_size=512,
        drop_last=True,
        optim=OptimConfig(
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="piecewise",
            milestones=[10, 20],
            gamma=0.1,
            schedule_unit="epoch",
        ),
    )


@dataclass
class LPAFTConfig:
    """``pretrain.lpaft``: DynACL++'s post-processing (off unless ``enabled``)."""

    enabled: bool = False  # run LP-AFT after the contrastive epochs (DynACL++, DynACL-AIR++)
    clusters: int = 10  # k-means clusters = pseudo-classes (assign_label.py: num_clusters 10 for CIFAR-10)
    feature_batch_size: int = 512  # images per forward when extracting the features (memory only)
    probe: TrainLoopConfig = field(default_factory=_probe_loop)  # the linear probe on the pseudo-labels
    trades: TrainLoopConfig = field(default_factory=_trades_loop)  # TRADES on the pseudo-labels
    beta: float = 6.0  # trades_loss_dual's default
    # trades_loss_dual: perturb_steps 10, step 2/255, ε 8/255, starting at x itself ("zero"; DynACL's LPAFT_AFF.py)
    # or at x + 0.001·N(0, 1) ("normal"; AIR's LP-AFF.py, whose finetuning_utils.py trades_loss_dual differs)
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10, start="zero"))
    # the BN branch of the clean prediction TRADES' attack maximises the KL against: adv (DynACL's LPAFT_AFF.py:
    # every forward through the adversarial branch) | clean (AIR's LP-AFF.py: model(x_natural, 'normal') inside
    # the attack; the outer loss still runs both inputs through 'pgd')
    attack_target_branch: str = "adv"

    def check(self) -> None:
        check(self.clusters >= 2, "clusters", self.clusters, "use 2 or more clusters (10 in DynACL++)")
        check(self.feature_batch_size >= 1, "feature_batch_size", self.feature_batch_size, "use 1 or more")
        check(self.beta >= 0, "beta", self.beta, "use 0 or a positive TRADES weight (6 in DynACL++)")
        check_choice("attack_target_branch", self.attack_target_branch, ("adv", "clean"))


@torch.no_grad()
def clean_features(backbone: nn.Module, images: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """(N, C) pooled features of uint8 images (N, 3, H, W), clean BN branch, eval() (``assign_label.py``:
    ``model.eval()(x, 'normal', return_features=True)``)."""
    out, dtype = [], next(backbone.parameters()).dtype
    with eval_mode(backbone), bn_branch(backbone, "clean"):
        for i in range(0, images.shape[0], batch_size):
            out.append(backbone(images[i : i + batch_size].to(device, dtype) / 255).cpu())  # = ToTensor
    return torch.cat(out)


def kmeans_pseudo_labels(
    features: torch.Tensor, clusters: int, seed: int, init: str | np.ndarray = "k-means++"
) -> torch.Tensor:
    """(N,) cluster ids in [0, clusters) of Euclidean k-means on ``features``; same features and seed give
    the same ids. ``init``: k-means++ (seeded) or given (clusters, C) starting centres."""
    km = KMeans(n_clusters=clusters, init=init, n_init=1, random_state=seed)
    return torch.from_numpy(km.fit_predict(features.double().numpy())).long()


def training_images(spec: ShardSpec, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every training image once, in shard order, as uint8 (N, 3, H, W) — what ``assign_label.py`` clusters —
    and the labels when the split has them (only scored against, never trained on); unlabeled shards are
    read without asking for ``.cls``."""
    if spec.labeled:
        x, y, _ = load_labeled(spec, num_classes=num_classes)
        return x, y
    every = frozenset(list_sample_ids(spec))
    as_uint8 = lambda img: (torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1),)  # noqa: E731
    # a 1-sample shuffle buffer: shard order, as the reference's shuffle=False loader
    batches = keyed_pass(spec, as_uint8, every, batch_size=1024, seed=0, epoch=0, shuffle_buffer=1)
    return torch.cat([x for _ids, x in batches]), None


def matched_accuracy(pseudo: torch.Tensor, labels: torch.Tensor, clusters: int) -> float:
    """Share of images whose cluster maps to their true class under the best one-to-one matching; a
    diagnostic only (reported, never trained on)."""
    from scipy.optimize import linear_sum_assignment

    n_classes = max(clusters, int(labels.max()) + 1)
    counts = torch.zeros(clusters, n_classes, dtype=torch.long)
    counts.index_put_((pseudo, labels), torch.ones_like(pseudo), accumulate=True)
    rows, cols = linear_sum_assignment(-counts.numpy())
    return float(counts[rows, cols].sum()) / len(pseudo)


class PseudoLabelBatches:
    """``epoch -> batches`` of (augmented images, pseudo-labels) from memory, deterministic given the
    epoch (the Trainer replays an epoch's stream up to a resume point): a seeded permutation cut into global
    batches (the partial last one dropped, as LPAFT_AFF.py's ``drop_last=True``, unless ``drop_last`` is
    False), this process's share of each, crop + flip seeded per batch. ``coverage`` records each epoch's
    samples for its metrics row."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch: int,
        world: int,
        rank: int,
        seed: int,
        device,
        samples_per_epoch: int = 0,
        drop_last: bool = True,
    ):
        self.images, self.labels, self.batch, self.world, self.rank = images, labels, batch, world, rank
        self.seed, self.device, self.drop_last = seed, device, drop_last
        self.augment = T.Compose([T.RandomCrop(images.shape[-1], padding=4), T.RandomHorizontalFlip()])
        # an epoch: every image once (the reference), or the first samples_per_epoch of the permutation
        self.limit = min(samples_per_epoch or images.shape[0], images.shape[0])
        self.steps = epoch_steps(self.limit, batch * world, world, drop_last)
        self.coverage = EpochCoverage()

    def __call__(self, epoch: int):
        self.coverage.start(epoch)
        order = torch.randperm(
            self.images.shape[0], generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)
        )
        plan = split_batches(
            order[: self.limit].numpy(),
            global_batch=self.batch * self.world,
            world=self.world,
            rank=self.rank,
            drop_last=self.drop_last,
        )
        for step, positions in enumerate(plan):
            idx = torch.from_numpy(positions)
            self.coverage.add(idx)
            with torch.random.fork_rng(
                devices=[]
            ):  # crops drawn from their own seed, the caller's RNG untouched
                torch.manual_seed(zlib.crc32(f"{self.seed}/{epoch}/{step}/{self.rank}".encode()))
                x = torch.stack([self.augment(img) for img in self.images[idx]])
            yield x.float().div_(255).to(self.device), self.labels[idx].to(self.device)


def classifier_from(backbone: nn.Module, clusters: int) -> nn.Module:
    """A copy of the pooled-feature backbone with a zero-initialised linear head (LPAFT_AFF.py zeroes fc)."""
    net = copy.deepcopy(backbone)
    net.reset_classifier(clusters)
    for p in net.get_classifier().parameters():
        nn.init.zeros_(p)
    return net


PHASES = ("probe", "trades")  # in this order


def phase_model(phase: str, net: nn.Module) -> nn.Module:
    """What trains in ``phase``: the probe trains the head alone with the network in eval() (LPAFT_AFF.py
    ``train_head``: requires_grad False except fc, ``model.eval()``); TRADES trains every parameter."""
    if phase == "probe":
        return LinearProbe(net)
    return net.requires_grad_(True)


def phase_objective(phase: str, model: nn.Module, raw: nn.Module, cfg: LPAFTConfig):
    """CE on the pseudo-labels (probe) or TRADES with ``cfg.attack`` and ``cfg.beta`` (trades)."""
    name = "ce" if phase == "probe" else "trades"
    # the phase runs inside bn_branch(net, "adv"); AIR's variant takes the attack's target from the clean branch
    target = "" if cfg.attack_target_branch == "adv" else cfg.attack_target_branch
    return SupervisedObjective(name, model, raw, cfg.attack, cfg.beta, cfg.clusters, target_branch=target)


def _fit(
    phase: str,
    cfg: LPAFTConfig,
    net: nn.Module,
    ctx: TrainingContext,
    batches: PseudoLabelBatches,
    folder: str,
    base_settings: dict,
) -> dict:
    """One phase as its own resumable run folder (``<stage>_lpaft_<phase>/``)."""
    # the pretrain fingerprint leaves pretrain.lpaft out (it is not fingerprinted there); a phase depends on it
    settings = {**base_settings, "pretrain.lpaft": asdict(cfg)}
    with TrainingRun(
        ctx,
        getattr(cfg, phase),
        f"pretrain.lpaft.{phase}",
        phase_model(phase, net),
        batches.steps,
        folder=f"{folder}_lpaft_{phase}",
        upstream=None,
        fingerprint=(settings_digest(settings), settings),
    ) as job:
        objective = phase_objective(phase, job.model, job.raw, cfg)
        state = job.fit(batches, objective.step, desc=f"lpaft[{phase}]")
        job.run.outputs.update(steps=state.global_step, objective=objective.name)
    return dict(job.run.outputs)


def post_process(
    cfg: LPAFTConfig,
    ctx: TrainingContext,
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    folder: str,
    base_settings: dict,
    true_labels: torch.Tensor | None = None,
) -> tuple[nn.Module, dict]:
    """DynACL++ on a pretrained ``backbone`` (pooled features, dual BN or not) and the training images
    (uint8, (N, 3, H, W), shard order). Returns the post-processed backbone (a new module) and a summary.

    Each phase is a run folder ``<folder>_lpaft_<phase>/`` whose checkpoints depend on ``base_settings``
    (the contrastive phase's) and on ``cfg``. Every process computes the same pseudo-labels (deterministic
    features and seeded k-means), so nothing is broadcast."""
    acc, seed = ctx.acc, ctx.seed
    features = clean_features(backbone, images, cfg.feature_batch_size, acc.device)
    pseudo = kmeans_pseudo_labels(features, cfg.clusters, seed)
    summary = {
        "images": int(images.shape[0]),
        "clusters": cfg.clusters,
        "cluster_sizes": torch.bincount(pseudo, minlength=cfg.clusters).tolist(),
    }
    if true_labels is not None:  # how well the clusters match the classes (never used for training)
        summary["pseudo_label_matched_accuracy"] = matched_accuracy(pseudo, true_labels, cfg.clusters)
    net = classifier_from(backbone, cfg.clusters)
    # every forward of both phases through the adversarial branch (LPAFT_AFF.py: 'pgd' in train_head and
    # natural_mode='pgd' in trades_loss_dual); the clean branch is left as pretraining made it
    with bn_branch(net, "adv"):
        for phase in PHASES:
            loop = getattr(cfg, phase)
            batch = per_process_batch(loop.batch_size, acc, f"pretrain.lpaft.{phase}.batch_size")
            batches = PseudoLabelBatches(
                images,
                pseudo,
                batch,
                acc.num_processes,
                acc.process_index,
                seed,
                acc.device,
                loop.samples_per_epoch,
                loop.drop_last,
            )
            if batches.steps == 0:
                raise UsageError(
                    f"pretrain.lpaft.{phase}.batch_size={loop.batch_size} is larger than the "
                    f"{images.shape[0]} training images (or samples_per_epoch); use a smaller batch"
                )
            summary[phase] = _fit(phase, cfg, net, ctx, batches, folder, base_settings)
    net.reset_classifier(0)  # back to pooled features: a backbone like any other
    return net, summary
