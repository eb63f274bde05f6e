"""The figures of the notebooks, one function a kind of figure: image panels with relevance frames, the
robustness bars and sweeps of the defense sections, curves by code length, the HAG and CMLA figures.
Each returns the figure (or seaborn grid) it drew, or draws on the axes it is given;
``advhash.report.save_figure`` / ``finish_figure`` save it.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd


def image_grid(rows: int, columns: int, *, figsize: tuple[float, float], frames: bool = True):
    """A figure of ``rows`` x ``columns`` image panels (``axes`` always 2-D), without ticks or grid lines;
    ``frames=False`` hides the panels' frames too (titles and text still show)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if not frames:
            ax.axis("off")
    return fig, axes


def show_image(ax, image, title: str = "", *, relevant: bool | None = None, fontsize: float = 8) -> None:
    """Draw an image tensor, (C, H, W) or (H, W) in [0, 1] (values outside are clipped; one channel in grey),
    on ``ax``. ``relevant`` True / False frames it green / red: a retrieved item that shares a label with
    the query / does not."""
    if image.ndim == 3:
        image = image.permute(1, 2, 0).squeeze(-1)
    ax.imshow(image.detach().cpu().clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=fontsize)
    if relevant is not None:
        for spine in ax.spines.values():
            spine.set(visible=True, color="green" if relevant else "red", linewidth=3)


def show_perturbation(ax, clean, adversarial, *, scale: float | None = None, fontsize: float = 8) -> None:
    """The perturbation ``adversarial - clean`` as an image: 0.5 + delta / (2 scale), so mid-grey is no
    change and +-scale the full range; ``scale`` is max |delta| unless given (e.g. the budget eps).
    The title says the amplification."""
    delta = adversarial - clean
    scale = max(float(delta.abs().max()), 1e-8) if scale is None else scale
    show_image(ax, 0.5 + delta / (2 * scale), f"perturbation x{0.5 / scale:.0f}", fontsize=fontsize)


def show_ranking(axes, split, indices, query_label, *, titles=None) -> None:
    """The ranked items ``indices`` of ``split`` (e.g. the database), one on each of ``axes``, framed green
    where the item shares a label with ``query_label`` (relevant) and red where not; ``titles`` one each."""
    import torch

    for position, (ax, index) in enumerate(zip(axes, indices)):
        image, label = split[int(index)][:2]
        show_image(ax, image, "" if titles is None else titles[position],
                   relevant=bool(torch.as_tensor(label).float() @ torch.as_tensor(query_label).float() > 0))


def top_retrievals(queries, query_codes, db_codes, database, *, k: int = 10, figsize=None):
    """Each query of ``queries`` (a split: ``queries[i]`` is (image, label, ...)), one row per code of
    ``query_codes``, beside its top ``k`` items of ``database`` by Hamming distance of their ``db_codes``
    (``advhash.metrics.hamming_rank``, ties by database order), framed green / red by relevance (a shared label)
    and titled with their distance. Returns the figure."""
    from .metrics import hamming_rank

    top_indices, top_distances = hamming_rank(query_codes, db_codes, topk=k)
    rows = len(query_codes)
    fig, axes = image_grid(rows, k + 1, figsize=figsize or (1.2 * (k + 1), 1.35 * rows))
    for row in range(rows):
        image, label = queries[row][:2]
        show_image(axes[row, 0], image, "query")
        show_ranking(axes[row, 1:], database, top_indices[row], label,
                     titles=[f"d={distance}" for distance in top_distances[row].tolist()])
    return fig


MODELS = ("undefended", "finetune", "atrdh", "cgat", "saat")   # the models the defense sections compare


def model_palette() -> dict:
    """One colour per model (undefended, the clean fine-tune and each defense), the same in every figure."""
    import seaborn as sns

    return dict(zip(MODELS, sns.color_palette("deep", len(MODELS))))


