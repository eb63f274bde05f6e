# %% [markdown]
# # 4. SAAT: mainstay codes, semantic-aware attacks and minimax adversarial training
#
# Yuan, Zhang, Wang and Wu (TIFS 2023) guide both the attack and the defense of a deep hashing model with one
# semantic representative per item, its **mainstay code**. Discriminative Mainstay Features Learning (DMFL) asks for
# the code nearest the codes of the relevant items $P$ (weighted by label similarity) and farthest from those of the
# irrelevant ones $N$, and Theorem 1 gives it in closed form:
#
# $$b_m = \arg\min_{b\in\{-1,1\}^K} \sum_{j\in P} w_j\, d_H(b, b_j) - \frac{1}{|N|}\sum_{j\in N} d_H(b, b_j)
#       = \mathrm{sign}\Big(\sum_{j\in P} w_j b_j - \frac{1}{|N|}\sum_{j\in N} b_j\Big),\qquad
#   w_j = \frac{\cos(y, y_j)}{\sum_{k\in P}\cos(y, y_k)}.$$
#
# The **SAAT attack** maximizes the Hamming distance between the adversarial code and the query's mainstay code
# (targeted: minimizes it to the target label's mainstay code); **SAAT adversarial training** is the minimax problem
#
# $$\min_\theta\; L_{hash}(x) - \lambda\, \overline{h(x_{adv})\odot b_m} + \mu\, \overline{(h(x_{adv}) - \mathrm{sign}\,h(x_{adv}))^2},\qquad
#   x_{adv} = \arg\max_{\|x'-x\|_\infty\le\epsilon} d_H\big(h(x'), b_m\big).$$
#
# Where the code lives: mainstay codes in `advhash/codes/mainstay.py` (`mainstay_codes`, and the objective they
# minimize, `mainstay_code_objective`); the SAAT attack in `advhash/attacks/saat.py` (masked loss of the published
# code, or the plain relaxed distance); SDHA, the other non-targeted baseline of the paper, in
# `advhash/attacks/sdha.py`; HAG, P2P and DHTA as in notebooks 02 and 05; the defenses `SAATTraining`, `ATRDH` and
# `CgAT` in `advhash/defenses/`. The published tables sit in `notebooks/published/`.
#
# This notebook, on the embedded default data:
# 1. mainstay codes: Hamming distances to positives and negatives beside the query's own code and CgAT's center
#    code, how many bits mainstay and center codes differ in, and the brute-force check of Theorem 1;
# 2. **Table I layout**: non-targeted attacks (HAG, SDHA, SAAT) as mAP and targeted ones (P2P, DHTA, SAAT) as t-MAP
#    on the undefended models, with the *Original* row and the *theory* row; the published numbers beside;
# 3. **Table II layout**: ATRDH against SAAT training (and a clean fine-tune as control) under HAG, SDHA and SAAT;
# 4. precision-recall curves at 32 bits, non-targeted and targeted;
# 5. attack strength vs $\epsilon$ and vs iterations;
# 6. the robustness-accuracy trade-off of ATRDH, CgAT and SAAT as the training budget varies.
#
# **Threat model and scale.** L-inf on [0, 1] images. As in notebooks 02 and 05, 8/255 barely moves 28x28 grey
# images, so the default budget is larger (`eps_255`); the paper profile uses SAAT's 8/255, step 1/255, 100
# iterations. The victims are DPH models (SAAT's victims) from notebook 01. Every defense fine-tunes the clean victim
# with the same optimizer and training attack budget (PGD-7, random start, train mode), and every attack re-attacks
# the model it evaluates with that model's own codes (adaptive). The CPU victims are not converged, so the
# **finetune** model (same epochs, hashing loss only) separates what adversarial training buys from what more
# training buys.

