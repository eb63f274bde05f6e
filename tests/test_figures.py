"""advhash.figures: image panels with relevance frames, perturbation images, ranked retrievals, the
adversarial-examples figure, the transfer heatmap, the cross-modal damage and curve figures, and the figures of
the defense sections (robustness bars and sweeps, trade-off, distance histograms, bit correlations)."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from advhash.data import InMemorySplit  # noqa: E402
from advhash.figures import (attack_examples, attack_histories, bit_correlations, clean_vs_robust,  # noqa: E402
                             curve_panels, damage_figure, distance_histograms, image_grid, model_palette,
                             perturbation_grid, pr_and_pn_curves, retrieval_examples, robustness_bars,
                             robustness_sweep, show_image, show_perturbation, show_ranking, sweep_panels,
                             top_retrievals, tradeoff_plot, transfer_heatmap)
from advhash.report import DPI, finish_figure  # noqa: E402

GREEN, RED = to_rgba("green"), to_rgba("red")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def frame_colour(ax):
    """The colour of an axis' frame when all four spines are drawn alike (else None)."""
    colours = {to_rgba(spine.get_edgecolor()) for spine in ax.spines.values() if spine.get_visible()}
    return colours.pop() if len(colours) == 1 else None


def data_lines(ax):
    """The y values of an axis' plotted lines (legend handles left out), sorted."""
    return sorted(tuple(np.round(line.get_ydata(), 6)) for line in ax.get_lines() if len(line.get_ydata()))


def shown(ax):
    """The array an axis displays."""
    return np.asarray(ax.get_images()[0].get_array())


@pytest.fixture
def report_style():
    """The reports' plotting style (``advhash.report.start_notebook``: seaborn's whitegrid, notebook context),
    whose larger fonts are the ones that collide."""
    with plt.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}):
        yield


def drawn_texts(fig):
    """(text, window box in pixels) of every non-empty text the figure draws once laid out: titles, axis labels,
    the tick labels of ticks in view, legend entries and titles, annotations."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out_of_view = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    out_of_view |= {id(tick.label1), id(tick.label2)}
    return [(text.get_text(), text.get_window_extent(renderer)) for text in fig.findobj(Text)
            if text.get_visible() and text.get_text().strip() and id(text) not in out_of_view]


def overlap(box, other, *, tolerance: float = 0.5) -> bool:
    """Whether two window boxes share more than a sliver (``tolerance`` pixels each way)."""
    return (min(box.x1, other.x1) - max(box.x0, other.x0) > tolerance
            and min(box.y1, other.y1) - max(box.y0, other.y0) > tolerance)


def collisions(fig) -> list[tuple[str, str]]:
    """The pairs of drawn texts of ``fig`` (:func:`drawn_texts`) that overlap: none in a readable figure."""
    texts = drawn_texts(fig)
    return [(a, b) for i, (a, box) in enumerate(texts) for b, other in texts[i + 1:] if overlap(box, other)]


def legends_over_data(fig) -> list[str]:
    """The legends of ``fig`` that cover part of a panel's data area (a legend can hide a line there)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [legend for ax in fig.axes if (legend := ax.get_legend()) is not None] + list(fig.legends)
    return [", ".join(t.get_text() for t in legend.get_texts()) for legend in legends
            if any(overlap(legend.get_window_extent(renderer), ax.get_window_extent(renderer)) for ax in fig.axes)]


def test_image_grid_is_two_dimensional_without_ticks_or_grid():
    fig, axes = image_grid(1, 3, figsize=(3, 1))
    assert axes.shape == (1, 3) and len(fig.axes) == 3
    for ax in axes.flat:
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
        assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
        assert ax.axison
    _, hidden = image_grid(2, 1, figsize=(1, 2), frames=False)
    assert hidden.shape == (2, 1) and not any(ax.axison for ax in hidden.flat)


