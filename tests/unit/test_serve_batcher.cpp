// cafex-serve's continuous batching against a fake executor that keeps each step's
// callback, so the test decides when (and whether) every step completes.
#include <doctest/doctest.h>

#include <map>

#include "batcher.hpp"
#include "runtime/error.hpp"
#include "runtime/models/collective.hpp"
#include "runtime/models/reference_model.hpp"

using namespace cafex;
using namespace cafex::serve;

namespace {

struct fake_executor {
  std::vector<scheduler_output> steps;
  std::vector<step_done> pending;

  step_submitter submitter() {
    return [this](const scheduler_output& s, step_done d) {
      steps.push_back(s);
      pending.push_back(std::move(d));
    };
  }
  /// Answers the oldest pending step with `sampled` (default: token = 100 + position in
  /// the step), per-request `errors` and `logprobs` (default: none).
  void complete_ok(std::vector<int32_t> sampled = {}, std::vector<std::string> errors = {},
                   std::vector<token_logprobs> logprobs = {}) {
    REQUIRE(!pending.empty());
    auto& s = steps[steps.size() - pending.size()];
    model_runner_output out;
    out.step_id = s.step_id;
    for (auto& r : s.new_requests)
      out.req_ids.push_back(r.req_id);
    for (auto& r : s.cached_requests)
      out.req_ids.push_back(r.req_id);
    if (sampled.empty())
      for (size_t i = 0; i < out.req_ids.size(); ++i)
        sampled.push_back(static_cast<int32_t>(100 + i));
    out.sampled = std::move(sampled);
    out.errors = std::move(errors);
    out.logprobs = std::move(logprobs);
    auto d = std::move(pending.front());
    pending.erase(pending.begin());
    d(out);
  }
  void complete_error(caf::error e) {
    auto d = std::move(pending.front());
    pending.erase(pending.begin());
    d(std::move(e));
  }
};

/// A fake executor whose one worker is the real reference model (tp 1, pp 1): a step
/// that names a request the worker holds no KV cache for fails as it would in a worker.
/// The test answers each pending step by position, and drops every cache as a recovery's
/// reinitialize_distributed does.
struct model_executor {
  solo_collective tp;
  reference_model model;
  std::vector<std::pair<scheduler_output, step_done>> pending;

  model_executor() {
    model_config cfg;
    cfg.seed = 3;
    cfg.vocab_size = 64;
    cfg.hidden_size = 32;
    cfg.num_heads = 4;
    cfg.num_layers = 2;
    cfg.ffn_size = 64;
    cfg.ffn_blocks = 4;
    cfg.max_seq_len = 64;
    auto err = model.load(cfg, shard_info{0, 1, 0, 1}, tp);
    REQUIRE_MESSAGE(!err, describe(err));
  }

  step_submitter submitter() {
    return [this](const scheduler_output& s, step_done d) {
      pending.emplace_back(s, std::move(d));
    };
  }
  std::pair<scheduler_output, step_done> take(size_t i) {
    REQUIRE(i < pending.size());
    auto p = std::move(pending[i]);
    pending.erase(pending.begin() + static_cast<long>(i));
    return p;
  }
  /// Runs pending step `i` on the model and answers it (with the model's error, if any).
  void run(size_t i = 0) {
    auto [step, done] = take(i);
    auto r = model.execute(step, nullptr);
    if (!r)
      done(r.error());
    else
      done(r->output);
  }
  void refuse(size_t i, caf::error e) {
    auto p = take(i);
    p.second(std::move(e));
  }
  /// Runs every step, oldest first, until none is pending.
  void run_all() {
    for (int guard = 0; !pending.empty() && guard < 1000; ++guard)
      run(0);
    CHECK(pending.empty());
  }
};

struct record {
  std::vector<int32_t> tokens;
  int done = 0;
  caf::error err;
};

struct record_finish {
  std::vector<std::string> finish; ///< per token: why it was the last ("" if it was not)
  std::vector<int32_t> logprob_tokens;
};

request_sink sink_for(record& r, record_finish* f = nullptr) {
  return {[&r, f](int32_t t, const token_logprobs* lp, const char* finish) {
            r.tokens.push_back(t);
            if (f != nullptr) {
              f->finish.emplace_back(finish);
              if (lp != nullptr)
                f->logprob_tokens.push_back(lp->token);
            }
          },
          [&r](const caf::error& e) {
            ++r.done;
            r.err = e;
          }};
}

sampling_params mt(int max_tokens) {
  sampling_params p;
  p.max_tokens = max_tokens;
  return p;
}

} // namespace

