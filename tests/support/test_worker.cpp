// A worker program with extra methods for tests, the way a host program registers its
// own: `cafex_test_worker worker ...` runs worker_main with these added, and
// `cafex_test_worker host LEVEL` is a host that embeds an executor (the logging tests).
// The test models (sleepy, failing_load) come from the fault-injection module, always
// registered here.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "chaos/worker_faults.hpp"
#include "actors/worker_main.hpp"
#include "cafex/executor.hpp"
#include "runtime/error.hpp"

using namespace cafex;

namespace {

/// `cafex_test_worker host LEVEL`: a host program that embeds an executor at log level
/// LEVEL (its workers are this program again), runs one step and shuts down. It prints
/// nothing itself unless something fails, so its output is the library's alone.
int run_host(const std::string& level) {
  executor_options o;
  o.parallel.tensor_parallel_size = 2;
  o.log_level = level;
  auto ex = executor::start(o);
  if (!ex) {
    std::fprintf(stderr, "host: start failed: %s\n", describe(ex.error()).c_str());
    return 1;
  }
  scheduler_output step;
  step.new_requests.push_back({"r0", {1, 2, 3}});
  auto out = (*ex)->execute_model(step);
  if (!out || out->sampled.size() != 1) {
    std::fprintf(stderr, "host: step failed: %s\n",
                 out ? "no token" : describe(out.error()).c_str());
    return 1;
  }
  (*ex)->shutdown();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "host")
    return run_host(argv[2]);
  if (argc < 2 || std::string(argv[1]) != "worker") {
    std::fprintf(stderr, "usage: cafex_test_worker worker ... | host LOG_LEVEL\n");
    return 2;
  }
  register_fault_models();
  method_table extra;
  // {"ms": N, "rank": R}: sleeps N ms (only on rank R when given), answers the rank.
  extra.add("sleep_ms", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (!a.contains("rank") || a["rank"].get<int>() == st.rpc_rank)
      std::this_thread::sleep_for(std::chrono::milliseconds(a.value("ms", 0)));
    return json(st.rpc_rank);
  });
  extra.add("fail_on", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (a.get<int>() == st.rpc_rank)
      return make_error(errc::method_failed,
                        "rank " + std::to_string(st.rpc_rank) + " was told to fail");
    return json(st.rpc_rank);
  });
  extra.add("throw", [](worker_state&, const json&) -> caf::expected<json> {
    throw std::runtime_error("thrown on purpose");
  });
  // {"rank": R}: breaks rank R's TP communicator (its next all-reduce fails, the link
  // closes); reinitialize_distributed rebuilds it.
  extra.add("break_tp", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (a.value("rank", -1) == st.rpc_rank)
      st.tp_group->inject_break();
    return json(st.rpc_rank);
  });
  return worker_main(argc, argv, 2, extra);
}
