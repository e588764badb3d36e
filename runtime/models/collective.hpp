// The tensor-parallel collective a model runner sees. Pure interface: Gloo (CPU), NCCL
// (GPU) and the in-process fake implement it in transport/.
#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/error.hpp>

namespace cafex {

/// A TP group: `size()` ranks that sum buffers together. Every rank calls `all_reduce_sum`
/// with buffers of the same length, in the same order.
class collective {
public:
  virtual ~collective() = default;

  /// This rank's index inside the group.
  virtual int rank() const = 0;

  /// Number of ranks in the group.
  virtual int size() const = 0;

  /// Sums `count` values element-wise across the group, in place. Integer sums are exact
  /// and so independent of the order in which ranks contribute: the reference model
  /// reduces in fixed point to keep tokens identical for every TP size.
  virtual caf::error all_reduce_sum(int64_t* data, size_t count) = 0;
};

/// The collective of a group of one: nothing to exchange.
class solo_collective final : public collective {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  caf::error all_reduce_sum(int64_t*, size_t) override { return caf::none; }
};

} // namespace cafex
