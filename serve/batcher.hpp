// Continuous batching on top of execute_model: requests join and leave the running batch
// between steps. New requests enter a step as new_requests (whole prompt prefilled),
// running ones as cached_requests with the token they sampled last, and requests that are
// done, cancelled or failed are listed in the next step's `finished` so workers free
// their KV cache (no step runs only to free: the next step with requests carries it). Up to `max_in_flight` steps run at once (PP size), each with requests
// no other in-flight step holds.
//
// Threading: single-threaded by design. Every member, every sink call and every step
// completion runs on the owner's event-loop thread (the service's io_context); the
// submit function must deliver completions there (cafex::async_execute_model does).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/dataflow/scheduler_output.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex::serve {

struct batcher_options {
  size_t max_batch = 32;    ///< requests per step
  size_t max_in_flight = 1; ///< steps at once (the executor's max_concurrent_batches)
  size_t max_queued = 1024; ///< waiting requests before add() refuses
  /// With the executor's restart policy: a step that fails because a worker was lost or
  /// a communicator broke (worker_lost, transport_failed, not_ready while recovering)
  /// does not fail its requests. Every running request loses its KV cache in the
  /// recovery, so the batcher pauses, and once resume() is called re-prefills each one
  /// with its prompt plus the tokens it already streamed; clients only see a delay.
  bool recompute_on_failure = false;
  int max_recomputes = 3; ///< per request; past it the request fails with the error
  /// When a request stops (runtime/models/generation.hpp, stop_reason): the model's EOS
  /// ids and its length limit (prompt plus generated tokens).
  std::vector<int32_t> eos_ids;
  int64_t max_model_len = 4096;
};

/// Where one request's results go. Called on the batcher's thread. on_token must not call
/// into the batcher; on_done may cancel other requests (a request's other choices).
struct request_sink {
  /// Each generated token, with its logprobs when the request asked for them (else null)
  /// and, on its last token, why it stopped ("stop" or "length"; else empty).
  std::function<void(int32_t token, const token_logprobs* lp, const char* finish)> on_token;
  /// Exactly once: no error when every token was delivered, else why it stopped.
  std::function<void(const caf::error&)> on_done;
};

using step_done = std::function<void(caf::expected<model_runner_output>)>;
/// Runs one step and calls back once, on the batcher's thread.
using step_submitter = std::function<void(const scheduler_output&, step_done)>;

/// Step-level observations, for metrics.
struct batcher_observer {
  std::function<void(std::chrono::nanoseconds latency, size_t requests)> step_ok;
  std::function<void(const caf::error&)> step_failed;
  /// recompute_on_failure: the batcher paused; call resume() once the executor is ready
  /// again (or fail_all() if it never is).
  std::function<void()> paused;
};

class batcher {
public:
  batcher(batcher_options opts, step_submitter submit, batcher_observer obs = {});

  /// Queues a request (`params.max_tokens` tokens at most); fails (errc::not_ready while
  /// draining, errc::too_many_in_flight when the queue is full) without calling the sink.
  /// Returns the request id.
  caf::expected<std::string> add(std::vector<int32_t> prompt, sampling_params params,
                                 request_sink sink);
  /// Why add() would refuse `n` more requests now (failed for good, draining, or the
  /// queue is full), or none: a request of n choices is queued all or nothing.
  caf::error refusal(size_t n) const;

  /// The client went away: drop the request (its sink is not called again).
  void cancel(const std::string& id);

  /// Refuses new requests; accepted ones run to completion.
  void drain();

  /// After a pause (see batcher_options::recompute_on_failure): steps run again.
  void resume();
  bool paused() const { return paused_; }

  /// Fails every accepted request with `err` now (drain deadline passed).
  void fail_all(const caf::error& err);
  /// The executor gave up (its recovery failed): fails every accepted request with `err`
  /// now, and add() refuses every later one with it, instead of queueing requests that
  /// no step will ever run.
  void fail_for_good(const caf::error& err);
  bool failed() const { return static_cast<bool>(failed_); }

  /// Called each time the last accepted request leaves (while draining: shut down).
  void on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }

  bool idle() const { return requests_.empty(); }
  size_t queued() const { return queue_.size(); }
  size_t running() const { return requests_.size() - queue_.size(); }
  size_t steps_in_flight() const { return in_flight_; }
  uint64_t accepted() const { return next_id_; }

private:
  struct request {
    std::vector<int32_t> prompt;
    sampling_params params;
    int32_t last = 0;
    std::vector<int32_t> output; ///< tokens streamed so far (re-prefilled after recovery)
    int recomputes = 0;
    bool cached = false;  ///< workers hold its KV cache
    bool in_step = false; ///< part of a step in flight
    request_sink sink;
  };

  void pump();
  void on_result(std::vector<std::string> ids, uint64_t epoch,
                 std::chrono::steady_clock::time_point t0,
                 caf::expected<model_runner_output> r);
  void finish(std::map<std::string, request>::iterator it, const caf::error& err);
  void check_idle();
  /// recompute_on_failure: requeues every request for a re-prefill and pauses.
  bool recompute(const caf::error& err);

  batcher_options opts_;
  step_submitter submit_;
  batcher_observer obs_;
  std::map<std::string, request> requests_; ///< every accepted request not yet answered
  std::deque<std::string> queue_;           ///< waiting for their first step
  std::vector<std::string> to_free_;        ///< next step's `finished`
  size_t in_flight_ = 0;
  uint64_t next_id_ = 0;
  uint64_t next_step_ = 0;
  /// Bumped by every recompute(): a step submitted before it is stale, because its
  /// requests were queued again for a re-prefill (their KV caches are being dropped).
  /// A stale step's answer changes no request, even when it succeeded: the re-prefill
  /// computes the same token again.
  uint64_t epoch_ = 0;
  bool draining_ = false;
  bool paused_ = false;
  caf::error failed_; ///< set by fail_for_good: why no request can run any more
  std::function<void()> on_idle_;
};

} // namespace cafex::serve
