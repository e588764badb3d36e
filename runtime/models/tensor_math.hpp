// Small CPU kernels of the reference model: counter-based weight generation, RMSNorm,
// SiLU, softmax, sinusoidal positions, greedy argmax and the fixed-point conversion that
// makes tensor-parallel sums exact. Pure functions on raw buffers; no state, no globals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cafex {

/// Fixed-point scale of TP partial sums: a contribution x becomes round(x * 2^24) as
/// int64 (to nearest, ties to even). 2^-24 (about 6e-8) resolution, and |x| up to 2^26
/// before clamping, far above the O(1) activations of the reference model.
constexpr int fixed_point_bits = 24;
constexpr double fixed_point_scale = static_cast<double>(int64_t{1} << fixed_point_bits);

/// splitmix64 (add the golden gamma, then mix): the core of the weight generator.
uint64_t splitmix64(uint64_t x);

/// Element `index` of tensor `tensor_id` under `seed`: uniform with mean 0 and standard
/// deviation `stddev`. Counter-based, so any shard generates exactly its slice.
float weight_value(uint64_t seed, uint64_t tensor_id, uint64_t index, float stddev);

/// Fills `n` elements with weight_value(seed, tensor_id, first + i, stddev).
void fill_weights(float* dst, size_t n, uint64_t seed, uint64_t tensor_id, uint64_t first,
                  float stddev);

/// y[r] = x[r] / rms(x[r]) * gain for `rows` rows of `cols` values (eps 1e-6).
void rmsnorm(const float* x, const float* gain, float* y, size_t rows, size_t cols);

/// In place x = x * sigmoid(x).
void silu_inplace(float* x, size_t n);

/// In place softmax of the first `n` values of `x` (max subtracted first).
void softmax_inplace(float* x, size_t n);

/// Frequencies of the sinusoidal position encoding: one per (sin, cos) pair.
std::vector<double> position_frequencies(size_t hidden);

/// Adds the sinusoidal encoding of position `pos` to `x[0..hidden)`; `freqs` comes from
/// position_frequencies(hidden).
void add_position_encoding(float* x, int64_t pos, const std::vector<double>& freqs,
                           size_t hidden);

/// Index of the largest value; ties go to the lowest index.
int32_t argmax(const float* x, size_t n);

/// acc[i] += round(c[i] * 2^24). NaN counts as 0; |c| over 2^26 is clamped.
void accumulate_fixed(const float* c, int64_t* acc, size_t n);

/// x[i] += float(acc[i] * 2^-24).
void add_from_fixed(const int64_t* acc, float* x, size_t n);

} // namespace cafex
