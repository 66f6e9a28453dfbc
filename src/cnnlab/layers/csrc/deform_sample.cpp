// Deformable convolution's bilinear sampling on the CPU, channels-last: the im2col columns that
// cnnlab/layers/deform_conv.py multiplies with the weight, and, from the product's output gradient,
// the gradients of the input, the offsets and the mask.
//
// input (N, H, W, C) contiguous; offset (N, 2*G*K, Ho, Wo) and mask (N, G*K, Ho, Wo) in
// torchvision.ops.deform_conv2d's channel order (offset group, tap, then dy before dx), K = kh*kw.
// The columns are (N, Ho, Wo, groups, K, C/groups): for each output position, each convolution group's
// K*C/groups inputs in the order of its weight permuted to (O, kh, kw, C/groups), so that the
// convolution is one matrix product per group. A sample point's four corners and weights are found once
// and shared by the C/G channels of its offset group, which are contiguous in memory.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace {

struct Shape {
  int64_t n, h, w, c;           // input
  int64_t ho, wo, kh, kw;       // output and kernel
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups, offset_groups;
  int64_t taps() const { return kh * kw; }
  int64_t length() const { return ho * wo; }
};

// The four corners of one sample point: where each starts in a (H, W, C) image (-1 outside it), its
// bilinear weight, and the weight's derivatives along y and x.
template <typename T>
struct Corners {
  int64_t at[4];
  T w[4], dy[4], dx[4];
};

template <typename T>
Corners<T> corners(T y, T x, const Shape& s) {
  Corners<T> k{};
  for (int i = 0; i < 4; ++i) k.at[i] = -1;
  // Also false for NaN, and keeps the casts below in range.
  if (!(y > -1 && y < s.h && x > -1 && x < s.w)) return k;
  const T fy = std::floor(y), fx = std::floor(x);
  const T ly = y - fy, lx = x - fx, hy = 1 - ly, hx = 1 - lx;
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1}, xs[4] = {x0, x0 + 1, x0, x0 + 1};
  const T w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
  const T dy[4] = {-hx, -lx, hx, lx};
  const T dx[4] = {-hy, hy, -ly, ly};
  for (int i = 0; i < 4; ++i) {
    if (ys[i] >= 0 && ys[i] < s.h && xs[i] >= 0 && xs[i] < s.w) k.at[i] = (ys[i] * s.w + xs[i]) * s.c;
    k.w[i] = w[i];
    k.dy[i] = dy[i];
    k.dx[i] = dx[i];
  }
  return k;
}

// A run of channels that shares one offset group and one convolution group: where it starts in the
// input's channels and in a column row of one tap.
struct Run {
  int64_t channel, column, size;
};

// The runs of offset group g for tap k, in the column layout (groups, K, C/groups).
std::vector<Run> runs(const Shape& s, int64_t g, int64_t k) {
  std::vector<Run> out;
  const int64_t per_offset = s.c / s.offset_groups, per_group = s.c / s.groups;
  for (int64_t c = g * per_offset, end = c + per_offset; c < end;) {
    const int64_t group = c / per_group, stop = std::min(end, (group + 1) * per_group);
    out.push_back({c, (group * s.taps() + k) * per_group + c - group * per_group, stop - c});
    c = stop;
  }
  return out;
}

// The runs of every (offset group, tap), indexed g * K + k.
std::vector<std::vector<Run>> run_plan(const Shape& s) {
  std::vector<std::vector<Run>> plan;
  for (int64_t g = 0; g < s.offset_groups; ++g)
    for (int64_t k = 0; k < s.taps(); ++k) plan.push_back(runs(s, g, k));
  return plan;
}

template <typename T>
struct Point {  // one sample point: where it reads, its modulation, and where its offset and mask are
  T y, x, m;
  int64_t offset_at, mask_at;
};

// The sample point of tap (i, j) of offset group g at output position (ho, wo) of image n. No integer
// division here: this runs once per point and tap, and a 64-bit division costs tens of cycles.
template <typename T>
Point<T> point(const Shape& s, const T* offset, const T* mask, int64_t n, int64_t ho, int64_t wo,
               int64_t g, int64_t i, int64_t j) {
  const int64_t L = s.length(), l = ho * s.wo + wo, pair = g * s.taps() + i * s.kw + j;
  const int64_t offset_at = (n * 2 * s.offset_groups * s.taps() + 2 * pair) * L + l;
  const int64_t mask_at = (n * s.offset_groups * s.taps() + pair) * L + l;
  const T y = ho * s.sh - s.ph + i * s.dh + offset[offset_at];
  const T x = wo * s.sw - s.pw + j * s.dw + offset[offset_at + L];
  return {y, x, mask ? mask[mask_at] : T(1), offset_at, mask_at};
}

