#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "transport/tensor_desc.hpp"

using namespace cafex;

TEST_CASE("cafex errors carry their code and text") {
  auto err = make_error(errc::timeout, "rank 1 on node a did not answer within 2 s");
  CHECK(code_of(err) == errc::timeout);
  CHECK(describe(err) == "timeout: rank 1 on node a did not answer within 2 s");
  CHECK(code_of(caf::error{}) == errc::none);
}

TEST_CASE("tensor descriptors compute and check their byte size") {
  auto d = make_tensor_desc(dtype::f32, {3, 128}, 7, "hidden");
  CHECK(d.byte_size == 3 * 128 * 4);
  CHECK(d.consistent());
  d.byte_size += 1;
  CHECK_FALSE(d.consistent());
}
