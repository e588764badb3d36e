#include "batcher.hpp"

#include <algorithm>

#include "runtime/error.hpp"
#include "runtime/models/generation.hpp"

namespace cafex::serve {

batcher::batcher(batcher_options opts, step_submitter submit, batcher_observer obs)
  : opts_(std::move(opts)), submit_(std::move(submit)), obs_(std::move(obs)) {
  opts_.max_batch = std::max<size_t>(opts_.max_batch, 1);
  opts_.max_in_flight = std::max<size_t>(opts_.max_in_flight, 1);
}

caf::expected<std::string> batcher::add(std::vector<int32_t> prompt, sampling_params params,
                                        request_sink sink) {
  if (auto why = refusal(1))
    return why;
  auto id = "cmpl-" + std::to_string(next_id_++);
  request r;
  r.prompt = std::move(prompt);
  r.params = std::move(params);
  r.sink = std::move(sink);
  requests_.emplace(id, std::move(r));
  queue_.push_back(id);
  pump();
  return id;
}

caf::error batcher::refusal(size_t n) const {
  if (failed_)
    return failed_;
  if (draining_)
    return make_error(errc::not_ready, "the service is shutting down; retry elsewhere");
  if (queue_.size() + n > opts_.max_queued)
    return make_error(errc::too_many_in_flight,
                      std::to_string(queue_.size()) + " requests already wait (--max-queued "
                        + std::to_string(opts_.max_queued) + "); retry later");
  return caf::none;
}

void batcher::cancel(const std::string& id) {
  auto it = requests_.find(id);
  if (it == requests_.end())
    return;
  it->second.sink = {}; // the client is gone: nobody to tell
  if (it->second.in_step)
    return; // leaves when its step returns
  finish(it, caf::none);
  check_idle();
}

void batcher::resume() {
  paused_ = false;
  pump();
}

bool batcher::recompute(const caf::error& err) {
  auto c = code_of(err);
  if (!opts_.recompute_on_failure
      || (c != errc::worker_lost && c != errc::transport_failed && c != errc::not_ready))
    return false;
  bool was_paused = paused_;
  paused_ = true;
  // Every step still in flight is stale from here on: a request it holds is queued below,
  // and a late success must not mark it cached again (it would then be decoded from a
  // cache the recovery dropped, and re-prefilled as well).
  ++epoch_;
  // Every KV cache is dropped in the recovery: running requests prefill again, first,
  // in their id order; the ones still waiting keep their place after them.
  std::vector<std::string> again, give_up;
  for (auto& [id, r] : requests_) {
    if (!r.cached && !r.in_step)
      continue;
    r.cached = false;
    r.in_step = false;
    if (++r.recomputes > opts_.max_recomputes || !r.sink.on_done)
      give_up.push_back(id); // (a cancelled one: nothing to recompute, nobody to tell)
    else
      again.push_back(id);
  }
  queue_.insert(queue_.begin(), again.begin(), again.end());
  to_free_.clear(); // the caches they named are gone
  // After the loop: a sink told of its end may cancel its siblings (a request's other
  // choices), which leave requests_.
  for (const auto& id : give_up)
    if (auto it = requests_.find(id); it != requests_.end())
      finish(it, err);
  if (!was_paused && obs_.paused)
    obs_.paused();
  check_idle();
  return true;
}

void batcher::drain() {
  draining_ = true;
  check_idle();
}

void batcher::fail_all(const caf::error& err) {
  while (!requests_.empty())
    finish(requests_.begin(), err);
  check_idle();
}

void batcher::fail_for_good(const caf::error& err) {
  failed_ = err;
  // Nothing will resume the batcher: a request queued now would wait forever.
  paused_ = false;
  fail_all(err);
}

void batcher::finish(std::map<std::string, request>::iterator it, const caf::error& err) {
  auto sink = std::move(it->second.sink);
  if (it->second.cached)
    to_free_.push_back(it->first);
  auto q = std::find(queue_.begin(), queue_.end(), it->first);
  if (q != queue_.end())
    queue_.erase(q);
  requests_.erase(it);
  if (sink.on_done)
    sink.on_done(err);
}

void batcher::check_idle() {
  if (requests_.empty() && on_idle_)
    on_idle_();
}

void batcher::pump() {
  while (!paused_ && in_flight_ < opts_.max_in_flight) {
    scheduler_output step;
    std::vector<std::string> ids;
    // Running requests first (they hold KV cache), then new ones in arrival order.
    for (auto& [id, r] : requests_) {
      if (ids.size() >= opts_.max_batch)
        break;
      if (r.cached && !r.in_step) {
        step.cached_requests.push_back(cached_request{id, r.last});
        ids.push_back(id);
      }
    }
    std::vector<std::string> fresh;
    while (!queue_.empty() && ids.size() + fresh.size() < opts_.max_batch) {
      fresh.push_back(queue_.front());
      queue_.pop_front();
    }
    for (auto& id : fresh) {
      const auto& r = requests_.at(id);
      auto prompt = r.prompt;
      prompt.insert(prompt.end(), r.output.begin(), r.output.end());
      // A re-prefill's prompt holds what it generated: min_tokens counts what is left.
      auto params = r.params;
      params.min_tokens = std::max<int32_t>(0, params.min_tokens
                                                 - static_cast<int32_t>(r.output.size()));
      step.new_requests.push_back(new_request{id, std::move(prompt), std::move(params)});
    }
    // Results come back new requests first, then cached ones (scheduler order).
    ids.insert(ids.begin(), fresh.begin(), fresh.end());
    // Freeing alone is not worth a step (a request arriving meanwhile would wait for it):
    // `finished` rides on the next step that runs requests.
    if (ids.empty())
      return;
    step.finished = std::move(to_free_);
    to_free_.clear();
    step.step_id = next_step_++;
    for (auto& id : ids)
      requests_.at(id).in_step = true;
    ++in_flight_;
    auto t0 = std::chrono::steady_clock::now();
    submit_(step,
            [this, ids, epoch = epoch_, t0](caf::expected<model_runner_output> r) mutable {
              on_result(std::move(ids), epoch, t0, std::move(r));
            });
  }
}

void batcher::on_result(std::vector<std::string> ids, uint64_t epoch,
                        std::chrono::steady_clock::time_point t0,
                        caf::expected<model_runner_output> r) {
  --in_flight_;
  if (r && r->req_ids != ids)
    r = make_error(errc::model_failed, "the step answered for other requests than it ran");
  if (epoch != epoch_) {
    // A recompute queued this step's requests again (the caches are being dropped): its
    // answer, success or failure, is no news about them. The re-prefill computes the
    // token a success carried again, so the client gets it exactly once.
    if (r && obs_.step_ok)
      obs_.step_ok(std::chrono::steady_clock::now() - t0, ids.size());
    else if (!r && obs_.step_failed)
      obs_.step_failed(r.error());
    pump();
    check_idle();
    return;
  }
  if (!r) {
    if (obs_.step_failed)
      obs_.step_failed(r.error());
    if (recompute(r.error()))
      return;
    for (auto& id : ids)
      if (auto it = requests_.find(id); it != requests_.end())
        finish(it, r.error());
  } else {
    if (obs_.step_ok)
      obs_.step_ok(std::chrono::steady_clock::now() - t0, ids.size());
    // The tokens go to their sinks before the next step goes out. (Sending the step
    // first, so that it computes while the tokens are written, was measured: on 2 cores
    // with CPU workers the writes then compete with the step, and 128 streaming clients
    // got 20% fewer requests/s; BENCHMARKS.md, cafex-serve.)
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = requests_.find(ids[i]);
      if (it == requests_.end())
        continue; // failed by fail_all meanwhile
      auto& req = it->second;
      req.in_step = false;
      if (!r->errors.empty() && !r->errors[i].empty()) {
        // The model failed this request alone (its KV cache did not fit, ...). A failed
        // prefill left no cache; a running request's (cached) is freed with `finished`.
        finish(it, make_error(errc::model_failed, r->errors[i]));
        continue;
      }
      req.cached = true;
      req.last = r->sampled[i];
      req.output.push_back(req.last);
      if (!req.sink.on_done) {
        finish(it, caf::none); // cancelled while in flight: nobody to tell
        continue;
      }
      const char* why = stop_reason(
        req.params, opts_.eos_ids, req.last, static_cast<int64_t>(req.output.size()),
        static_cast<int64_t>(req.prompt.size() + req.output.size()), opts_.max_model_len);
      const token_logprobs* lp = nullptr;
      if (req.params.logprobs >= 0 && i < r->logprobs.size())
        lp = &r->logprobs[i];
      if (req.sink.on_token)
        req.sink.on_token(req.last, lp, why);
      if (*why != '\0')
        finish(it, caf::none);
    }
  }
  pump();
  check_idle();
}

} // namespace cafex::serve
