"""The paper profile on this device: measured rates, and the wall-clock time they project for the whole profile.

Measured on the current device (CUDA when present, else the CPU), on a synthetic list-file dataset of 500x375
JPEGs (FLICKR-25K's size) written to a temporary folder:

1. images/s of the image path: ``ImageFileSplit`` (a JPEG decode and a resize per access, as before the cache),
   the decoded image cache's build (a process pool over every core) and its reads, with the pixels checked equal;
2. AlexNet at 224 (the paper profile's backbone), at the profile's precision ("auto": bf16 on CUDA, fp32 on a
   CPU): a clean DPSH training step, an ``encode`` batch, a HAG iteration and a CgAT training step (PGD-7 inner
   attack and the outer loss), each in images/s;
3. the FLOPs of each (``torch.utils.flop_counter``) against the device's measured matmul peak (bf16 on CUDA, fp32
   on a CPU): the achieved fraction of peak;
4. the paper profile's total time projected from those rates: every training epoch, encoding and attack iteration
   that ``profiles/paper.yaml`` asks for, counted per stage (its assumptions are printed with it); and the same
   work on a device of a stated peak at a stated fraction of it (default: an H100/H200's 989 bf16 TFLOP/s at 30%),
   an assumption printed as one, for the machine this runs on is rarely the one the profile is meant for.

``--toy`` (the default on a CPU: under 5 minutes on 2 cores) measures on 48 JPEGs and batches of 8; on a GPU the
default uses 512 JPEGs and the profile's batch sizes. Nothing here is asserted: speed is reported, never tested.

Run: ``python benchmarks/bench_paper_scale.py`` (``--toy`` / ``--full``, ``--images N``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from advhash.attacks import HAG
from advhash.data import load_listfile_dataset
from advhash.data.cache import cached_split
from advhash.defenses import build_defense
from advhash.losses import build_loss
from advhash.models import HashingModel, effective_precision
from advhash.utils import resolve_device

ROOT = Path(__file__).resolve().parents[1]
# backbone FLOPs relative to AlexNet at 224 (torchvision's GFLOPs per image: 0.71, VGG-11 7.61, VGG-16 15.47,
# ResNet-50 4.09): the transfer victims of notebook 02 are projected from AlexNet's measured rates by these.
RELATIVE_COST = {"alexnet": 1.0, "vgg11": 7.61 / 0.71, "vgg16": 15.47 / 0.71, "resnet18": 1.81 / 0.71,
                 "resnet50": 4.09 / 0.71}
# standard split sizes of the list-file datasets (train, query, database)
SPLITS = {"flickr25k": (5_000, 1_700, 23_300), "nus-wide": (10_500, 2_100, 193_734),
          "flickr25k-crossmodal": (10_000, 2_000, 18_015)}


def write_photos(folder: Path, count: int) -> Path:
    """A list-file dataset of ``count`` 500x375 JPEGs (smooth random colour fields, quality 90), 24 labels."""
    base = folder / "PHOTOS"
    (base / "images").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i in range(count):
        coarse = g.integers(0, 256, (15, 20, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((500, 375), Image.BILINEAR).save(base / "images" / f"{i}.jpg", quality=90)
    labels = (g.random((count, 24)) < 0.15).astype(int)
    for stem in ("train", "test", "database"):
        (base / f"{stem}_img.txt").write_text("".join(f"images/{i}.jpg\n" for i in range(count)))
        (base / f"{stem}_label.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in labels))
    return base


def rate(function, items: int, *, repeats: int = 3, device: torch.device) -> float:
    """Items per second of ``function()`` (best of ``repeats`` after a warm-up)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - began)
    return items / best


