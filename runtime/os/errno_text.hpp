// The text of an errno value, safe to call from any thread (std::strerror may share one
// buffer between threads: clang-tidy's concurrency-mt-unsafe flags it).
#pragma once

#include <cstring>
#include <string>

namespace cafex {

/// What `err` (an errno value) means, e.g. "No such file or directory".
inline std::string errno_text(int err) {
  char buf[256];
  // The GNU strerror_r (g++ defines _GNU_SOURCE): returns the text, in `buf` or static.
  return strerror_r(err, buf, sizeof(buf));
}

} // namespace cafex