def test_show_image_draws_grey_and_colour_images_clipped_with_a_relevance_frame():
    fig, axes = image_grid(1, 3, figsize=(3, 1))
    grey = torch.tensor([[[-0.5, 0.25], [0.75, 2.0]]])                  # (1, 2, 2), values outside [0, 1]
    show_image(axes[0, 0], grey, "grey", relevant=True)
    np.testing.assert_allclose(shown(axes[0, 0]), [[0.0, 0.25], [0.75, 1.0]])
    assert axes[0, 0].get_title() == "grey" and frame_colour(axes[0, 0]) == GREEN
    assert axes[0, 0].get_images()[0].get_clim() == (0, 1)
    colour = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    show_image(axes[0, 1], colour, relevant=False)
    assert shown(axes[0, 1]).shape == (4, 5, 3) and frame_colour(axes[0, 1]) == RED
    show_image(axes[0, 2], grey[0])                                        # (H, W), no frame asked for
    assert shown(axes[0, 2]).shape == (2, 2) and frame_colour(axes[0, 2]) not in (GREEN, RED)


def test_show_perturbation_maps_no_change_to_mid_grey_and_the_scale_to_the_full_range():
    fig, axes = image_grid(1, 2, figsize=(2, 1))
    clean = torch.full((1, 2, 2), 0.5)
    adversarial = clean + torch.tensor([[[0.0, 0.1], [-0.1, 0.05]]])
    show_perturbation(axes[0, 0], clean, adversarial, scale=0.1)
    np.testing.assert_allclose(shown(axes[0, 0]), [[0.5, 1.0], [0.0, 0.75]], atol=1e-6)
    assert axes[0, 0].get_title() == "perturbation x5"
    show_perturbation(axes[0, 1], clean, clean + 0.2 * (adversarial - clean))   # scale: max |delta| = 0.02
    np.testing.assert_allclose(shown(axes[0, 1]), [[0.5, 1.0], [0.0, 0.75]], atol=1e-5)
    assert axes[0, 1].get_title() == "perturbation x25"


def test_show_ranking_frames_items_by_a_shared_label():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    split = InMemorySplit(torch.arange(3, dtype=torch.uint8).mul(100).view(3, 1, 1, 1).expand(3, 1, 2, 2).clone(),
                          labels)
    fig, axes = image_grid(1, 3, figsize=(3, 1))
    show_ranking(axes[0], split, torch.tensor([2, 1, 0]), torch.tensor([1.0, 0.0]), titles=["d=0", "d=1", "d=2"])
    assert [frame_colour(ax) for ax in axes[0]] == [GREEN, RED, GREEN]
    assert [ax.get_title() for ax in axes[0]] == ["d=0", "d=1", "d=2"]
    np.testing.assert_allclose(shown(axes[0, 0]), np.full((2, 2), 200 / 255), atol=1e-6)   # item 2 first


