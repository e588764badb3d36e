// progress_ticker: nothing for a short wait, a line after first_after and then one per
// period while the wait lasts, none after the deadline or once destroyed.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/progress.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

struct collected {
  std::mutex mx;
  std::vector<std::string> lines;
  progress_sink sink() {
    return [this](const std::string& l) {
      std::lock_guard<std::mutex> g{mx};
      lines.push_back(l);
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> g{mx};
    return lines.size();
  }
};

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds bound) {
  const auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    if (cond())
      return true;
    std::this_thread::sleep_for(1ms); // polling a condition, with a deadline
  }
  return cond();
}

} // namespace

TEST_CASE("the text says what, how long so far and the deadline") {
  CHECK(progress_text("load_model on 4 worker(s)", 2000ms, 58000ms)
        == "waiting for load_model on 4 worker(s): 2.0 s so far, deadline in 58.0 s");
  CHECK(progress_text("x", 1500ms, -5ms) == "waiting for x: 1.5 s so far, deadline in 0.0 s");
}

TEST_CASE("a short wait says nothing; a long one a line per period") {
  collected c;
  { progress_ticker t{c.sink(), "short", std::chrono::steady_clock::now() + 10s, 10000ms}; }
  CHECK(c.size() == 0);
  {
    progress_ticker t{c.sink(), "long", std::chrono::steady_clock::now() + 30s, 20ms, 20ms};
    REQUIRE(wait_for([&] { return c.size() >= 3; }, 10s));
  }
  const auto after = c.size();
  std::this_thread::sleep_for(60ms); // nothing more once destroyed
  CHECK(c.size() == after);
  CHECK(c.lines.front().rfind("waiting for long: ", 0) == 0);
}

TEST_CASE("no line after the deadline; no sink, no thread") {
  collected c;
  {
    progress_ticker t{c.sink(), "bounded", std::chrono::steady_clock::now() + 50ms, 10ms,
                      10ms};
    std::this_thread::sleep_for(200ms);
    const auto at_deadline = c.size();
    std::this_thread::sleep_for(50ms);
    CHECK(c.size() == at_deadline);
  }
  progress_ticker none{};
  CHECK(none.lines() == 0);
}
