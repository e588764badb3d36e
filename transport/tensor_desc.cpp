#include "transport/tensor_desc.hpp"

namespace cafex {

size_t element_size(dtype t) {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::i32: return 4;
    case dtype::i64: return 8;
    case dtype::u8: return 1;
  }
  return 0;
}

const char* to_string(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::i32: return "i32";
    case dtype::i64: return "i64";
    case dtype::u8: return "u8";
  }
  return "unknown";
}

int64_t tensor_desc::numel() const {
  int64_t n = 1;
  for (auto d : shape)
    n *= d;
  return n;
}

bool tensor_desc::consistent() const {
  for (auto d : shape)
    if (d < 0)
      return false;
  return byte_size == static_cast<uint64_t>(numel()) * element_size(type);
}

tensor_desc make_tensor_desc(dtype type, std::vector<int64_t> shape, uint64_t step_id,
                             std::string tag, std::string device) {
  tensor_desc d;
  d.type = type;
  d.shape = std::move(shape);
  d.device = std::move(device);
  d.step_id = step_id;
  d.tag = std::move(tag);
  d.byte_size = static_cast<uint64_t>(d.numel()) * element_size(type);
  return d;
}

} // namespace cafex
