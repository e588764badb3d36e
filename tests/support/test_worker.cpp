// A worker program with extra methods for tests, the way a host program registers its
// own: `cafex_test_worker worker ...` runs worker_main with these added. The test models
// (sleepy, failing_load) come from the fault-injection module, always registered here.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "chaos/worker_faults.hpp"
#include "actors/worker_main.hpp"
#include "runtime/error.hpp"

using namespace cafex;

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "worker") {
    std::fprintf(stderr, "usage: cafex_test_worker worker ...\n");
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
      return make_error(errc::method_failed, "rank " + std::to_string(st.rpc_rank)
                                               + " was told to fail");
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