# %% tags=["parameters"]
# data
dataset = "fashion-mosaic"      # advhash.data.DATASETS name (multi-label, derived from Fashion-MNIST)
data_root = "data"              # relative to the project root
num_query = 100                 # query split size (as notebook 01, so its victims are reused)
num_attacked = 100              # queries attacked: the first ones of the query split
num_train = 1000                # training items of the victims, the defenses and the attackers' code tables
num_database = 1500             # database items (None: every non-query item)
split_seed = 0
# undefended victims (the notebook 01 settings, so its checkpoints are reused)
method = "dph"                  # hashing loss of the victims and the clean term of every defense (SAAT: DPH)
bits_list = [16, 32]            # code lengths (params.yaml: 16, 32, 48, 64)
backbone = "small_cnn"
input_size = None
pairs = "batch"
epochs = 5
batch_size = 64
optimizer = "adam"
lr = 0.001
momentum = 0.9
weight_decay = 0.00001
lr_milestones = []
seed = 0
device = "cpu"
# adversarial training: every defense fine-tunes the clean victim with the same optimizer
defenses = ["finetune", "atrdh", "saat"]  # Table II (advhash.defenses.DEFENSES; "finetune": the clean control)
adv_epochs = 2                  # epochs of adversarial fine-tuning (SAAT code: 20)
adv_lr = 0.001                  # learning rate of the fine-tuning (SAAT code: SGD 0.05)
adv_lr_milestones = []          # epochs of the fine-tuning at which its learning rate drops 10x
train_eps_255 = 32              # L-inf budget of the training-time attack, in pixel levels
train_step_255 = 8              # its step (SAAT: 2/255 for eps 8/255)
train_steps = 7                 # its iterations (PGD-7)
saat_weight = 1.0               # lambda of the mainstay alignment (SAAT code: 1)
saat_quantization_weight = 0.0001   # mu of the adversarial codes' quantization term (SAAT code: 1e-4)
atrdh_weight = 1.0              # weight of ATRDH's adversarial pairwise term (TADH code: 1, SAAT copy: 2)
cgat_weight = 1.0               # lambda of CgAT (trade-off panel only)
center_variant = "paper"        # CgAT center codes: "paper" or "official"
# robustness-accuracy trade-off (one code length): each defense retrained at each training budget
tradeoff_defenses = ["atrdh", "cgat", "saat"]
tradeoff_train_eps_255 = [8, 32]    # training budgets; the step is a quarter of each (params.yaml: 8, 16, 32)
# evaluation attacks (each re-attacks the model it evaluates)
eps_255 = 32                    # L-inf budget of the evaluation attacks, in pixel levels
attack_step_255 = 4             # sign step of SAAT, HAG, P2P and DHTA
attack_steps = 20               # iterations of the SAAT attacks (paper: 100)
baseline_steps = 20             # iterations of HAG, P2P and DHTA (SAAT's runs: 2,000)
sdha_lr = 0.01                  # Adam learning rate of SDHA on the pixels
sdha_steps = 20                 # SDHA iterations (SAAT's runs: 100)
dhta_anchors = 9                # n_t of DHTA (P2P: 1)
eps_sweep_255 = [8, 32]         # budgets of the attack-strength-vs-eps curves (params.yaml: 4, 8, 16, 32)
iteration_sweep = [5, 20]       # iteration counts of the attack-strength-vs-iterations curves
attack_batch_size = 128
brute_force_bits = 10           # K of the brute-force check of Theorem 1 (2^K candidate codes)
# evaluation
topk = 5000                     # mAP@k, capped at the database size
pr_bits = 32                    # code length of the precision-recall curves
# outputs
checkpoint_dir = "build/nbval/checkpoints/04_saat"
reuse_checkpoints_from = ["build/nbval/checkpoints/01_deep_hashing"]
figure_dir = "build/nbval/figures/04_saat"
metrics_dir = "build/nbval/metrics"

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from advhash.attacks import DHTA, HAG, P2P, SAAT, SDHA, perturb, perturbation_stats
from advhash.codes import (brute_force_minimum, center_codes, mainstay_code_objective, mainstay_codes,
                           sample_target_labels)
from advhash.data import load_dataset
from advhash.defenses import build_defense, fit_defended_model
from advhash.metrics import mean_average_precision, precision_recall_curve, random_ranking_map, targeted_map
from advhash.pipeline import project_root, write_json
from advhash.train import encode, fit_hashing_model

