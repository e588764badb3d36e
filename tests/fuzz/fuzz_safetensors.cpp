// libFuzzer target: a safetensors file as a checkpoint hands it to a rank (a hostile or
// corrupt download), opened as the hf runner opens it (runtime/models/hf/safetensors.cpp:
// mapped, the 8-byte length, the JSON header, every entry checked). Invariants besides
// "no crash, no sanitizer report":
//  - a refused file comes with a reason that names the file;
//  - every tensor of an accepted file lies inside the mapping and holds exactly
//    shape x dtype bytes, so reading all of it as float32 stays in bounds (and does).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_check.hpp"
#include "runtime/error.hpp"
#include "runtime/models/hf/safetensors.hpp"

using namespace cafex::hf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The file lives in memory (memfd): the parser maps it like any checkpoint file.
  int fd = ::memfd_create("fuzz-safetensors", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  size_t done = 0;
  while (done < size) {
    auto n = ::write(fd, data + done, size - done);
    FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto file = safetensors_file::open(path);
  if (!file) {
    FUZZ_CHECK(cafex::describe(file.error()).find(path) != std::string::npos);
  } else {
    weight_buffer out;
    for (const auto& name : (*file)->names()) {
      const tensor_view* t = (*file)->find(name);
      FUZZ_CHECK(t != nullptr);
      FUZZ_CHECK(static_cast<size_t>(t->numel()) * dtype_size(t->type) == t->bytes);
      out.clear();
      if (t->bytes <= (size_t{1} << 20)) {
        out.resize(static_cast<size_t>(t->numel()));
        to_float(t->type, t->data, out.data(), out.size());
      }
    }
  }
  ::close(fd);
  return 0;
}
