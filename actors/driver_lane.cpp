#include "actors/driver_lane.hpp"

#include <caf/all.hpp>

#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "transport/shm_futex.hpp"
#include "transport/shm_messages.hpp"

namespace cafex {

namespace {

using clock = std::chrono::steady_clock;

/// How long the caller spins on the lane's doorbell before it sleeps: about one
/// zero-layer step, so that back-to-back steps never sleep where a core is free.
constexpr std::chrono::microseconds caller_spin{50};

} // namespace

void forward_report(const step_sink_actor& sink, report_message& m) {
  switch (m.kind) {
    case report_kind::result:
      caf::anon_send(sink, result_atom::value, m.seq, m.rank, std::move(m.output));
      break;
    case report_kind::progress:
      caf::anon_send(sink, progress_atom::value, m.seq, m.rank);
      break;
    case report_kind::failure:
      caf::anon_send(sink, stepfail_atom::value, m.seq, m.rank, std::move(m.error));
      break;
  }
}

direct_lane::direct_lane(rings r, std::chrono::milliseconds step_timeout, step_sink_actor sink,
                         std::shared_ptr<counters> counts)
  : rings_(std::move(r)),
    step_timeout_(step_timeout),
    sink_(std::move(sink)),
    counts_(std::move(counts)),
    spin_(spin_budget(rings_.tp * rings_.pp + 1, caller_spin)) {}

void direct_lane::open(std::vector<std::string> names) {
  std::lock_guard<std::mutex> guard{mtx_};
  names_ = std::move(names);
  open_ = true;
}

void direct_lane::close(const caf::error& why) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    open_ = false;
    if (busy_ && !has_failure_) {
      failure_ = why;
      has_failure_ = true;
    }
    if (calling_ && !has_call_failure_) {
      call_failure_ = why;
      has_call_failure_ = true;
    }
  }
  rings_.bell->ring();
}

bool direct_lane::claim_for_actor() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (busy_) {
    driver_waiting_ = true;
    return false;
  }
  ++actor_in_flight_;
  return true;
}

void direct_lane::release_for_actor() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (actor_in_flight_ > 0)
    --actor_in_flight_;
}

bool direct_lane::busy() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return busy_;
}

void direct_lane::drain_output(std::vector<std::vector<char>>& into) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (busy_)
    return; // the caller reads this ring while its step runs
  std::vector<char> buf;
  while (rings_.output->try_read(buf))
    into.push_back(std::move(buf));
}

bool direct_lane::fail(uint64_t seq, const caf::error& err) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!busy_ || running_ != seq || has_failure_)
      return false;
    failure_ = err;
    has_failure_ = true;
  }
  rings_.bell->ring();
  return true;
}

std::optional<caf::expected<model_runner_output>>
direct_lane::run(const scheduler_output& step) {
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!open_ || busy_ || actor_in_flight_ > 0)
      return std::nullopt;
    busy_ = true;
    seq = direct_seq_bit | ++next_;
    running_ = seq;
    has_failure_ = false;
    failure_ = caf::none;
  }
  encode_scheduler_output(step, command_);
  for (auto* ring : rings_.commands)
    if (auto err = write_command(*ring, seq, command_, defaults::shm_command_timeout)) {
      // A ring closed under the write: the driver's reason (a lost worker, a teardown)
      // says more than "closed".
      if (has_failure_.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> guard{mtx_};
        err = failure_;
      }
      end_step(false);
      return caf::expected<model_runner_output>{std::move(err)};
    }
  auto out = wait_for(seq, step.step_id);
  if (out)
    out->step_id = step.step_id;
  end_step(static_cast<bool>(out));
  return out;
}

caf::expected<model_runner_output> direct_lane::wait_for(uint64_t seq, uint64_t step_id) {
  auto deadline = clock::now() + step_timeout_;
  for (;;) {
    auto seen = rings_.bell->value();
    if (has_failure_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> guard{mtx_};
      return failure_;
    }
    while (rings_.output->try_read(bytes_)) {
      auto m = read_report(bytes_);
      if (!m)
        return make_error(errc::transport_failed,
                          "malformed report from the output rank: " + describe(m.error()));
      if (m->seq == seq && m->kind == report_kind::result)
        return std::move(m->output);
      if (m->seq == seq && m->kind == report_kind::failure) {
        auto err = m->error;
        // The first failure of the step reaches the driver (a broken transport starts a
        // recovery under restart); the other ranks' failures of it do not.
        if (fail(seq, err))
          forward_report(sink_, *m);
        return err;
      }
      if (!is_direct_seq(m->seq))
        forward_report(sink_, *m);
      // Else an earlier direct step's late answer, after its deadline failed it.
    }
    auto rest = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
    if (rest.count() <= 0)
      return overdue(seq, step_id);
    rings_.bell->wait(seen,
                      std::min<std::chrono::microseconds>(rest, defaults::shm_driver_wake),
                      spin_);
  }
}