TEST_CASE("requests join and leave the batch between steps") {
  fake_executor fx;
  batcher b{{}, fx.submitter()};
  record a, c;
  auto ida = b.add({1, 2}, mt(2), sink_for(a));
  REQUIRE(ida);
  REQUIRE(fx.steps.size() == 1);
  CHECK(fx.steps[0].new_requests.size() == 1);
  // A second request waits: one step in flight at a time (PP size 1).
  auto idc = b.add({3}, mt(3), sink_for(c));
  REQUIRE(idc);
  CHECK(fx.steps.size() == 1);
  CHECK(b.queued() == 1);
  fx.complete_ok(); // a gets its first token; the next step carries a (cached) and c (new)
  REQUIRE(fx.steps.size() == 2);
  CHECK(fx.steps[1].new_requests.at(0).req_id == *idc);
  CHECK(fx.steps[1].cached_requests.at(0).req_id == *ida);
  CHECK(fx.steps[1].cached_requests.at(0).token == 100);
  fx.complete_ok(); // a is done after 2 tokens and leaves; c continues
  CHECK(a.done == 1);
  CHECK_FALSE(a.err);
  CHECK(a.tokens.size() == 2);
  REQUIRE(fx.steps.size() == 3);
  CHECK(fx.steps[2].finished == std::vector<std::string>{*ida});
  CHECK(fx.steps[2].cached_requests.size() == 1);
  fx.complete_ok();
  fx.complete_ok();
  CHECK(c.done == 1);
  CHECK(c.tokens.size() == 3);
  CHECK(b.idle());
  // No step just to free the last request's KV cache: the next request's step does it.
  CHECK(fx.steps.size() == 4);
  record d;
  REQUIRE(b.add({4}, mt(1), sink_for(d)));
  REQUIRE(fx.steps.size() == 5);
  CHECK(fx.steps[4].finished == std::vector<std::string>{*idc});
  CHECK(fx.steps[4].new_requests.size() == 1);
}

TEST_CASE("max_batch and max_in_flight bound each step; a full queue refuses") {
  fake_executor fx;
  batcher_options o;
  o.max_batch = 2;
  o.max_in_flight = 2;
  o.max_queued = 3;
  batcher b{o, fx.submitter()};
  std::vector<record> r(6);
  for (int i = 0; i < 5; ++i)
    REQUIRE(b.add({1}, mt(1), sink_for(r[i])));
  // Steps start eagerly: the first two requests each got a step; three wait.
  CHECK(fx.steps.size() == 2);
  CHECK(b.steps_in_flight() == 2);
  CHECK(b.queued() == 3);
  auto refused = b.add({1}, mt(1), sink_for(r[5]));
  REQUIRE_FALSE(refused);
  CHECK(code_of(refused.error()) == errc::too_many_in_flight);
  fx.complete_ok(); // frees a slot: the next step takes max_batch = 2 waiting requests
  REQUIRE(fx.steps.size() == 3);
  CHECK(fx.steps[2].num_requests() == 2);
  CHECK(fx.steps[2].finished.size() == 1);
  CHECK(b.queued() == 1);
}