def test_top_retrievals_show_each_query_beside_its_nearest_items_by_hamming_distance():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    database = InMemorySplit(torch.arange(3, dtype=torch.uint8).mul(100).view(3, 1, 1, 1).expand(3, 1, 2, 2).clone(),
                             labels)
    db_codes = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    fig = top_retrievals(database, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), db_codes, database, k=3)
    axes = np.array(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["query", "d=0", "d=1", "d=2"]
    np.testing.assert_allclose(shown(axes[0, 2]), np.full((2, 2), 200 / 255), atol=1e-6)   # item 2 at distance 1
    assert [frame_colour(ax) for ax in axes[0, 1:]] == [GREEN, GREEN, RED]      # items 0, 2, 1 for label 0
    assert [frame_colour(ax) for ax in axes[1, 1:]] == [GREEN, GREEN, RED]      # items 1, 2, 0 for label 1


def test_attack_examples_draws_two_rows_per_query_and_finish_figure_saves_it(tmp_path):
    g = torch.Generator().manual_seed(1)
    database = InMemorySplit((torch.rand(6, 1, 4, 4, generator=g) * 255).to(torch.uint8),
                             torch.eye(2)[torch.tensor([0, 1, 0, 1, 0, 1])])
    clean = torch.rand(2, 1, 4, 4, generator=g) * 0.8 + 0.1
    adversarial = clean + 0.05
    labels = torch.eye(2)
    before, after = torch.tensor([[0, 2, 4], [1, 3, 5]]), torch.tensor([[1, 3, 5], [0, 2, 4]])
    fig = attack_examples(clean, adversarial, labels, database, before, after, scale=0.1)
    axes = np.array(fig.axes).reshape(4, 6)
    assert [ax.get_title() for ax in axes[:, 0]] == ["natural", "adversarial"] * 2
    assert axes[0, 1].get_title() == "perturbation x5" and not axes[1, 1].axison
    assert [text.get_text() for text in axes[0, 2].texts] == ["before"]
    assert [text.get_text() for text in axes[1, 2].texts] == ["after"]
    assert [frame_colour(ax) for ax in axes[0, 3:]] == [GREEN] * 3    # query 0 (class 0) before: items 0, 2, 4
    assert [frame_colour(ax) for ax in axes[1, 3:]] == [RED] * 3      # after: items 1, 3, 5
    assert [frame_colour(ax) for ax in axes[2, 3:]] == [GREEN] * 3    # query 1 (class 1) before: 1, 3, 5
    path = tmp_path / "sub" / "examples.png"
    assert finish_figure(fig, path, title="HAG") is None        # nothing for a notebook cell to print
    assert path.exists() and fig.texts[0].get_text() == "HAG"
    from PIL import Image
    with Image.open(path) as png:                                       # at the reports' resolution, cut to
        assert [round(d) for d in png.info["dpi"]] == [DPI, DPI]        # its drawing (legends outside kept whole)
        assert 0 < png.width <= fig.get_figwidth() * DPI + 2 and 0 < png.height <= fig.get_figheight() * DPI + 2


def test_attack_histories_draw_the_gradient_norm_on_a_log_scale_and_the_flipped_bits():
    histories = {label: [dict(step=t, loss=1.0, grad_norm=scale * 10.0 ** -t, flipped_fraction=t / (4 * scale),
                              scale=1.0) for t in range(3)] for label, scale in (("fixed", 1.0), ("grow", 2.0))}
    fig = attack_histories(histories, hue="activation")
    gradient, flipped = fig.axes[:2]
    assert gradient.get_yscale() == "log" and flipped.get_yscale() == "linear"
    assert (gradient.get_title(), flipped.get_title()) == ("gradient", "flipped bits")
    assert gradient.get_legend() is None and flipped.get_legend().get_title().get_text() == "activation"
    assert data_lines(gradient) == [(1.0, 0.1, 0.01), (2.0, 0.2, 0.02)]        # one line per attack
    assert data_lines(flipped) == [(0.0, 0.125, 0.25), (0.0, 0.25, 0.5)]


def test_perturbation_grid_shows_clean_adversarial_and_perturbation_columns():
    clean = torch.full((2, 1, 2, 2), 0.5)
    adversarial = clean.clone()
    adversarial[0, 0, 0, 0] += 0.1
    adversarial[1, 0, 1, 1] -= 0.25
    fig = perturbation_grid(clean, adversarial)
    axes = np.array(fig.axes).reshape(3, 2)
    assert fig.get_size_inches().tolist() == pytest.approx([4.4, 6.6])
    assert [ax.get_title() for ax in axes[:, 0]] == ["clean", "adversarial", "perturbation x5"]
    assert axes[2, 1].get_title() == "perturbation x2" and not any(ax.axison for ax in axes.flat)
    np.testing.assert_allclose(shown(axes[1, 0]), [[0.6, 0.5], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(shown(axes[2, 1]), [[0.5, 0.5], [0.5, 0.0]], atol=1e-6)


def test_retrieval_examples_rank_the_queries_by_the_victim_before_and_after():
    database = InMemorySplit((torch.linspace(0, 1, 4).reshape(4, 1, 1, 1).expand(4, 1, 2, 2) * 255).to(torch.uint8),
                             torch.eye(2)[torch.tensor([0, 0, 1, 1])])
    victim = SimpleNamespace(db_codes=torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]]),
                             encode=lambda images: torch.where(images.mean((1, 2, 3)) > 0.5, -1.0, 1.0)[:, None]
                             .expand(-1, 2))                     # a dark image is coded like items 0, 1
    queries = SimpleNamespace(images=torch.full((1, 1, 2, 2), 0.2), labels=torch.eye(2)[:1])
    fig = retrieval_examples(victim, queries, torch.full((1, 1, 2, 2), 0.8), database, scale=0.6, k=2)
    axes = np.array(fig.axes).reshape(2, 5)
    assert [frame_colour(ax) for ax in axes[0, 3:]] == [GREEN] * 2     # before: items 0 and 1, class 0 like the query
    assert [frame_colour(ax) for ax in axes[1, 3:]] == [RED] * 2       # after: items 2 and 3
    assert axes[0, 1].get_title() == "perturbation x1"


