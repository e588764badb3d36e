#include "runtime/models/cuda/cuda_kernels.hpp"

#include <cmath>
#include <cstdint>

#include "runtime/models/cuda/cuda_check.hpp"

namespace cafex::cuda_kernels {

namespace {

constexpr unsigned full_mask = 0xffffffffu;
constexpr int block_threads = 256; // multiple of 32: the reductions use whole warps
constexpr int attn_threads = 128;
constexpr int attn_warps = attn_threads / 32;

struct plus_op {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct max_op {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduces `v` over the block; every thread gets the result. `scratch` holds 32 values.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
  for (int o = 16; o > 0; o >>= 1)
    v = op(v, __shfl_xor_sync(full_mask, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  __syncthreads(); // scratch may still be read by a previous reduction
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < warps; ++w)
    r = op(r, scratch[w]);
  return r;
}

__global__ void rmsnorm_kernel(const float* x, const float* gain, float* y, int cols,
                               const int* rows_index) {
  __shared__ double scratch[32];
  const int r = blockIdx.x;
  const float* xr = x + static_cast<size_t>(rows_index ? rows_index[r] : r) * cols;
  float* yr = y + static_cast<size_t>(r) * cols;
  double ss = 0.0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    ss += static_cast<double>(xr[c]) * xr[c];
  ss = block_reduce(ss, plus_op{}, scratch);
  const float inv = static_cast<float>(1.0 / sqrt(ss / cols + 1e-6));
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    yr[c] = __fmul_rn(__fmul_rn(xr[c], inv), gain[c]); // (x * inv) * gain, as on CPU
}

__global__ void silu_kernel(float* x, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    x[i] = x[i] / (1.0f + expf(-x[i]));
}

__global__ void append_kv_kernel(const float* qkv, const attn_row* rows, int tokens, int heads,
                                 int layer, int d) {
  const int row = blockIdx.x, h = blockIdx.y;
  const attn_row ar = rows[row];
  const float* src = qkv + (static_cast<size_t>(h) * tokens + row) * 3 * d;
  const size_t off = ((static_cast<size_t>(layer) * heads + h) * ar.cap + ar.pos) * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    ar.k[off + j] = src[d + j];
    ar.v[off + j] = src[2 * d + j];
  }
}

// One block per (row, head). Shared memory: scores[max_keys] | partial[warps][d] | q[d].
__global__ void attention_kernel(const float* qkv, const attn_row* rows, int tokens, int heads,
                                 int layer, int d, float scale, int max_keys, float* out) {
  extern __shared__ float sm[];
  __shared__ float scratch[32];
  float* sc = sm;
  float* part = sm + max_keys;
  float* qs = part + attn_warps * d;
  const int row = blockIdx.x, h = blockIdx.y;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const attn_row ar = rows[row];
  const int visible = ar.pos + 1; // causal: positions 0..pos
  const float* q = qkv + (static_cast<size_t>(h) * tokens + row) * 3 * d;
  for (int j = tid; j < d; j += blockDim.x)
    qs[j] = q[j];
  __syncthreads();
  const size_t base = (static_cast<size_t>(layer) * heads + h) * ar.cap * d;
  const float* K = ar.k + base;
  const float* V = ar.v + base;
  float mx = -INFINITY;
  for (int key = tid; key < visible; key += blockDim.x) {
    float s = 0.0f;
    for (int j = 0; j < d; ++j)
      s = fmaf(qs[j], K[static_cast<size_t>(key) * d + j], s);
    s *= scale; // gemm(alpha = scale) scales the finished dot product
    sc[key] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_reduce(mx, max_op{}, scratch);
  float sum = 0.0f;
  for (int key = tid; key < visible; key += blockDim.x) {
    const float e = expf(sc[key] - mx);
    sc[key] = e;
    sum += e;
  }
  sum = block_reduce(sum, plus_op{}, scratch);
  const float inv = 1.0f / sum;
  for (int key = tid; key < visible; key += blockDim.x)
    sc[key] *= inv;
  __syncthreads();
  // Weighted values: warp w takes keys w, w + warps, ...; lanes take dimensions.
  for (int j = lane; j < d; j += 32) {
    float acc = 0.0f;
    for (int key = warp; key < visible; key += attn_warps)
      acc = fmaf(sc[key], V[static_cast<size_t>(key) * d + j], acc);
    part[warp * d + j] = acc;
  }
  __syncthreads();
  for (int j = tid; j < d; j += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < attn_warps; ++w)
      o += part[w * d + j];
    out[(static_cast<size_t>(h) * tokens + row) * d + j] = o;
  }
}

__global__ void fixed_sum_kernel(const float* c, int parts, size_t stride, size_t n,
                                 int64_t* acc) {
  constexpr double scale = 16777216.0;         // 2^24, tensor_math's fixed_point_scale
  constexpr double limit = 1125899906842624.0; // 2^50, accumulate_fixed's clamp
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    int64_t a = 0;
    for (int p = 0; p < parts; ++p) {
      double y = static_cast<double>(c[p * stride + i]) * scale;
      y = y == y ? y : 0.0; // NaN counts as 0
      y = fmin(fmax(y, -limit), limit);
      a += __double2ll_rn(y); // nearest, ties to even: the CPU's magic-number rounding
    }
    acc[i] = a;
  }
}

__global__ void add_from_fixed_kernel(const int64_t* acc, float* x, size_t n) {
  constexpr double inv = 1.0 / 16777216.0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    x[i] = x[i] + static_cast<float>(static_cast<double>(acc[i]) * inv);
}

// Keeps (value, index) with the larger value, or the lower index on equal values; an
// index of `none` marks "nothing seen yet".
__device__ void better(float& bv, int& bi, float v, int i, int none) {
  if (i == none)
    return;
  if (bi == none || v > bv || (v == bv && i < bi)) {
    bv = v;
    bi = i;
  }
}

__global__ void argmax_kernel(const float* logits, int vocab, int32_t* out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const int r = blockIdx.x;
  const float* x = logits + static_cast<size_t>(r) * vocab;
  const int none = vocab;
  float bv = -INFINITY;
  int bi = none;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x)
    better(bv, bi, x[i], i, none);
  for (int o = 16; o > 0; o >>= 1) {
    float v = __shfl_xor_sync(full_mask, bv, o);
    int i = __shfl_xor_sync(full_mask, bi, o);
    better(bv, bi, v, i, none);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
      better(bv, bi, sv[w], si[w], none);
    out[r] = bi == none ? 0 : bi;
  }
}

constexpr int tile = 16;

__global__ void sgemm_kernel(int m, int n, int k, float alpha, const float* a, int lda,
                             long long sa, const float* b, int ldb, long long sb, bool trans_b,
                             float* c, int ldc, long long sc) {
  __shared__ float as[tile][tile + 1];
  __shared__ float bs[tile][tile + 1];
  const int z = blockIdx.z;
  a += z * sa;
  b += z * sb;
  c += z * sc;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * tile + ty, col = blockIdx.x * tile + tx;
  float acc = 0.0f;
  for (int t0 = 0; t0 < k; t0 += tile) {
    as[ty][tx] = row < m && t0 + tx < k ? a[static_cast<size_t>(row) * lda + t0 + tx] : 0.0f;
    const int kk = t0 + ty;
    bs[ty][tx] = kk < k && col < n ? (trans_b ? b[static_cast<size_t>(col) * ldb + kk]
                                              : b[static_cast<size_t>(kk) * ldb + col])
                                   : 0.0f;
    __syncthreads();
    const int steps = min(tile, k - t0);
    for (int i = 0; i < steps; ++i)
      acc = fmaf(as[ty][i], bs[i][tx], acc);
    __syncthreads();
  }
  if (row < m && col < n)
    c[static_cast<size_t>(row) * ldc + col] = alpha * acc;
}

unsigned grid_for(size_t n) {
  size_t blocks = (n + block_threads - 1) / block_threads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks == 0 ? 1 : blocks) : 65535);
}