def robustness_bars(frame: pd.DataFrame, *, hue: str, hue_order: list[str], palette, ylabel: str, title: str,
                    baseline: float | None = None):
    """Bars of a long table (columns ``attack``, ``value``, ``bits`` and ``hue``): one panel per code length,
    one bar per (attack, ``hue``); ``baseline`` (e.g. the random ranking's mAP) as a dotted line."""
    import seaborn as sns

    grid = sns.catplot(data=frame, x="attack", y="value", hue=hue, col="bits", kind="bar", hue_order=hue_order,
                       palette=palette, height=3.2, aspect=0.9)
    grid.set_axis_labels("", ylabel)
    grid.set_titles("{col_name} bits")
    grid.figure.suptitle(title, y=1.04 + 0.04 * title.count("\n"), fontsize=10)
    if baseline is not None:
        for ax in grid.axes.flat:
            ax.axhline(baseline, color="grey", linestyle=":", linewidth=1)
    return grid


def distance_histograms(distances: pd.DataFrame, *, bits: int, height: float = 3.0, aspect: float = 1.2):
    """Histograms of Hamming distances to positives and negatives, one panel per kind of code
    (``advhash.codes.statistics.code_distances``)."""
    import seaborn as sns

    grid = sns.displot(data=distances, x="distance", hue="relation", col="code", stat="density", common_norm=False,
                       discrete=True, height=height, aspect=aspect)
    grid.set_axis_labels(f"Hamming distance ({bits} bits)", "density")
    return grid


def attack_examples(clean, adversarial, labels, database, before, after, *, scale: float, figsize=None):
    """Adversarial examples and what they retrieve, two rows per query: the natural image over its adversarial
    version, the perturbation (:func:`show_perturbation` at ``scale``, e.g. the budget eps), then the ranked
    database items before (top row) and after (bottom row) the attack, framed green where they share a label
    with the query and red where not (:func:`show_ranking`).

    clean, adversarial: (n, C, H, W) images; labels: (n, L) the queries' labels; database: the split the
    rankings index; before, after: (n, k) ranked database indices (``advhash.metrics.hamming_rank``).
    Returns the figure (2n x (3 + k) panels)."""
    count, k = len(clean), before.shape[1]
    fig, axes = image_grid(2 * count, 3 + k, figsize=figsize or (1.375 * (3 + k), 2.7 * count))
    for row in range(count):
        top, bottom = axes[2 * row], axes[2 * row + 1]
        show_image(top[0], clean[row], "natural")
        show_image(bottom[0], adversarial[row], "adversarial")
        show_perturbation(top[1], clean[row], adversarial[row], scale=scale)
        bottom[1].axis("off")
        top[2].text(0.5, 0.5, "before", ha="center", va="center")
        bottom[2].text(0.5, 0.5, "after", ha="center", va="center")
        show_ranking(top[3:], database, before[row], labels[row])
        show_ranking(bottom[3:], database, after[row], labels[row])
    return fig