def test_transfer_heatmap_annotates_every_cell_under_the_axis_names():
    table = pd.DataFrame({"A": {"none": 0.9, "r1: A": 0.2}, "B": {"none": 0.8, "r1: A": 0.5}})
    fig = transfer_heatmap(table, title="transfer")
    ax = fig.axes[0]
    assert [text.get_text() for text in ax.texts] == ["0.900", "0.800", "0.200", "0.500"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("evaluated on (victim)", "perturbation crafted on",
                                                                  "transfer")
    assert [label.get_text() for label in ax.get_xticklabels()] == ["A", "B"]
    assert fig.axes[1].get_ylabel() == "mAP"                                     # the colour bar


def test_damage_figure_draws_the_mean_drop_per_task_and_the_map_per_iteration():
    final = pd.DataFrame(dict(model=["A", "A", "A", "A"], task=["t1", "t1", "t2", "t2"], drop=[0.1, 0.3, 0.0, 0.2]))
    story = pd.DataFrame(dict(model="A", protocol="adaptive", task=["t1", "t1", "t2", "t2"], iterations=[1, 2, 1, 2],
                              map=[0.9, 0.8, 0.7, 0.6]))
    fig = damage_figure(final, story, tasks=["t2", "t1"], topk=10, final_title="final", story_title="story")
    bars, lines = fig.axes[:2]
    assert [round(patch.get_height(), 6) for patch in bars.patches if patch.get_height()] == [0.1, 0.2]   # t2, t1
    assert bars.get_ylabel() == "mAP@10 drop (clean - attacked)" and bars.get_title() == "final"
    assert data_lines(lines) == [(0.7, 0.6), (0.9, 0.8)] and lines.get_title() == "story"


def test_damage_figure_whiskers_span_the_rows_and_are_the_same_on_every_run():
    """Over four code lengths the whiskers go from the smallest to the largest drop, and DVC tracks the figure:
    renders of the same rows give the same bytes (a bootstrap interval would differ from run to run)."""
    import io

    rows = pd.DataFrame(dict(model=["A"] * 8, task=["t1"] * 4 + ["t2"] * 4,
                             drop=[0.1, 0.3, 0.15, 0.6, 0.0, 0.2, 0.05, 0.4]))
    story = pd.DataFrame(dict(model="A", protocol="adaptive", task=["t1", "t1"], iterations=[1, 2], map=[0.9, 0.8]))
    renders = []
    for _ in range(3):
        fig = damage_figure(rows, story, tasks=["t1", "t2"], topk=10, final_title="f", story_title="s")
        whiskers = sorted(tuple(round(y, 6) for y in line.get_ydata()) for line in fig.axes[0].lines)
        assert whiskers == [(0.0, 0.4), (0.1, 0.6)], "whiskers: the smallest to the largest drop"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        renders.append(buffer.getvalue())
    assert renders[0] == renders[1] == renders[2]


def test_damage_figure_draws_published_points_hollow_and_names_them_in_the_legend():
    final = pd.DataFrame(dict(model=["A", "A"], task=["t1", "t2"], drop=[0.1, 0.2]))
    story = pd.DataFrame(dict(model="A", protocol="adaptive", task=["t1", "t1"], iterations=[1, 2], map=[0.9, 0.8]))
    published = pd.DataFrame(dict(task=["t1", "t1"], iterations=[1, 2], map=[0.5, 0.4]))
    fig = damage_figure(final, story, tasks=["t1", "t2"], topk=10, final_title="f", story_title="s",
                        published=published, published_label="PUBLISHED: A, elsewhere")
    lines = fig.axes[1]
    points = [c for c in lines.collections if len(c.get_offsets()) == 2 and c.get_offsets()[:, 1].max() == 0.5]
    assert len(points) == 1 and (points[0].get_facecolor()[:, 3] == 0).all()          # hollow
    assert "PUBLISHED: A, elsewhere" in [t.get_text() for t in lines.get_legend().get_texts()]
    assert fig.axes[0].get_legend().get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1   # right of the bars


def test_clean_vs_robust_draws_one_point_per_model_and_the_published_points_named_in_the_legend():
    board = pd.DataFrame(dict(model=["undefended", "saat"], bits=[32, 32], clean=[0.6, 0.55], robust=[0.1, 0.3]))
    published = pd.DataFrame(dict(model=["saat"], clean=[0.73], robust=[0.35], label=["SAAT (elsewhere)"]))
    fig = clean_vs_robust(board, palette=model_palette(), hue_order=["undefended", "saat"], topk=100, eps_255=8,
                          published=published)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "clean mAP@100" and ax.get_ylabel() == "robust mAP@100 (ensemble worst case)"
    assert "eps 8/255" in ax.get_title()
    assert not ax.texts and "PUBLISHED SAAT (elsewhere)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylim()[0] <= 0.1 and ax.get_xlim()[1] >= 0.73
    hollow = [c for c in ax.collections if len(c.get_offsets()) == 1 and (c.get_facecolor()[:, 3] == 0).all()]
    assert [tuple(c.get_offsets()[0]) for c in hollow] == [(0.73, 0.35)]


def test_pr_and_pn_curves_draw_one_line_per_task_and_kind_of_queries():
    pr = pd.DataFrame(dict(task="t", queries=["clean", "clean", "CMLA", "CMLA"], recall=[0.1, 0.5, 0.1, 0.4],
                           precision=[0.9, 0.7, 0.5, 0.3]))
    pn = pd.DataFrame(dict(task="t", queries=["clean", "clean", "CMLA", "CMLA"], n=[10, 20, 10, 20],
                           precision=[0.8, 0.6, 0.4, 0.2]))
    fig = pr_and_pn_curves(pr, pn, title="PR")
    left, right = fig.axes[:2]
    assert data_lines(left) == [(0.5, 0.3), (0.9, 0.7)] and left.get_title() == "PR"
    assert data_lines(right) == [(0.4, 0.2), (0.8, 0.6)] and right.get_xlabel() == "N"


def test_model_palette_gives_every_model_its_own_fixed_colour():
    palette = model_palette()
    assert list(palette) == ["undefended", "finetune", "atrdh", "cgat", "saat"]
    assert len(set(palette.values())) == len(palette) and palette == model_palette()


def test_robustness_bars_draw_a_panel_per_code_length_and_the_baseline():
    frame = pd.DataFrame([dict(attack=a, value=v, bits=b, model=m) for b in (16, 32) for a in ("HAG", "SAAT")
                          for m, v in (("undefended", 0.3), ("saat", 0.6))])
    grid = robustness_bars(frame, hue="model", hue_order=["undefended", "saat"], palette=model_palette(),
                           ylabel="mAP", title="t", baseline=0.25)
    assert [ax.get_title() for ax in grid.axes.flat] == ["16 bits", "32 bits"]
    for ax in grid.axes.flat:
        assert sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height()) == [0.3, 0.3, 0.6, 0.6]
        assert any(set(line.get_ydata()) == {0.25} for line in ax.get_lines())


