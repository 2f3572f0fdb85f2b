"""The medical template's configuration (pydantic, strict keys, loadable from YAML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from lepton_apps.config import LeptonConfig


class AugmentConfig(LeptonConfig):
    """On-device batch augmentation, applied to training batches only.

    Defaults suit radiographs: no vertical flip (anatomy has an up), no horizontal flip
    (laterality matters, e.g. the heart is on the left), a small affine and intensity jitter, no
    pixel noise.
    """

    hflip: bool = False
    vflip: bool = False
    rotate_degrees: float = Field(10.0, ge=0, le=180)
    scale: float = Field(0.10, ge=0, lt=1, description="random zoom in [1-scale, 1+scale]")
    translate: float = Field(0.06, ge=0, lt=0.5, description="random shift as a fraction of the image side")
    brightness: float = Field(0.15, ge=0, lt=1)
    contrast: float = Field(0.15, ge=0, lt=1)
    gamma: float = Field(0.15, ge=0, lt=1, description="random gamma in [1-gamma, 1+gamma]")
    noise: float = Field(0.0, ge=0, lt=1, description="std of Gaussian noise, as a fraction of the full range (off by "
                                                      "default: on upsampled small images it shifted the batch-norm "
                                                      "statistics and cost 0.1 validation AUC)")
    enabled: bool = True


class MedicalConfig(LeptonConfig):
    """Everything ``train()`` needs: data, backbone, image size, optimisation and operating point.

    The defaults adapt to the data: the input size follows the images, the schedule is sized in
    optimizer steps (``min_steps`` on a small set, ``max_steps`` on a large one) rather than a
    fixed epoch count, the pretrained backbone learns at ``backbone_lr_mult`` x ``lr`` while the
    new head learns at ``lr``, an exponential moving average of the weights is what gets
    validated and kept, and the best validation epoch is trusted only when the validation set is
    large enough (``model_selection: auto``).
    """

    data: str = Field(..., description="folder root/<class>/*, manifest.csv or MedMNIST .npz")
    patient_id_pattern: str | None = Field(
        None, description="regular expression with a named group 'patient', searched in each file name to "
                          "take the patient id from it (e.g. '(?P<patient>person\\d+)'); used for patient-level "
                          "splits where the data has no patient_id column")
    out: str | None = Field(None, description="bundle folder to write (default runs/medical-<time>/bundle)")
    backbone: str = Field("efficientnet_lite0", description="any timm model name")
    pretrained: bool = Field(True, description="start from ImageNet weights (local file, HF cache, or packaged)")
    weights: str | None = Field(None, description="local .safetensors / state-dict file with backbone weights")
    allow_download: bool = Field(False, description="let timm download weights from the Hugging Face hub")
    image_size: int | None = Field(None, ge=28, le=512, description="input size in pixels; None = from the images: "
                                                                   "their median short side, clamped to 64-96")
    channels: Literal["auto", 1, 3] = Field("auto", description="1 = grayscale, 3 = colour; auto = from the data")
    epochs: int | None = Field(None, ge=1, description="exact number of epochs; None = sized in optimizer steps "
                                                       "(min_steps / max_steps)")
    min_steps: int = Field(300, ge=1, description="with epochs unset: 10 epochs, raised to at least this many "
                                                  "optimizer steps (small sets)")
    max_steps: int = Field(4000, ge=1, description="with epochs unset: 10 epochs, capped at this many optimizer "
                                                   "steps (large sets)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the new head (AdamW, warmup + cosine)")
    backbone_lr_mult: float = Field(0.3, gt=0, le=1, description="the pretrained backbone learns at lr x this "
                                                                 "(1 = one rate for all; ignored without pretraining)")
    ema: bool = Field(True, description="validate and keep an exponential moving average of the weights")
    model_selection: Literal["auto", "best", "last"] = Field(
        "auto", description="best: the epoch with the best validation AUC; last: the end of the schedule; "
                            "auto: best when every class has >= 50 validation images, else last")
    weight_decay: float = Field(1e-4, ge=0)
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better validation "
                                                         "AUC; None = run the whole schedule")
    class_weighting: Literal["balanced", "none"] = "balanced"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    val_fraction: float = Field(0.15, ge=0, lt=0.5)
    test_fraction: float = Field(0.15, ge=0, lt=0.5)
    operating_point: Literal["youden", "sensitivity"] = "youden"
    target_sensitivity: float = Field(0.95, gt=0, le=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    skip_unreadable: bool = Field(False, description="train without unreadable files instead of stopping")
    cache_dir: str | None = Field(None, description="keep decoded, resized images here for later runs "
                                                    "(streaming default: <out>-run/decoded)")
    data_loading: Literal["auto", "memory", "stream"] = Field(
        "auto", description="memory: decode up front and hold in RAM; stream: decode in DataLoader workers "
                            "into a disk cache; auto: memory when 2 x N x C x image_size^2 bytes fits memory_budget_gb")
    memory_budget_gb: float | None = Field(None, gt=0, description="RAM the in-memory path may use (default: half the RAM)")
    num_workers: int | None = Field(None, ge=0, description="decoding worker processes when streaming "
                                                            "(default min(4, CPUs); 0 = in the training process)")
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    compile: bool = False
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice)")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples for the confidence intervals")
    resume: bool = Field(False, description="continue the interrupted run in <out>-run instead of starting over")
    progress: bool = True