TEST_CASE("a failed step fails exactly its requests; others go on") {
  fake_executor fx;
  batcher b{{}, fx.submitter()};
  record a;
  REQUIRE(b.add({1}, mt(4), sink_for(a)));
  fx.complete_error(make_error(errc::worker_lost, "rank 1 is gone"));
  CHECK(a.done == 1);
  CHECK(code_of(a.err) == errc::worker_lost);
  CHECK(b.idle());
  record c;
  REQUIRE(b.add({1}, mt(1), sink_for(c)));
  fx.complete_ok();
  CHECK(c.done == 1);
  CHECK_FALSE(c.err);
}

TEST_CASE("drain refuses new requests, finishes accepted ones, then reports idle") {
  fake_executor fx;
  batcher b{{}, fx.submitter()};
  int idle_calls = 0;
  b.on_idle([&] { ++idle_calls; });
  record a, q;
  REQUIRE(b.add({1}, mt(2), sink_for(a)));
  REQUIRE(b.add({1}, mt(1), sink_for(q)));
  b.drain();
  auto late = b.add({1}, mt(1), sink_for(q));
  REQUIRE_FALSE(late);
  CHECK(code_of(late.error()) == errc::not_ready);
  fx.complete_ok();
  fx.complete_ok();
  CHECK(a.done == 1);
  CHECK(q.done == 1);
  CHECK(idle_calls >= 1);
}

TEST_CASE("fail_all answers every accepted request once; late results are ignored") {
  fake_executor fx;
  batcher b{{}, fx.submitter()};
  record a, q;
  REQUIRE(b.add({1}, mt(5), sink_for(a)));
  REQUIRE(b.add({1}, mt(5), sink_for(q)));
  b.fail_all(make_error(errc::not_ready, "shutting down"));
  CHECK(a.done == 1);
  CHECK(q.done == 1);
  CHECK(b.idle());
  fx.complete_ok(); // the step in flight comes back after all
  CHECK(a.done == 1);
  CHECK(a.tokens.empty());
}

TEST_CASE("a cancelled request leaves without calling its sink again") {
  fake_executor fx;
  batcher b{{}, fx.submitter()};
  record a;
  auto id = b.add({1}, mt(5), sink_for(a));
  REQUIRE(id);
  b.cancel(*id);
  fx.complete_ok();
  CHECK(a.tokens.empty());
  CHECK(a.done == 0);
  CHECK(b.idle());
}

TEST_CASE("after fail_for_good, queued and new requests fail at once instead of waiting") {
  // Issue #14, item 6: a recovery that gave up left the batcher paused, so every later
  // request waited forever and a drain waited its whole deadline.
  fake_executor ex;
  batcher_options o;
  o.recompute_on_failure = true;
  int pauses = 0;
  batcher_observer obs;
  obs.paused = [&] { ++pauses; };
  batcher b(o, ex.submitter(), obs);
  record first;
  REQUIRE(b.add({1, 2}, mt(4), sink_for(first)));
  ex.complete_error(make_error(errc::worker_lost, "rank 1 is gone"));
  REQUIRE(pauses == 1);
  REQUIRE(b.paused());
  record queued;
  REQUIRE(b.add({3}, mt(4), sink_for(queued))); // waits for the recovery
  CHECK(queued.done == 0);
  b.fail_for_good(make_error(errc::worker_lost, "the executor gave up"));
  CHECK(first.done == 1);
  CHECK(queued.done == 1);
  CHECK(code_of(queued.err) == errc::worker_lost);
  CHECK(b.idle());
  CHECK_FALSE(b.paused());
  auto later = b.add({4}, mt(4), sink_for(queued));
  REQUIRE_FALSE(later);
  CHECK(code_of(later.error()) == errc::worker_lost);
  CHECK(describe(later.error()).find("gave up") != std::string::npos);
  CHECK(ex.pending.empty()); // nothing was submitted for a request that cannot run
}