started = time.perf_counter()
root = project_root()
figure_dir, metrics_dir = root / figure_dir, root / metrics_dir
figure_dir.mkdir(parents=True, exist_ok=True)
sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.precision", 4)
eps, step = eps_255 / 255, attack_step_255 / 255
training = dict(batch_size=batch_size, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay)
data = load_dataset(dataset, root=root / data_root, num_query=num_query, num_train=num_train,
                    num_database=num_database, seed=split_seed)
k = min(topk, len(data.database))
attacked = torch.arange(min(num_attacked, len(data.query)))
clean_images, query_labels = data.query.batch(attacked)[:2]
db_labels, train_labels = data.database.labels, data.train.labels
random_map = random_ranking_map(query_labels, db_labels, topk=k)
target_labels = sample_target_labels(query_labels, db_labels, min_items=dhta_anchors,
                                     generator=torch.Generator().manual_seed(seed))
story_bits = pr_bits if pr_bits in bits_list else bits_list[0]


def defended(name, base, bits, budget_255=train_eps_255):
    """Fine-tune ``base`` with the defense ``name`` ("finetune": the hashing loss alone) at a training budget
    (pixel levels; the step scales with it)."""
    settings = dict(saat=dict(weight=saat_weight, quantization_weight=saat_quantization_weight),
                    atrdh=dict(weight=atrdh_weight), cgat=dict(weight=cgat_weight, variant=center_variant))
    step_255 = train_step_255 * budget_255 / train_eps_255
    defense = None if name == "finetune" else build_defense(
        name, num_train=len(data.train), bits=bits, num_classes=data.num_classes, eps=budget_255 / 255,
        alpha=step_255 / 255, steps=train_steps, **settings.get(name, {}))
    model, _ = fit_defended_model(data, base, defense, method=method, epochs=adv_epochs, lr=adv_lr,
                                  lr_milestones=tuple(adv_lr_milestones), pairs=pairs, device=device, seed=seed,
                                  checkpoint_dir=root / checkpoint_dir,
                                  reuse_from=[root / folder for folder in reuse_checkpoints_from], **training)
    return model.cpu().eval()


models = {}
for bits in bits_list:
    clean_model, _ = fit_hashing_model(data, method=method, bits=bits, backbone=backbone, epochs=epochs, lr=lr,
                                       lr_milestones=tuple(lr_milestones), input_size=input_size, pairs=pairs,
                                       device=device, seed=seed, checkpoint_dir=root / checkpoint_dir,
                                       reuse_from=[root / folder for folder in reuse_checkpoints_from], **training)
    models["undefended", bits] = clean_model.cpu().eval()
    for name in defenses:
        models[name, bits] = defended(name, models["undefended", bits], bits)
db_codes = {id(model): encode(model, data.database) for model in models.values()}
train_codes = {id(model): encode(model, data.train) for model in models.values()}
model_names = ["undefended", *defenses]
palette = dict(zip(["undefended", "finetune", "atrdh", "cgat", "saat"], sns.color_palette("deep", 5)))
print(f"{len(models)} models ({method.upper()}, {backbone}); defenses fine-tuned {adv_epochs} epochs at "
      f"eps {train_eps_255}/255; evaluation eps {eps_255}/255 on {len(attacked)} queries; "
      f"mAP@{k} of a random ranking: {random_map:.3f}")

# %% [markdown]
# ## 1. Mainstay codes
# For every attacked query of the undefended model at `pr_bits` bits: the Hamming distances from its own code $b_q$,
# its mainstay code $b_m$ and its CgAT center code $c_q$ (both from the model's training codes) to the database items
# that share a label with it (positives) and to those that do not (negatives). A semantic representative should sit
# near the positives and far from the negatives (the paper's first suggested experiment). Mainstay and center codes
# differ only in how positives are weighted (cosine vs Jaccard), so on multi-label data they differ in a few bits.

# %%
story_model = models["undefended", story_bits]
story_db, story_train = db_codes[id(story_model)], train_codes[id(story_model)]
query_mainstays = mainstay_codes(query_labels, story_train, train_labels)
query_centers = center_codes(query_labels, story_train, train_labels, variant="paper")
code_kinds = {"query code b_q": encode(story_model, clean_images), "mainstay code b_m": query_mainstays,
              "center code c_q": query_centers}
