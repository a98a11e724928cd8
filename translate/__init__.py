"""translate: unpaired image-to-image translation (CycleGAN, DiscoGAN, DualGAN) from one engine."""
import os
import time

STARTED = time.perf_counter()  # the process start, near enough: the first command's `--minutes` budget counts from here

# No network at run time: nothing in this package may phone home or download.
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
                     "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
                     # idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning threads
                     # slowed a small net from 5 ms to over a second
                     "OMP_WAIT_POLICY": "PASSIVE"}.items():
    os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