def test_distance_histograms_draw_one_panel_per_kind_of_code():
    distances = pd.DataFrame(dict(code=["b_q"] * 4 + ["c_q"] * 4, relation=["positives", "negatives"] * 4,
                                  distance=[1, 5, 2, 6, 0, 7, 1, 8]))
    grid = distance_histograms(distances, bits=8)
    assert len(grid.axes.flat) == 2 and grid.axes.flat[0].get_xlabel() == "Hamming distance (8 bits)"


def test_curve_panels_label_the_axes_and_title_the_panels():
    frame = pd.DataFrame(dict(epoch=[1, 2, 1, 2], loss=[1.0, 0.5, 2.0, 1.0], bits=[16, 16, 32, 32],
                              method=["dph"] * 4))
    grid = curve_panels(frame, x="epoch", y="loss", col="bits", hue="method", xlabel="epoch", ylabel="loss",
                        panel_titles="{col_name} bits", title="training")
    assert [ax.get_title() for ax in grid.axes.flat] == ["16 bits", "32 bits"]
    assert grid.axes.flat[0].get_ylabel() == "loss" and grid.figure._suptitle.get_text() == "training"
    assert data_lines(grid.axes.flat[1]) == [(2.0, 1.0)]


def test_bit_correlations_show_the_correlation_of_the_bits_of_each_method():
    codes = torch.tensor([[1., 1., -1.], [-1., -1., 1.], [1., 1., 1.], [-1., -1., -1.]])   # bit 1 copies bit 0
    fig = bit_correlations({"dph": codes, "dpsh": -codes}, bits=3)
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["DPH 3 bits: bit correlation", "DPSH 3 bits: bit correlation"]
    matrix = np.asarray(heatmaps[0].collections[0].get_array()).reshape(3, 3)
    assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] == pytest.approx(0.0)


