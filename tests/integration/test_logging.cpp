// Library logging in a host program: the level in executor_options is honoured ("off"
// prints nothing at all), lines go to stderr (stdout is the host's), and a host sink
// takes the driver's lines instead.
#include <doctest/doctest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cafex/executor.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"
#include "runtime/logging.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

/// What a host's sink received, shared with the callback (which outlives the executor
/// in spdlog's default logger until the next init_logging).
struct captured {
  std::mutex mtx;
  std::vector<std::pair<log_severity, std::string>> lines;

  /// A line of severity `sev` that starts with `text` (a sink gets no time or level prefix).
  bool starts(log_severity sev, const std::string& text) {
    std::lock_guard<std::mutex> guard{mtx};
    for (const auto& [s, line] : lines)
      if (s == sev && line.rfind(text, 0) == 0)
        return true;
    return false;
  }
  size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return lines.size();
  }
};

log_callback sink_into(std::shared_ptr<captured> into) {
  return [into](log_severity sev, std::string_view line) {
    std::lock_guard<std::mutex> guard{into->mtx};
    into->lines.emplace_back(sev, std::string(line));
  };
}

test::command_result run_host(const std::string& level) {
  return test::run_command({test::binary_from_env("CAFEX_TEST_WORKER"), "host", level}, 120s);
}

} // namespace

TEST_CASE("a host whose executor logs 'off' prints nothing on stdout or stderr") {
  auto r = run_host("off");
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK_MESSAGE(r.out.empty(), r.out);
  CHECK_MESSAGE(r.err.empty(), r.err);
}

TEST_CASE("at 'info' the library's lines go to stderr in the cafex format, never to stdout") {
  auto r = run_host("info");
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK_MESSAGE(r.out.empty(), r.out);
  // The driver's own line and a worker's, in the one format of every cafex process.
  CHECK_MESSAGE(r.err.find("] [info] 2 worker(s) ready") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("[driver ") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("[worker ") != std::string::npos, r.err);
}

TEST_CASE("an unknown log level fails start() and says which levels exist") {
  auto o = test::test_options(1);
  o.log_level = "loud";
  auto ex = executor::start(o);
  REQUIRE_FALSE(ex);
  CHECK(code_of(ex.error()) == errc::invalid_argument);
  CHECK(describe(ex.error()).find("use trace, debug, info, warn, error or off")
        != std::string::npos);
}

/// An executor of tp = 2 at `level` whose lines go to a sink; the sink's lines.
static std::shared_ptr<captured> run_with_sink(const std::string& level, bool step) {
  auto got = std::make_shared<captured>();
  auto o = test::test_options(2);
  o.log_level = level;
  o.log_sink = sink_into(got);
  auto ex = test::start_or_fail(o);
  scheduler_output s;
  s.new_requests.push_back({"r0", {1, 2, 3}});
  if (step)
    REQUIRE(ex->execute_model(s));
  ex->shutdown();
  return got;
}

TEST_CASE("a host sink takes the driver's lines at the executor's level") {
  test::become_subreaper();
  SUBCASE("warn: a clean start and step log nothing") {
    CHECK(run_with_sink("warn", true)->size() == 0);
  }
  SUBCASE("info: the start-up lines arrive, with their severity and without a prefix") {
    auto got = run_with_sink("info", false);
    CHECK(got->starts(log_severity::info, "node agent "));
    CHECK(got->starts(log_severity::info, "2 worker(s) ready: tp=2 pp=1"));
  }
  // Back to stderr for whatever this process runs next.
  REQUIRE_FALSE(init_logging("warn", "driver"));
}
