"""Baselines the course compares CNNs with: k-nearest neighbours, a linear classifier, and a small
LeNet-style CNN.

* ``knn``: the k-nearest-neighbour rule of Cover and Hart, "Nearest Neighbor Pattern
  Classification", IEEE Trans. Information Theory 13(1), 1967: store every training image, label a
  query by a majority vote among the k stored images closest to it (L2 or cosine), on raw pixels or
  on the output of a given feature extractor. No training, no parameters; the work moves to test
  time, where each query is compared with the whole stored set.
* ``linear``: a linear (softmax) classifier, one fully connected layer from the pixels to the class
  scores, as in the Stanford CS231n notes on linear classification and Bishop, "Pattern Recognition
  and Machine Learning" (2006), Sec. 4.3.4. Each row of its weight is a template image.
* ``simple_cnn``: LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to
  Document Recognition", Proc. IEEE 1998): two 5x5 conv + pooling stages with 6 and 16 maps, then
  fully connected layers of 120 and 84 units. What differs from the paper: ReLU instead of the
  scaled tanh, max pooling instead of trainable subsampling, full connections C1->C3 instead of the
  paper's sparse table, a softmax output instead of the RBF units, and an adaptive average pool to
  5x5 before fc1 so that any input from 12x12 up fits (28x28 digits, with conv1 padded by 2 as
  LeNet padded them to 32x32, give exactly the paper's 5x5 maps). PyTorch's default initialization.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnlabError, InputSizeError
from .recipe import Recipe
from .registry import register

DEFAULT_SIZE = 32  # default_input_size side of the baselines: CIFAR's, and LeNet's padded digits


# --------------------------------------------------------------------------------------------------
# k-nearest neighbours
# --------------------------------------------------------------------------------------------------
class KNN(nn.Module):
    """k-nearest-neighbour classifier over stored training vectors (Cover and Hart 1967).

    ``add(x, y)`` appends normalized images (N, C, H, W) and int64 labels to the stored set (after
    ``features``, when given, and flattening). ``forward(x)`` returns (N, num_classes) scores: the
    fraction of the k nearest stored vectors of each class, plus a tie-break term smaller than
    0.01/k that orders tied classes by the rank of their nearest neighbour among the k. So argmax is
    the vote's winner and, among classes with equally many votes, the one owning the closest
    neighbour wins; classes with no vote score exactly 0.

    Distances: ``"l2"`` is Euclidean, computed as sqrt(|a|^2 - 2 a.b + |b|^2) with one matmul per
    chunk of ``chunk_size`` stored vectors; ``"cosine"`` is 1 - cos(a, b). Equal distances are
    ordered by the stored index (the earlier-added sample is nearer), so results are deterministic.
    Distances are computed in float32 with autocast disabled: reduced precision would reorder close
    neighbours.

    Cost: every query is compared with every stored vector, so time per query grows linearly with
    the stored set (O(M D) for M vectors of D dimensions), and memory holds all of them. Chunking
    bounds the working memory to about N x chunk_size distances plus one chunk in float32.

    k=3 by default: the smallest odd k above 1, so one atypical or mislabelled neighbour is
    outvoted while the vote stays local; on mnist5k it is the best k (benchmarks/README.md,
    "Measurement notes").

    Storage: vectors are kept in ``store_dtype`` (float16 by default): half the memory of float32,
    and normalized pixels (|x| < ~10, 256 levels) keep a relative error of 5e-4, well below one grey
    level. The stored set lives in two buffers (``train_vectors`` (M, D), ``train_labels`` (M,)), so
    it travels with ``state_dict``; loading resizes them to the saved M and D.
    """

    is_nonparametric = True

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        k: int = 3,
        metric: str = "cosine",
        features: nn.Module | None = None,
        store_dtype: torch.dtype = torch.float16,
        chunk_size: int = 4096,
    ) -> None:
        super().__init__()
        if metric not in ("l2", "cosine"):
            raise CnnlabError(f"knn: metric must be 'l2' or 'cosine', got {metric!r}")
        if k < 1 or chunk_size < 1:
            raise CnnlabError(f"knn: k and chunk_size must be at least 1, got {k} and {chunk_size}")
        self.num_classes, self.k, self.metric, self.chunk_size = num_classes, k, metric, chunk_size
        self.features = features
        self.register_buffer("train_vectors", torch.empty(0, 0, dtype=store_dtype))
        self.register_buffer("train_labels", torch.empty(0, dtype=torch.int64))
        # add() collects batches here; they are concatenated once (not once per batch, which would
        # copy the growing set every time) before any use of the buffers.
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.register_state_dict_pre_hook(_flush_before_saving)
        self.min_input_size = 1
        self.default_input_size = (in_chans, DEFAULT_SIZE, DEFAULT_SIZE)

    @property
    def num_stored(self) -> int:
        return len(self.train_labels) + sum(len(y) for _, y in self._pending)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) float32 vectors: ``features(x)`` (in eval mode, a fixed extractor) or the pixels."""
        if self.features is not None:
            was_training = self.features.training
            self.features.eval()
            try:
                x = self.features(x)
            finally:
                self.features.train(was_training)
        return x.flatten(1).float()

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append a batch of normalized images and their int64 labels to the stored set."""
        vectors = self.embed(x)
        if y.shape != (len(vectors),):
            raise ValueError(f"knn.add: {len(vectors)} images but labels of shape {tuple(y.shape)}")
        dim = self._pending[0][0].shape[1] if self._pending else self.train_vectors.shape[1]
        if self.num_stored and vectors.shape[1] != dim:
            raise InputSizeError(
                f"knn stores {dim}-dimensional vectors, got {vectors.shape[1]} (images of another size?)"
            )
        self._pending.append((vectors.to(self.train_vectors.dtype), y.to(torch.int64)))

    def _flush(self) -> None:
        if not self._pending:
            return
        vectors, labels = zip(*self._pending, strict=True)
        self._pending.clear()
        stored_vectors, stored_labels = self._buffers["train_vectors"], self._buffers["train_labels"]
        old = [stored_vectors] if len(stored_labels) else []
        device = stored_vectors.device
        self.train_vectors = torch.cat([*old, *(v.to(device) for v in vectors)])
        self.train_labels = torch.cat([stored_labels, *(y.to(device) for y in labels)])

    def __getattr__(self, name: str) -> Any:
        # Buffers are found through nn.Module.__getattr__; reading the stored set flushes first, so
        # ``model.train_vectors`` is always the whole set, pending batches included.
        if name in ("train_vectors", "train_labels") and self.__dict__.get("_pending"):
            self._flush()
        return super().__getattr__(name)

    def _apply(self, fn: Any, recurse: bool = True) -> nn.Module:
        self._flush()  # .to(device) and friends must move the pending vectors too
        return super()._apply(fn, recurse)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The stored set's size is unknown when the model is created: take the saved one.
        self._pending.clear()
        for name in ("train_vectors", "train_labels"):
            saved = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(saved, torch.Tensor) and saved.shape != current.shape:
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @torch.no_grad()
    def kneighbors(self, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (N, k') and stored indices (N, k') of the k' = min(k, M) nearest, nearest first."""
        self._flush()
        k = min(k or self.k, len(self.train_labels))
        queries = self.embed(x)
        if len(self.train_labels) and queries.shape[1] != self.train_vectors.shape[1]:
            raise InputSizeError(
                f"knn stores {self.train_vectors.shape[1]}-dimensional vectors, got {queries.shape[1]} "
                f"(images of another size than the training images?)"
            )
        n = len(queries)
        best = torch.empty(n, 0, dtype=torch.int64, device=queries.device)
        with torch.autocast(queries.device.type, enabled=False):
            if self.metric == "cosine":
                queries = F.normalize(queries, dim=1)
            else:
                q_sq = (queries * queries).sum(1, keepdim=True)
            for start in range(0, len(self.train_labels), self.chunk_size):
                chunk = self.train_vectors[start : start + self.chunk_size].float()
                if self.metric == "cosine":
                    d = 1.0 - queries @ F.normalize(chunk, dim=1).T
                else:  # squared: the root is monotonic, taken on the k survivors only
                    d = q_sq - 2.0 * queries @ chunk.T + (chunk * chunk).sum(1)
                idx = torch.arange(start, start + len(chunk), device=d.device)
                best = torch.cat([best, _sort_keys(d, idx)], 1).topk(k, dim=1, largest=False).values
        dist = (best >> 32).to(torch.int32).view(torch.float32)
        return (dist.sqrt() if self.metric == "l2" else dist), best & 0xFFFFFFFF

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._flush()
        if not len(self.train_labels):  # nothing stored yet (e.g. the trainer's dry run): no opinion
            return x.new_zeros(len(x), self.num_classes, dtype=torch.float32)
        _, idx = self.kneighbors(x)
        labels = self.train_labels[idx]  # (N, k)
        k = labels.shape[1]
        scores = torch.zeros(len(x), self.num_classes, device=labels.device)
        scores.scatter_add_(1, labels, torch.ones_like(labels, dtype=scores.dtype))
        # Nearest-neighbour tie-break: rank r (0 = nearest) is worth (k - r) / k in (0, 1]; each class
        # keeps its best. Scaled by 0.01 it never outweighs one vote, yet stays far above float32's
        # resolution for any practical k (0.01/k^2 >> 1e-7 up to k ~ 300).
        bonus = ((k - torch.arange(k, device=labels.device)) / k).expand_as(labels).to(scores.dtype)
        best = torch.zeros_like(scores).scatter_reduce_(1, labels, bonus, reduce="amax")
        return (scores + 0.01 * best) / k

    def extra_repr(self) -> str:
        return f"k={self.k}, metric={self.metric!r}, stored={self.num_stored}"


