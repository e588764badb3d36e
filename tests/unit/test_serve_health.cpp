// What cafex-serve's /health says for each mix of worker states, and which HTTP status it
// answers: a normal recovery is "recovering" and 200 (requests wait and go on), never
// 503 "failed" (issue #14, item 10); "failed" only once the executor gave up.
#include <doctest/doctest.h>

#include "health_monitor.hpp"
#include "runtime/error.hpp"

using namespace cafex;
using namespace cafex::serve;

namespace {

health_snapshot judged(std::vector<health_state> states) {
  std::vector<worker_health> ws;
  for (size_t r = 0; r < states.size(); ++r) {
    worker_health w;
    w.rank = static_cast<int32_t>(r);
    w.node_id = "n";
    w.state = states[r];
    ws.push_back(w);
  }
  return judge_health(ws);
}

} // namespace

TEST_CASE("every worker healthy: healthy, 200") {
  auto h = judged({health_state::healthy, health_state::healthy});
  CHECK(h.status() == "healthy");
  CHECK(h.http_status() == 200);
}

TEST_CASE("a recovery (one rank restarting, the others rebuilding): recovering, 200") {
  auto h = judged({health_state::rebuilding, health_state::restarting});
  CHECK(h.status() == "recovering");
  CHECK(h.http_status() == 200);
  // The replacement is installed; the communicators are still being rebuilt.
  h = judged({health_state::rebuilding, health_state::rebuilding});
  CHECK(h.status() == "recovering");
  CHECK(h.http_status() == 200);
}

TEST_CASE("a dead rank beside a healthy one (the fail policy): degraded, 503") {
  auto h = judged({health_state::healthy, health_state::dead});
  CHECK(h.status() == "degraded");
  CHECK(h.http_status() == 503);
}

TEST_CASE("the executor gave up (every rank dead) or did not answer: failed, 503") {
  auto h = judged({health_state::dead, health_state::dead});
  CHECK(h.status() == "failed");
  CHECK(h.http_status() == 503);
  auto silent = judge_health(
    caf::expected<std::vector<worker_health>>(make_error(errc::timeout, "no answer")));
  CHECK(silent.status() == "failed");
  CHECK(silent.http_status() == 503);
}