def flops_of(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """The device's measured dense matmul rate in FLOP/s: bf16 on CUDA, fp32 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return rate(lambda: a @ b, 2 * n ** 3, repeats=5, device=device), str(dtype).replace("torch.", "")


def image_path(count: int, device: torch.device) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        write_photos(Path(folder), count)
        with warnings.catch_warnings():       # the three splits list the same photos
            warnings.simplefilter("ignore")
            files = load_listfile_dataset(folder, folder="PHOTOS", image_size=224, cache=False).train
        order = torch.arange(count)
        plain = rate(lambda: files.batch(order), count, repeats=1, device=device)
        began = time.perf_counter()
        cached = cached_split(files, cache_dir=Path(folder) / "cache")
        build = count / (time.perf_counter() - began)
        read = rate(lambda: cached.batch(order, device=device), count, device=device)
        same = torch.equal(files.batch(order[:16])[0], cached.batch(order[:16])[0])
    return dict(plain=plain, build=build, cached=read, same=same)


def model_rates(device: torch.device, batch: int, attack_batch: int, precision: str) -> dict[str, tuple]:
    """(images/s, FLOP per image) of a clean step, an encode, a HAG iteration and a CgAT step."""
    torch.manual_seed(0)
    model = HashingModel("alexnet", bits=32, input_size=224).to(device)
    model.precision = precision
    n_train = 4 * batch
    loss = build_loss("dpsh", num_train=n_train, bits=32, num_classes=24).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.rand(batch, 3, 224, 224, device=device)
    labels = (torch.rand(batch, 24, device=device) < 0.15).float()
    indices = torch.arange(batch, device=device)

    def clean_step():
        model.train()
        value = loss(model(images), labels, indices)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    def encode():
        model.eval()
        with torch.no_grad():
            model.hash_logits(images)

    attack_images = torch.rand(attack_batch, 3, 224, 224, device=device)
    hag = HAG(model, eps=8 / 255, alpha=1 / 255, steps=1)

    def hag_iteration():
        model.eval()
        hag(attack_images, torch.zeros(attack_batch, 24, device=device))

    defense = build_defense("cgat", num_train=n_train, bits=32, num_classes=24, eps=8 / 255, alpha=2 / 255, steps=7)
    defense.to(device)
    table_images = torch.rand(n_train, 3, 224, 224)
    table_labels = (torch.rand(n_train, 24) < 0.15).float()
    from advhash.data import InMemorySplit
    defense.prepare(model, InMemorySplit((table_images * 255).to(torch.uint8), table_labels), seed=0)

    def cgat_step():
        value = defense.batch_loss(model, loss, images, labels, indices, step=0)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    results = {}
    for name, function, items in (("clean training step", clean_step, batch), ("encode", encode, batch),
                                  ("HAG iteration", hag_iteration, attack_batch),
                                  ("CgAT training step (PGD-7)", cgat_step, batch)):
        results[name] = (rate(function, items, device=device), flops_of(function) / items)
    return results


def projection(rates: dict[str, tuple], profile: dict) -> list[tuple[str, float, str]]:
    """(stage, seconds, what was counted) for the paper profile, from the measured images/s."""
    train, encode, attack, cgat = (rates[k][0] for k in ("clean training step", "encode", "HAG iteration",
                                                           "CgAT training step (PGD-7)"))
    dh, hag, saat, cg, cmla = (profile[s] for s in ("deep_hashing", "hag", "saat", "cgat", "cmla"))
    n_train, n_query, n_db = SPLITS[dh["dataset"]]
    models = len(dh["methods"]) * len(dh["bits_list"])
    encodes = n_train + n_query + n_db
    rows = [("01 deep hashing", models * (dh["epochs"] * n_train / train + encodes / encode),
             f"{models} models x {dh['epochs']} epochs x {n_train} images, each encoded once")]
    other = [d for d in hag["datasets"] if d != dh["dataset"]]
    trained = sum(len(hag["bits_list"]) * (dh["epochs"] * SPLITS[d][0] / train + sum(SPLITS[d]) / encode)
                  for d in other)
    pool = sum(RELATIVE_COST[net] * (dh["epochs"] * n_train / train + encodes / encode)
               for _, net, _ in hag["transfer_victims"])
    victims = len(hag["datasets"]) * len(hag["bits_list"])
    iterations = victims * hag["num_attacked"] * (2 * hag["steps"] + hag["pgd_steps"])
    sweep = len(hag["eps_sweep_255"]) * hag["num_attacked"] * hag["steps"]
    transfer = (len(hag["transfer_victims"]) + 1) * hag["num_attacked"] * hag["steps"]
    rows.append(("02 HAG", trained + pool + (iterations + sweep + transfer) / attack,
                 f"{len(other) * len(hag['bits_list'])} victims trained on {other} and {len(hag['transfer_victims'])} "
                 f"transfer victims (by FLOPs relative to AlexNet); {iterations + sweep + transfer:,} attack "
                 "iterations-images (HAG*, HAG, PGD, the eps sweep, transfer)"))
    for name, section, steps_per_query in (
            ("04 SAAT", saat, 3 * saat["attack_steps"] + 3 * saat["baseline_steps"] + saat["sdha_steps"]),
            ("05 CgAT", cg, saat["attack_steps"] + 3 * cg["attack_steps"] + cg["pgd_steps"])):
        bits = len(section["bits_list"])
        adversarial = [d for d in section["defenses"] if d != "finetune"]
        fine_tuning = bits * section["adv_epochs"] * n_train * (len(adversarial) / cgat + 1 / train)
        tradeoff = (len(section.get("tradeoff_defenses", [])) * len(section.get("tradeoff_train_eps_255", []))
                    * section["adv_epochs"] * n_train / cgat)
        models = bits * (1 + len(section["defenses"]))
        attacks = models * section["num_attacked"] * steps_per_query
        sweep = len(section["eps_sweep_255"]) * section["num_attacked"] * 2 * section["attack_steps"] * 4
        rows.append((name, fine_tuning + tradeoff + models * encodes / encode + (attacks + sweep) / attack,
                     f"{bits * len(section['defenses'])} fine-tunes of {section['adv_epochs']} epochs (adversarial "
                     f"ones at the CgAT step's rate), {attacks + sweep:,} attack iteration-images"))
    d_train, d_query, d_db = SPLITS[cmla["dataset"]]
    bits = len(cmla["bits_list"])
    training = bits * (cmla["epochs"] + cmla["ssah_epochs"] + 2 * cmla["adv_epochs"]) * d_train / train
    samples = bits * 2 * cmla["num_adversarial"] * cmla["adv_attack_steps"] / attack
    attacks = bits * 4 * 2 * cmla["num_attacked"] * cmla["attack_steps"] / attack
    rows.append(("03 CMLA", training + samples + attacks + bits * 4 * (d_train + d_query + d_db) / encode,
                 f"DCMH {cmla['epochs']} + SSAH {cmla['ssah_epochs']} epochs at AlexNet's training rate (the text "
                 f"networks ignored), CMLA samples and attacks at the HAG iteration's rate"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--toy", action="store_true", help="48 JPEGs, batches of 8 (the default on a CPU)")
    size.add_argument("--full", action="store_true", help="512 JPEGs, the profile's batch sizes (default on CUDA)")
    parser.add_argument("--images", type=int, help="JPEGs of the image-path measurement")
    parser.add_argument("--assume-peak", type=float, default=989e12, help="FLOP/s of the device to project for")
    parser.add_argument("--assume-fraction", type=float, default=0.3, help="fraction of that peak achieved")
    args = parser.parse_args()
    device = resolve_device("auto")
    toy = args.toy or (device.type == "cpu" and not args.full)
    profile = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    precision = effective_precision(profile["deep_hashing"].get("precision", "auto"), device)
    batch = 8 if toy else profile["deep_hashing"]["batch_size"]
    attack_batch = 8 if toy else profile["hag"]["attack_batch_size"]
    count = args.images or (48 if toy else 512)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; precision {precision}; {'toy' if toy else 'full'} size: {count} JPEGs, batch {batch}, "
          f"attack batch {attack_batch}")

    images = image_path(count, device)
    print(f"\n500x375 JPEGs at 224: files {images['plain']:.0f} images/s; cache build {images['build']:.0f} images/s "
          f"(process pool); cache reads {images['cached']:.0f} images/s = {images['cached'] / images['plain']:.0f}x "
          f"the files; same pixels: {images['same']}")

    peak, peak_dtype = matmul_peak(device)
    print(f"\nmeasured {peak_dtype} matmul peak: {peak / 1e12:.2f} TFLOP/s")
    rates = model_rates(device, batch, attack_batch, precision)
    print(f"{'AlexNet at 224, 32 bits':34s} {'images/s':>10s} {'GFLOP/image':>12s} {'TFLOP/s':>8s} {'of peak':>8s}")
    for label, (speed, flops) in rates.items():
        print(f"{label:34s} {speed:10.1f} {flops / 1e9:12.2f} {speed * flops / 1e12:8.3f} "
              f"{speed * flops / peak:8.1%}")

    rows = projection(rates, profile)
    total = sum(seconds for _, seconds, _ in rows)
    print(f"\nprojected paper profile on this device ({'toy batch sizes: pessimistic' if toy else 'profile batches'}):")
    for stage, seconds, counted in rows:
        print(f"  {stage:16s} {seconds / 3600:9.1f} h   {counted}")
    print(f"  {'total':16s} {total / 3600:9.1f} h ({total / 86400:.1f} days)")
    assumed = {label: (args.assume_fraction * args.assume_peak / flops, flops) for label, (_, flops) in rates.items()}
    stages = projection(assumed, profile)
    print(f"\nthe same work on a device of {args.assume_peak / 1e12:.0f} TFLOP/s (bf16 dense; an H100/H200: 989) at "
          f"{args.assume_fraction:.0%} of it (an ASSUMPTION, not a measurement; measure with --full on the GPU):")
    print("  " + ", ".join(f"{stage} {seconds / 3600:.2f} h" for stage, seconds, _ in stages)
          + f"; total {sum(seconds for _, seconds, _ in stages) / 3600:.1f} h")
    print("assumptions: the rates above hold for every image of every stage (data loading from the cache never "
          "waits); an attack iteration costs a HAG iteration whatever the attack; adversarial fine-tunes cost a CgAT "
          "step per image; text networks, metrics and evaluation overheads are left out; the standard split sizes "
          f"{SPLITS}")


if __name__ == "__main__":
    main()
