#include "runtime/models/cuda/cuda_llama_kernels.hpp"

#include <cmath>
#include <cstdint>

#include <cuda_bf16.h>

#include "runtime/models/cuda/cuda_check.hpp"

namespace cafex::llama_kernels {

namespace {

using bf16 = __nv_bfloat16;

constexpr unsigned full_mask = 0xffffffffu;
constexpr int threads = 256;
constexpr int attn_warps = 4;
constexpr int max_head_dim = 256; // checked by the model at load
constexpr int per_lane = max_head_dim / 32;

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(full_mask, v, o);
  return v;
}

// Sums `v` over the block; every thread gets the result. `scratch` holds 32 values.
__device__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  float r = 0.0f;
  for (int w = 0; w < warps; ++w)
    r += scratch[w];
  return r;
}

__device__ size_t kv_offset(const kv_shape& kv, const kv_row& r, int j, int layer, int head) {
  const int blk = r.blocks[j / kv_block];
  return ((((static_cast<size_t>(blk) * kv.layers + layer) * kv.kv_heads + head) * kv_block)
          + j % kv_block)
         * kv.head_dim;
}

__global__ void embed_kernel(const int32_t* tokens, const bf16* table, int64_t vocab0,
                             int64_t table_rows, int hidden, float* x) {
  const int r = blockIdx.x;
  const int64_t local = tokens[r] - vocab0;
  float* dst = x + static_cast<size_t>(r) * hidden;
  const bool mine = local >= 0 && local < table_rows;
  const bf16* src = table + (mine ? local : 0) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x)
    dst[c] = mine ? __bfloat162float(src[c]) : 0.0f;
}

__global__ void add_rmsnorm_kernel(float* x, const float* add, const float* gain, bf16* y,
                                   int hidden, float eps, const int* rows_index) {
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  float* xr = x + static_cast<size_t>(rows_index ? rows_index[r] : r) * hidden;
  const float* ar = add ? add + static_cast<size_t>(r) * hidden : nullptr;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    float v = xr[c];
    if (ar) {
      v += ar[c];
      xr[c] = v;
    }
    ss += v * v;
  }
  if (gain == nullptr)
    return; // uniform over the block
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / hidden + eps);
  bf16* yr = y + static_cast<size_t>(r) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x)
    yr[c] = __float2bfloat16_rn(gain[c] * (xr[c] * inv));
}

__global__ void add_bias_kernel(float* c, const float* bias, size_t n, int cols) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    c[i] += bias[i % cols];
}

// One block per (token row, head): query heads are rotated in place; KV heads are
// rotated, and written with their values into the cache.
__global__ void qkv_rope_append_kernel(float* qkv, const float* bias, const float* inv_freq,
                                       const kv_row* rows, int q_heads, kv_shape kv,
                                       int layer) {
  const int t = blockIdx.x, head = blockIdx.y;
  const kv_row r = rows[t];
  const int d = kv.head_dim, half = d / 2, kvh = kv.kv_heads;
  float* row = qkv + static_cast<size_t>(t) * (q_heads + 2 * kvh) * d;
  auto* kc = reinterpret_cast<bf16*>(kv.k);
  auto* vc = reinterpret_cast<bf16*>(kv.v);
  const bool is_kv = head >= q_heads;
  const size_t off = is_kv ? kv_offset(kv, r, r.pos, layer, head - q_heads) : 0;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const int c = head * d + i;
    float a = row[c], b = row[c + half];
    if (bias) {
      a += bias[c];
      b += bias[c + half];
    }
    float sn, cs;
    sincosf(static_cast<float>(r.pos) * inv_freq[i], &sn, &cs);
    const float ra = a * cs - b * sn, rb = b * cs + a * sn;
    row[c] = ra;
    row[c + half] = rb;
    if (is_kv) {
      kc[off + i] = __float2bfloat16_rn(ra);
      kc[off + i + half] = __float2bfloat16_rn(rb);
    }
  }
  if (!is_kv)
    return;
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    const int c = (q_heads + kvh) * d + (head - q_heads) * d + e;
    vc[off + e] = __float2bfloat16_rn(row[c] + (bias ? bias[c] : 0.0f));
  }
}