template <typename T>
void sample(const Shape& s, const T* input, const T* offset, const T* mask, T* columns) {
  const int64_t row = s.taps() * s.c;  // one output position's columns
  const std::vector<std::vector<Run>> plan = run_plan(s);
  at::parallel_for(0, s.n * s.length(), 16, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / s.length(), ho = p % s.length() / s.wo, wo = p % s.wo;
      const T* image = input + n * s.h * s.w * s.c;
      T* out = columns + p * row;
      for (int64_t g = 0; g < s.offset_groups; ++g) {
        for (int64_t k = 0, i = 0; i < s.kh; ++i) for (int64_t j = 0; j < s.kw; ++j, ++k) {
          const Point<T> q = point(s, offset, mask, n, ho, wo, g, i, j);
          const Corners<T> cs = corners(q.y, q.x, s);
          for (int i = 0; i < 4; ++i) {
            if (cs.at[i] < 0) continue;
            const T weight = q.m * cs.w[i];
            for (const Run& r : plan[g * s.taps() + k]) {
              const T* __restrict src = image + cs.at[i] + r.channel;
              T* __restrict dst = out + r.column;
#pragma omp simd
              for (int64_t c = 0; c < r.size; ++c) dst[c] += weight * src[c];
            }
          }
        }
      }
    }
  });
}

// The columns' gradient of image n: its output gradient (Ho*Wo, O) times the weight (O, K*C/groups),
// one product per convolution group, into tile (Ho*Wo, groups*K*C/groups).
void columns_gradient(const at::Tensor& grad_out, const at::Tensor& weight, int64_t n, int64_t groups,
                      at::Tensor& tile) {
  const int64_t L = tile.size(0), O = weight.size(0);
  const at::Tensor g = grad_out[n].view({L, O});
  if (groups == 1) {
    at::mm_out(tile, g, weight);
    return;
  }
  const int64_t per_out = O / groups, per_col = weight.size(1);
  const at::Tensor blocks =
      at::bmm(g.view({L, groups, per_out}).transpose(0, 1), weight.view({groups, per_out, per_col}));
  tile.view({L, groups, per_col}).copy_(blocks.transpose(0, 1));
}

// The gradients of the input (if grad_input is not null), the offsets and the mask (if given), from
// the output's gradient (N, Ho, Wo, O) and the weight (O, K*C/groups) of the product after the
// sampling. Each image's columns' gradient is formed in a tile and scattered while the tile is in the
// cache: the gradient of all the columns, as large as the columns, is never held. Images are
// independent, so threads split the batch and never write to the same place: with at least one image
// per thread, each product runs in its thread alone and the result does not depend on their number.
template <typename T>
void sample_backward(const Shape& s, const at::Tensor& grad_out, const at::Tensor& weight, const T* input,
                     const T* offset, const T* mask, T* grad_input, T* grad_offset, T* grad_mask) {
  const int64_t row = s.taps() * s.c, L = s.length();
  const std::vector<std::vector<Run>> plan = run_plan(s);
  at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
    const at::NoGradGuard no_grad;  // grad mode is per thread, and on in a fresh worker thread
    at::Tensor tile = at::empty({L, row}, grad_out.options());
    for (int64_t n = begin; n < end; ++n) {
      columns_gradient(grad_out, weight, n, s.groups, tile);
      const T* grad = tile.const_data_ptr<T>();
      const int64_t image_at = n * s.h * s.w * s.c;
      for (int64_t ho = 0; ho < s.ho; ++ho) for (int64_t wo = 0; wo < s.wo; ++wo) {
        const T* g_row = grad + (ho * s.wo + wo) * row;
        for (int64_t g = 0; g < s.offset_groups; ++g) {
          for (int64_t k = 0, i = 0; i < s.kh; ++i) for (int64_t j = 0; j < s.kw; ++j, ++k) {
            const Point<T> q = point(s, offset, mask, n, ho, wo, g, i, j);
            const Corners<T> cs = corners(q.y, q.x, s);
            T gy = 0, gx = 0, gm = 0;
            for (int i = 0; i < 4; ++i) {
              if (cs.at[i] < 0) continue;
              T dot = 0;  // the columns' gradient against this corner's values
              const T share = q.m * cs.w[i];
              for (const Run& r : plan[g * s.taps() + k]) {
                const T* __restrict src = input + image_at + cs.at[i] + r.channel;
                const T* __restrict gc = g_row + r.column;
#pragma omp simd reduction(+ : dot)
                for (int64_t c = 0; c < r.size; ++c) dot += gc[c] * src[c];
                if (grad_input) {
                  T* __restrict dst = grad_input + image_at + cs.at[i] + r.channel;
#pragma omp simd
                  for (int64_t c = 0; c < r.size; ++c) dst[c] += share * gc[c];
                }
              }
              gy += cs.dy[i] * dot;
              gx += cs.dx[i] * dot;
              gm += cs.w[i] * dot;
            }
            grad_offset[q.offset_at] = q.m * gy;
            grad_offset[q.offset_at + L] = q.m * gx;
            if (grad_mask) grad_mask[q.mask_at] = gm;
          }
        }
      }
    }
  });
}

