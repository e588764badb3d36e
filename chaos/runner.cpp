#include "chaos/runner.hpp"

#include <chrono>
#include <cstdio>
#include <deque>
#include <future>
#include <optional>
#include <thread>

#include "cafex/executor.hpp"
#include "chaos/fault_injector.hpp"
#include "runtime/models/workload.hpp"

namespace cafex {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;
using outc = scenario_expectation::outcome;

int64_t ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration_cast<milliseconds>(b - a).count();
}

/// A batch of requests stepped together; max_concurrent_batches of them keep steps in
/// flight (as vLLM's virtual engines do), each advancing one token per step of its own.
struct batch {
  std::vector<std::string> ids;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> generated;
  bool prefilled = false;
  bool in_flight = false;
  int steps_done = 0;
  int quota = 0;
};

} // namespace

/// One run's moving parts.
struct chaos_runner::run_state {
  const scenario& s;
  const chaos_options& opts;
  bool with_faults;
  chaos_run out;
  std::unique_ptr<executor> ex;
  std::unique_ptr<fault_injector> faults;
  std::vector<scenario_fault> none; ///< the baseline's faults

  void log(const std::string& what) const {
    if (opts.verbose)
      std::fprintf(stderr, "chaos: %s\n", what.c_str());
  }

  void observe_error(const caf::error& err, const std::string& where) {
    log(where + " failed: " + describe(err));
    if (out.saw_error) {
      ++out.later_errors;
      return;
    }
    out.saw_error = true;
    out.error_kind = to_string(code_of(err));
    out.error_text = describe(err);
    if (auto t = faults->last_fault())
      out.fault_to_error_ms = ms_between(*t, clock_type::now());
  }

  int64_t since_fault() const {
    auto t = faults->last_fault();
    return t ? ms_between(*t, clock_type::now()) : 0;
  }

  /// Waits until state() is ready again; records the time from the fault.
  bool await_ready(clock_type::time_point deadline) {
    executor_state st = ex->state();
    while (st != executor_state::ready && clock_type::now() < deadline) {
      faults->apply_due(-1);
      std::this_thread::sleep_for(milliseconds(20)); // polling a state, bounded by deadline
      st = ex->state();
    }
    if (st != executor_state::ready) {
      out.note = std::string("state() was ") + to_string(st) + ", not ready, "
                 + std::to_string(since_fault()) + " ms after the fault";
      return false;
    }
    out.recovery_ms = since_fault();
    log("ready again " + std::to_string(out.recovery_ms) + " ms after the fault");
    return true;
  }
};

caf::expected<std::unique_ptr<executor>> chaos_runner::start_with_faults(run_state& rs,
                                                                         executor_options o) {
  bool at_startup = false;
  for (const auto& f : rs.with_faults ? s_.faults : rs.none)
    at_startup = at_startup || f.during.has_value();
  if (!at_startup)
    return executor::start(std::move(o));
  // The hook fires on start()'s thread as each phase begins (and applies the faults due
  // at once); this thread applies those due at_ms into a phase meanwhile.
  auto* faults = rs.faults.get();
  o.on_startup_phase = [faults](const startup_event& ev) { faults->phase_begins(ev); };
  auto bound = o.start_timeout + milliseconds(10000); // start() ends by its own deadline
  auto started = std::async(std::launch::async, [o] { return executor::start(o); });
  auto deadline = clock_type::now() + bound;
  while (started.wait_for(milliseconds(5)) != std::future_status::ready) {
    faults->apply_due(-1);
    if (clock_type::now() > deadline) {
      // Never expected: start() is bounded by start_timeout. Waiting on is all that is
      // left (the future's destructor would wait too), so say why it takes so long.
      rs.log("start() did not return within its deadline plus 10 s; still waiting");
      deadline = clock_type::now() + milliseconds(1000);
    }
  }
  auto ex = started.get();
  faults->startup_over();
  return ex;
}

chaos_runner::chaos_runner(scenario s, chaos_options opts)
  : s_(std::move(s)), opts_(std::move(opts)) {}

chaos_runner::~chaos_runner() = default;

chaos_report chaos_runner::run() {
  chaos_report rep;
  rep.name = s_.name;
  auto outcome = s_.expect.what;
  rep.compared_tokens = outcome == outc::recovered
                        || (outcome == outc::success && s_.expect.same_tokens);
  if (rep.compared_tokens)
    rep.baseline = run_once(false);
  rep.faulty = run_once(true);
  if (rep.compared_tokens)
    rep.same_tokens = rep.baseline.started && !rep.baseline.saw_error
                      && rep.baseline.tokens == rep.faulty.tokens;
  judge(s_, rep);
  return rep;
}