def _sort_keys(distances: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort as (distance, index): equal distances go to the smaller stored index.

    A non-negative float32's bit pattern, read as an integer, orders like the float; it fills the
    high 32 bits and the index the low ones, so one integer top-k is a deterministic (and, unlike a
    stable sort of the whole chunk, cheap) selection.
    """
    d = distances.clamp_min_(0).add_(0.0)  # rounding can leave -1e-7; adding 0.0 turns -0.0 into +0.0
    return (d.view(torch.int32).to(torch.int64) << 32) | indices


def _flush_before_saving(module: KNN, prefix: str, keep_vars: bool) -> None:
    module._flush()  # a module-level function, not a lambda, so the model still pickles


# --------------------------------------------------------------------------------------------------
# Linear classifier
# --------------------------------------------------------------------------------------------------
class LinearClassifier(nn.Module):
    """Scores = W x + b on the flattened image; ``templates()`` shows each row of W as an image.

    The weight has one column per input pixel, so the input size must be known. With
    ``image_size=S`` it is fixed at (in_chans, S, S). With ``image_size=None`` (the default, what
    ``cnnlab train`` gets) the layer starts shaped for the default 32x32 input, so parameter counts
    on the meta device work, and the FIRST forward pass re-shapes it to whatever size it sees, like
    ``nn.LazyLinear`` (whose uninitialized parameters cannot be counted): the trainer's dry forward
    pass on the data's real size does that before the optimizer is built. Build optimizers after
    that first pass. After it, or after ``load_state_dict`` (which takes the saved shape), the size
    is fixed and another size raises an InputSizeError. The input shape (C, H, W) is saved in the
    state_dict as ``_extra_state`` (a 3-element int64 tensor) so that non-square inputs restore too.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, image_size: int | None = None) -> None:
        super().__init__()
        side = image_size or DEFAULT_SIZE
        self.input_shape: tuple[int, int, int] = (in_chans, side, side)
        self.fixed = image_size is not None
        self.fc = nn.Linear(in_chans * side * side, num_classes)
        self.min_input_size = 1
        self.default_input_size = self.input_shape
        # One weight per pixel: a shifted digit meets other weights, so random crops only blur the
        # templates (benchmarks/README.md, "Measurement notes"). The trainer reads this.
        self.translation_invariant = False

    def _reshape(self, shape: tuple[int, int, int]) -> None:
        """Re-create the weight for inputs of ``shape`` (same device and dtype, default init)."""
        w = self.fc.weight
        in_features = shape[0] * shape[1] * shape[2]
        if in_features != self.fc.in_features:
            self.fc.in_features = in_features
            self.fc.weight = nn.Parameter(w.new_empty(w.shape[0], in_features))
            self.fc.reset_parameters()
        self.input_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        if shape != self.input_shape:
            if self.fixed:
                c, h, w = self.input_shape
                got = "x".join(map(str, shape))
                raise InputSizeError(
                    f"linear has one weight per pixel of a {c}x{h}x{w} image, got {got}; "
                    f"resize the images to {h}x{w}"
                )
            self._reshape(shape)  # type: ignore[arg-type]
        self.fixed = True
        return self.fc(x.flatten(1))

    def templates(self) -> torch.Tensor:
        """The weight as (num_classes, C, H, W) images: what each class score correlates the input with."""
        return self.fc.weight.detach().view(-1, *self.input_shape)

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(self.input_shape, dtype=torch.int64, device="cpu")

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.input_shape = tuple(int(v) for v in state.tolist())  # type: ignore[assignment]
        self.fixed = True

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A model not yet fixed takes the saved input size; the children load after this, so the
        # weight must have the saved shape before ``fc`` copies into it.
        saved = state_dict.get(prefix + "_extra_state")
        if not self.fixed and isinstance(saved, torch.Tensor) and saved.numel() == 3:
            self._reshape(tuple(int(v) for v in saved.tolist()))  # type: ignore[arg-type]
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