size_t attention_shared_bytes(int max_keys, int d) {
  return (static_cast<size_t>(max_keys) + static_cast<size_t>(attn_warps + 1) * d)
         * sizeof(float);
}

caf::error launched() {
  return CAFEX_CHECK(cudaGetLastError());
}

} // namespace

caf::error rmsnorm(const float* x, const float* gain, float* y, int rows, int cols,
                   const int* rows_index, cudaStream_t s) {
  if (rows <= 0)
    return caf::none;
  rmsnorm_kernel<<<rows, block_threads, 0, s>>>(x, gain, y, cols, rows_index);
  return launched();
}

caf::error silu(float* x, size_t n, cudaStream_t s) {
  if (n == 0)
    return caf::none;
  silu_kernel<<<grid_for(n), block_threads, 0, s>>>(x, n);
  return launched();
}

caf::error append_kv(const float* qkv, const attn_row* rows, int tokens, int heads, int layer,
                     int d, cudaStream_t s) {
  if (tokens <= 0 || heads <= 0)
    return caf::none;
  append_kv_kernel<<<dim3(tokens, heads), 64, 0, s>>>(qkv, rows, tokens, heads, layer, d);
  return launched();
}

int attention_max_keys(int d) {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess
      || cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)
           != cudaSuccess)
    return 0;
  // Leave room for the static shared memory (reduction scratch).
  const long long keys = (static_cast<long long>(optin) - 1024) / 4
                         - static_cast<long long>(attn_warps + 1) * d;
  return keys > 0 ? static_cast<int>(keys) : 0;
}