chaos_run chaos_runner::run_once(bool with_faults) {
  auto t0 = clock_type::now();
  run_state rs{s_, opts_, with_faults, {}, nullptr, nullptr, {}};
  executor_options o;
  o.parallel.tensor_parallel_size = s_.tp;
  o.parallel.pipeline_parallel_size = s_.pp;
  o.model.name = s_.model;
  o.worker_program = opts_.worker_program;
  o.log_level = opts_.verbose ? "warn" : "off";
  o.cluster = opts_.cluster;
  o.host_ip = opts_.cluster.host_ip;
  o.start_timeout = milliseconds(30000);
  o.rpc_timeout = milliseconds(15000);
  o.step_timeout = milliseconds(s_.step_timeout_ms > 0 ? s_.step_timeout_ms : 30000);
  if (s_.heartbeat_ms > 0)
    o.liveness.heartbeat_interval = milliseconds(s_.heartbeat_ms);
  if (s_.connection_timeout_ms > 0)
    o.liveness.connection_timeout = milliseconds(s_.connection_timeout_ms);
  o.on_worker_failure = s_.restart ? failure_policy::restart : failure_policy::fail;
  rs.log(std::string(with_faults ? "faulty" : "baseline")
         + " run: starting tp=" + std::to_string(s_.tp) + " pp=" + std::to_string(s_.pp));
  rs.faults = std::make_unique<fault_injector>(
    with_faults ? s_.faults : rs.none, opts_.hosts,
    [&rs](const caf::error& err, const std::string& where) { rs.observe_error(err, where); },
    [&rs](const std::string& line) { rs.log(line); });
  auto ex = start_with_faults(rs, o);
  if (!ex) {
    rs.out.start_error_kind = to_string(code_of(ex.error()));
    rs.out.start_error_text = describe(ex.error());
    if (auto t = rs.faults->last_fault())
      rs.out.fault_to_start_error_ms = ms_between(*t, clock_type::now());
    rs.log("start-up failed: " + rs.out.start_error_text);
    rs.out.faults_applied = rs.faults->applied();
    rs.faults->release();
    rs.out.wall_ms = static_cast<double>(ms_between(t0, clock_type::now()));
    return rs.out;
  }
  rs.ex = std::move(*ex);
  rs.out.started = true;
  rs.faults->attach(*rs.ex);
  rs.faults->refresh_pids();

  // The workload: max_concurrent_batches batches of `requests` requests each.
  auto groups = std::max<size_t>(1, rs.ex->max_concurrent_batches());
  std::vector<batch> batches(groups);
  std::string prefix = s_.step_sleep_ms > 0 ? "sleep" + std::to_string(s_.step_sleep_ms) + "-"
                                            : "";
  for (size_t g = 0; g < groups; ++g) {
    auto& b = batches[g];
    b.quota = s_.steps / static_cast<int>(groups)
              + (static_cast<int>(g) < s_.steps % static_cast<int>(groups) ? 1 : 0);
    for (int i = 0; i < s_.requests; ++i) {
      int index = static_cast<int>(g) * s_.requests + i;
      b.ids.push_back(prefix + "b" + std::to_string(g) + "-r" + std::to_string(i));
      b.prompts.push_back(demo_workload::prompt(o.model.seed, index, o.model.vocab_size));
      b.generated.emplace_back();
    }
  }
  struct flight {
    size_t group;
    std::future<caf::expected<model_runner_output>> result;
    clock_type::time_point submitted;
  };
  std::deque<flight> in_flight;
  bool recovering_allowed = s_.expect.what == outc::recovered;
  bool stopping = false, need_recovery = false;
  int recoveries = 0;
  constexpr int max_recoveries = 3; // a run that keeps failing after recovery stops
  int submissions = 0;
  auto step_wait = o.step_timeout + milliseconds(10000); // the runner's own bound
  // A fallback, far above any scenario's few seconds, under ctest's timeout per run.
  auto run_deadline = t0 + milliseconds(60000) + step_wait;
  uint64_t step_id = 0;
  while (clock_type::now() < run_deadline) {
    rs.faults->apply_due(-1);
    // Submit while a batch is free and steps remain.
    if (!stopping && !need_recovery && in_flight.size() < groups) {
      std::optional<size_t> pick;
      for (size_t k = 0; k < groups && !pick; ++k) {
        auto g = (static_cast<size_t>(submissions) + k) % groups;
        if (!batches[g].in_flight && batches[g].steps_done < batches[g].quota)
          pick = g;
      }
      if (pick) {
        rs.faults->apply_due(submissions);
        auto& b = batches[*pick];
        scheduler_output step;
        step.step_id = step_id++;
        for (size_t i = 0; i < b.ids.size(); ++i) {
          if (!b.prefilled) { // prefill, or re-prefill after recovery: prompt + generated
            auto ids = b.prompts[i];
            ids.insert(ids.end(), b.generated[i].begin(), b.generated[i].end());
            step.new_requests.push_back(new_request{b.ids[i], std::move(ids)});
          } else {
            step.cached_requests.push_back(cached_request{b.ids[i], b.generated[i].back()});
          }
        }
        b.in_flight = true;
        rs.faults->first_submission();
        in_flight.push_back({*pick, rs.ex->execute_model_async(step), clock_type::now()});
        ++submissions;
        continue;
      }
    }
    if (in_flight.empty()) {
      if (need_recovery) {
        need_recovery = false;
        auto deadline = rs.faults->last_fault().value_or(clock_type::now())
                        + milliseconds(s_.expect.within_ms) + milliseconds(3000);
        if (!rs.await_ready(deadline))
          break;
        rs.faults->refresh_pids();
        for (auto& b : batches)
          b.prefilled = false; // every KV cache was dropped: re-prefill
        continue;
      }
      break; // all done, or stopped after an error
    }
    auto& f = in_flight.front();
    if (f.result.wait_for(milliseconds(20)) != std::future_status::ready) {
      if (clock_type::now() - f.submitted > step_wait) {
        rs.out.note = "a step got no answer within " + std::to_string(step_wait.count())
                      + " ms (the executor's step deadline plus 10 s): the executor hangs";
        rs.observe_error(make_error(errc::timeout, rs.out.note), "step");
        break;
      }
      continue;
    }
    auto r = f.result.get();
    auto& b = batches[f.group];
    b.in_flight = false;
    in_flight.pop_front();
    if (r) {
      if (r->sampled.size() != b.ids.size()) {
        rs.observe_error(make_error(errc::model_failed,
                                    "a step returned " + std::to_string(r->sampled.size())
                                      + " tokens for " + std::to_string(b.ids.size())
                                      + " requests"),
                         "step");
        stopping = true;
        continue;
      }
      for (size_t i = 0; i < b.ids.size(); ++i)
        b.generated[i].push_back(r->sampled[i]);
      b.prefilled = true;
      ++b.steps_done;
      ++rs.out.steps_ok;
      continue;
    }
    rs.observe_error(r.error(), "step");
    auto code = code_of(r.error());
    bool lost = code == errc::worker_lost || code == errc::transport_failed
                || code == errc::not_ready || code == errc::node_lost;
    if (recovering_allowed && lost && recoveries < max_recoveries) {
      if (!need_recovery)
        ++recoveries;
      need_recovery = true; // drain the rest, wait for ready, re-prefill, redo
    } else if (recovering_allowed && lost) {
      rs.out.note = "steps kept failing after " + std::to_string(max_recoveries)
                    + " recoveries: " + describe(r.error());
      stopping = true;
    } else {
      stopping = true;
    }
  }
  if (clock_type::now() >= run_deadline && rs.out.note.empty())
    rs.out.note = "the run did not finish within its deadline";
  for (auto& b : batches)
    rs.out.tokens.insert(rs.out.tokens.end(), b.generated.begin(), b.generated.end());
  rs.out.faults_applied = rs.faults->applied();
  rs.faults->release(); // SIGCONT: a stopped worker cannot be shut down
  // Futures still pending complete with errors when the executor shuts down.
  auto t_down = clock_type::now();
  rs.ex->shutdown();
  rs.out.shutdown_ms = static_cast<double>(ms_between(t_down, clock_type::now()));
  rs.log("shutdown took " + std::to_string(static_cast<int64_t>(rs.out.shutdown_ms)) + " ms");
  rs.out.wall_ms = static_cast<double>(ms_between(t0, clock_type::now()));
  return rs.out;
}

} // namespace cafex
