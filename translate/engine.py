"""The one training engine behind every recipe: two generators, two discriminators, one step, one loop."""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import losses
from .checkpoint import export_model, load_state, save_state
from .config import Config
from .data import (DataError, UnpairedDataset, UnpairedSampler, build_transform, collate, list_images, load_rgb,
                   scan, to_tensor)
from .nets import build_discriminator, build_generator


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
            test_a, test_b = (list_images(root / t) if (root / t).is_dir() else [] for t in ("testA", "testB"))
            return cls(train_a, train_b, test_a or train_a, test_b or train_b, ("A", "B"))
        if data.data_a and data.data_b:
            folder_a, folder_b = Path(data.data_a), Path(data.data_b)
            train_a, train_b = list_images(folder_a), list_images(folder_b)
            return cls(train_a, train_b, train_a, train_b, (folder_a.resolve().name, folder_b.resolve().name))
        raise DataError("give --data ROOT (with trainA/ and trainB/) or both --data-a and --data-b")

    def drop_unreadable(self) -> dict[str, str]:
        """Remove training files that fail the cheap check; returns {path: reason}. Errors on an empty domain."""
        bad: dict[str, str] = {}
        for domain in ("a", "b"):
            files = getattr(self, f"train_{domain}")
            good, rejected = scan(files)
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
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"images": torch.stack(self.images).cpu() if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.images = [x.to(device) for x in state["images"]]


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        net.requires_grad_(flag)


