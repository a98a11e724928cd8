"""Nets, optimizers and the one training step shared by every recipe: two generators, two critics.

`Trainer(cfg, run_dir).fit()` trains; the loop around the step (logging, samples, checkpoints, rollback,
signals) is in run.py.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import distributed, losses, runtime, winograd
from .augment import diff_augment, parse_policy
from .checkpoint import SaveError, export_model, load_state, read_model, save_state
from .config import Config
from .data import DataError, UnpairedBatches, list_images, load_rgb, scan
from .monitor import Monitor
from .nets import build_discriminator, build_generator
from .optimizers import OPTIMIZERS
from .patchnce import PatchNCE


def _images_or_none(folder: Path) -> list[Path]:
    """The images of an optional folder (testA/testB): empty when it is missing or holds none."""
    try:
        return list_images(folder)
    except DataError:
        return []


@dataclass
class Domains:
    """Training files of each domain, fixed sample files, and the domains' names."""
    train_a: list[Path]
    train_b: list[Path]
    test_a: list[Path]
    test_b: list[Path]
    names: tuple[str, str]

    @classmethod
    def from_config(cls, data) -> "Domains":
        if data.data:
            root = Path(data.data)
            if not root.is_dir():
                raise DataError(f"{root}: dataset root not found")
            train_a, train_b = list_images(root / "trainA"), list_images(root / "trainB")
            test_a, test_b = (_images_or_none(root / t) for t in ("testA", "testB"))
            return cls(train_a, train_b, test_a or train_a, test_b or train_b, ("A", "B"))
        if data.data_a and data.data_b:
            folder_a, folder_b = Path(data.data_a), Path(data.data_b)
            train_a, train_b = list_images(folder_a), list_images(folder_b)
            return cls(train_a, train_b, train_a, train_b, (folder_a.resolve().name, folder_b.resolve().name))
        raise DataError("give --data ROOT (with trainA/ and trainB/) or both --data-a and --data-b")

    def drop_unreadable(self) -> dict[str, str]:
        """Remove training files that fail the cheap check; returns {path: reason}. Errors on a domain without one
        file that decodes (checked before any run folder is made)."""
        bad: dict[str, str] = {}
        for domain in ("a", "b"):
            files = getattr(self, f"train_{domain}")
            good, rejected = scan(files)
            while good:  # the cheap check passes some files that fail to decode (a truncated JPEG): one must
                try:
                    load_rgb(good[0])
                    break
                except DataError as exc:
                    path = good.pop(0)
                    rejected[path] = str(exc).removeprefix(f"{path}: ")
            if not good:
                raise DataError(f"domain {domain.upper()}: none of its {len(files)} files is a readable image")
            setattr(self, f"train_{domain}", good)
            bad.update({str(p): r for p, r in rejected.items()})
        return bad


