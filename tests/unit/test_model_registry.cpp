// Which runner a worker loads for a model name on its device.
#include <doctest/doctest.h>

#include "runtime/models/model_runner.hpp"
#include "runtime/models/reference_model.hpp"

using namespace cafex;

TEST_CASE("resolve picks name-device when registered, else the name itself") {
  auto& reg = model_registry::instance();
  CHECK(reg.resolve("reference", "cpu") == "reference");
  CHECK(reg.resolve("unknown-model", "cuda") == "unknown-model");
  reg.add("toy", [] { return std::make_unique<reference_model>(); });
  reg.add("toy-cuda", [] { return std::make_unique<reference_model>(); });
  CHECK(reg.resolve("toy", "cuda") == "toy-cuda");
  CHECK(reg.resolve("toy", "cpu") == "toy");
#ifdef CAFEX_HAVE_CUDA
  CHECK(reg.resolve("reference", "cuda") == "reference-cuda");
#else
  CHECK(reg.resolve("reference", "cuda") == "reference");
#endif
}
