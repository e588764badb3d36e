// A tensor descriptor: what CAF messages carry about a tensor whose bytes travel out of
// band (Gloo, NCCL, shared memory). Never the bytes themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cafex {

enum class dtype : uint8_t { f32 = 0, f16, bf16, i32, i64, u8 };

/// Bytes per element of `t`.
size_t element_size(dtype t);
const char* to_string(dtype t);

struct tensor_desc {
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  std::string device = "cpu"; ///< "cpu" or "cuda:N"
  uint64_t byte_size = 0;     ///< product(shape) * element_size(type)
  uint64_t step_id = 0;       ///< the step whose data this is
  std::string tag;            ///< which tensor of the step ("hidden", ...)

  int64_t numel() const;
  /// True when byte_size matches shape and dtype.
  bool consistent() const;
};

/// Describes a tensor of `type` and `shape`, computing its byte size.
tensor_desc make_tensor_desc(dtype type, std::vector<int64_t> shape, uint64_t step_id,
                             std::string tag, std::string device = "cpu");

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tensor_desc& x) {
  return f(caf::meta::type_name("cafex::tensor_desc"), x.type, x.shape, x.device, x.byte_size,
           x.step_id, x.tag);
}

} // namespace cafex
