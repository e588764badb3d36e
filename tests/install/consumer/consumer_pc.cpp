// Built with pkg-config's flags for cafex: a header and a library symbol are enough.
#include <cstdio>

#include "runtime/error.hpp"

int main() {
  auto err = cafex::make_error(cafex::errc::timeout, "pkg-config works");
  std::printf("%s\n", cafex::describe(err).c_str());
  return 0;
}
