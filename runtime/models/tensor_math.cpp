#include "runtime/models/tensor_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace cafex {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

namespace {

// Uniform on [-sqrt(3), sqrt(3)) has standard deviation 1.
constexpr float sqrt3 = 1.7320508075688772f;

inline float uniform_pm1(uint64_t key, uint64_t index) {
  // splitmix64 as a counter-based generator: element i of a stream is mix(key + i*gamma).
  uint64_t h = splitmix64(key + index * 0x9e3779b97f4a7c15ULL);
  // 24 random bits -> [0, 1) exactly representable in float, then [-1, 1).
  float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  return 2.0f * u - 1.0f;
}

inline uint64_t tensor_key(uint64_t seed, uint64_t tensor_id) {
  return splitmix64(splitmix64(seed) ^ (tensor_id * 0xd6e8feb86659fd93ULL));
}

} // namespace

float weight_value(uint64_t seed, uint64_t tensor_id, uint64_t index, float stddev) {
  return uniform_pm1(tensor_key(seed, tensor_id), index) * (sqrt3 * stddev);
}

void fill_weights(float* dst, size_t n, uint64_t seed, uint64_t tensor_id, uint64_t first,
                  float stddev) {
  const uint64_t key = tensor_key(seed, tensor_id);
  const float a = sqrt3 * stddev;
  for (size_t i = 0; i < n; ++i)
    dst[i] = uniform_pm1(key, first + i) * a;
}

void rmsnorm(const float* x, const float* gain, float* y, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double ss = 0.0;
    for (size_t c = 0; c < cols; ++c)
      ss += static_cast<double>(xr[c]) * xr[c];
    const float inv = static_cast<float>(1.0
                                         / std::sqrt(ss / static_cast<double>(cols) + 1e-6));
    for (size_t c = 0; c < cols; ++c)
      yr[c] = xr[c] * inv * gain[c];
  }
}

void silu_inplace(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void softmax_inplace(float* x, size_t n) {
  if (n == 0)
    return;
  const float mx = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i)
    x[i] *= inv;
}

std::vector<double> position_frequencies(size_t hidden) {
  // Classic transformer encoding: pairs (sin, cos) at geometric frequencies.
  std::vector<double> freqs;
  for (size_t i = 0; i < hidden; i += 2)
    freqs.push_back(std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(hidden)));
  return freqs;
}

void add_position_encoding(float* x, int64_t pos, const std::vector<double>& freqs,
                           size_t hidden) {
  for (size_t i = 0; i < hidden; i += 2) {
    const double angle = static_cast<double>(pos) * freqs[i / 2];
    x[i] += static_cast<float>(std::sin(angle));
    if (i + 1 < hidden)
      x[i + 1] += static_cast<float>(std::cos(angle));
  }
}

int32_t argmax(const float* x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (x[i] > x[best]) // strict: ties keep the lower index
      best = i;
  return static_cast<int32_t>(best);
}

void accumulate_fixed(const float* c, int64_t* acc, size_t n) {
  // Branch-free rounding (signs are random, so branches mispredict): adding 1.5 * 2^52
  // puts any |y| < 2^51 where a double's ulp is 1, so the add rounds y to the nearest
  // integer (ties to even, the default FP mode) and the low mantissa bits hold it.
  // Clamping to 2^50 keeps that valid and lets thousands of terms sum without overflow.
  constexpr double magic = 6755399441055744.0; // 1.5 * 2^52
  constexpr double limit = 1125899906842624.0; // 2^50
  int64_t magic_bits;
  std::memcpy(&magic_bits, &magic, sizeof magic);
  for (size_t i = 0; i < n; ++i) {
    double y = static_cast<double>(c[i]) * fixed_point_scale;
    y = y == y ? y : 0.0; // NaN counts as 0
    y = std::min(std::max(y, -limit), limit);
    const double z = y + magic;
    int64_t bits;
    std::memcpy(&bits, &z, sizeof z);
    acc[i] += bits - magic_bits;
  }
}

void add_from_fixed(const int64_t* acc, float* x, size_t n) {
  constexpr double inv = 1.0 / fixed_point_scale;
  for (size_t i = 0; i < n; ++i)
    x[i] += static_cast<float>(static_cast<double>(acc[i]) * inv);
}

} // namespace cafex
