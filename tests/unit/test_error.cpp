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

TEST_CASE("a message built from another error's description names the code once") {
  auto inner = make_error(errc::worker_lost, "rank 1 on node a is gone");
  auto outer = make_error(errc::worker_lost, describe(inner));
  CHECK(describe(outer) == "worker_lost: rank 1 on node a is gone");
  // message_of: the text alone, for a prefix of the caller's own.
  CHECK(message_of(inner) == "rank 1 on node a is gone");
  CHECK(message_of(outer) == "rank 1 on node a is gone");
  auto other = make_error(errc::invalid_config, "timeout: is a word here");
  CHECK(describe(other) == "invalid_config: timeout: is a word here");
}

TEST_CASE("tensor descriptors compute and check their byte size") {
  auto d = make_tensor_desc(dtype::f32, {3, 128}, 7, "hidden");
  CHECK(d.byte_size == 3 * 128 * 4);
  CHECK(d.consistent());
  d.byte_size += 1;
  CHECK_FALSE(d.consistent());
}