relevant = (query_labels @ db_labels.T > 0)                                        # (n_q, n_db)
distance_rows = []
for kind, codes in code_kinds.items():
    distances = (story_bits - codes @ story_db.T) / 2                              # d_H (n_q, n_db)
    for relation, mask in (("positives", relevant), ("negatives", ~relevant)):
        distance_rows.append(pd.DataFrame(dict(code=kind, relation=relation, distance=distances[mask].numpy())))
distances = pd.concat(distance_rows, ignore_index=True)
grid = sns.displot(data=distances, x="distance", hue="relation", col="code", stat="density", common_norm=False,
                   discrete=True, height=3.0, aspect=1.2)
grid.set_axis_labels(f"Hamming distance ({story_bits} bits)", "density")
grid.savefig(figure_dir / "mainstay_code_distances.png", dpi=110)
distance_summary = distances.groupby(["code", "relation"]).distance.mean().unstack()
distance_summary["margin (neg - pos)"] = distance_summary.negatives - distance_summary.positives
mainstay_vs_center = ((query_mainstays != query_centers).sum(1)).float()
print(f"bits in which the mainstay and center codes differ ({story_bits} bits): mean "
      f"{mainstay_vs_center.mean():.2f}, max {int(mainstay_vs_center.max())}, identical for "
      f"{(mainstay_vs_center == 0).float().mean():.0%} of the queries")
distance_summary

# %% [markdown]
# **Brute-force check of Theorem 1.** With $K$ = `brute_force_bits` (the first bits of the training codes of the
# first code length) there are $2^K$ candidate codes; the closed form must reach the minimum of the DMFL objective
# for every query.

# %%
check_bits = min(brute_force_bits, bits_list[0])
table = train_codes[id(models["undefended", bits_list[0]])][:, :check_bits]
closed = mainstay_codes(query_labels, table, train_labels)
best, _ = brute_force_minimum(lambda c: mainstay_code_objective(c, query_labels, table, train_labels), check_bits)
closed_value = torch.diagonal(mainstay_code_objective(closed, query_labels, table, train_labels))
brute_force = pd.DataFrame([dict(bits=check_bits, candidates=2**check_bits, queries=len(closed),
                                 max_gap=(closed_value - best).abs().max().item())])
brute_force


# %% [markdown]
# ## 2. Attacks on the undefended models (Table I layout)
# Non-targeted attacks, mAP of the adversarial queries (**lower = stronger attack**): HAG (away from the query's own
# code), SDHA (away from the codes of the relevant training items, nearest first) and SAAT (away from the mainstay
# code). Targeted attacks, t-MAP against a target label that shares no class with the query (**higher = stronger**):
# P2P and DHTA (toward an anchor code of 1 and `dhta_anchors` database items of the target label) and SAAT (toward
# the target label's mainstay code). *Original* is retrieval with the clean queries. The *theory* rows use the
# mainstay code itself as the adversarial code: the negated mainstay code of the query (non-targeted) and the target
# label's mainstay code (targeted), the code the SAAT attack steers toward; an attack that reached it exactly would
# score this.

# %%
def attacker_codes(model, labels):
    """The attacker's mainstay codes for ``labels``, from the attacked model's own training codes."""
    return mainstay_codes(labels, train_codes[id(model)], train_labels)


def nontargeted_attacks(model):
    """HAG, SDHA and SAAT with their budgets: {name: (attack, per-image argument or None)}."""
    return {"HAG": (HAG(model, eps=eps, alpha=step, steps=baseline_steps), None),
            "SDHA": (SDHA(model, train_codes[id(model)], train_labels, eps=eps, lr=sdha_lr, steps=sdha_steps),
                     query_labels),
            "SAAT": (SAAT(model, eps=eps, alpha=step, steps=attack_steps, seed=seed), attacker_codes(model, query_labels))}