TEST_CASE("a step that succeeds after a recompute began leaves its requests to the "
          "re-prefill") {
  // Issue #14, item 7 (HTTP 500 "cached request 'cmpl-...' is unknown" after a recovery).
  // Two steps in flight: the newer one is refused at once (a rank's link dropped), which
  // pauses the batcher and queues every request for a re-prefill; then the older one,
  // which did not need the lost rank, succeeds. Its requests must not count as cached:
  // the recovery drops every KV cache, and each request must be re-prefilled (prompt
  // plus the tokens it streamed), never decoded from a cache that is gone.
  const std::vector<int32_t> pa{5, 9, 2, 7, 1};
  const std::vector<int32_t> pb{3, 3, 8};
  const int n = 5;
  batcher_options o;
  o.max_in_flight = 2;
  o.recompute_on_failure = true;
  record want_a, want_b;
  {
    model_executor ex;
    batcher b(o, ex.submitter());
    REQUIRE(b.add(pa, mt(n), sink_for(want_a)));
    REQUIRE(b.add(pb, mt(n), sink_for(want_b)));
    ex.run_all();
    REQUIRE(want_a.done == 1);
    REQUIRE_MESSAGE(!want_a.err, describe(want_a.err));
    REQUIRE(want_b.done == 1);
    REQUIRE(want_a.tokens.size() == static_cast<size_t>(n));
  }
  model_executor ex;
  int pauses = 0;
  batcher_observer obs;
  obs.paused = [&] { ++pauses; };
  batcher b(o, ex.submitter(), obs);
  record a, c;
  REQUIRE(b.add(pa, mt(n), sink_for(a)));
  ex.run(0); // a's prefill; its first decode step is submitted
  REQUIRE(ex.pending.size() == 1);
  REQUIRE(ex.pending[0].first.cached_requests.size() == 1);
  REQUIRE(b.add(pb, mt(n), sink_for(c))); // c's prefill: a second step in flight
  REQUIRE(ex.pending.size() == 2);
  ex.refuse(1, make_error(errc::worker_lost, "rank 1 is gone (its link dropped)"));
  REQUIRE(pauses == 1);
  REQUIRE(b.paused());
  ex.run(0); // a's decode step succeeds after all
  // The recovery: every worker drops its KV caches; then the host resumes.
  REQUIRE(ex.model.drop_requests());
  b.resume();
  REQUIRE_FALSE(ex.pending.empty());
  for (const auto& r : ex.pending[0].first.cached_requests)
    CHECK_MESSAGE(false, "request " << r.req_id << " is decoded from a cache the recovery "
                                    << "dropped");
  ex.run_all();
  CHECK(a.done == 1);
  CHECK_MESSAGE(!a.err, describe(a.err));
  CHECK(c.done == 1);
  CHECK_MESSAGE(!c.err, describe(c.err));
  CHECK(a.tokens == want_a.tokens);
  CHECK(c.tokens == want_b.tokens);
  CHECK(b.idle());
}