def attack_histories(histories, *, hue: str = "attack", figsize: tuple[float, float] = (10, 3.4)):
    """How attacks went over their iterations (``HashingAttack.history``, one list per label of ``histories``):
    the mean input-gradient norm (log scale) and the fraction of bits flipped away from the clean code, one
    line per label (one legend, titled ``hue``, right of the panels). Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = pd.concat([pd.DataFrame(history).assign(**{hue: label}) for label, history in histories.items()])
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    sns.lineplot(data=frame, x="step", y="grad_norm", hue=hue, ax=axes[0])
    axes[0].set(yscale="log", xlabel="iteration", ylabel="input-gradient norm (log)", title="gradient")
    sns.lineplot(data=frame, x="step", y="flipped_fraction", hue=hue, ax=axes[1])
    axes[1].set(xlabel="iteration", ylabel="fraction of bits flipped", title="flipped bits")
    _one_legend_outside(axes)
    return fig


def perturbation_grid(clean, adversarial, *, scale: float | None = None, size: float = 2.2, fontsize: float = 9):
    """Adversarial images, one column each: the clean image, the adversarial one, and the perturbation amplified
    to the full range (:func:`show_perturbation`; ``scale`` None: each image's own max |delta|), without frames.
    clean, adversarial: (n, C, H, W) in [0, 1]. Returns the figure (panels ``size`` inches square)."""
    count = len(clean)
    fig, axes = image_grid(3, count, figsize=(size * count, 3 * size), frames=False)
    for column, (image, changed) in enumerate(zip(clean, adversarial)):
        show_image(axes[0, column], image, "clean", fontsize=fontsize)
        show_image(axes[1, column], changed, "adversarial", fontsize=fontsize)
        show_perturbation(axes[2, column], image, changed, scale=scale, fontsize=fontsize)
    return fig


def curve_panels(frame: pd.DataFrame, *, x: str, y: str, col: str, hue: str, xlabel: str, ylabel: str,
                 title: str | None = None, panel_titles: str | None = None, **seaborn):
    """Line panels of a long table (``seaborn.relplot``): one panel per ``col`` value, one line per ``hue``
    value, axes labelled; ``panel_titles`` a format such as "{col_name}" (Default: "col = value");
    ``seaborn`` keyword arguments pass through (marker, style, palette, height, ...)."""
    import seaborn as sns

    grid = sns.relplot(data=frame, x=x, y=y, col=col, hue=hue, kind="line", **seaborn)
    grid.set_axis_labels(xlabel, ylabel)
    if panel_titles is not None:
        grid.set_titles(panel_titles)
    if title is not None:
        grid.figure.suptitle(title, y=1.04, fontsize=10)
    return grid


def bit_correlations(codes: dict, *, bits: int):
    """One heatmap per method of the correlation between the bits of its database codes ((n, K) in
    ``codes[method]``; a constant bit correlates with nothing): good codes are decorrelated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .codes.statistics import bit_correlation

    fig, axes = plt.subplots(1, len(codes), figsize=(3.6 * len(codes), 3.2), squeeze=False)
    for ax, (method, db_codes) in zip(axes[0], codes.items()):
        correlation = bit_correlation(db_codes)                                         # (K, K)
        sns.heatmap(correlation.numpy(), ax=ax, vmin=-1, vmax=1, cmap="vlag", square=True, cbar=ax is axes[0][-1],
                    xticklabels=False, yticklabels=False)
        ax.set_title(f"{method.upper()} {bits} bits: bit correlation")
    fig.tight_layout()
    return fig


def sweep_panels(sweeps: Mapping[str, pd.DataFrame], *, ylabel: str, title: str, baseline: float | None = None):
    """Attack strength sweeps side by side: one panel per ``sweeps`` entry (x-axis label -> a frame of
    ``advhash.evaluation.attack_sweep``), ``map`` against the swept column (eps_255 or steps), one line per
    ``attack`` (one legend, right of the panels); ``baseline`` (the random ranking) dotted."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.5 * len(sweeps), 3.6), sharey=True, squeeze=False)
    for ax, (xlabel, frame) in zip(axes[0], sweeps.items()):
        x = "eps_255" if frame.eps_255.nunique() > 1 else "steps"
        sns.lineplot(data=frame, x=x, y="map", hue="attack", marker="o", ax=ax)
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    _one_legend_outside(axes[0])
    fig.tight_layout()
    return fig


def _colour(palette, name: str):
    """``name``'s colour in a {name: colour} palette (``model_palette``); black for a name it lacks or a palette
    given as a list or a seaborn name."""
    return palette.get(name, "black") if isinstance(palette, dict) else "black"


def _one_legend_outside(axes) -> None:
    """Panels that share their colours and line styles get one legend, the last panel's, right of it, outside
    the data; the other panels' legends are removed (left inside, a legend can hide lines)."""
    import seaborn as sns

    *others, last = list(axes)
    for ax in others:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    sns.move_legend(last, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)


def _task_label(task: str) -> str:
    """A cross-modal task as a two-line tick label: "image->text" becomes "image" over "→ text", so that
    neighbouring labels ("image->text", "image->image") do not run into each other; other names unchanged."""
    source, arrow, target = task.partition("->")
    return f"{source}\n→ {target}" if arrow else task


def tradeoff_plot(tradeoff: pd.DataFrame, *, palette, xlabel: str, ylabel: str, title: str):
    """The robustness-accuracy trade-off: clean against robust mAP, one line per defense through its
    training budgets (each point labelled with its budget, one corner per defense, inside margins wide enough
    to hold the labels), the references (budget 0: undefended, fine-tune) as crosses named in the legend (a
    name beside a point at the edge ran over the axes)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    trained, references = tradeoff[tradeoff.train_eps_255 > 0], tradeoff[tradeoff.train_eps_255 == 0]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.lineplot(data=trained, x="clean", y="robust", hue="defense", marker="o", sort=False, palette=palette, ax=ax)
    sns.scatterplot(data=references, x="clean", y="robust", hue="defense", marker="X", s=120, palette=palette,
                    ax=ax, legend=False)
    offsets = [(-16, 4), (-16, -11), (5, 4), (5, -11)]    # a corner per defense, so close labels do not overlap
    corner = {name: offsets[i % len(offsets)] for i, name in enumerate(dict.fromkeys(trained.defense))}
    for row in trained.itertuples():
        ax.annotate(f"{row.train_eps_255}", (row.clean, row.robust), textcoords="offset points",
                    xytext=corner[row.defense], fontsize=8, color=_colour(palette, row.defense))
    ax.margins(0.1)
    handles, labels = ax.get_legend_handles_labels()
    for name in dict.fromkeys(references.defense):
        handles.append(Line2D([], [], linestyle="", marker="X", markersize=9, color=_colour(palette, name)))
        labels.append(name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(handles, labels, title="defense", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=8)
    fig.tight_layout()
    return fig


def clean_vs_robust(board: pd.DataFrame, *, palette, hue_order: list[str], topk: int, eps_255: float,
                    published: pd.DataFrame | None = None):
    """The leaderboard (``advhash.robustness.leaderboard``) as a figure: clean against robust mAP@``topk`` at
    eps ``eps_255``/255, one point per model (colour) and code length (marker); ``published`` points (columns
    model, clean, robust, and optionally label) drawn as hollow diamonds in the model's colour and named in the
    legend, under "published", as "PUBLISHED <label or model>" (names written beside the points overlapped each
    other and the axes when two published points lie close). The dotted diagonal is robust = clean, over the
    range of the points."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    sns.scatterplot(data=board, x="clean", y="robust", hue="model", style="bits", hue_order=hue_order,
                    palette=palette, s=90, ax=ax)
    handles, labels = ax.get_legend_handles_labels()     # seaborn's, with its "model" and "bits" headings
    values = [board.clean, board.robust]
    if published is not None and len(published):
        colours = [_colour(palette, model) for model in published.model]
        ax.scatter(published.clean, published.robust, marker="D", facecolors="none", edgecolors=colours, s=70,
                   linewidths=1.5)
        handles.append(Line2D([], [], linestyle="", marker=""))                           # the heading
        labels.append("published")
        for colour, row in zip(colours, published.itertuples()):
            handles.append(Line2D([], [], linestyle="", marker="D", markersize=7, markerfacecolor="none",
                                  markeredgecolor=colour, markeredgewidth=1.5))
            labels.append(f"PUBLISHED {getattr(row, 'label', row.model)}")
        values += [published.clean, published.robust]
    low, high = min(v.min() for v in values), max(v.max() for v in values)
    ax.plot([low, high], [low, high], ":", color="grey", linewidth=1)
    ax.set(xlabel=f"clean mAP@{topk}", ylabel=f"robust mAP@{topk} (ensemble worst case)",
           title=f"eps {eps_255}/255: one point per model and code length")
    ax.legend(handles, labels, fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def robustness_sweep(sweep: pd.DataFrame, results: pd.DataFrame, *, attack: str, palette, hue_order: list[str],
                     budget_255: float, k: int, bits: int, eps_255: float):
    """Two panels: mAP under attack against the budget (one line per model and attack; the training budget
    dotted), and clean against robust mAP under ``attack`` for every model and code length."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    sns.lineplot(data=sweep, x="eps_255", y="map", hue="model", style="attack", marker="o", hue_order=hue_order,
                 palette=palette, ax=axes[0])
    axes[0].axvline(budget_255, color="grey", linestyle=":", linewidth=1)
    axes[0].set(xlabel="eps (pixel levels / 255)", ylabel=f"mAP@{k} under attack",
                title=f"robustness vs eps, {bits} bits")
    sns.scatterplot(data=results, x="clean", y=attack, hue="model", style="bits", hue_order=hue_order,
                    palette=palette, s=80, ax=axes[1])
    axes[1].set(xlabel=f"clean mAP@{k}", ylabel=f"mAP@{k}, {attack} attack",
                title=f"clean vs robust ({attack} attack, eps {eps_255}/255)")
    for ax in axes:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def retrieval_examples(victim, queries, adversarial, database, *, scale: float, k: int = 5, figsize=None):
    """:func:`attack_examples` of a victim: the queries (``queries.images``, ``queries.labels``, e.g. an
    ``advhash.evaluation.QuerySet``) and their ``adversarial`` images, each ranked by ``victim`` (its codes of
    ``database``, ``advhash.metrics.hamming_rank``) to its top ``k`` before and after the attack. Returns the figure."""
    from .metrics import hamming_rank

    before, after = (hamming_rank(victim.encode(images), victim.db_codes, topk=k)[0]
                     for images in (queries.images, adversarial))
    return attack_examples(queries.images, adversarial, queries.labels, database, before, after, scale=scale,
                           figsize=figsize)


def transfer_heatmap(table: pd.DataFrame, *, title: str, label: str = "mAP"):
    """A transfer table (rows: perturbation crafted on, columns: victim evaluated on; e.g.
    ``advhash.transfer.transfer_table``) as an annotated heatmap from 0 (colour bar ``label``). Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.6 * len(table.columns) + 3, 0.5 * len(table) + 1.5))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="rocket", vmin=0, ax=ax, cbar_kws=dict(label=label))
    ax.set(xlabel="evaluated on (victim)", ylabel="perturbation crafted on", title=title)
    return fig