// One block of attn_warps warps per (row, query head); warp w takes keys lo + w, lo + w +
// attn_warps, ... with its own running max, sum and output; the warps merge at the end.
__global__ void attention_kernel(const float* qkv, const kv_row* rows, int q_heads,
                                 kv_shape kv, int layer, float scale, int window, bf16* out) {
  __shared__ float q_s[max_head_dim];
  __shared__ float acc_s[attn_warps][max_head_dim];
  __shared__ float m_s[attn_warps], l_s[attn_warps];
  const int t = blockIdx.x, h = blockIdx.y;
  const int d = kv.head_dim, kvh = kv.kv_heads;
  const kv_row r = rows[t];
  const int kv_head = h / (q_heads / kvh);
  const float* q = qkv + static_cast<size_t>(t) * (q_heads + 2 * kvh) * d + h * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    q_s[i] = q[i] * scale;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const auto* kc = reinterpret_cast<const bf16*>(kv.k);
  const auto* vc = reinterpret_cast<const bf16*>(kv.v);
  float acc[per_lane];
  for (float& a : acc)
    a = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const int lo = window > 0 ? max(0, r.pos - window + 1) : 0;
  for (int j = lo + warp; j <= r.pos; j += attn_warps) {
    const size_t off = kv_offset(kv, r, j, layer, kv_head);
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < per_lane; ++e) {
      const int i = lane + 32 * e;
      if (i < d)
        dot += q_s[i] * __bfloat162float(kc[off + i]);
    }
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = expf(m - m_new), p = expf(dot - m_new);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < per_lane; ++e) {
      const int i = lane + 32 * e;
      if (i < d)
        acc[e] = acc[e] * corr + p * __bfloat162float(vc[off + i]);
    }
    m = m_new;
  }
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < per_lane; ++e) {
    const int i = lane + 32 * e;
    if (i < d)
      acc_s[warp][i] = acc[e];
  }
  __syncthreads();
  float top = -INFINITY;
  for (int w = 0; w < attn_warps; ++w)
    top = fmaxf(top, m_s[w]);
  bf16* o = out + static_cast<size_t>(t) * q_heads * d + h * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int w = 0; w < attn_warps; ++w)
      if (l_s[w] > 0.0f) {
        const float c = expf(m_s[w] - top);
        num += acc_s[w][i] * c;
        den += l_s[w] * c;
      }
    o[i] = __float2bfloat16_rn(num / den);
  }
}

// The same attention for head sizes D of 32..256 (a power of two), built for decode: each
// key is read by a group of D / 8 lanes (16 bytes of K and of V per lane), so a warp
// takes 32 * 8 / D keys at a time and the block's warps many keys at once; one running
// max per warp, sums and outputs per lane, merged over the warp's groups and then the
// block's warps at the end.
constexpr int fast_warps = 8;

template <int D>
__global__ void attention_grouped_kernel(const float* qkv, const kv_row* rows, int q_heads,
                                         kv_shape kv, int layer, float scale, int window,
                                         bf16* out) {
  constexpr int G = D / 8;         // lanes per key
  constexpr int per_warp = 32 / G; // keys per warp per round
  __shared__ float acc_s[fast_warps][D];
  __shared__ float m_s[fast_warps], l_s[fast_warps];
  const int t = blockIdx.x, h = blockIdx.y, kvh = kv.kv_heads;
  const kv_row r = rows[t];
  const int kv_head = h / (q_heads / kvh);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane / G, slot = lane % G;
  const float* q = qkv + static_cast<size_t>(t) * (q_heads + 2 * kvh) * D + h * D + slot * 8;
  float qr[8];
#pragma unroll
  for (int e = 0; e < 8; ++e)
    qr[e] = q[e] * scale;
  const auto* kc = reinterpret_cast<const bf16*>(kv.k);
  const auto* vc = reinterpret_cast<const bf16*>(kv.v);
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e)
    acc[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const int lo = window > 0 ? max(0, r.pos - window + 1) : 0;
  // unroll keys per lane per round: their loads are in flight together.
  constexpr int unroll = 4;
  for (int base = lo + warp * per_warp * unroll; base <= r.pos;
       base += fast_warps * per_warp * unroll) {
    uint4 kraw[unroll], vraw[unroll];
    bool valid[unroll];
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      const int j = base + u * per_warp + g;
      valid[u] = j <= r.pos;
      kraw[u] = vraw[u] = make_uint4(0, 0, 0, 0);
      if (valid[u]) {
        const size_t off = kv_offset(kv, r, j, layer, kv_head) + slot * 8;
        kraw[u] = *reinterpret_cast<const uint4*>(kc + off);
        vraw[u] = *reinterpret_cast<const uint4*>(vc + off);
      }
    }
    float score[unroll];
    float top = -INFINITY;
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      const auto* k2 = reinterpret_cast<const __nv_bfloat162*>(&kraw[u]);
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 kf = __bfloat1622float2(k2[e]);
        dot = fmaf(qr[2 * e], kf.x, dot);
        dot = fmaf(qr[2 * e + 1], kf.y, dot);
      }
