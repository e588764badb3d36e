// The communicator watchdog with fake probe and abort hooks: no GPU, no NCCL.
#include <atomic>
#include <chrono>
#include <thread>

#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "transport/comm_watchdog.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// Waits for `pred` with a deadline (no sleeps as synchronisation).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = 5000ms) {
  auto deadline = clock_type::now() + within;
  while (!pred()) {
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::yield();
  }
  return true;
}

struct fake_comm {
  std::atomic<int> aborts{0};
  std::atomic<bool> async_error{false};
  comm_watchdog::hooks hooks() {
    return {[this]() -> caf::error {
              return async_error ? make_error(errc::transport_failed, "remote process exited")
                                 : caf::error{};
            },
            [this] { ++aborts; }};
  }
};

} // namespace

TEST_CASE("an armed watchdog aborts once when the deadline passes, and says so") {
  fake_comm comm;
  comm_watchdog dog{"group 'tp0' rank 1/2", comm.hooks(), 2ms};
  auto start = clock_type::now();
  dog.arm(start + 50ms);
  REQUIRE(eventually([&] { return dog.fired(); }));
  auto took = clock_type::now() - start;
  CHECK(took >= 50ms);
  CHECK(took < 2000ms);
  CHECK(comm.aborts == 1);
  auto why = dog.failure();
  CHECK(code_of(why) == errc::timeout);
  CHECK(describe(why).find("group 'tp0' rank 1/2") != std::string::npos);
  CHECK(describe(why).find("deadline") != std::string::npos);
  // Fired for good: arming again aborts nothing more.
  dog.arm(clock_type::now());
  CHECK(comm.aborts == 1);
}

TEST_CASE("an asynchronous error aborts the communicator long before the deadline") {
  fake_comm comm;
  comm_watchdog dog{"group 'tp1' rank 0/4", comm.hooks(), 2ms};
  dog.arm(clock_type::now() + 60s);
  REQUIRE(eventually([&] { return dog.probes() > 0; }));
  CHECK_FALSE(dog.fired());
  comm.async_error = true;
  REQUIRE(eventually([&] { return dog.fired(); }, 5000ms));
  CHECK(comm.aborts == 1);
  auto why = dog.failure();
  CHECK(code_of(why) == errc::transport_failed);
  CHECK(describe(why).find("remote process exited") != std::string::npos);
}

TEST_CASE("work that finishes in time never aborts, and a disarmed watchdog idles") {
  fake_comm comm;
  comm_watchdog dog{"group 'tp2' rank 0/2", comm.hooks(), 1ms};
  for (int i = 0; i < 20; ++i) {
    dog.arm(clock_type::now() + 30ms);
    dog.disarm();
  }
  // Deadlines long gone, but disarmed: nothing fires, no probe runs.
  auto idle_probes = dog.probes();
  std::this_thread::sleep_for(60ms); // the thing under test is that nothing happens
  CHECK_FALSE(dog.fired());
  CHECK(comm.aborts == 0);
  CHECK(dog.probes() == idle_probes);
  CHECK_FALSE(dog.failure());
  // An asynchronous error while idle is seen on the next armed period, not before.
  comm.async_error = true;
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(dog.fired());
  dog.arm(clock_type::now() + 60s);
  REQUIRE(eventually([&] { return dog.fired(); }));
  CHECK(comm.aborts == 1);
}

TEST_CASE("a later arm keeps the tighter deadline of the oldest outstanding work") {
  fake_comm comm;
  comm_watchdog dog{"group 'tp3' rank 0/2", comm.hooks(), 2ms};
  auto start = clock_type::now();
  dog.arm(start + 40ms);
  dog.arm(start + 60s); // a second collective enqueued behind the first
  REQUIRE(eventually([&] { return dog.fired(); }));
  CHECK(clock_type::now() - start < 2000ms);
  CHECK(code_of(dog.failure()) == errc::timeout);
}

TEST_CASE("abort never runs while the model thread holds the guard") {
  fake_comm comm;
  std::atomic<bool> in_call{false};
  std::atomic<bool> overlapped{false};
  comm_watchdog::hooks h{[] { return caf::error{}; },
                         [&] {
                           if (in_call)
                             overlapped = true;
                           ++comm.aborts;
                         }};
  comm_watchdog dog{"group 'tp4' rank 0/2", h, 1ms};
  {
    auto g = dog.guard();
    in_call = true;
    dog.arm(clock_type::now());        // already late
    std::this_thread::sleep_for(30ms); // a long enqueue: the watchdog must wait for it
    in_call = false;
  }
  REQUIRE(eventually([&] { return dog.fired(); }));
  CHECK_FALSE(overlapped);
  CHECK(comm.aborts == 1);
}

TEST_CASE("destroying a watchdog stops it promptly, armed or not, without aborting") {
  fake_comm comm;
  auto start = clock_type::now();
  {
    comm_watchdog dog{"group 'tp5' rank 0/2", comm.hooks(), 1000ms};
    dog.arm(clock_type::now() + 60s);
  }
  { comm_watchdog idle{"group 'tp5' rank 1/2", comm.hooks(), 1000ms}; }
  CHECK(clock_type::now() - start < 500ms);
  CHECK(comm.aborts == 0);
}