# --------------------------------------------------------------------------------------------------
# LeNet-style CNN
# --------------------------------------------------------------------------------------------------
class SimpleCNN(nn.Module):
    """LeNet-5's layout (LeCun et al. 1998) with ReLU and max pooling: conv1 (C1) 5x5 -> pool (S2) ->
    conv2 (C3) 5x5 -> pool (S4) -> fc1 (C5) -> fc2 (F6) -> fc3 (output).

    ``kernel`` (odd, at least 3) is the side of both convs; ``stack`` replaces each k x k conv by
    (k-1)/2 3x3 convs with ReLU between them (Simonyan and Zisserman 2015, Sec. 2.3): the same
    receptive field and output size, conv1 padded to keep its input's size, conv2 unpadded. As in
    VGG's stages, the stack's first conv sets the width and the others keep it.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
        kernel: int = 5,
        stack: bool = False,
    ) -> None:
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise CnnlabError(f"simple_cnn: kernel must be odd and at least 3, got {kernel}")
        self.conv1 = _conv(in_chans, widths[0], kernel, stack, same=True)  # LeNet padded 28x28 digits to 32
        self.conv2 = _conv(widths[0], widths[1], kernel, stack, same=False)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((5, 5))  # the identity at 28x28 with 5x5 convs: the paper's maps
        self.fc1 = nn.Linear(widths[1] * 25, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)
        # The smallest side whose pool2 map is not empty: at 5x5, 12 -> 12 -> 6 -> 2 -> 1.
        self.min_input_size = 2 * (kernel + 1)
        self.default_input_size = (in_chans, DEFAULT_SIZE, DEFAULT_SIZE)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        return self.avgpool(self.pool(self.relu(self.conv2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


def _conv(in_ch: int, out_ch: int, kernel: int, stack: bool, same: bool) -> nn.Module:
    """One k x k conv, or with ``stack`` (k-1)/2 3x3 convs and ReLUs seeing the same k x k window."""
    if not stack or kernel == 3:
        return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2 if same else 0)
    layers: list[nn.Module] = []
    for i in range((kernel - 1) // 2):
        layers += [
            nn.Conv2d(out_ch if i else in_ch, out_ch, 3, padding=1 if same else 0),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers[:-1])  # the ReLU after the stack is the model's own


@register
def knn(**kwargs) -> KNN:
    """k-nearest neighbours (Cover and Hart 1967) on the normalized pixels or on given features: a
    majority vote among the k=3 nearest stored training images (cosine, or L2), ties going to the
    class of the nearest neighbour; no parameters, stores the training set (float16), and its cost
    per query grows with the stored set."""
    return KNN(**kwargs)


# Measured on mnist5k: benchmarks/README.md, "Measurement notes".
@register(recipe=Recipe(optimizer="adamw", lr=0.003, weight_decay=0.01, label_smoothing=0.0))
def linear(**kwargs) -> LinearClassifier:
    """Linear (softmax) classifier (CS231n notes; Bishop 2006): one fully connected layer from the
    flattened pixels to the class scores, whose weight rows are class template images; its size
    follows the first input it sees (parameters quoted at 32x32) unless image_size is given."""
    return LinearClassifier(**kwargs)


@register(recipe=Recipe(epochs=30, lr=0.05, label_smoothing=0.0))
def simple_cnn(**kwargs) -> SimpleCNN:
    """LeNet-5-style CNN (LeCun et al. 1998) with ReLU and max pooling: two 5x5 conv + 2x2 pool stages
    (6 and 16 maps), FC 120-84-classes; for 28-32 pixel images, 61,706 parameters on 10-class digits."""
    return SimpleCNN(**kwargs)