def test_sweep_panels_draw_one_panel_per_sweep_against_the_swept_column_with_the_random_baseline():
    by_eps = pd.DataFrame([dict(attack=a, eps_255=x, steps=20, map=0.5 - 0.01 * x) for x in (0, 8) for a in "AB"])
    by_steps = pd.DataFrame([dict(attack=a, eps_255=8, steps=x, map=0.5 - 0.01 * x) for x in (0, 5, 20) for a in "AB"])
    fig = sweep_panels({"eps": by_eps, "iterations": by_steps}, ylabel="mAP", title="t", baseline=0.4)
    assert [ax.get_xlabel() for ax in fig.axes] == ["eps", "iterations"]
    assert sorted(set(fig.axes[1].get_lines()[0].get_xdata())) == [0, 5, 20], "the steps panel plots the steps"
    assert all(any(set(line.get_ydata()) == {0.4} for line in ax.get_lines()) for ax in fig.axes)


def test_tradeoff_plot_labels_the_training_budgets_and_names_the_references_in_the_legend():
    tradeoff = pd.DataFrame(dict(defense=["undefended", "saat", "saat"], train_eps_255=[0, 8, 32],
                                 clean=[0.6, 0.58, 0.55], robust=[0.3, 0.4, 0.45]))
    fig = tradeoff_plot(tradeoff, palette=model_palette(), xlabel="clean", ylabel="robust", title="t")
    ax = fig.axes[0]
    assert sorted(text.get_text() for text in ax.texts) == ["32", "8"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["saat", "undefended"]
    assert not legends_over_data(fig)


def test_robustness_sweep_marks_the_training_budget_and_plots_clean_against_robust():
    sweep = pd.DataFrame(dict(model=["undefended", "cgat"] * 2, attack="center", eps_255=[0, 0, 8, 8],
                              map=[0.6, 0.6, 0.3, 0.5]))
    results = pd.DataFrame(dict(model=["undefended", "cgat"], bits=[32, 32], clean=[0.6, 0.6], center=[0.3, 0.5]))
    fig = robustness_sweep(sweep, results, attack="center", palette=model_palette(), hue_order=["undefended", "cgat"],
                           budget_255=8, k=100, bits=32, eps_255=8)
    left, right = fig.axes[:2]
    assert any(set(line.get_xdata()) == {8} for line in left.get_lines())          # the training budget
    assert right.get_ylabel() == "mAP@100, center attack"


# The reports' figures at their size, fonts and label lengths: their texts must not collide, nor legends hide data.

TASKS = ["image->text", "image->image", "text->image", "text->text"]
PUBLISHED_SAAT = pd.DataFrame(dict(model=["atrdh", "saat"], clean=[0.7216, 0.7349], robust=[0.3240, 0.3477],
                                   label=["ATRDH (FLICKR-25K, worst single attack)",
                                          "SAAT (FLICKR-25K, worst single attack)"]))   # SAAT Table II, 32 bits


def leaderboard_points(models=("undefended", "finetune", "atrdh", "saat")):
    """Clean and robust mAP of four models at four code lengths, as close together as 04's (robust within 0.02)."""
    centres = dict(undefended=(0.565, 0.375), finetune=(0.605, 0.38), atrdh=(0.6, 0.52), saat=(0.56, 0.525),
                   cgat=(0.56, 0.53))
    return pd.DataFrame([dict(model=m, bits=b, clean=centres[m][0] + 0.01 * i, robust=centres[m][1] + 0.005 * i)
                         for m in models for i, b in enumerate((16, 32, 48, 64))])


def damage_rows():
    """03's damage figure rows: four models, four tasks, four code lengths; six victims over three iterations."""
    g = np.random.default_rng(0)
    final = pd.DataFrame([dict(model=m, task=t, bits=b, drop=g.uniform(0.05, 0.3)) for m in ("DCMH", "DCMH+", "SSAH",
                          "SSAH+") for t in TASKS for b in (16, 32, 48, 64)])
    victims = [("DCMH", "adaptive"), ("DCMH+", "adaptive"), ("DCMH+", "fixed (made on DCMH)"), ("SSAH", "adaptive"),
               ("SSAH+", "adaptive"), ("SSAH+", "fixed (made on SSAH)")]
    story = pd.DataFrame([dict(model=m, protocol=p, task=t, iterations=i, map=g.uniform(0.5, 0.75))
                          for m, p in victims for t in TASKS[::2] for i in (100, 200, 500)])
    published = pd.DataFrame(dict(task=TASKS[::2] * 3, iterations=[100, 100, 200, 200, 500, 500],
                                  map=[0.58, 0.615, 0.563, 0.587, 0.52, 0.56]))
    return final, story, published


def test_clean_vs_robust_published_names_neither_overlap_nor_leave_the_figure(report_style):
    """04's two PUBLISHED points (SAAT Table II) lie 0.02 apart: their names, once written beside the points, ran
    into each other and over the y tick labels. Named in the legend, they do not overlap each other or any other
    text, stay inside the figure and off the data."""
    fig = clean_vs_robust(leaderboard_points(), palette=model_palette(), hue_order=["undefended", "finetune", "atrdh",
                          "saat"], topk=5000, eps_255=32, published=PUBLISHED_SAAT)
    texts = drawn_texts(fig)
    names = [box for text, box in texts if text.startswith("PUBLISHED")]
    assert len(names) == 2 and not overlap(*names)
    assert collisions(fig) == []
    data_area = fig.axes[0].get_window_extent()
    for box in names:
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        assert not overlap(box, data_area)
    diagonal = [line for line in fig.axes[0].get_lines() if len(line.get_xdata())]   # robust = clean, over
    assert [list(line.get_xdata()) for line in diagonal] == [pytest.approx([0.324, 0.7349])]   # the points' range


def test_damage_figure_tick_labels_axis_labels_and_legends_do_not_collide(report_style, tmp_path):
    """03's four task names ("image->image" beside "image->text") ran into each other under the bars: written on
    two lines they stand at least an em apart, and no two of the figure's texts overlap once laid out as
    ``finish_figure`` does."""
    final, story, published = damage_rows()
    fig = damage_figure(final, story, tasks=TASKS, topk=5000, story_title="32 bits", published=published,
                        final_title="CMLA, 500 iterations (mean over bits)",
                        published_label="PUBLISHED: DCMH, MIRFlickr-25K, 32 bits")
    finish_figure(fig, tmp_path / "attack_damage.png")
    bars = fig.axes[0]
    fig.canvas.draw()
    ticks = [label.get_window_extent() for label in bars.get_xticklabels()]          # left to right
    em = bars.get_xticklabels()[0].get_fontsize() * fig.dpi / 72                      # pixels
    assert len(ticks) == 4 and all(right.x0 - left.x1 >= em for left, right in zip(ticks, ticks[1:]))
    assert collisions(fig) == []
    assert [label.get_text() for label in bars.get_xticklabels()] == ["image\n→ text", "image\n→ image",
                                                                      "text\n→ image", "text\n→ text"]
    assert legends_over_data(fig) == []


@pytest.mark.parametrize("name", ["pr_and_pn_curves", "sweep_panels", "attack_histories", "tradeoff_plot",
                                  "robustness_sweep", "clean_vs_robust without published points"])
def test_the_other_figures_keep_their_legends_off_the_data_and_their_texts_apart(name, report_style):
    """Legends drawn inside a panel hid lines (03's precision curves, 04's attack sweeps): every legend is right of
    the panels, and no two texts of a figure overlap."""
    recall, n = np.linspace(0, 1, 30), np.arange(10, 1001, 10)
    if name == "pr_and_pn_curves":
        pr = pd.concat([pd.DataFrame(dict(task=t, queries=q, recall=recall, precision=0.45 + h * np.sin(3 * recall)))
                        for t in TASKS[::2] for q, h in (("clean", 0.4), ("CMLA", 0.15))])
        pn = pd.concat([pd.DataFrame(dict(task=t, queries=q, n=n, precision=p - n / 1e4)) for t in TASKS[::2]
                        for q, p in (("clean", 0.93), ("CMLA", 0.62))])
        fig = pr_and_pn_curves(pr, pn, title="DCMH 32 bits: precision-recall (Hamming radius)")
    elif name == "sweep_panels":
        by_eps = pd.DataFrame([dict(attack=a, eps_255=e, steps=100, map=0.57 - 0.005 * e) for a in ("HAG", "SDHA")
                               for e in (0, 8, 32)])
        by_steps = pd.DataFrame([dict(attack=a, eps_255=32, steps=x, map=0.39 + 0.18 * np.exp(-x / 10))
                                 for a in ("HAG", "SDHA") for x in (0, 10, 100)])
        fig = sweep_panels({"eps (pixel levels / 255)": by_eps, "iterations": by_steps}, baseline=0.44,
                           ylabel="mAP@5000 (lower: stronger)", title="undefended, 32 bits")
    elif name == "attack_histories":
        fig = attack_histories({label: [dict(step=t, grad_norm=0.02 / (1 + t), flipped_fraction=t / 40) for t in
                                        range(20)] for label in ("HAG*", "HAG")}, hue="activation")
    elif name == "tradeoff_plot":
        tradeoff = pd.DataFrame([dict(defense=d, train_eps_255=e, clean=c, robust=r) for d, e, c, r in
                                 [("undefended", 0, 0.568, 0.385), ("finetune", 0, 0.606, 0.393),
                                  ("atrdh", 8, 0.593, 0.438), ("atrdh", 32, 0.571, 0.522),
                                  ("cgat", 8, 0.562, 0.458), ("cgat", 32, 0.5597, 0.534),
                                  ("saat", 8, 0.5605, 0.458), ("saat", 32, 0.561, 0.537)]])
        fig = tradeoff_plot(tradeoff, palette=model_palette(), xlabel="clean mAP@5000", title="32 bits",
                            ylabel="mAP@5000 under the SAAT attack (eps 32/255)")
        ax = fig.axes[0]
        for text in ax.texts:                        # the budget labels stay inside the panel
            assert ax.get_window_extent().contains(*text.get_window_extent().p0)
            assert ax.get_window_extent().contains(*text.get_window_extent().p1)
    elif name == "robustness_sweep":
        models = ["undefended", "finetune", "atrdh", "cgat"]
        sweep = pd.DataFrame([dict(model=m, attack=a, eps_255=e, map=0.68 - 0.005 * e) for m in models
                              for a in ("center", "HAG") for e in (0, 8, 32)])
        results = leaderboard_points(models).rename(columns=dict(robust="center"))
        fig = robustness_sweep(sweep, results, attack="center", palette=model_palette(), hue_order=models, k=5000,
                               bits=32, eps_255=32, budget_255=32)
    else:
        models = ["undefended", "finetune", "atrdh", "cgat"]
        fig = clean_vs_robust(leaderboard_points(models), palette=model_palette(), hue_order=models, topk=5000,
                              eps_255=32)
    assert legends_over_data(fig) == []
    assert collisions(fig) == []
