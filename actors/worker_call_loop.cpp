#include "actors/worker_call_loop.hpp"

#include <spdlog/spdlog.h>

#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "transport/shm_messages.hpp"
#include "transport/spin_governor.hpp"

namespace cafex {

caf::expected<std::unique_ptr<worker_call_loop>>
worker_call_loop::start(worker_state& st, const method_table& methods,
                        std::mutex& runner_mutex, const std::string& prefix,
                        std::chrono::microseconds spin) {
  std::unique_ptr<worker_call_loop> loop{new worker_call_loop(st, methods, runner_mutex)};
  auto calls = shm_ring::open(prefix + "call" + std::to_string(st.rank));
  if (!calls)
    return calls.error();
  loop->calls_ = std::move(*calls);
  auto replies = shm_ring::open(prefix + "reply" + std::to_string(st.rank));
  if (!replies)
    return replies.error();
  loop->replies_ = std::move(*replies);
  auto bell = shm_doorbell::open(prefix + "dbell");
  if (!bell)
    return bell.error();
  loop->bell_ = std::move(*bell);
  loop->spin_ = spin;
  loop->thread_ = std::thread([l = loop.get()] { l->run(); });
  return loop;
}

worker_call_loop::~worker_call_loop() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void worker_call_loop::run() {
  std::vector<char> buf;
  // Calls come in bursts (a caller's loop of collective_rpc): spin a while after one, as
  // long as they keep coming within the spin.
  spin_governor spin{spin_};
  while (!stop_) {
    if (auto err = calls_->read(buf, defaults::shm_worker_wake, spin.before_read())) {
      if (calls_->closed())
        return;
      spin.idle();
      continue;
    }
    spin.arrived(spin_governor::clock::now());
    answer(buf);
    spin.handled(spin_governor::clock::now());
  }
}

void worker_call_loop::answer(const std::vector<char>& buf) {
  auto call = read_call(buf);
  if (!call) {
    spdlog::error("rank {}: {}", st_.rank, describe(call.error()));
    return;
  }
  caf::expected<std::string> result{std::string{}};
  {
    std::lock_guard<std::mutex> guard{runner_mutex_};
    result = invoke_method(methods_, st_, call->method, call->args);
  }
  auto timeout = std::chrono::milliseconds{defaults::shm_command_timeout};
  if (auto err = write_reply(*replies_, bell_.get(), call->id, st_.rank, result, timeout))
    if (!replies_->closed())
      spdlog::error("rank {} cannot answer method '{}': {}", st_.rank, call->method,
                    describe(err));
}

} // namespace cafex
