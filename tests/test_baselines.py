"""Baselines: k-NN against a brute-force reference, its tie-break and state_dict round trip, its
accuracy on mnist5k; the linear classifier's size handling and templates; the LeNet-style CNN."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import cnnlab
from cnnlab.data import load as load_data
from cnnlab.data.augment import Normalize
from cnnlab.errors import CnnlabError, InputSizeError
from cnnlab.models import num_params


def safetensors_round_trip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the run directory does: save as safetensors (no pickle) and read back."""
    return st_load(st_save({k: v.contiguous() for k, v in state.items()}))


def filled_knn(vectors: torch.Tensor, labels: torch.Tensor, batch: int = 16, **kwargs) -> torch.nn.Module:
    """A knn holding ``vectors`` (M, D) as (M, 1, 1, D) images, added in batches like the trainer; L2
    unless ``metric`` says otherwise, since the geometry below is drawn on a line."""
    kwargs.setdefault("metric", "l2")
    model = cnnlab.create_model("knn", num_classes=int(labels.max()) + 1, in_chans=1, **kwargs)
    images = vectors.view(len(vectors), 1, 1, -1)
    for start in range(0, len(vectors), batch):
        model.add(images[start : start + batch], labels[start : start + batch])
    return model


def reference_neighbours(queries, stored, k, metric):
    """Brute force: exact pairwise distances (cdist without the matmul shortcut), stable sort."""
    if metric == "cosine":  # |a^ - b^|^2 = 2 - 2 cos(a, b) for unit vectors
        queries, stored = F.normalize(queries, dim=1), F.normalize(stored, dim=1)
    d = torch.cdist(queries.double(), stored.double(), compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "cosine":
        d = d.square() / 2
    order = d.argsort(dim=1, stable=True)[:, :k]
    return d.gather(1, order), order


def reference_vote(neighbour_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Majority vote; among tied classes the one whose neighbour comes first (nearest) wins."""
    predictions = []
    for row in neighbour_labels.tolist():
        counts = [row.count(c) for c in range(num_classes)]
        tied = {c for c in range(num_classes) if counts[c] == max(counts)}
        predictions.append(next(c for c in row if c in tied))
    return torch.tensor(predictions)


# ------------------------------------------------------------------------------------------------ knn
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_agrees_with_brute_force_on_random_data(metric):
    g = torch.Generator().manual_seed(0)
    stored = torch.randn(300, 12, generator=g)
    labels = torch.randint(0, 6, (300,), generator=g)
    queries = torch.randn(40, 12, generator=g)
    # chunk_size 64 makes the search merge five chunks; float32 storage isolates the search itself
    model = filled_knn(stored, labels, k=7, metric=metric, chunk_size=64, store_dtype=torch.float32)
    dist, idx = model.kneighbors(queries.view(40, 1, 1, 12))
    ref_dist, ref_idx = reference_neighbours(queries, stored, 7, metric)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(dist.double(), ref_dist, atol=1e-5)
    scores = model(queries.view(40, 1, 1, 12))
    votes = F.one_hot(labels[ref_idx], 6).sum(1).float() / 7
    assert torch.allclose(scores, votes, atol=0.011 / 7)  # vote fractions plus the small tie term
    assert torch.equal(scores.argmax(1), reference_vote(labels[ref_idx], 6))


def test_knn_equal_distances_go_to_the_earlier_stored_sample():
    # Small integers: every distance is exact in float32 and ties are everywhere.
    g = torch.Generator().manual_seed(1)
    stored = torch.randint(-2, 3, (200, 5), generator=g).float()
    labels = torch.randint(0, 4, (200,), generator=g)
    queries = torch.randint(-2, 3, (30, 5), generator=g).float()
    model = filled_knn(stored, labels, k=9, chunk_size=37)
    dist, idx = model.kneighbors(queries.view(30, 1, 1, 5))
    ref_dist, ref_idx = reference_neighbours(queries, stored, 9, "l2")
    assert (ref_dist[:, :-1] == ref_dist[:, 1:]).any()  # the data does have ties
    assert torch.equal(idx, ref_idx)
    assert torch.equal(dist, ref_dist.float())  # sqrt of the same exact integers


def test_knn_tie_break_prefers_the_class_of_the_nearest_neighbour():
    # On a line, from the query at 0: class 2 at 1, class 1 at 2 and 3, class 2 at 4. With k=4 both
    # classes have two votes; class 2 owns the nearest neighbour and wins, although "smallest class
    # index" would say 1.
    stored = torch.tensor([[4.0], [2.0], [1.0], [3.0]])
    labels = torch.tensor([2, 1, 2, 1])
    model = filled_knn(stored, labels, k=4)
    scores = model(torch.zeros(1, 1, 1, 1))
    assert scores.argmax(1).item() == 2
    assert scores[0, 2] > scores[0, 1] > 0 == scores[0, 0]
    assert scores[0, 1:].tolist() == pytest.approx([0.5, 0.5], abs=0.01 / 4)
    # Moving class 1's neighbour to 0.5 makes it the nearest: the tie now goes the other way.
    model = filled_knn(torch.tensor([[4.0], [0.5], [1.0], [3.0]]), labels, k=4)
    assert model(torch.zeros(1, 1, 1, 1)).argmax(1).item() == 1


def test_knn_equidistant_single_neighbour_is_the_first_added():
    for first, second in [(3, 5), (5, 3)]:
        model = filled_knn(torch.tensor([[1.0], [-1.0]]), torch.tensor([first, second]), k=1)
        assert model(torch.zeros(1, 1, 1, 1)).argmax(1).item() == first


def test_knn_state_dict_round_trip_restores_the_stored_set():
    g = torch.Generator().manual_seed(2)
    model = cnnlab.create_model("knn", num_classes=10, in_chans=1)
    x, y = torch.randn(70, 1, 6, 6, generator=g), torch.randint(0, 10, (70,), generator=g)
    for start in range(0, 70, 32):
        model.add(x[start : start + 32], y[start : start + 32])
    state = model.state_dict()  # taken right after add(): pending batches must be in it
    assert state["train_vectors"].shape == (70, 36) and state["train_vectors"].dtype == torch.float16
    assert torch.equal(state["train_labels"], y)
    restored = cnnlab.create_model("knn", num_classes=10, in_chans=1)
    restored.load_state_dict(safetensors_round_trip(state))
    queries = torch.randn(9, 1, 6, 6, generator=g)
    assert torch.equal(restored(queries), model(queries))
    # Loading also replaces a stored set of another size, and .to() keeps pending batches.
    other = cnnlab.create_model("knn", num_classes=10, in_chans=1)
    other.add(torch.randn(3, 1, 6, 6), torch.zeros(3, dtype=torch.int64))
    other.load_state_dict(state)
    assert other.num_stored == 70
    other.add(x[:5], y[:5])
    assert len(other.to("cpu").train_labels) == 75


def test_knn_without_stored_samples_has_no_opinion_and_no_parameters():
    model = cnnlab.create_model("knn", num_classes=7, in_chans=1).eval()
    assert torch.equal(model(torch.randn(2, 1, 5, 5)), torch.zeros(2, 7))
    assert model.is_nonparametric and num_params("knn") == 0


def test_knn_refuses_bad_options_and_mismatched_images():
    with pytest.raises(CnnlabError, match="metric"):
        cnnlab.create_model("knn", metric="manhattan")
    model = cnnlab.create_model("knn", num_classes=3, in_chans=1)
    model.add(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(InputSizeError, match="64-dimensional"):
        model.add(torch.randn(4, 1, 7, 7), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(InputSizeError, match="64-dimensional"):
        model(torch.randn(1, 1, 9, 9))


def test_knn_on_features_stores_the_feature_vectors():
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    model = cnnlab.create_model("knn", num_classes=2, in_chans=1, features=features, metric="cosine", k=1)
    x = torch.randn(6, 1, 10, 10)
    model.add(x, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert model.train_vectors.shape == (6, 4)
    assert torch.allclose(model.train_vectors.float(), features(x).flatten(1), atol=1e-2)
    assert model(x).argmax(1).tolist() == [0, 1, 0, 1, 0, 1]  # each sample is its own neighbour


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "at_least"), [("l2", 0.92), ("cosine", 0.93)])
def test_knn_on_mnist5k_pixels(metric, at_least):
    # Measured: 93.8% (l2) and 95.2% (cosine) with k=3 and 4,000 stored digits; chance is 10%, and a
    # search that drops |b|^2 or picks the farthest neighbours falls far below the bounds.
    data = load_data("mnist5k")
    normalize = Normalize(data.mean, data.std)
    model = cnnlab.create_model("knn", num_classes=10, in_chans=1, metric=metric)
    for start in range(0, len(data.train_labels), 500):
        model.add(normalize(data.train_images[start : start + 500]), data.train_labels[start : start + 500])
    scores = model(normalize(data.test_images))
    accuracy = (scores.argmax(1) == data.test_labels).float().mean().item()
    assert at_least <= accuracy < 1.0


# ------------------------------------------------------------------------------------------- linear
def test_linear_params_at_default_and_given_size():
    assert num_params("linear") == 3 * 32 * 32 * 1000 + 1000  # quoted at 3x32x32
    assert num_params("linear", num_classes=10, in_chans=1, image_size=28) == 784 * 10 + 10


def test_linear_takes_the_size_of_its_first_input_then_keeps_it():
    model = cnnlab.create_model("linear", num_classes=10, in_chans=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.fc.weight.shape == (10, 784)
    with pytest.raises(InputSizeError, match="1x28x28"):
        model(torch.randn(2, 1, 32, 32))
    fixed = cnnlab.create_model("linear", num_classes=10, in_chans=1, image_size=32)
    with pytest.raises(InputSizeError, match="1x32x32"):
        fixed(torch.randn(2, 1, 28, 28))


def test_linear_templates_are_the_weight_rows_as_images():
    model = cnnlab.create_model("linear", num_classes=10, in_chans=3)
    model(torch.randn(1, 3, 20, 24))
    templates = model.templates()
    assert templates.shape == (10, 3, 20, 24)
    assert torch.equal(templates[4].flatten(), model.fc.weight[4])


def test_linear_state_dict_round_trip_restores_the_input_size():
    model = cnnlab.create_model("linear", num_classes=5, in_chans=1)
    x = torch.randn(3, 1, 20, 24)
    expected = model(x)
    restored = cnnlab.create_model("linear", num_classes=5, in_chans=1)  # as load_run does
    restored.load_state_dict(safetensors_round_trip(model.state_dict()))
    assert restored.templates().shape == (5, 1, 20, 24)
    assert torch.equal(restored(x), expected)


def test_linear_a_few_sgd_steps_reduce_the_loss():
    torch.manual_seed(0)
    data = load_data("mnist5k")
    x = Normalize(data.mean, data.std)(data.train_images[:512])
    y = data.train_labels[:512]
    model = cnnlab.create_model("linear", num_classes=10, in_chans=1)
    model(x[:1])  # the first pass fixes the size; only then build the optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --------------------------------------------------------------------------------------- simple_cnn
@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        # conv1 1*6*25+6 = 156, conv2 6*16*25+16 = 2,416, fc1 400*120+120 = 48,120,
        # fc2 120*84+84 = 10,164, fc3 84*10+10 = 850: LeNet-5's ~60k
        ({"num_classes": 10, "in_chans": 1}, 61_706),
        # conv1 3*6*25+6 = 456, fc3 84*1000+1000 = 85,000
        ({}, 456 + 2_416 + 48_120 + 10_164 + 85_000),
    ],
)
def test_simple_cnn_params(kwargs, params):
    assert num_params("simple_cnn", **kwargs) == params


@pytest.mark.parametrize("size", [12, 28, 32])
def test_simple_cnn_shapes(size):
    model = cnnlab.create_model("simple_cnn", num_classes=7, in_chans=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_simple_cnn_has_lenets_5x5_maps_on_digits_and_a_minimum():
    model = cnnlab.create_model("simple_cnn", num_classes=10, in_chans=1)
    x = model.pool(model.relu(model.conv2(model.pool(model.relu(model.conv1(torch.randn(1, 1, 28, 28)))))))
    assert x.shape == (1, 16, 5, 5)  # S4 of the paper: the adaptive pool is the identity here
    with pytest.raises(InputSizeError, match="12x12"):
        model(torch.randn(1, 1, 11, 11))


def test_simple_cnn_default_keeps_its_layers_and_names():
    model = cnnlab.create_model("simple_cnn", num_classes=10, in_chans=1)
    assert [k for k in model.state_dict() if k.startswith("conv")] == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"
    ]  # fmt: skip
    assert model.conv1.kernel_size == model.conv2.kernel_size == (5, 5)
    assert (model.conv1.padding, model.conv2.padding) == ((2, 2), (0, 0))


@pytest.mark.parametrize(
    ("kernel", "stack", "convs", "params"),
    [
        # conv1 1*6*49+6 = 300, conv2 6*16*49+16 = 4,720; the rest as the 5x5 network: 59,134
        (7, False, 1, 300 + 4_720 + 59_134),
        # conv1 (1*6*9+6) + (6*6*9+6) = 390, conv2 (6*16*9+16) + (16*16*9+16) = 3,200
        (5, True, 2, 390 + 3_200 + 59_134),
        # a third 3x3 in each: + (6*6*9+6) = 330 and + (16*16*9+16) = 2,320
        (7, True, 3, 390 + 330 + 3_200 + 2_320 + 59_134),
        (3, True, 1, (1 * 6 * 9 + 6) + (6 * 16 * 9 + 16) + 59_134),  # a stack of one: the plain 3x3
    ],
)
def test_simple_cnn_kernel_and_stack(kernel, stack, convs, params):
    model = cnnlab.create_model("simple_cnn", num_classes=10, in_chans=1, kernel=kernel, stack=stack).eval()
    assert num_params("simple_cnn", num_classes=10, in_chans=1, kernel=kernel, stack=stack) == params
    for conv in (model.conv1, model.conv2):
        layers = list(conv) if isinstance(conv, torch.nn.Sequential) else [conv]
        assert [type(m).__name__ for m in layers] == ["Conv2d", "ReLU"] * (convs - 1) + ["Conv2d"]
        assert all(m.kernel_size == ((3, 3) if stack else (kernel, kernel)) for m in layers[::2])
    assert model.min_input_size == 2 * (kernel + 1)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        after_conv1 = model.conv1(x)
        after_conv2 = model.conv2(model.pool(model.relu(after_conv1)))
        assert model(torch.randn(2, 1, model.min_input_size, model.min_input_size)).shape == (2, 10)
    assert after_conv1.shape[-2:] == (28, 28)  # 'same'
    assert after_conv2.shape[-2:] == (14 - (kernel - 1),) * 2  # unpadded: the kernel's shrinkage
    with pytest.raises(InputSizeError):
        model(torch.randn(1, 1, model.min_input_size - 1, model.min_input_size - 1))


@pytest.mark.parametrize("kernel", [4, 1])
def test_simple_cnn_refuses_an_even_or_too_small_kernel(kernel):
    with pytest.raises(CnnlabError, match="odd and at least 3"):
        cnnlab.create_model("simple_cnn", kernel=kernel)