Shape shape_of(const at::Tensor& input, const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
               at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding,
               at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.dim() == 4 && offset.dim() == 4, "input and offset must be 4-D");
  TORCH_CHECK(input.is_contiguous() && offset.is_contiguous(), "input and offset must be contiguous");
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "kernel, stride, padding and dilation must be pairs");
  TORCH_CHECK(kernel[0] > 0 && kernel[1] > 0 && stride[0] > 0 && stride[1] > 0 && dilation[0] > 0 &&
                  dilation[1] > 0,
              "kernel, stride and dilation must be positive");
  Shape s{input.size(0), input.size(1), input.size(2), input.size(3),
          offset.size(2), offset.size(3), kernel[0], kernel[1],
          stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, 0};
  s.offset_groups = offset.size(1) / (2 * s.taps());
  TORCH_CHECK(s.offset_groups > 0 && offset.size(1) == 2 * s.offset_groups * s.taps() &&
                  s.c % s.offset_groups == 0 && groups > 0 && s.c % groups == 0 && offset.size(0) == s.n,
              "offset, groups and input do not fit");
  TORCH_CHECK(offset.scalar_type() == input.scalar_type(), "offset and input must have one dtype");
  if (mask) {
    TORCH_CHECK(mask->is_contiguous() && mask->scalar_type() == input.scalar_type() &&
                    mask->numel() == s.n * s.offset_groups * s.taps() * s.length(),
                "mask must be contiguous, of the input's dtype, (N, offset_groups*K, Hout, Wout)");
  }
  return s;
}

// A new buffer of many megabytes is fresh memory from the system, and writing it first faults in every
// 4 KiB page: at these sizes that costs as much as the sampling. Transparent huge pages cut the faults
// 512-fold where the system grants them on request (its setting "madvise" or "always"); the advice is
// only a hint, so a refusal changes nothing.
void advise_huge_pages(const at::Tensor& t) {
  constexpr uintptr_t huge = 2 << 20;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + huge - 1) & ~(huge - 1), end = begin + t.nbytes();
  if (end > first + huge) madvise(reinterpret_cast<void*>(first), (end - first) & ~(huge - 1), MADV_HUGEPAGE);
}

at::Tensor deform_sample(const at::Tensor& input, const at::Tensor& offset,
                         const c10::optional<at::Tensor>& mask, at::IntArrayRef kernel,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups) {
  const Shape s = shape_of(input, offset, mask, kernel, stride, padding, dilation, groups);
  auto columns = at::empty({s.n, s.ho, s.wo, s.taps() * s.c}, input.options());
  advise_huge_pages(columns);
  columns.zero_();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_sample", [&] {
    sample<scalar_t>(s, input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                     mask ? mask->const_data_ptr<scalar_t>() : nullptr, columns.data_ptr<scalar_t>());
  });
  return columns;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> deform_sample_backward(
    const at::Tensor& grad_out, const at::Tensor& weight, const at::Tensor& input, const at::Tensor& offset,
    const c10::optional<at::Tensor>& mask, at::IntArrayRef kernel, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool input_grad) {
  const Shape s = shape_of(input, offset, mask, kernel, stride, padding, dilation, groups);
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.is_contiguous() &&
                  grad_out.scalar_type() == input.scalar_type() && grad_out.size(0) == s.n &&
                  grad_out.size(1) == s.ho && grad_out.size(2) == s.wo,
              "the output's gradient must be contiguous (N, Hout, Wout, O) of the input's dtype");
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous() && weight.scalar_type() == input.scalar_type() &&
                  weight.size(0) == grad_out.size(3) && weight.size(0) % groups == 0 &&
                  weight.size(1) * groups == s.taps() * s.c,
              "the weight must be contiguous (O, K*C/groups) of the input's dtype");
  auto grad_input = input_grad ? at::zeros_like(input) : at::Tensor();
  auto grad_offset = at::empty_like(offset);
  auto grad_mask = mask ? at::empty_like(*mask) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_sample_backward", [&] {
    sample_backward<scalar_t>(
        s, grad_out, weight, input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
        mask ? mask->const_data_ptr<scalar_t>() : nullptr,
        input_grad ? grad_input.data_ptr<scalar_t>() : nullptr, grad_offset.data_ptr<scalar_t>(),
        mask ? grad_mask.data_ptr<scalar_t>() : nullptr);
  });
  return std::make_tuple(grad_input, grad_offset, grad_mask);
}

}  // namespace

TORCH_LIBRARY(cnnlab, m) {
  m.def(
      "deform_sample(Tensor input, Tensor offset, Tensor? mask, int[] kernel, int[] stride, "
      "int[] padding, int[] dilation, int groups) -> Tensor");
  m.def(
      "deform_sample_backward(Tensor grad_out, Tensor weight, Tensor input, Tensor offset, Tensor? mask, "
      "int[] kernel, int[] stride, int[] padding, int[] dilation, int groups, bool input_grad) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(cnnlab, CPU, m) {
  m.impl("deform_sample", &deform_sample);
  m.impl("deform_sample_backward", &deform_sample_backward);
}