class ImagePool:
    """A buffer of past generated images (Shrivastava et al. 2017): half of each query is swapped with
    stored fakes once the pool is full, so the discriminator also sees older generator outputs."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Half of `images` swapped for stored ones once full; in the input's memory format (a changed layout
        would recompile a compiled critic)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(len(self.images), ()))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else None
        return torch.stack(out).contiguous(memory_format=layout or torch.contiguous_format)

    def state_dict(self) -> dict:
        return {"images": torch.stack(self.images).cpu() if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.images = [x.to(device) for x in state["images"]]


SAVE_RETRY_WAIT_S = 10


class NonFiniteError(FloatingPointError):
    """A loss or weight became NaN or infinite."""


class Trainer:
    """Builds nets, optimizers, schedulers, pools and EMA from a Config; `step()` trains on one batch,
    `fit()` runs the loop with logging, samples, checkpoints and export into `run_dir`.

    Fast path (each part a config switch; runtime.py decides "auto"): bf16 autocast, channels-last tensors,
    torch.compile, fused Adam, cudnn.benchmark; losses stay on the device between log intervals.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, domains: Domains | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        t = cfg.train
        if t.adversarial not in losses.ADVERSARIAL:
            raise ValueError(f"unknown adversarial loss {t.adversarial!r}")
        if cfg.model.channels != 3:
            raise ValueError(f"--channels {cfg.model.channels}: training images are loaded as RGB, so the nets "
                             "take 3 channels")
        if cfg.data.crop_size % 4:
            raise ValueError(f"--crop-size {cfg.data.crop_size} must be divisible by 4")
        self.device = runtime.resolve_device(t.device)
        self.world = distributed.init(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank if self.world.distributed else
                                       (self.device.index or 0))
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        on_cuda = self.device.type == "cuda"
        self.amp = runtime.use_bf16(t.amp, self.device)
        self.memory_format = runtime.memory_format(t.channels_last, self.amp, self.device)
        torch.manual_seed(t.seed)  # the same initial weights in every process
        self.g_ab, self.g_ba = (build_generator(cfg.model).to(self.device, memory_format=self.memory_format)
                                for _ in range(2))
        if runtime.train_winograd(t.winograd, self.amp, self.device):
            for net in (self.g_ab, self.g_ba):
                winograd.for_training(net)
        self.d_a, self.d_b = (build_discriminator(cfg.model).to(self.device, memory_format=self.memory_format)
                              for _ in range(2))
        self.nce_ab = PatchNCE(self.g_ab, cfg.model.n_blocks) if t.lambda_nce else None  # CUT's MLP heads
        self.nce_ba = PatchNCE(self.g_ba, cfg.model.n_blocks) if t.lambda_nce else None
        heads = [head for head in (self.nce_ab, self.nce_ba) if head]
        self.params_g = [*self.g_ab.parameters(), *self.g_ba.parameters(), *(p for h in heads for p in h.parameters())]
        self.params_d = [*self.d_a.parameters(), *self.d_b.parameters()]
        self.opt_g = self._optimizer(self.params_g, t.lr_g)
        self.opt_d = self._optimizer(self.params_d, t.lr_d)
        self.pool_a, self.pool_b = ImagePool(t.pool_size), ImagePool(t.pool_size)
        self.augment = parse_policy(t.diffaugment)
        self.ema = ({k: AveragedModel(net, multi_avg_fn=self._ema_update, use_buffers=True)
                     for k, net in (("g_ab", self.g_ab), ("g_ba", self.g_ba))} if t.ema else {})
        self._compile(t.compile == "on" or (t.compile == "auto" and on_cuda))
        torch.manual_seed(t.seed + self.world.rank)  # per-process randomness for pools, dropout, penalties
        self.step_count = 0
        self.domains = domains or Domains.from_config(cfg.data)
        self.bad_files = self.domains.drop_unreadable()
        if self.world.is_main:
            for path, reason in self.bad_files.items():
                print(f"skipped unreadable image {path}: {reason}", file=sys.stderr)  # one line, no warning frame
        self.total_steps = t.max_steps if t.max_steps is not None else t.epochs * self.batches().steps_per_epoch
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self._lr_factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, self._lr_factor)
        self.monitor = Monitor(cfg)
        if t.init and not self.state_path.is_file():  # a resumed run continues from its own state instead
            self.start_from(t.init)

    # --- set-up -----------------------------------------------------------------------------------------------
    def _optimizer(self, params: list, lr: float) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {t.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[t.optimizer](params, lr, t, fused=self.device.type == "cuda")

    def _compile(self, enabled: bool) -> None:
        """Compile in place (state-dict keys unchanged). Critics are left eager under gradient penalties:
        double backward through compiled graphs is not supported."""
        if not enabled:
            return
        penalised = self.cfg.train.adversarial == "wgan-gp" or self.cfg.train.r1_weight > 0
        for net in (self.g_ab, self.g_ba) if penalised else (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.compile()

    @torch.no_grad()
    def _ema_update(self, ema_params: list, params: list, _) -> None:
        """EMA with warm-up: decay min(ema, (1 + step) / (10 + step)), so the average forgets the random
        initial weights within the first hundreds of steps instead of dragging them through a short run."""
        decay = min(self.cfg.train.ema, (1 + self.step_count) / (10 + self.step_count))
        floats = [(e, p) for e, p in zip(ema_params, params) if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], 1 - decay)
        for e, p in zip(ema_params, params):
            if not e.is_floating_point():
                e.copy_(p)

    def batches(self, start: int = 0, stop: int | None = None) -> UnpairedBatches:
        """The run's batch keys from step `start` (this process's slice under torchrun): d_steps batches a step,
        one for each critic update (the first also for the generators)."""
        t = self.cfg.train
        return UnpairedBatches(len(self.domains.train_a), len(self.domains.train_b), t.batch_size * t.d_steps,
                               t.seed, start, stop, self.world.rank, self.world.world_size)

    def _lr_factor(self, step: int, total: int | None = None) -> float:
        """Constant LR for the first lr_decay_start of the run (of `total` steps, default the run's), then linear
        decay towards zero."""
        total = total or self.total_steps
        start = int(self.cfg.train.lr_decay_start * total)
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total - start))

    # --- one training step ------------------------------------------------------------------------------------
    def _autocast(self):
        return runtime.autocast(self.device, self.amp)

    def _adversarial_g(self, critic: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> tuple:
        t = self.cfg.train
        fake, real = diff_augment(fake, self.augment), diff_augment(real, self.augment)
        if not t.feature_matching:
            return losses.g_loss(t.adversarial, critic(fake).float()), fake.new_zeros((), dtype=torch.float32)
        fake_features = critic.features(fake)
        with torch.no_grad():
            real_features = critic.features(real)
        return (losses.g_loss(t.adversarial, fake_features[-1].float()),
                losses.feature_matching_loss(real_features, fake_features).float())

    def _d_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple:
        t = self.cfg.train
        real, fake = diff_augment(real, self.augment), diff_augment(fake, self.augment)
        out_real, out_fake = critic(real).float(), critic(fake).float()
        loss = losses.d_loss(t.adversarial, out_real, out_fake, t.label_smoothing)
        if t.adversarial == "wgan-gp":
            loss = loss + t.gp_weight * losses.gradient_penalty(critic, real, fake)
        if t.r1_weight:
            loss = loss + 0.5 * t.r1_weight * losses.r1_penalty(critic, real)
        return loss, out_real.detach().mean(), out_fake.detach().mean()

    def _translate(self, real_a: torch.Tensor, real_b: torch.Tensor, with_identity: bool) -> tuple:
        """(G_ab(a), G_ba(b), G_ba(a), G_ab(b)), the last two only with_identity (else None). Each generator then
        runs once on its two batches joined: the same result as two calls (a generator treats each image on its
        own, unless it has batch norm), and one call on twice the images is faster than two."""
        if not with_identity:
            return self.g_ab(real_a), self.g_ba(real_b), None, None
        if self.cfg.model.g_norm == "batch" or real_a.shape != real_b.shape:
            return self.g_ab(real_a), self.g_ba(real_b), self.g_ba(real_a), self.g_ab(real_b)
        fake_b, same_b = self.g_ab(torch.cat([real_a, real_b])).chunk(2)
        fake_a, same_a = self.g_ba(torch.cat([real_b, real_a])).chunk(2)
        return fake_b, fake_a, same_a, same_b

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step on d_steps batches stacked (see batches()): g_steps generator updates on the first batch, then
        d_steps critic updates, the k-th on batch k against pooled fakes of it (a true n_critic). With
        update_interval N > 1 a step updates only the critics (step % N == 0) or only the generators.

        Returns detached scalar tensors (reading them syncs the device, so the loop does it only at log
        intervals)."""
        t = self.cfg.train
        critic_a = real_a.to(self.device, non_blocking=True, memory_format=self.memory_format).chunk(t.d_steps)
        critic_b = real_b.to(self.device, non_blocking=True, memory_format=self.memory_format).chunk(t.d_steps)
        real_a, real_b = critic_a[0], critic_b[0]
        update_d = t.update_interval <= 1 or self.step_count % t.update_interval == 0
        update_g = t.update_interval <= 1 or not update_d
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.train()
        self.d_a.requires_grad_(False)
        self.d_b.requires_grad_(False)
        rate = self.recon_rate()
        adv_w, rec_w = (1.0, 1.0) if rate is None else (1.0 - rate, rate)
        for _ in range(t.g_steps if update_g else 1):
            with self._autocast(), torch.set_grad_enabled(update_g):
                with_identity = bool(t.lambda_identity and t.lambda_cycle)
                fake_b, fake_a, same_a, same_b = self._translate(real_a, real_b, with_identity)
                cycle = nce = identity = smooth = real_a.new_zeros(())
                if t.lambda_cycle:
                    rec_a, rec_b = self.g_ba(fake_b), self.g_ab(fake_a)
                    cycle = t.lambda_cycle * (losses.recon_loss(t.recon_loss, rec_a.float(), real_a)
                                              + losses.recon_loss(t.recon_loss, rec_b.float(), real_b))
                adv_b, fm_b = self._adversarial_g(self.d_b, fake_b, real_b)
                adv_a, fm_a = self._adversarial_g(self.d_a, fake_a, real_a)
                if t.lambda_nce:
                    nce = self.nce_ab(self.g_ab, real_a, fake_b) + self.nce_ba(self.g_ba, real_b, fake_a)
                    if t.nce_identity:  # CUT averages the two terms
                        nce = (nce + self.nce_ab(self.g_ab, real_b, self.g_ab(real_b))
                               + self.nce_ba(self.g_ba, real_a, self.g_ba(real_a))) / 2
                    nce = t.lambda_nce * nce
                if with_identity:
                    identity = t.lambda_cycle * t.lambda_identity * (
                        losses.recon_loss(t.recon_loss, same_a.float(), real_a)
                        + losses.recon_loss(t.recon_loss, same_b.float(), real_b))
                if t.lambda_smooth:
                    smooth = t.lambda_smooth * (losses.edge_aware_smoothness(fake_b.float(), real_a)
                                                + losses.edge_aware_smoothness(fake_a.float(), real_b))
                loss_g = (adv_w * (t.lambda_adv * (adv_a + adv_b) + t.feature_matching * (fm_a + fm_b))
                          + rec_w * cycle + identity + nce + smooth)
            if self.device.type == "cpu" and not torch.isfinite(loss_g):  # free on CPU; on CUDA at log/save
                raise NonFiniteError(f"non-finite generator loss at step {self.step_count + 1}")
            if not update_g:
                break
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            distributed.average_gradients(self.params_g, self.world)
            self.opt_g.step()
        self.d_a.requires_grad_(True)
        self.d_b.requires_grad_(True)
        pooled_a, pooled_b = self.pool_a.query(fake_a.detach()), self.pool_b.query(fake_b.detach())
        for k in range(len(critic_a) if update_d else 1):
            if k:  # a batch of its own, with fakes of it from the current generators
                with torch.no_grad(), self._autocast():
                    pooled_a = self.pool_a.query(self.g_ba(critic_b[k]).float())
                    pooled_b = self.pool_b.query(self.g_ab(critic_a[k]).float())
            with self._autocast():
                loss_da, real_score_a, fake_score_a = self._d_loss(self.d_a, critic_a[k], pooled_a)
                loss_db, real_score_b, fake_score_b = self._d_loss(self.d_b, critic_b[k], pooled_b)
            if self.device.type == "cpu" and not torch.isfinite(loss_da + loss_db):
                raise NonFiniteError(f"non-finite discriminator loss at step {self.step_count + 1}")
            if not update_d:
                break
            self.opt_d.zero_grad(set_to_none=True)
            (loss_da + loss_db).backward()
            distributed.average_gradients(self.params_d, self.world)
            self.opt_d.step()
            if t.adversarial == "wgan-clip":
                with torch.no_grad():
                    for p in self.params_d:
                        p.clamp_(-t.clip_value, t.clip_value)
        with warnings.catch_warnings():  # with update_interval a step may leave one optimizer idle: no matter
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.sched_g.step()
            self.sched_d.step()
        for key, avg in self.ema.items():
            avg.update_parameters(getattr(self, key))
        self.step_count += 1
        out = dict(g_adv=(adv_a + adv_b).detach(), g_cycle=cycle.detach(), g_identity=identity.detach(),
                   g_total=loss_g.detach(), d_a=loss_da.detach(), d_b=loss_db.detach(),
                   d_real=(real_score_a + real_score_b) / 2, d_fake=(fake_score_a + fake_score_b) / 2)
        if t.feature_matching:
            out["g_fm"] = (fm_a + fm_b).detach()
        if t.lambda_nce:
            out["g_nce"] = nce.detach()
        if t.lambda_smooth:
            out["g_smooth"] = smooth.detach()
        self.last_batch = {"real_a": real_a, "real_b": real_b, "fake_a": fake_a.detach(), "fake_b": fake_b.detach()}
        return out

    def recon_rate(self) -> float | None:
        """DiscoGAN's reconstruction weight r at this step (None without --recon-rate)."""
        t = self.cfg.train
        if not t.recon_rate:
            return None
        return t.recon_rate_start if self.step_count < t.recon_rate_steps else t.recon_rate

    # --- generators for samples and export -------------------------------------------------------------------
    def generators(self) -> dict[str, nn.Module]:
        """The generators to show and export: the EMA copies when EMA is on."""
        if self.ema:
            return {k: avg.module for k, avg in self.ema.items()}
        return {"g_ab": self.g_ab, "g_ba": self.g_ba}


    # --- state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step_count,
            "config": json.dumps(self.cfg.to_dict()),
            "nets": {k: getattr(self, k).state_dict() for k in ("g_ab", "g_ba", "d_a", "d_b", "nce_ab", "nce_ba")
                     if getattr(self, k) is not None},
            "ema": {k: avg.state_dict() for k, avg in self.ema.items()},
            "optim": {"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()},
            "sched": {"g": self.sched_g.state_dict(), "d": self.sched_d.state_dict()},
            "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()},
            "rng": rng,
            "bad_files": self.bad_files,
            "monitor": self.monitor.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for key, net_state in state["nets"].items():
            getattr(self, key).load_state_dict(net_state)
        for key, avg_state in state["ema"].items():
            self.ema[key].load_state_dict(avg_state)
        self.opt_g.load_state_dict(state["optim"]["g"])
        self.opt_d.load_state_dict(state["optim"]["d"])
        self.sched_g.load_state_dict(state["sched"]["g"])
        self.sched_d.load_state_dict(state["sched"]["d"])
        self.pool_a.load_state_dict(state["pools"]["a"], self.device)
        self.pool_b.load_state_dict(state["pools"]["b"], self.device)
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.bad_files.update(state["bad_files"])
        self.monitor.load_state_dict(state["monitor"])
        self.step_count = state["step"]

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state" / "last.pt"

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in (*self.params_g, *self.params_d))

    def save(self) -> None:
        """Resume state and model export, each written atomically; a poisoned state is never written."""
        if not self.weights_finite():
            raise NonFiniteError(f"non-finite weights at step {self.step_count}")
        for attempt in range(self.cfg.train.save_retries + 1):
            try:
                save_state(self.state_path, self.state_dict())
                self.export(self.run_dir / "model.safetensors")
                return
            except OSError as exc:
                message = (f"could not save the checkpoint in {self.run_dir} at step {self.step_count}: "
                           f"{exc.strerror or exc}; the previous checkpoint is intact")
                if attempt == self.cfg.train.save_retries:
                    raise SaveError(message) from exc
                tqdm.write(f"{message}; retrying in {SAVE_RETRY_WAIT_S} s", file=sys.stderr)  # above the bar
                time.sleep(SAVE_RETRY_WAIT_S)

    def start_from(self, model: str | Path) -> None:
        """Both generators (and their EMA copies) from an exported model's weights: --init."""
        states, _ = read_model(model)
        for key, net in (("g_ab", self.g_ab), ("g_ba", self.g_ba)):
            nets = [net, *([self.ema[key].module] if self.ema else [])]
            try:
                for target in nets:
                    target.load_state_dict(states.get(key, {}))
            except RuntimeError as exc:
                problem = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
                raise ValueError(f"--init {model}: its {key} does not fit this run's generator ({problem}); "
                                 "leave out the generator flags to take the model's") from None

    def resume(self) -> None:
        if not self.state_path.is_file():
            raise FileNotFoundError(f"{self.state_path}: no resume state in this run folder")
        self.load_state_dict(load_state(self.state_path))

    def export(self, path: str | Path) -> None:
        cfg = self.cfg
        export_model(path, self.generators(), {
            "model": cfg.to_dict()["model"], "image_size": cfg.data.crop_size, "domains": list(self.domains.names),
            "recipe": cfg.train.recipe, "steps": self.step_count, "ema": bool(self.ema)})

    def fit(self, resume: bool = False, stop_at: int | None = None, minutes: float | None = None,
            started: float | None = None) -> dict:
        """Train to total_steps, or for about `minutes` (counted from `started`, a time.perf_counter(); default
        now), or pause at step `stop_at` (saving the state); returns the last logged metrics. See run.fit."""
        from .run import fit
        return fit(self, resume, stop_at, minutes, started)