caf::error attention(const float* qkv, const attn_row* rows, int tokens, int heads, int layer,
                     int d, float scale, int max_keys, float* out, cudaStream_t s) {
  if (tokens <= 0 || heads <= 0)
    return caf::none;
  const size_t shared = attention_shared_bytes(max_keys, d);
  if (shared > 48 * 1024)
    if (auto err = CAFEX_CHECK(
          cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared))))
      return err;
  attention_kernel<<<dim3(tokens, heads), attn_threads, shared, s>>>(qkv, rows, tokens, heads,
                                                                     layer, d, scale, max_keys,
                                                                     out);
  return launched();
}

caf::error fixed_sum(const float* c, int parts, size_t stride, size_t n, int64_t* acc,
                     cudaStream_t s) {
  if (n == 0)
    return caf::none;
  fixed_sum_kernel<<<grid_for(n), block_threads, 0, s>>>(c, parts, stride, n, acc);
  return launched();
}

caf::error add_from_fixed(const int64_t* acc, float* x, size_t n, cudaStream_t s) {
  if (n == 0)
    return caf::none;
  add_from_fixed_kernel<<<grid_for(n), block_threads, 0, s>>>(acc, x, n);
  return launched();
}

caf::error argmax(const float* logits, int rows, int vocab, int32_t* out, cudaStream_t s) {
  if (rows <= 0)
    return caf::none;
  // 1024 threads: a 128k vocabulary row takes 125 strided reads per thread, not 500 (one
  // 256-thread block per row was 215 us of an 8B-shape decode step on an H200).
  argmax_kernel<<<rows, 1024, 0, s>>>(logits, vocab, out);
  return launched();
}

caf::error sgemm(int m, int n, int k, float alpha, const float* a, int lda, long long sa,
                 const float* b, int ldb, long long sb, bool trans_b, float* c, int ldc,
                 long long sc, int batch, cudaStream_t s) {
  if (m <= 0 || n <= 0 || batch <= 0)
    return caf::none;
  dim3 grid((n + tile - 1) / tile, (m + tile - 1) / tile, batch);
  sgemm_kernel<<<grid, dim3(tile, tile), 0, s>>>(m, n, k, alpha, a, lda, sa, b, ldb, sb,
                                                 trans_b, c, ldc, sc);
  return launched();
}

} // namespace cafex::cuda_kernels