def targeted_attacks(model):
    grow = dict(eps=eps, alpha=step, steps=baseline_steps, seed=seed, scale_schedule="grow")
    p2p, dhta = P2P(model, **grow), DHTA(model, num_anchors=dhta_anchors, **grow)
    return {"P2P": (p2p, p2p.anchors(target_labels, db_codes[id(model)], db_labels)),
            "DHTA": (dhta, dhta.anchors(target_labels, db_codes[id(model)], db_labels)),
            "SAAT": (SAAT(model, eps=eps, alpha=step, steps=attack_steps, seed=seed, targeted=True),
                     attacker_codes(model, target_labels))}


def run_attack(attack, argument):
    return perturb(attack, clean_images, *([] if argument is None else [argument]), batch_size=attack_batch_size)


def query_map(model, codes, labels=query_labels):
    return mean_average_precision(codes, db_codes[id(model)], labels, db_labels, topk=k)


def target_map(model, codes):
    return targeted_map(codes, db_codes[id(model)], target_labels, db_labels, topk=k)


adversarial_codes, sizes, adversarial_examples, table1_rows = {}, [], {}, []
for bits in bits_list:
    model = models["undefended", bits]
    clean_codes = encode(model, clean_images)
    adversarial_codes["Original", "mAP", bits] = adversarial_codes["Original", "t-MAP", bits] = clean_codes
    for metric, attacks in (("mAP", nontargeted_attacks(model)), ("t-MAP", targeted_attacks(model))):
        for name, (attack, argument) in attacks.items():
            adversarial = run_attack(attack, argument)
            adversarial_examples["undefended", bits, metric, name] = adversarial
            adversarial_codes[name, metric, bits] = encode(model, adversarial)
            sizes.append(dict(model="undefended", bits=bits, attack=f"{name} ({metric})",
                              **perturbation_stats(clean_images, adversarial)))
    adversarial_codes["theory", "mAP", bits] = -attacker_codes(model, query_labels)
    adversarial_codes["theory", "t-MAP", bits] = attacker_codes(model, target_labels)
    for (name, metric, code_bits), codes in adversarial_codes.items():
        if code_bits == bits:
            value = query_map(model, codes) if metric == "mAP" else target_map(model, codes)
            table1_rows.append(dict(method=name, metric=metric, bits=bits, value=100 * value))
table1 = pd.DataFrame(table1_rows).pivot_table(index=["metric", "method"], columns="bits", values="value", sort=False)
table1 = table1.reindex([("mAP", m) for m in ("Original", "HAG", "SDHA", "SAAT", "theory")] +
                        [("t-MAP", m) for m in ("Original", "P2P", "DHTA", "SAAT", "theory")])
published1 = pd.read_csv(root / "notebooks/published/saat_table1.csv", comment="#")
published1.columns = [int(c) if c.isdigit() else c for c in published1.columns]
flickr1 = published1[published1.dataset == "FLICKR-25K"].set_index(["metric", "method"])[bits_list]
side_by_side1 = pd.concat({f"ours, {dataset} (x100)": table1,
                           "PUBLISHED, FLICKR-25K (SAAT Table I)": flickr1.reindex(table1.index)}, axis=1)
side_by_side1

# %% [markdown]
# The published table on all three datasets (PUBLISHED, the paper's DPH victims on real photos; ProS-GAN and THA are
# generative or prototype-network attacks not run here):

# %%
published_rows = list(dict.fromkeys(zip(published1.metric, published1.method)))   # the paper's row order
published1.pivot_table(index=["metric", "method"], columns="dataset", values=bits_list, sort=False).reindex(published_rows)

# %% [markdown]
# ## 3. Defenses under the non-targeted attacks (Table II layout)
# mAP (**higher = more robust**) of the clean queries (*Original*) and of the HAG, SDHA and SAAT adversarial
# queries, each attack re-run on the model it evaluates with that model's own training codes. SAAT's Table II
# compares ATRDH with SAAT training; the undefended model and the clean fine-tune are the baselines.