#pragma unroll
      for (int o = G / 2; o > 0; o >>= 1)
        dot += __shfl_xor_sync(full_mask, dot, o);
      score[u] = valid[u] ? dot : -INFINITY;
      top = fmaxf(top, score[u]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      top = fmaxf(top, __shfl_xor_sync(full_mask, top, o));
    const float m_new = fmaxf(m, top);
    const float corr = expf(m - m_new);
    l *= corr;
#pragma unroll
    for (int e = 0; e < 8; ++e)
      acc[e] *= corr;
#pragma unroll
    for (int u = 0; u < unroll; ++u) {
      const float p = valid[u] ? expf(score[u] - m_new) : 0.0f;
      l += p;
      const auto* v2 = reinterpret_cast<const __nv_bfloat162*>(&vraw[u]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 vf = __bfloat1622float2(v2[e]);
        acc[2 * e] = fmaf(p, vf.x, acc[2 * e]);
        acc[2 * e + 1] = fmaf(p, vf.y, acc[2 * e + 1]);
      }
    }
    m = m_new;
  }
  // Merge the warp's key groups (same m within the warp), then the block's warps.
#pragma unroll
  for (int o = G; o < 32; o <<= 1) {
    l += __shfl_xor_sync(full_mask, l, o);
#pragma unroll
    for (int e = 0; e < 8; ++e)
      acc[e] += __shfl_xor_sync(full_mask, acc[e], o);
  }
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
  if (g == 0)
#pragma unroll
    for (int e = 0; e < 8; ++e)
      acc_s[warp][slot * 8 + e] = acc[e];
  __syncthreads();
  float best = -INFINITY;
  for (int w = 0; w < fast_warps; ++w)
    best = fmaxf(best, m_s[w]);
  bf16* o = out + static_cast<size_t>(t) * q_heads * D + h * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int w = 0; w < fast_warps; ++w)
      if (l_s[w] > 0.0f) {
        const float c = expf(m_s[w] - best);
        num += acc_s[w][i] * c;
        den += l_s[w] * c;
      }
    o[i] = __float2bfloat16_rn(num / den);
  }
}

__global__ void silu_mul_kernel(const float* gu, int64_t n, size_t total, bf16* out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / n, j = i % n;
    const float g = gu[r * 2 * n + j], u = gu[r * 2 * n + n + j];
    out[i] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
  }
}

__global__ void unshard_kernel(const float* gathered, int rows, int64_t slice, int64_t vocab,
                               float* out) {
  const size_t total = static_cast<size_t>(rows) * vocab;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int64_t r = static_cast<int64_t>(i / vocab), tok = static_cast<int64_t>(i % vocab);
    const int64_t rank = tok / slice;
    out[i] = gathered[(rank * rows + r) * slice + tok % slice];
  }
}

__device__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_random_kernel(bf16* w, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(splitmix64(seed * 0x2545f4914f6cdd1dull + i) >> 40)
                    * (1.0f / 16777216.0f);
    w[i] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_kernel(float* w, size_t n, float value) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    w[i] = value;
}

__global__ void to_bf16_kernel(const float* src, bf16* dst, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

// y[r][j] = x[r] . w[j] for r < M: one warp per output column j, each lane streaming 16
// bytes of w's row per load (several loads in flight), x's rows from cache.
template <int M>
__global__ void gemv_kernel(const bf16* x, const bf16* w, float* y, int n, int k) {
  const int j = static_cast<int>((blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x)
                                 >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= n)
    return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j) * k);
  const int chunks = k / 8;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r)
    acc[r] = 0.0f;
#pragma unroll 4
  for (int c = lane; c < chunks; c += 32) {
    const uint4 wv = __ldg(wr + c);
    const auto* w2 = reinterpret_cast<const __nv_bfloat162*>(&wv);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * k)
                             + c);
      const auto* x2 = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 wf = __bfloat1622float2(w2[q]);
        const float2 xf = __bfloat1622float2(x2[q]);
        acc[r] = fmaf(wf.x, xf.x, acc[r]);
        acc[r] = fmaf(wf.y, xf.y, acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float v = warp_sum(acc[r]);
    if (lane == 0)
      y[static_cast<size_t>(r) * n + j] = v;
  }
}