caf::error direct_lane::overdue(uint64_t seq, uint64_t step_id) const {
  // Name the earliest stage that still owes output: the step is stuck there.
  int stage = rings_.pp - 1;
  std::string ranks;
  for (int s = 0; s < rings_.pp && ranks.empty(); ++s) {
    for (int t = 0; t < rings_.tp; ++t) {
      auto r = s * rings_.tp + t;
      if (rings_.board->get(static_cast<size_t>(r)) < seq)
        ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    }
    if (!ranks.empty())
      stage = s;
  }
  return make_error(errc::timeout,
                    "step " + std::to_string(step_id) + " missed its "
                      + std::to_string(step_timeout_.count()) + " ms deadline: stage "
                      + std::to_string(stage) + " rank(s) [" + ranks
                      + "] still owe output; check those workers' logs, or raise "
                        "--step-timeout");
}

std::optional<caf::expected<std::vector<std::string>>>
direct_lane::call(const std::string& method, const std::string& args,
                  std::chrono::milliseconds timeout) {
  if (rings_.calls.empty()
      || method.size() + args.size() + 64 > rings_.calls[0]->capacity() / 2)
    return std::nullopt;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!open_ || calling_)
      return std::nullopt;
    calling_ = true;
    id = ++next_call_;
    has_call_failure_ = false;
    call_failure_ = caf::none;
  }
  caf::expected<std::vector<std::string>> out{caf::error{}};
  caf::error sent;
  for (auto* ring : rings_.calls)
    if ((sent = write_call(*ring, id, method, args, defaults::shm_command_timeout)))
      break;
  if (sent && has_call_failure_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> guard{mtx_};
    sent = call_failure_; // the driver's reason for closing the rings
  }
  out = sent ? caf::expected<std::vector<std::string>>{std::move(sent)}
             : collect(id, method, timeout);
  counts_->calls.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> guard{mtx_};
  calling_ = false;
  return out;
}

caf::expected<std::vector<std::string>>
direct_lane::collect(uint64_t id, const std::string& method,
                     std::chrono::milliseconds timeout) {
  auto n = rings_.replies.size();
  std::vector<std::string> results(n);
  std::vector<bool> answered(n, false);
  size_t owed = n;
  auto deadline = clock::now() + timeout;
  for (;;) {
    auto seen = rings_.bell->value();
    if (has_call_failure_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> guard{mtx_};
      return call_failure_;
    }
    for (size_t r = 0; r < n; ++r)
      while (rings_.replies[r]->try_read(reply_)) {
        auto m = read_reply(reply_);
        if (!m)
          return make_error(errc::transport_failed, "malformed reply from rank "
                                                      + std::to_string(r) + ": "
                                                      + describe(m.error()));
        if (m->id != id)
          continue; // a late reply to a call that timed out
        if (!m->result)
          return m->result.error(); // workers name their rank
        results[r] = std::move(*m->result);
        if (!answered[r]) {
          answered[r] = true;
          --owed;
        }
      }
    if (owed == 0)
      return results;
    auto rest = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
    if (rest.count() <= 0) {
      size_t r = 0;
      while (r < n && answered[r])
        ++r;
      auto name = r < names_.size() ? names_[r] : "rank " + std::to_string(r);
      return make_error(errc::timeout, name + " did not answer method '" + method
                                         + "' in time; the method may be stuck, or raise "
                                           "its timeout");
    }
    rings_.bell->wait(seen,
                      std::min<std::chrono::microseconds>(rest, defaults::shm_driver_wake),
                      spin_);
  }
}

void direct_lane::end_step(bool ok) {
  (ok ? counts_->ok : counts_->failed).fetch_add(1, std::memory_order_relaxed);
  bool kick = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    busy_ = false;
    kick = driver_waiting_;
    driver_waiting_ = false;
  }
  if (kick)
    caf::anon_send(sink_, lanefree_atom::value);
}

} // namespace cafex