# %%
table2_rows = []
for (name, bits), model in models.items():
    row = dict(defense=name, bits=bits, Original=query_map(model, encode(model, clean_images)))
    for attack_name, (attack, argument) in nontargeted_attacks(model).items():
        if name == "undefended":
            adversarial = adversarial_examples["undefended", bits, "mAP", attack_name]
        else:
            adversarial = run_attack(attack, argument)
            adversarial_examples[name, bits, "mAP", attack_name] = adversarial
            sizes.append(dict(model=name, bits=bits, attack=f"{attack_name} (mAP)",
                              **perturbation_stats(clean_images, adversarial)))
        row[attack_name] = query_map(model, encode(model, adversarial))
    table2_rows.append(row)
results = pd.DataFrame(table2_rows)
table2 = (results.melt(id_vars=["defense", "bits"], var_name="attack", value_name="value")
          .assign(value=lambda t: 100 * t["value"])
          .pivot_table(index=["defense", "attack"], columns="bits", values="value", sort=False))
published2 = pd.read_csv(root / "notebooks/published/saat_table2.csv", comment="#")
published2.columns = [int(c) if c.isdigit() else c for c in published2.columns]
flickr2 = (published2[published2.dataset == "FLICKR-25K"]
           .assign(defense=lambda t: t.defense.str.lower()).set_index(["defense", "attack"])[bits_list])
pd.concat({f"ours, {dataset} (x100)": table2, "PUBLISHED, FLICKR-25K (SAAT Table II)": flickr2.reindex(table2.index)},
          axis=1)

# %%
long = results.melt(id_vars=["defense", "bits"], value_vars=["Original", "HAG", "SDHA", "SAAT"], var_name="attack")
grid = sns.catplot(data=long, x="attack", y="value", hue="defense", col="bits", kind="bar", hue_order=model_names,
                   palette=palette, height=3.2, aspect=0.9)
grid.set_axis_labels("", f"mAP@{k} (higher: more robust)")
grid.set_titles("{col_name} bits")
grid.figure.suptitle(f"eps {eps_255}/255; dotted: random ranking", y=1.04, fontsize=10)
for ax in grid.axes.flat:
    ax.axhline(random_map, color="grey", linestyle=":", linewidth=1)
grid.savefig(figure_dir / "defenses.png", dpi=110)

# %% [markdown]
# The size of every perturbation (L-inf in pixel levels out of 255, mean per-image L2 in [0, 1] units, mean PSNR in
# dB). SDHA weighs the perturbation's MSE against its objective, so its perturbations tend to be smaller in L2:

# %%
sizes = pd.DataFrame(sizes)
sizes.pivot_table(index="attack", columns="model", values=["linf_255", "l2", "psnr"], sort=False)

# %% [markdown]
# ## 4. Precision-recall curves at 32 bits
# Hamming-radius retrieval of the undefended model (radius 0 to K), for the clean queries and each attack. Left:
# relevance to the query's own labels (a strong non-targeted attack pushes the curve down). Right: relevance to the
# target label (a strong targeted attack pushes it up).

# %%
pr_rows = []
pr_model = models["undefended", story_bits]
for (name, metric, bits), codes in adversarial_codes.items():
    if bits != story_bits:
        continue
    labels = query_labels if metric == "mAP" else target_labels
    curve = precision_recall_curve(codes, db_codes[id(pr_model)], labels, db_labels)
    pr_rows += [dict(method=name, panel="non-targeted (query labels)" if metric == "mAP" else
                     "targeted (target labels)", radius=int(r), precision=float(p), recall=float(c))
                for r, p, c in zip(curve.radius, curve.precision, curve.recall)]
pr = pd.DataFrame(pr_rows)
grid = sns.relplot(data=pr, x="recall", y="precision", hue="method", col="panel", kind="line", marker=".",
                   sort=False, height=3.4, aspect=1.1)
grid.set_titles("{col_name}")
grid.figure.suptitle(f"undefended {method.upper()}, {story_bits} bits, eps {eps_255}/255", y=1.04, fontsize=10)
grid.savefig(figure_dir / "pr_curves.png", dpi=110)

# %% [markdown]
# ## 5. Attack strength vs the budget and vs the iterations
# mAP of the undefended model at `pr_bits` bits under the three non-targeted attacks as $\epsilon$ grows (sign step
# $\epsilon/8$) and as the iterations grow (each point is its own run: HAG's and SAAT's tanh-scale schedules depend on
# the total).

