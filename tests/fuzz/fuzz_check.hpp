// What a fuzz target asserts: a broken invariant aborts, so libFuzzer keeps the input as a
// crash (like a sanitizer report) and scripts/fuzz fails. Not assert(): it must also hold
// in builds with NDEBUG.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);       \
      std::abort();                                                                           \
    }                                                                                         \
  } while (false)