// out[r][j] = bfloat16(silu(x[r] . w[j]) * (x[r] . w[n + j])) for j < n: the gate and up
// rows of one column in one warp (x read once for both), SiLU-and-mul in its epilogue.
template <int M>
__global__ void gemv_gate_up_kernel(const bf16* x, const bf16* w, bf16* out, int n, int k) {
  const int j = static_cast<int>((blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x)
                                 >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= n)
    return;
  const uint4* gate = reinterpret_cast<const uint4*>(w + static_cast<size_t>(j) * k);
  const uint4* up = reinterpret_cast<const uint4*>(w + static_cast<size_t>(n + j) * k);
  const int chunks = k / 8;
  float ag[M], au[M];
#pragma unroll
  for (int r = 0; r < M; ++r)
    ag[r] = au[r] = 0.0f;
#pragma unroll 4
  for (int c = lane; c < chunks; c += 32) {
    const uint4 gv = __ldg(gate + c), uv = __ldg(up + c);
    const auto* g2 = reinterpret_cast<const __nv_bfloat162*>(&gv);
    const auto* u2 = reinterpret_cast<const __nv_bfloat162*>(&uv);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * k)
                             + c);
      const auto* x2 = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 xf = __bfloat1622float2(x2[q]);
        const float2 gf = __bfloat1622float2(g2[q]);
        const float2 uf = __bfloat1622float2(u2[q]);
        ag[r] = fmaf(gf.y, xf.y, fmaf(gf.x, xf.x, ag[r]));
        au[r] = fmaf(uf.y, xf.y, fmaf(uf.x, xf.x, au[r]));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float g = warp_sum(ag[r]), u = warp_sum(au[r]);
    if (lane == 0)
      out[static_cast<size_t>(r) * n + j] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
  }
}

template <int M>
void launch_gemv(const bf16* x, const bf16* w, float* y, int n, int k, cudaStream_t s) {
  const int warps_per_block = threads / 32;
  const unsigned blocks = static_cast<unsigned>((n + warps_per_block - 1) / warps_per_block);
  gemv_kernel<M><<<blocks, threads, 0, s>>>(x, w, y, n, k);
}

unsigned grid_for(size_t n) {
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 4096 ? (blocks == 0 ? 1 : blocks) : 4096);
}

caf::error launched() {
  return CAFEX_CHECK(cudaGetLastError());
}

} // namespace

caf::error embed(const int32_t* tokens, const uint16_t* table, int64_t vocab0,
                 int64_t table_rows, int rows, int hidden, float* x, cudaStream_t s) {
  if (rows <= 0)
    return caf::none;
  embed_kernel<<<rows, threads, 0, s>>>(tokens, reinterpret_cast<const bf16*>(table), vocab0,
                                        table_rows, hidden, x);
  return launched();
}

caf::error add_rmsnorm(float* x, const float* add, const float* gain, uint16_t* y, int rows,
                       int hidden, float eps, const int* rows_index, cudaStream_t s) {
  if (rows <= 0)
    return caf::none;
  // A decode step has a row or a few: enough threads that each has a few columns.
  const int per_row = hidden >= 4096 ? 1024 : (hidden >= 1024 ? 512 : threads);
  add_rmsnorm_kernel<<<rows, per_row, 0, s>>>(x, add, gain, reinterpret_cast<bf16*>(y), hidden,
                                              eps, rows_index);
  return launched();
}

caf::error add_bias(float* c, const float* bias, int rows, int cols, cudaStream_t s) {
  const size_t n = static_cast<size_t>(rows) * cols;
  if (n == 0)
    return caf::none;
  add_bias_kernel<<<grid_for(n), threads, 0, s>>>(c, bias, n, cols);
  return launched();
}

caf::error qkv_rope_append(float* qkv, const float* bias, const float* inv_freq,
                           const kv_row* rows, int tokens, int q_heads, const kv_shape& kv,
                           int layer, cudaStream_t s) {
  if (tokens <= 0)
    return caf::none;
  qkv_rope_append_kernel<<<dim3(tokens, q_heads + kv.kv_heads), 64, 0, s>>>(qkv, bias,
                                                                            inv_freq, rows,
                                                                            q_heads, kv,
                                                                            layer);
  return launched();
}