# %%
strength_rows = []
story_clean = query_map(story_model, encode(story_model, clean_images))
story_train_codes, story_mainstays = train_codes[id(story_model)], attacker_codes(story_model, query_labels)


def strength_attacks(eps_value, steps):
    sign_step = eps_value / 8
    return {"HAG": (HAG(story_model, eps=eps_value, alpha=sign_step, steps=steps), None),
            "SDHA": (SDHA(story_model, story_train_codes, train_labels, eps=eps_value, lr=sdha_lr, steps=steps),
                     query_labels),
            "SAAT": (SAAT(story_model, eps=eps_value, alpha=sign_step, steps=steps, seed=seed), story_mainstays)}


for value in sorted(eps_sweep_255):
    for name, (attack, argument) in strength_attacks(value / 255, attack_steps).items():
        strength_rows.append(dict(sweep="eps", x=value, attack=name,
                                  map=query_map(story_model, encode(story_model, run_attack(attack, argument)))))
for steps in sorted(iteration_sweep):
    for name, (attack, argument) in strength_attacks(eps, steps).items():
        strength_rows.append(dict(sweep="iterations", x=steps, attack=name,
                                  map=query_map(story_model, encode(story_model, run_attack(attack, argument)))))
strength = pd.DataFrame(strength_rows)
start_rows = [dict(sweep=s, x=0, attack=a, map=story_clean) for s in ("eps", "iterations") for a in ("HAG", "SDHA", "SAAT")]
strength = pd.concat([pd.DataFrame(start_rows), strength], ignore_index=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, (sweep, label) in zip(axes, (("eps", "eps (pixel levels / 255)"), ("iterations", "iterations"))):
    sns.lineplot(data=strength[strength.sweep == sweep], x="x", y="map", hue="attack", marker="o", ax=ax)
    ax.axhline(random_map, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=label, ylabel=f"mAP@{k} (lower: stronger)", title=f"undefended, {story_bits} bits")
fig.tight_layout()
fig.savefig(figure_dir / "attack_strength.png", dpi=110)
strength.pivot_table(index=["sweep", "x"], columns="attack", values="map")

# %% [markdown]
# ## 6. The robustness-accuracy trade-off
# Open question 3 of the seed: what does adversarial training cost in clean accuracy? Each defense is retrained at
# `pr_bits` bits for every training budget in `tradeoff_train_eps_255` (step = budget / 4, everything else as above),
# then evaluated on the clean queries and under the SAAT attack at the evaluation budget. The undefended model and
# the clean fine-tune are the reference points.

# %%
tradeoff_rows = []
base = models["undefended", story_bits]


def clean_and_robust(model):
    db_codes[id(model)], train_codes[id(model)] = encode(model, data.database), encode(model, data.train)
    attack, argument = nontargeted_attacks(model)["SAAT"]
    return dict(clean=query_map(model, encode(model, clean_images)),
                robust=query_map(model, encode(model, run_attack(attack, argument))))


for name in ["undefended", "finetune"]:
    if (name, story_bits) in models:
        tradeoff_rows.append(dict(defense=name, train_eps_255=0, **clean_and_robust(models[name, story_bits])))
for name in tradeoff_defenses:
    for value in sorted(tradeoff_train_eps_255):
        model = models.get((name, story_bits)) if value == train_eps_255 else None
        model = model if model is not None else defended(name, base, story_bits, budget_255=value)
        tradeoff_rows.append(dict(defense=name, train_eps_255=value, **clean_and_robust(model)))
tradeoff = pd.DataFrame(tradeoff_rows)
fig, ax = plt.subplots(figsize=(6.5, 4.2))
sns.lineplot(data=tradeoff[tradeoff.train_eps_255 > 0], x="clean", y="robust", hue="defense", marker="o",
             sort=False, palette=palette, ax=ax)
sns.scatterplot(data=tradeoff[tradeoff.train_eps_255 == 0], x="clean", y="robust", hue="defense", marker="X",
                s=120, palette=palette, ax=ax, legend=False)
for row in tradeoff.itertuples():
    ax.annotate(f"{row.train_eps_255}" if row.train_eps_255 else row.defense, (row.clean, row.robust),
                textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set(xlabel=f"clean mAP@{k}", ylabel=f"mAP@{k} under the SAAT attack (eps {eps_255}/255)",
       title=f"{story_bits} bits; labels: training eps (/255)")
fig.tight_layout()
fig.savefig(figure_dir / "tradeoff.png", dpi=110)
tradeoff.pivot_table(index="train_eps_255", columns="defense", values=["clean", "robust"])


# %% [markdown]
# ## Results written for DVC

# %%
def per_bits(frame, column):
    return {str(bits): float(value) for bits, value in frame.set_index("bits")[column].items()}


metrics = dict(eps_255=eps_255, train_eps_255=train_eps_255, attack_steps=attack_steps, sdha_steps=sdha_steps,
               adv_epochs=adv_epochs, random_map=random_map,
               table1={f"{metric} {name}": {str(bits): float(v) / 100 for bits, v in row.items()}
                       for (metric, name), row in table1.iterrows()},
               table2={name: {column: per_bits(group, column) for column in ["Original", "HAG", "SDHA", "SAAT"]}
                       for name, group in results.groupby("defense")},
               tradeoff=[{key: (float(v) if key != "defense" else v) for key, v in row.items()}
                         for row in tradeoff.to_dict("records")],
               mainstay_center_bits_differ=float(mainstay_vs_center.mean()),
               brute_force_max_gap=float(brute_force.max_gap.max()), linf_255_max=float(sizes.linf_255.max()))
write_json(metrics, metrics_dir / "04_saat.json")
plots_dir = metrics_dir / "04_saat_plots"
plots_dir.mkdir(parents=True, exist_ok=True)
for name, group in pr.groupby(["panel", "method"]):
    panel = "targeted" if name[0].startswith("targeted") else "nontargeted"
    group[["radius", "recall", "precision"]].to_csv(plots_dir / f"pr_{panel}_{name[1].lower()}.csv", index=False,
                                                    float_format="%.6f")
for name, group in strength[strength.sweep == "eps"].groupby("attack"):
    group.rename(columns=dict(x="eps_255"))[["eps_255", "map"]].to_csv(plots_dir / f"eps_{name.lower()}.csv",
                                                                       index=False, float_format="%.6f")
tradeoff.to_csv(plots_dir / "tradeoff.csv", index=False, float_format="%.6f")
print(f"notebook ran in {time.perf_counter() - started:.0f} s")

# %% [markdown]
# ## Claims checked

# %%
assert sizes.linf_255.max() <= eps_255 + 1e-3, f"an attack left the eps-ball: L-inf {sizes.linf_255.max():.3f}/255"
assert all((images - clean_images).abs().max() <= eps + 1e-6 for images in adversarial_examples.values())
assert brute_force.max_gap.max() < 1e-5, f"the closed-form mainstay code is not optimal:\n{brute_force}"
mean_map = table1.xs("mAP").mean(axis=1)
for baseline in ("HAG", "SDHA"):
    assert mean_map["SAAT"] <= mean_map[baseline], \
        f"the SAAT attack should be at least as strong as {baseline}: mAP {mean_map['SAAT']:.2f} vs {mean_map[baseline]:.2f}"
by = results.set_index(["defense", "bits"])
if "saat" in defenses:
    for attack_name in ("HAG", "SDHA", "SAAT"):
        saat, undefended = by.xs("saat")[attack_name].mean(), by.xs("undefended")[attack_name].mean()
        assert saat > undefended, (f"SAAT training should be more robust than no defense under {attack_name}: "
                                   f"mAP {saat:.3f} vs {undefended:.3f} (mean over code lengths)")
print("all claims hold: every adversarial example inside the eps-ball; the closed-form mainstay code is optimal on",
      f"all 2^{check_bits} codes; the SAAT attack is at least as strong as HAG and SDHA on the undefended models;",
      "SAAT training is more robust than no defense under HAG, SDHA and SAAT (mean over code lengths)")