def damage_figure(final: pd.DataFrame, story: pd.DataFrame, *, tasks: list[str], topk: int, final_title: str,
                  story_title: str, published: pd.DataFrame | None = None, published_label: str = "PUBLISHED"):
    """Damage of a cross-modal attack (``advhash.crossmodal.protocol_scores`` rows). Left: bars of the mAP drop
    (clean - attacked) of ``final`` per task (in the order ``tasks``, "image->text" written "image" over "→ text"
    so that neighbouring names do not collide) and model, averaged over its rows (e.g. the code
    lengths), whiskers from their smallest to their largest drop (seaborn's default, an unseeded bootstrap
    interval, drew other whiskers on every run, and over four code lengths the range says more); right: the mAP
    under attack of ``story`` vs iterations, one colour per task and one line style per victim ("<model>,
    <protocol>"), with ``published`` (columns task, iterations, map) as hollow black diamonds in the legend as
    ``published_label``. Each panel's legend is right of it. Returns the figure, laid out."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), width_ratios=(1, 1.1))
    sns.barplot(data=final, x="task", y="drop", hue="model", order=tasks, errorbar=("pi", 100), ax=axes[0])
    axes[0].set_xticks(range(len(tasks)), [_task_label(task) for task in tasks])
    axes[0].set(xlabel="", ylabel=f"mAP@{topk} drop (clean - attacked)", title=final_title)
    sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    sns.lineplot(data=story.assign(victim=story.model + ", " + story.protocol), x="iterations", y="map", hue="task",
                 style="victim", markers=True, ax=axes[1])
    if published is not None and len(published):
        axes[1].scatter(published.iterations, published["map"], marker="D", facecolors="none", edgecolors="black",
                        s=40, label=published_label, zorder=3)
        axes[1].legend()
    axes[1].set(ylabel=f"mAP@{topk} under attack", title=story_title)
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def pr_and_pn_curves(pr: pd.DataFrame, pn: pd.DataFrame, *, title: str):
    """Precision-recall (``pr``: columns task, queries, recall, precision, drawn in row order) and precision@N
    (``pn``: columns task, queries, n, precision) side by side, one colour per task and one line style per kind
    of queries (e.g. clean, attacked; ``advhash.crossmodal.crossmodal_curves``; one legend, right of the panels).
    ``title`` is the PR panel's. Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    sns.lineplot(data=pr, x="recall", y="precision", hue="task", style="queries", sort=False, marker=".", ax=axes[0])
    axes[0].set(title=title)
    sns.lineplot(data=pn, x="n", y="precision", hue="task", style="queries", ax=axes[1])
    axes[1].set(xlabel="N", title="precision of the top N")
    _one_legend_outside(axes)
    fig.tight_layout()
    return fig
