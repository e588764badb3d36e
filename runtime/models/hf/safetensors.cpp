#include "runtime/models/hf/safetensors.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex::hf {

namespace {

// The safetensors reference implementation refuses headers above 100 MB.
constexpr uint64_t max_header_bytes = 100ull << 20;

caf::error bad_file(const std::string& path, const std::string& what) {
  return make_error(errc::invalid_config,
                    fmt::format("checkpoint file {}: {}: re-export or re-download it", path,
                                what));
}

bool parse_dtype(const std::string& s, dtype& out) {
  if (s == "F32")
    out = dtype::f32;
  else if (s == "BF16")
    out = dtype::bf16;
  else if (s == "F16")
    out = dtype::f16;
  else
    return false;
  return true;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t bits = 0;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { // subnormal: normalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13; // inf or NaN
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

} // namespace

const char* to_string(dtype d) {
  switch (d) {
    case dtype::f32: return "F32";
    case dtype::bf16: return "BF16";
    case dtype::f16: return "F16";
  }
  return "?";
}

size_t dtype_size(dtype d) {
  return d == dtype::f32 ? 4 : 2;
}

int64_t tensor_view::numel() const {
  int64_t n = 1;
  for (auto s : shape)
    n *= s;
  return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

void to_float(dtype type, const uint8_t* src, float* dst, size_t count) {
  if (count == 0) // an empty tensor: its pointers may be null (memcpy forbids it)
    return;
  switch (type) {
    case dtype::f32: std::memcpy(dst, src, count * sizeof(float)); return;
    case dtype::bf16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(&dst[i], &bits, sizeof(float));
      }
      return;
    case dtype::f16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half_to_float(h);
      }
      return;
  }
}

uint16_t float_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if (std::isnan(x))
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

caf::expected<std::unique_ptr<safetensors_file>>
safetensors_file::open(const std::string& path) {
  std::unique_ptr<safetensors_file> f{new safetensors_file};
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return bad_file(path, "cannot open it (" + errno_text(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto e = errno;
    ::close(fd);
    return bad_file(path, "cannot stat it (" + errno_text(e) + ")");
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return bad_file(path, fmt::format("{} bytes is too short for a safetensors header "
                                      "(truncated?)",
                                      f->size_));
  }
  void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  auto map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED)
    return bad_file(path, "cannot map it (" + errno_text(map_errno) + ")");
  f->map_ = m;
  const auto* base = static_cast<const uint8_t*>(m);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | base[i];
  if (n > max_header_bytes || n > f->size_ - 8)
    return bad_file(path, fmt::format("its header claims {} bytes but the file has {} after "
                                      "the length (truncated or not a safetensors file)",
                                      n, f->size_ - 8));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n);
  } catch (const std::exception& e) {
    return bad_file(path, std::string("its header is not JSON: ") + e.what());
  }
  if (!header.is_object())
    return bad_file(path, "its header is not a JSON object");
  const uint8_t* data = base + 8 + n;
  const uint64_t data_bytes = f->size_ - 8 - n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      continue;
    const auto& e = it.value();
    auto bad = [&](const std::string& what) {
      return bad_file(path, "tensor '" + it.key() + "': " + what);
    };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape")
        || !e.contains("data_offsets"))
      return bad("needs dtype, shape and data_offsets");
    tensor_view t;
    t.name = it.key();
    t.file = path;
    if (!e["dtype"].is_string())
      return bad("dtype is not a string");
    auto ds = e["dtype"].get<std::string>();
    if (!parse_dtype(ds, t.type))
      return bad("dtype " + ds
                 + " is not supported (F32, BF16 and F16 are; a quantised "
                   "checkpoint is not)");
    if (!e["shape"].is_array())
      return bad("shape is not an array");
    uint64_t numel = 1;
    for (const auto& s : e["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0)
        return bad("shape " + e["shape"].dump() + " has an entry that is not a size");
      auto v = s.get<uint64_t>();
      if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / v)
        return bad("shape " + e["shape"].dump() + " is too large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned()
        || !off[1].is_number_unsigned())
      return bad("data_offsets is not [begin, end]");
    auto b = off[0].get<uint64_t>();
    auto end = off[1].get<uint64_t>();
    if (b > end || end > data_bytes)
      return bad(fmt::format("data_offsets [{}, {}] fall outside the {} data bytes "
                             "(truncated file?)",
                             b, end, data_bytes));
    if (end - b != numel * dtype_size(t.type))
      return bad(fmt::format("holds {} bytes but shape {} of {} needs {}", end - b,
                             shape_text(t.shape), ds, numel * dtype_size(t.type)));
    t.data = data + b;
    t.bytes = static_cast<size_t>(end - b);
    f->tensors_.emplace(t.name, std::move(t));
  }
  return f;
}

safetensors_file::~safetensors_file() {
  if (map_ != nullptr)
    ::munmap(map_, size_);
}

const tensor_view* safetensors_file::find(const std::string& name) const {
  auto i = tensors_.find(name);
  return i == tensors_.end() ? nullptr : &i->second;
}