caf::error attention(const float* qkv, const kv_row* rows, int tokens, int q_heads,
                     const kv_shape& kv, int layer, float scale, int window, uint16_t* out,
                     cudaStream_t s) {
  if (tokens <= 0)
    return caf::none;
  if (kv.head_dim > max_head_dim || kv.head_dim % 2 != 0)
    return make_error(errc::invalid_argument,
                      "attention kernel: head_dim " + std::to_string(kv.head_dim)
                        + " is not an even number up to " + std::to_string(max_head_dim));
  const dim3 grid(tokens, q_heads);
  auto* o = reinterpret_cast<bf16*>(out);
  switch (kv.head_dim) {
    case 32:
      attention_grouped_kernel<32>
        <<<grid, fast_warps * 32, 0, s>>>(qkv, rows, q_heads, kv, layer, scale, window, o);
      break;
    case 64:
      attention_grouped_kernel<64>
        <<<grid, fast_warps * 32, 0, s>>>(qkv, rows, q_heads, kv, layer, scale, window, o);
      break;
    case 128:
      attention_grouped_kernel<128>
        <<<grid, fast_warps * 32, 0, s>>>(qkv, rows, q_heads, kv, layer, scale, window, o);
      break;
    case 256:
      attention_grouped_kernel<256>
        <<<grid, fast_warps * 32, 0, s>>>(qkv, rows, q_heads, kv, layer, scale, window, o);
      break;
    default: // any other even size up to 256: one key per warp at a time
      attention_kernel<<<grid, attn_warps * 32, 0, s>>>(qkv, rows, q_heads, kv, layer, scale,
                                                        window, o);
  }
  return launched();
}

caf::error silu_mul(const float* gu, int rows, int64_t n, uint16_t* out, cudaStream_t s) {
  const size_t total = static_cast<size_t>(rows) * n;
  if (total == 0)
    return caf::none;
  silu_mul_kernel<<<grid_for(total), threads, 0, s>>>(gu, n, total,
                                                      reinterpret_cast<bf16*>(out));
  return launched();
}

caf::error unshard_logits(const float* gathered, int tp, int rows, int64_t slice,
                          int64_t vocab, float* out, cudaStream_t s) {
  const size_t total = static_cast<size_t>(rows) * vocab;
  if (total == 0 || tp <= 0)
    return caf::none;
  unshard_kernel<<<grid_for(total), threads, 0, s>>>(gathered, rows, slice, vocab, out);
  return launched();
}

bool gemv_fits(int m, int k, const void* x, const void* w) {
  return m >= 1 && m <= gemv_max_rows && k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0
         && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

caf::error gemv(int m, int n, int k, const uint16_t* x, const uint16_t* w, float* y,
                cudaStream_t s) {
  if (n <= 0)
    return caf::none;
  if (!gemv_fits(m, k, x, w))
    return make_error(errc::invalid_argument, "gemv: " + std::to_string(m) + " rows of "
                                                + std::to_string(k) + " (needs 1.."
                                                + std::to_string(gemv_max_rows)
                                                + " rows, k % 8 == 0, 16-byte aligned)");
  const auto* xb = reinterpret_cast<const bf16*>(x);
  const auto* wb = reinterpret_cast<const bf16*>(w);
  switch (m) {
    case 1: launch_gemv<1>(xb, wb, y, n, k, s); break;
    default: launch_gemv<2>(xb, wb, y, n, k, s); break;
  }
  return launched();
}

caf::error gemv_gate_up(int m, int n, int k, const uint16_t* x, const uint16_t* w,
                        uint16_t* out, cudaStream_t s) {
  if (n <= 0)
    return caf::none;
  if (!gemv_fits(m, k, x, w))
    return make_error(errc::invalid_argument, "gemv_gate_up: operands gemv does not take");
  const auto* xb = reinterpret_cast<const bf16*>(x);
  const auto* wb = reinterpret_cast<const bf16*>(w);
  auto* ob = reinterpret_cast<bf16*>(out);
  const int warps_per_block = threads / 32;
  const unsigned blocks = static_cast<unsigned>((n + warps_per_block - 1) / warps_per_block);
  if (m == 1)
    gemv_gate_up_kernel<1><<<blocks, threads, 0, s>>>(xb, wb, ob, n, k);
  else
    gemv_gate_up_kernel<2><<<blocks, threads, 0, s>>>(xb, wb, ob, n, k);
  return launched();
}

caf::error fill_random(uint16_t* w, size_t n, uint64_t seed, float scale, cudaStream_t s) {
  if (n == 0)
    return caf::none;
  fill_random_kernel<<<grid_for(n), threads, 0, s>>>(reinterpret_cast<bf16*>(w), n, seed,
                                                     scale);
  return launched();
}

caf::error fill(float* w, size_t n, float value, cudaStream_t s) {
  if (n == 0)
    return caf::none;
  fill_kernel<<<grid_for(n), threads, 0, s>>>(w, n, value);
  return launched();
}

caf::error to_bf16(const float* src, uint16_t* dst, size_t n, cudaStream_t s) {
  if (n == 0)
    return caf::none;
  to_bf16_kernel<<<grid_for(n), threads, 0, s>>>(src, reinterpret_cast<bf16*>(dst), n);
  return launched();
}

} // namespace cafex::llama_kernels