TEST_CASE("a request stops at an EOS id or a stop id (after min_tokens), else at max_tokens "
          "or the length limit, and says why on its last token") {
  fake_executor ex;
  batcher_options o;
  o.max_model_len = 6;
  batcher b{o, ex.submitter()};
  // Alone in its steps, each request samples 100 (token = 100 + position in the step).
  record a, c, d, e;
  record_finish fa, fc, fd, fe;
  auto stop_at_100 = mt(8);
  stop_at_100.stop_token_ids = {100};
  REQUIRE(b.add({1}, stop_at_100, sink_for(a, &fa)));
  ex.complete_ok();
  CHECK(a.tokens == std::vector<int32_t>{100});
  CHECK(fa.finish == std::vector<std::string>{"stop"});
  CHECK((a.done == 1 && !a.err));

  auto late_stop = stop_at_100;
  late_stop.min_tokens = 2; // the models mask stop ids before it; the host checks it too
  REQUIRE(b.add({1}, late_stop, sink_for(c, &fc)));
  ex.complete_ok();
  ex.complete_ok();
  CHECK(c.tokens == std::vector<int32_t>{100, 100});
  CHECK(fc.finish == std::vector<std::string>{"", "stop"});

  // The model's EOS id: 100 here.
  batcher_options o2 = o;
  o2.eos_ids = {100};
  batcher b2{o2, ex.submitter()};
  record x;
  record_finish fx;
  REQUIRE(b2.add({1}, mt(8), sink_for(x, &fx)));
  ex.complete_ok();
  CHECK(fx.finish == std::vector<std::string>{"stop"});
  auto no_eos = mt(3);
  no_eos.ignore_eos = true;
  REQUIRE(b2.add({1}, no_eos, sink_for(d, &fd)));
  for (int i = 0; i < 3; ++i)
    ex.complete_ok();
  CHECK(d.tokens == std::vector<int32_t>{100, 100, 100});
  CHECK(fd.finish == std::vector<std::string>{"", "", "length"});
  // The length limit: prompt 4 + 2 tokens reach max_model_len 6.
  auto long_one = mt(100);
  long_one.ignore_eos = true;
  REQUIRE(b.add({1, 2, 3, 4}, long_one, sink_for(e, &fe)));
  while (!ex.pending.empty())
    ex.complete_ok();
  CHECK(fe.finish.back() == "length");
  CHECK(e.tokens.size() == 2);
}

TEST_CASE("a request the model fails alone ends with its error; the others go on; "
          "logprobs reach the sink") {
  fake_executor ex;
  batcher b{{}, ex.submitter()};
  record a, c;
  record_finish fc;
  auto lp = mt(1);
  lp.logprobs = 2;
  REQUIRE(b.add({1}, mt(4), sink_for(a)));
  REQUIRE(b.add({2}, lp, sink_for(c, &fc))); // waits: one step at a time
  REQUIRE(ex.pending.size() == 1);
  ex.complete_ok({-1}, {"request 'x': the KV cache is full"});
  CHECK(a.done == 1);
  CHECK(code_of(a.err) == errc::model_failed);
  CHECK(describe(a.err).find("KV cache is full") != std::string::npos);
  // c runs next, alone, and gets its logprobs.
  token_logprobs l;
  l.token = 7;
  REQUIRE(ex.pending.size() == 1);
  ex.complete_ok({7}, {}, {l});
  CHECK(c.tokens == std::vector<int32_t>{7});
  CHECK(fc.logprob_tokens == std::vector<int32_t>{7});
  CHECK((c.done == 1 && !c.err));
  CHECK(b.idle());
}

TEST_CASE("refusal says why n more requests would not fit, before any is queued") {
  fake_executor ex;
  batcher_options o;
  o.max_queued = 3;
  batcher b{o, ex.submitter()};
  CHECK(!b.refusal(3));
  auto full = b.refusal(4);
  CHECK(code_of(full) == errc::too_many_in_flight);
  CHECK(describe(full).find("--max-queued 3") != std::string::npos);
  b.drain();
  CHECK(code_of(b.refusal(1)) == errc::not_ready);
}

TEST_CASE("a re-prefill after a recovery asks only for the min_tokens still owed") {
  fake_executor ex;
  batcher_options o;
  o.recompute_on_failure = true;
  batcher b{o, ex.submitter()};
  record a;
  auto p = mt(6);
  p.min_tokens = 4;
  REQUIRE(b.add({1, 2}, p, sink_for(a)));
  ex.complete_ok();
  ex.complete_ok(); // two tokens out
  ex.complete_error(make_error(errc::worker_lost, "rank 0 died"));
  b.resume();
  REQUIRE(!ex.pending.empty());
  const auto& again = ex.steps.back();
  REQUIRE(again.new_requests.size() == 1);
  CHECK(again.new_requests[0].prompt == std::vector<int32_t>{1, 2, 100, 100});
  CHECK(again.new_requests[0].sampling.min_tokens == 2);
  CHECK(again.new_requests[0].sampling.max_tokens == 6);
}
