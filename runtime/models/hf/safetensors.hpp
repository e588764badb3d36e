// Hugging Face checkpoints on disk: safetensors files, memory-mapped, and the directory
// that holds one model.safetensors or shards named by model.safetensors.index.json.
// Pure file reading (no model logic): every malformed byte becomes an error that names the
// file and the tensor, never a crash, so a rank can refuse a bad checkpoint at start-up.
//
// The format (github.com/huggingface/safetensors): 8 bytes little-endian N, then N bytes of
// JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {..}}, then the data; offsets count from the end of the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/hf/weight_buffer.hpp"

namespace cafex::hf {

/// The element types a checkpoint may hold; the model computes in float32.
enum class dtype : uint8_t { f32, bf16, f16 };

const char* to_string(dtype d);
size_t dtype_size(dtype d);

/// One tensor of a mapped file. `data` points into the mapping (not aligned for floats).
struct tensor_view {
  std::string name;
  std::string file; ///< the file's path, for messages
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t bytes = 0;

  int64_t numel() const;
};

/// Converts `count` elements of `type` at `src` (any alignment) to float32.
void to_float(dtype type, const uint8_t* src, float* dst, size_t count);

/// float32 -> bfloat16 bits (round to nearest even, NaN kept): tests write BF16 with it.
uint16_t float_to_bf16(float x);

/// One safetensors file, mapped read-only for the object's life.
class safetensors_file {
public:
  /// Maps `path` and checks its header: length within the file, a JSON object, each entry
  /// with a known dtype (F32, BF16, F16; anything else, such as the I8/U8/F8 of a
  /// quantised checkpoint, is refused by name), a non-negative shape, offsets inside the
  /// data and matching shape x dtype. errc::invalid_config naming the file and the tensor.
  static caf::expected<std::unique_ptr<safetensors_file>> open(const std::string& path);

  ~safetensors_file();
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  const std::string& path() const { return path_; }
  /// Null when the file has no such tensor.
  const tensor_view* find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Advises the kernel that the mapping is no longer needed (the weights were copied):
  /// its pages leave this process's resident set.
  void release_pages();

private:
  safetensors_file() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, tensor_view> tensors_;
};

/// The weights of one model directory: model.safetensors, or the shards that
/// model.safetensors.index.json names (its "weight_map": tensor -> file). Files are mapped
/// on first use.
class checkpoint {
public:
  /// Finds the weight files of `dir`. errc::invalid_config when there are none, the index
  /// is malformed, or it names a file that does not exist.
  static caf::expected<checkpoint> open(const std::string& dir);

  /// The tensor `name`, mapped. errc::invalid_config naming the tensor (and the file the
  /// index puts it in) when it is missing or its file is malformed.
  caf::expected<const tensor_view*> tensor(const std::string& name);
  /// Whether the checkpoint names `name` (without mapping anything).
  bool has(const std::string& name) const;

  /// tensor(name) with exactly `shape`, else errc::invalid_config naming both shapes.
  caf::expected<const tensor_view*> tensor(const std::string& name,
                                           const std::vector<int64_t>& shape);

  /// Rows [row0, row0 + rows) of a 2-D tensor (or all of a 1-D one when rows covers it),
  /// columns [col0, col0 + cols), as float32 row-major [rows x cols] appended to `out`.
  static void read_block(const tensor_view& t, int64_t row0, int64_t rows, int64_t col0,
                         int64_t cols, weight_buffer& out);

  /// Drops the mapped pages of one tensor from the resident set (after it was copied), so
  /// a rank's peak memory stays its shard plus one tensor.
  static void release(const tensor_view& t);

  /// release_pages() on every mapped file.
  void release_pages();

  const std::string& dir() const { return dir_; }

private:
  caf::expected<safetensors_file*> file_of(const std::string& name);

  std::string dir_;
  std::map<std::string, std::string> weight_map_; ///< tensor -> file (empty: one file)
  std::string single_;                            ///< model.safetensors when unsharded
  std::map<std::string, std::unique_ptr<safetensors_file>> files_;
};

/// "[2, 3]".
std::string shape_text(const std::vector<int64_t>& shape);

} // namespace cafex::hf