class Trainer:
    """Builds nets, optimizers, schedulers, pools and EMA from a Config; `step()` trains on one batch,
    `fit()` runs the loop with logging, samples, checkpoints and export into `run_dir`."""

    def __init__(self, cfg: Config, run_dir: str | Path, domains: Domains | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        t = cfg.train
        self.device = resolve_device(t.device)
        if t.adversarial not in losses.ADVERSARIAL:
            raise ValueError(f"unknown adversarial loss {t.adversarial!r}")
        if cfg.data.crop_size % 4:
            raise ValueError(f"--crop-size {cfg.data.crop_size} must be divisible by 4")
        torch.manual_seed(t.seed)
        self.g_ab, self.g_ba = (build_generator(cfg.model).to(self.device) for _ in range(2))
        self.d_a, self.d_b = (build_discriminator(cfg.model).to(self.device) for _ in range(2))
        self.opt_g = self._optimizer([*self.g_ab.parameters(), *self.g_ba.parameters()], t.lr_g)
        self.opt_d = self._optimizer([*self.d_a.parameters(), *self.d_b.parameters()], t.lr_d)
        self.pool_a, self.pool_b = ImagePool(t.pool_size), ImagePool(t.pool_size)
        self.ema = ({k: AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
                     for k, net in (("g_ab", self.g_ab), ("g_ba", self.g_ba))} if t.ema else {})
        self.step_count = 0
        self.domains = domains or Domains.from_config(cfg.data)
        self.bad_files = self.domains.drop_unreadable()
        for path, reason in self.bad_files.items():
            warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=2)
        self.total_steps = self._total_steps()
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self._lr_factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, self._lr_factor)

    # --- set-up -----------------------------------------------------------------------------------------------
    def _optimizer(self, params: list, lr: float) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
        if t.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=t.weight_decay)
        raise ValueError(f"unknown optimizer {t.optimizer!r}; choose adam or rmsprop")

    def steps_per_epoch(self) -> int:
        n = max(len(self.domains.train_a), len(self.domains.train_b)) // self.cfg.train.batch_size
        if n == 0:
            raise DataError(f"batch size {self.cfg.train.batch_size} is larger than the larger domain")
        return n

    def _total_steps(self) -> int:
        t = self.cfg.train
        return t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch()

    def _lr_factor(self, step: int) -> float:
        """Constant LR for the first lr_decay_start of the run, then linear decay towards zero."""
        start = int(self.cfg.train.lr_decay_start * self.total_steps)
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, self.total_steps - start))

    # --- one training step ------------------------------------------------------------------------------------
    def _adversarial_g(self, critic: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> tuple:
        t = self.cfg.train
        if not t.feature_matching:
            return losses.g_loss(t.adversarial, critic(fake)), fake.new_zeros(())
        fake_features = critic.features(fake)
        with torch.no_grad():
            real_features = critic.features(real)
        return (losses.g_loss(t.adversarial, fake_features[-1]),
                losses.feature_matching_loss(real_features, fake_features))

    def _d_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple:
        t = self.cfg.train
        out_real, out_fake = critic(real), critic(fake)
        loss = losses.d_loss(t.adversarial, out_real, out_fake, t.label_smoothing)
        if t.adversarial == "wgan-gp":
            loss = loss + t.gp_weight * losses.gradient_penalty(critic, real, fake)
        if t.r1_weight:
            loss = loss + 0.5 * t.r1_weight * losses.r1_penalty(critic, real)
        return loss, out_real.detach().mean(), out_fake.detach().mean()

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One batch: g_steps generator updates, then d_steps discriminator updates on pooled fakes.

        Returns detached scalar tensors (reading them syncs the device, so the loop does it rarely)."""
        t = self.cfg.train
        nets_d = [self.d_a, self.d_b]
        for net in (self.g_ab, self.g_ba, *nets_d):
            net.train()
        out: dict[str, torch.Tensor] = {}
        _set_requires_grad(nets_d, False)
        for _ in range(t.g_steps):
            fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
            rec_a, rec_b = self.g_ba(fake_b), self.g_ab(fake_a)
            adv_b, fm_b = self._adversarial_g(self.d_b, fake_b, real_b)
            adv_a, fm_a = self._adversarial_g(self.d_a, fake_a, real_a)
            cycle = t.lambda_cycle * (losses.recon_loss(t.recon_loss, rec_a, real_a)
                                      + losses.recon_loss(t.recon_loss, rec_b, real_b))
            identity = fake_a.new_zeros(())
            if t.lambda_identity:
                identity = t.lambda_cycle * t.lambda_identity * (
                    losses.recon_loss(t.recon_loss, self.g_ba(real_a), real_a)
                    + losses.recon_loss(t.recon_loss, self.g_ab(real_b), real_b))
            loss_g = adv_a + adv_b + cycle + identity + t.feature_matching * (fm_a + fm_b)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        _set_requires_grad(nets_d, True)
        pooled_a, pooled_b = self.pool_a.query(fake_a.detach()), self.pool_b.query(fake_b.detach())
        for _ in range(t.d_steps):
            loss_da, real_score_a, fake_score_a = self._d_loss(self.d_a, real_a, pooled_a)
            loss_db, real_score_b, fake_score_b = self._d_loss(self.d_b, real_b, pooled_b)
            self.opt_d.zero_grad(set_to_none=True)
            (loss_da + loss_db).backward()
            self.opt_d.step()
            if t.adversarial == "wgan-clip":
                with torch.no_grad():
                    for p in (*self.d_a.parameters(), *self.d_b.parameters()):
                        p.clamp_(-t.clip_value, t.clip_value)
        self.sched_g.step()
        self.sched_d.step()
        for key, avg in self.ema.items():
            avg.update_parameters(getattr(self, key))
        self.step_count += 1
        out.update(g_adv=(adv_a + adv_b).detach(), g_cycle=cycle.detach(), g_identity=identity.detach(),
                   g_total=loss_g.detach(), d_a=loss_da.detach(), d_b=loss_db.detach(),
                   d_real=(real_score_a + real_score_b) / 2, d_fake=(fake_score_a + fake_score_b) / 2)
        if t.feature_matching:
            out["g_fm"] = (fm_a + fm_b).detach()
        return out

    # --- generators for samples and export -------------------------------------------------------------------
    def generators(self) -> dict[str, nn.Module]:
        """The generators to show and export: the EMA copies when EMA is on."""
        if self.ema:
            return {k: avg.module for k, avg in self.ema.items()}
        return {"g_ab": self.g_ab, "g_ba": self.g_ba}

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Rows of real A | fake B | rec A || real B | fake A | rec B on the fixed sample images, in [0, 1]."""
        from torchvision.utils import make_grid
        g = self.generators()
        for net in g.values():
            net.eval()
        real_a, real_b = self._fixed_samples()
        fake_b, fake_a = g["g_ab"](real_a), g["g_ba"](real_b)
        rec_a, rec_b = g["g_ba"](fake_b), g["g_ab"](fake_a)
        n = min(len(real_a), len(real_b))
        rows = torch.stack([real_a[:n], fake_b[:n], rec_a[:n], real_b[:n], fake_a[:n], rec_b[:n]], dim=1)
        return make_grid(rows.flatten(0, 1).float().cpu().add(1).div(2).clamp(0, 1), nrow=6, padding=2,
                         pad_value=1.0)

    def _fixed_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not hasattr(self, "_samples"):
            size = self.cfg.data.crop_size
            transform = build_transform(size, size, train=False)
            batches = []
            for files in (self.domains.test_a, self.domains.test_b):
                images = []
                for path in files:
                    if len(images) == self.cfg.train.n_samples:
                        break
                    try:
                        images.append(to_tensor(transform(image=load_rgb(path))["image"]))
                    except DataError:
                        continue
                batches.append(torch.stack(images).to(self.device))
            self._samples = tuple(batches)
        return self._samples

    # --- state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step_count,
            "config": json.dumps(self.cfg.to_dict()),
            "nets": {k: getattr(self, k).state_dict() for k in ("g_ab", "g_ba", "d_a", "d_b")},
            "ema": {k: avg.state_dict() for k, avg in self.ema.items()},
            "optim": {"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()},
            "sched": {"g": self.sched_g.state_dict(), "d": self.sched_d.state_dict()},
            "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()},
            "rng": rng,
            "bad_files": self.bad_files,
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
        self.step_count = state["step"]

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state" / "last.pt"

    def save(self) -> None:
        """Resume state and model export, each written atomically."""
        save_state(self.state_path, self.state_dict())
        self.export(self.run_dir / "model.safetensors")

    def resume(self) -> None:
        if not self.state_path.is_file():
            raise FileNotFoundError(f"{self.state_path}: no resume state in this run folder")
        self.load_state_dict(load_state(self.state_path))

    def export(self, path: str | Path) -> None:
        cfg = self.cfg
        export_model(path, self.generators(), {
            "model": cfg.to_dict()["model"], "image_size": cfg.data.crop_size, "domains": list(self.domains.names),
            "recipe": cfg.train.recipe, "steps": self.step_count, "ema": bool(self.ema)})

    # --- the loop --------------------------------------------------------------------------------------------------
    def loader(self, epoch: int, start: int) -> torch.utils.data.DataLoader:
        """Batches for one epoch from position `start` (in pairs); the order depends only on seed and epoch."""
        d, t = self.cfg.data, self.cfg.train
        dataset = UnpairedDataset(self.domains.train_a, self.domains.train_b,
                                  build_transform(d.load_size, d.crop_size, d.resize, d.crop, d.flip))
        sampler = UnpairedSampler(len(self.domains.train_a), len(self.domains.train_b), t.seed, epoch, start)
        batches = torch.utils.data.BatchSampler(sampler, t.batch_size, drop_last=True)
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                           num_workers=d.workers, generator=torch.Generator(),
                                           pin_memory=self.device.type == "cuda")

    def _note_bad(self, messages: list[str], log) -> None:
        for message in messages:
            path, _, reason = message.partition(": ")
            if path not in self.bad_files:
                self.bad_files[path] = reason
                log(f"skipped unreadable image {message}")

    def fit(self, resume: bool = False, stop_at: int | None = None) -> dict:
        """Train to total_steps (or pause at step `stop_at`, saving the state); returns the last logged
        metrics. Ctrl-C saves the state before stopping."""
        from torch.utils.tensorboard import SummaryWriter
        t = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.run_dir / "config.json")
        if resume:
            self.resume()
        writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        spe = self.steps_per_epoch()
        bar = tqdm(total=self.total_steps, initial=self.step_count, desc=self.run_dir.name, unit="step",
                   dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        metrics: dict = {}
        tick, tick_step = time.perf_counter(), self.step_count
        try:
            with (self.run_dir / "metrics.jsonl").open("a") as log_file:
                end = min(self.total_steps, stop_at or self.total_steps)
                while self.step_count < end:
                    epoch, within = divmod(self.step_count, spe)
                    for batch in self.loader(epoch, within * t.batch_size):
                        self._note_bad(batch["bad"], bar.write)
                        a = batch["a"].to(self.device, non_blocking=True)
                        b = batch["b"].to(self.device, non_blocking=True)
                        for key, value in self.step(a, b).items():
                            sums[key] = sums.get(key, 0) + value
                        bar.update(1)
                        s = self.step_count
                        if s % t.log_every == 0 or s == self.total_steps:
                            elapsed = time.perf_counter() - tick
                            n = s - tick_step
                            metrics = {"step": s, "epoch": epoch,
                                       **{k: float(v) / n for k, v in sums.items()},
                                       "lr_g": self.sched_g.get_last_lr()[0], "lr_d": self.sched_d.get_last_lr()[0],
                                       "images_per_s": n * t.batch_size / elapsed, "step_time_s": elapsed / n}
                            if not all(math.isfinite(v) for v in metrics.values()):
                                raise FloatingPointError(f"non-finite loss at step {s}: {metrics}")
                            log_file.write(json.dumps(metrics) + "\n")
                            log_file.flush()
                            for k, v in metrics.items():
                                if k not in ("step", "epoch"):
                                    writer.add_scalar(k, v, s)
                            bar.set_postfix({k: f"{metrics[k]:.3g}" for k in ("g_adv", "g_cycle", "d_a", "d_b")})
                            sums, tick, tick_step = {}, time.perf_counter(), s
                        if s % t.sample_every == 0 or s == self.total_steps:
                            self.write_samples(writer)
                        if s % t.save_every == 0 or s == end:
                            self.save()
                        if s >= end:
                            break
        except KeyboardInterrupt:
            bar.write(f"interrupted: saving state at step {self.step_count}")
            self.save()
            raise
        finally:
            bar.close()
            writer.close()
        if self.bad_files:
            print(f"skipped {len(self.bad_files)} unreadable image(s); listed in {self.run_dir / 'skipped.txt'}")
            (self.run_dir / "skipped.txt").write_text(
                "".join(f"{p}: {r}\n" for p, r in sorted(self.bad_files.items())))
        return metrics

    def write_samples(self, writer=None) -> Path:
        from torchvision.utils import save_image
        grid = self.sample_grid()
        path = self.run_dir / "samples" / f"step_{self.step_count:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        if writer is not None:
            writer.add_image("samples", grid, self.step_count)
        return path