std::vector<std::string> safetensors_file::names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors_)
    out.push_back(kv.first);
  return out;
}

void safetensors_file::release_pages() {
  if (map_ != nullptr)
    ::madvise(map_, size_, MADV_DONTNEED);
}

caf::expected<checkpoint> checkpoint::open(const std::string& dir) {
  checkpoint c;
  c.dir_ = dir;
  auto exists = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  };
  const auto index = dir + "/model.safetensors.index.json";
  if (exists(index)) {
    nlohmann::json j;
    try {
      std::string text;
      {
        FILE* fp = std::fopen(index.c_str(), "rb");
        if (fp == nullptr)
          return bad_file(index, "cannot open it (" + errno_text(errno) + ")");
        char buf[65536];
        size_t got;
        while ((got = std::fread(buf, 1, sizeof buf, fp)) > 0)
          text.append(buf, got);
        std::fclose(fp);
      }
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      return bad_file(index, std::string("not JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return bad_file(index, "it has no \"weight_map\" object");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return bad_file(index, "weight_map entry '" + it.key() + "' is not a file name");
      auto file = it.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "..")
        return bad_file(index, "weight_map entry '" + it.key() + "' names '" + file
                                 + "', not a file of this directory");
      if (!exists(dir + "/" + file))
        return bad_file(index, "weight_map names " + file + " (for '" + it.key()
                                 + "'), which is not in " + dir);
      c.weight_map_.emplace(it.key(), file);
    }
    return c;
  }
  if (exists(dir + "/model.safetensors")) {
    c.single_ = "model.safetensors";
    return c;
  }
  return make_error(errc::invalid_config,
                    "model directory " + dir
                      + " has neither model.safetensors nor "
                        "model.safetensors.index.json: point --model at a Hugging Face "
                        "checkpoint directory");
}

caf::expected<safetensors_file*> checkpoint::file_of(const std::string& name) {
  std::string file = single_;
  if (!weight_map_.empty()) {
    auto i = weight_map_.find(name);
    if (i == weight_map_.end())
      return make_error(errc::invalid_config, "checkpoint " + dir_ + ": tensor '" + name
                                                + "' is missing (the "
                                                  "index names no file for it)");
    file = i->second;
  }
  auto& slot = files_[file];
  if (!slot) {
    auto f = safetensors_file::open(dir_ + "/" + file);
    if (!f) {
      files_.erase(file);
      return f.error();
    }
    slot = std::move(*f);
  }
  return slot.get();
}

bool checkpoint::has(const std::string& name) const {
  if (!weight_map_.empty())
    return weight_map_.count(name) != 0;
  auto i = files_.find(single_);
  if (i != files_.end())
    return i->second->find(name) != nullptr;
  auto f = safetensors_file::open(dir_ + "/" + single_);
  return f && (*f)->find(name) != nullptr;
}

caf::expected<const tensor_view*> checkpoint::tensor(const std::string& name) {
  auto f = file_of(name);
  if (!f)
    return f.error();
  const auto* t = (*f)->find(name);
  if (t == nullptr)
    return make_error(errc::invalid_config, "checkpoint file " + (*f)->path() + ": tensor '"
                                              + name + "' is missing");
  return t;
}

caf::expected<const tensor_view*> checkpoint::tensor(const std::string& name,
                                                     const std::vector<int64_t>& shape) {
  auto t = tensor(name);
  if (!t)
    return t;
  if ((*t)->shape != shape)
    return make_error(errc::invalid_config,
                      fmt::format("checkpoint file {}: tensor '{}' has shape {}, but "
                                  "config.json implies {}: the weights do not belong to "
                                  "this config",
                                  (*t)->file, name, shape_text((*t)->shape),
                                  shape_text(shape)));
  return t;
}

void checkpoint::read_block(const tensor_view& t, int64_t row0, int64_t rows, int64_t col0,
                            int64_t cols, weight_buffer& out) {
  const int64_t width = t.shape.size() >= 2 ? t.shape.back() : 1;
  const size_t es = dtype_size(t.type);
  const size_t at = out.size();
  out.resize(at + static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const auto* src = t.data + static_cast<size_t>(((row0 + r) * width + col0)) * es;
    to_float(t.type, src, &out[at + static_cast<size_t>(r * cols)], static_cast<size_t>(cols));
  }
}

void checkpoint::release(const tensor_view& t) {
  if (t.bytes == 0)
    return;
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // Back to the page that holds the first byte (pointer arithmetic, no int-to-pointer).
  const auto* first = t.data - (reinterpret_cast<uintptr_t>(t.data) & (page - 1));
  const auto length = static_cast<size_t>(t.data + t.bytes - first);
  // A read-only private file mapping: dropped pages are read again from the file if
  // touched, so the neighbours' pages sharing the edges lose nothing.
  ::madvise(const_cast<uint8_t*>(first), length, MADV_DONTNEED);
}

void checkpoint::release_pages() {
  for (auto& kv : files_)
    kv.second->release_pages();
}

} // namespace cafex::hf
