#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "runtime/error.hpp"
#include "runtime/models/reference_model.hpp"
#include "transport/fake_collective.hpp"

using namespace cafex;

namespace {

model_config small_config(uint64_t seed = 7) {
  model_config cfg;
  cfg.seed = seed;
  cfg.vocab_size = 256;
  cfg.hidden_size = 64;
  cfg.num_heads = 8;
  cfg.num_layers = 4;
  cfg.ffn_size = 256;
  cfg.ffn_blocks = 8;
  cfg.max_seq_len = 64;
  cfg.return_hidden = true;
  return cfg;
}

/// A TP x PP grid of shards: one fake TP group per stage, each rank on its own thread,
/// stages chained by hand.
struct grid {
  int tp;
  int pp;
  std::vector<std::unique_ptr<fake_collective_group>> groups;
  std::vector<std::vector<std::unique_ptr<reference_model>>> shards; // [pp][tp]

  grid(const model_config& cfg, int tp_size, int pp_size) : tp(tp_size), pp(pp_size) {
    for (int s = 0; s < pp; ++s) {
      groups.push_back(std::make_unique<fake_collective_group>(tp));
      shards.emplace_back();
      for (int r = 0; r < tp; ++r) {
        auto m = std::make_unique<reference_model>();
        auto err = m->load(cfg, shard_info{r, tp, s, pp}, groups.back()->endpoint(r));
        REQUIRE_MESSAGE(!err, describe(err));
        shards.back().push_back(std::move(m));
      }
    }
  }

  /// Runs one step through every stage; all TP ranks of a stage must agree bit for bit.
  caf::expected<model_runner_output> step(const scheduler_output& s) {
    intermediate_tensors carried;
    for (int st = 0; st < pp; ++st) {
      std::vector<std::optional<caf::expected<stage_result>>> res(static_cast<size_t>(tp));
      std::vector<std::thread> threads;
      for (int r = 0; r < tp; ++r)
        threads.emplace_back([&, r] {
          res[static_cast<size_t>(r)] = shards[static_cast<size_t>(st)][static_cast<size_t>(r)]
                                          ->execute(s, st == 0 ? nullptr : &carried);
        });
      for (auto& t : threads)
        t.join();
      for (auto& x : res)
        if (!*x)
          return x->error();
      const auto& first = **res[0];
      for (auto& x : res) {
        const auto& y = **x;
        REQUIRE(y.to_next.hidden == first.to_next.hidden);
        REQUIRE(y.output.sampled == first.output.sampled);
        REQUIRE(y.output.hidden == first.output.hidden);
      }
      if (st == pp - 1)
        return first.output;
      carried = first.to_next;
    }
    return make_error(errc::model_failed, "unreachable");
  }
};

std::vector<int32_t> prompt_of(int len, int salt, int vocab) {
  std::vector<int32_t> p;
  uint32_t x = 12345u + static_cast<uint32_t>(salt) * 7919u;
  for (int i = 0; i < len; ++i) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab)));
  }
  return p;
}

/// Drives a fixed schedule of new, cached and finished requests and records outputs.
struct script {
  struct plan {
    std::vector<std::pair<std::string, int>> add; // id, prompt length
    std::vector<std::string> finish;
  };
  std::vector<plan> plans;
  std::map<std::string, int32_t> last; // live request -> its last sampled token

  scheduler_output next(uint64_t step_id, int vocab) {
    scheduler_output s;
    s.step_id = step_id;
    const auto& p = plans[step_id];
    for (const auto& id : p.finish) {
      s.finished.push_back(id);
      last.erase(id);
    }
    for (const auto& [id, tok] : last)
      s.cached_requests.push_back({id, tok});
    for (const auto& [id, len] : p.add)
      s.new_requests.push_back({id, prompt_of(len, static_cast<int>(id[0]), vocab)});
    return s;
  }

  void record(const model_runner_output& out) {
    for (size_t i = 0; i < out.req_ids.size(); ++i)
      last[out.req_ids[i]] = out.sampled[i];
  }
};

script mixed_script() {
  script sc;
  sc.plans = {
    {{{"a", 5}, {"b", 1}, {"c", 12}}, {}},     {{{"d", 3}}, {}}, {{{"e", 7}}, {"b"}}, {{}, {}},
    {{{"f", 2}}, {"a", "unknown-is-ignored"}}, {{}, {}}};
  return sc;
}

std::vector<model_runner_output> run_script(grid& g, script sc, int vocab) {
  std::vector<model_runner_output> outs;
  for (uint64_t k = 0; k < sc.plans.size(); ++k) {
    auto out = g.step(sc.next(k, vocab));
    REQUIRE_MESSAGE(out, describe(out.error()));
    CHECK(out->step_id == k);
    sc.record(*out);
    outs.push_back(*out);
  }
  return outs;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

} // namespace

TEST_CASE("layers split over PP stages, earlier stages take the extra layer") {
  auto counts = [](int layers, int pp) {
    std::vector<int> c;
    int next = 0;
    for (int s = 0; s < pp; ++s) {
      auto r = stage_layers(layers, pp, s);
      CHECK(r.first == next);
      next += r.count;
      c.push_back(r.count);
    }
    CHECK(next == layers);
    return c;
  };
  CHECK(counts(10, 4) == std::vector<int>{3, 3, 2, 2});
  CHECK(counts(4, 3) == std::vector<int>{2, 1, 1});
  CHECK(counts(2, 3) == std::vector<int>{1, 1, 0});
  CHECK(counts(0, 2) == std::vector<int>{0, 0});
}

TEST_CASE("the registry knows the reference model") {
  auto& reg = model_registry::instance();
  CHECK(reg.create("reference") != nullptr);
  CHECK(reg.create("no-such-model") == nullptr);
  reg.add("test-alias", [] { return std::make_unique<reference_model>(); });
  CHECK(reg.create("test-alias") != nullptr);
  auto names = reg.names();
  CHECK(std::count(names.begin(), names.end(), "reference") == 1);
}

TEST_CASE("tokens and hidden states are bit-identical for every TP and PP size") {
  const auto cfg = small_config();
  grid base{cfg, 1, 1};
  const auto want = run_script(base, mixed_script(), cfg.vocab_size);
  REQUIRE(want.size() == 6);
  CHECK(want[0].req_ids == std::vector<std::string>{"a", "b", "c"});
  CHECK(want[0].hidden.size() == 3 * 64);
  for (auto [tp, pp] : {std::pair{2, 1}, {4, 1}, {8, 1}, {1, 2}, {2, 2}, {1, 3}, {2, 3}}) {
    CAPTURE(tp);
    CAPTURE(pp);
    grid g{cfg, tp, pp};
    auto got = run_script(g, mixed_script(), cfg.vocab_size);
    for (size_t k = 0; k < want.size(); ++k) {
      CAPTURE(k);
      CHECK(got[k].req_ids == want[k].req_ids);
      CHECK(got[k].sampled == want[k].sampled);
      CHECK(bit_equal(got[k].hidden, want[k].hidden));
    }
  }
}

TEST_CASE("seeds change tokens, the same seed repeats them, tokens are varied") {
  auto tokens = [](uint64_t seed) {
    const auto cfg = small_config(seed);
    grid g{cfg, 1, 1};
    script sc;
    sc.plans.resize(6);
    for (int i = 0; i < 8; ++i)
      sc.plans[0].add.emplace_back(std::string(1, static_cast<char>('a' + i)), 2 + i);
    std::vector<int32_t> all;
    for (auto& out : run_script(g, sc, cfg.vocab_size))
      all.insert(all.end(), out.sampled.begin(), out.sampled.end());
    return all;
  };
  const auto t1 = tokens(1);
  CHECK(t1.size() == 48);
  CHECK(t1 == tokens(1));
  CHECK(t1 != tokens(2));
  // Not degenerate: several distinct tokens, none taking over.
  CHECK(std::set<int32_t>(t1.begin(), t1.end()).size() >= 6);
  for (auto t : t1)
    CHECK(std::count(t1.begin(), t1.end(), t) <= 24);
}

TEST_CASE("bad inputs return errors and the runner keeps working") {
  auto cfg = small_config();
  cfg.max_seq_len = 8;
  solo_collective solo;
  reference_model m;
  auto expect_code = [&](const scheduler_output& s, errc code,
                         const intermediate_tensors* in = nullptr) {
    auto r = m.execute(s, in);
    REQUIRE(!r);
    CHECK_MESSAGE(code_of(r.error()) == code, describe(r.error()));
  };
  scheduler_output ok;
  ok.new_requests.push_back({"x", {1, 2, 3}});
  expect_code(ok, errc::not_ready);

  SUBCASE("load rejects bad configs") {
    auto load = [&](model_config c, shard_info sh, collective& tp) {
      return code_of(m.load(c, sh, tp));
    };
    fake_collective_group three{3};
    CHECK(load(cfg, {0, 3, 0, 1}, three.endpoint(0)) == errc::invalid_argument); // heads%3
    auto c = cfg;
    c.ffn_blocks = 6;
    fake_collective_group two{2};
    CHECK(load(c, {0, 2, 0, 1}, two.endpoint(0)) == errc::invalid_argument); // 256%6
    c = cfg;
    c.hidden_size = 60;
    CHECK(load(c, {}, solo) == errc::invalid_argument); // 60%8
    c = cfg;
    c.vocab_size = 0;
    CHECK(load(c, {}, solo) == errc::invalid_argument);
    CHECK(load(cfg, {0, 2, 0, 1}, solo) == errc::invalid_argument); // tp size mismatch
    CHECK(load(cfg, {0, 1, 2, 2}, solo) == errc::invalid_argument); // pp rank range
    CHECK(load(cfg, {}, solo) == errc::none);
  }

  REQUIRE(!m.load(cfg, {}, solo));
  auto first = m.execute(ok, nullptr);
  REQUIRE(first);
  CHECK(m.live_requests() == 1);

  scheduler_output s;
  s.new_requests.push_back({"x", {1}});
  expect_code(s, errc::invalid_argument); // already live
  s = {};
  s.new_requests.push_back({"y", {1}});
  s.new_requests.push_back({"y", {2}});
  expect_code(s, errc::invalid_argument); // twice in one step
  s = {};
  s.cached_requests.push_back({"nobody", 1});
  expect_code(s, errc::invalid_argument);
  s = {};
  s.new_requests.push_back({"y", {}});
  expect_code(s, errc::invalid_argument); // empty prompt
  s = {};
  s.new_requests.push_back({"y", {1, 256}});
  expect_code(s, errc::invalid_argument);
  s = {};
  s.new_requests.push_back({"y", {-1}});
  expect_code(s, errc::invalid_argument);
  s = {};
  s.cached_requests.push_back({"x", 999});
  expect_code(s, errc::invalid_argument);
  s = {};
  s.new_requests.push_back({"y", std::vector<int32_t>(9, 1)}); // over max_seq_len 8
  expect_code(s, errc::invalid_argument);
  // A failed step changes nothing: the next step matches a fresh runner's.
  CHECK(m.live_requests() == 1);

  reference_model fresh;
  REQUIRE(!fresh.load(cfg, {}, solo));
  REQUIRE(fresh.execute(ok, nullptr));
  scheduler_output dec;
  dec.step_id = 1;
  dec.cached_requests.push_back({"x", first->output.sampled[0]});
  auto a = m.execute(dec, nullptr);
  auto b = fresh.execute(dec, nullptr);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->output.sampled == b->output.sampled);
  CHECK(bit_equal(a->output.hidden, b->output.hidden));

  // "x" holds 4 of 8 positions: four more decodes fit, the fifth does not.
  for (int i = 0; i < 4; ++i)
    REQUIRE(m.execute(dec, nullptr));
  expect_code(dec, errc::invalid_argument);

  SUBCASE("a later stage checks its input tensor") {
    reference_model st1;
    REQUIRE(!st1.load(cfg, {0, 1, 1, 2}, solo));
    auto check = [&](const intermediate_tensors* in) {
      auto r = st1.execute(ok, in);
      REQUIRE(!r);
      CHECK(code_of(r.error()) == errc::invalid_argument);
    };
    check(nullptr);
    intermediate_tensors in{3, 64, std::vector<float>(3 * 64, 0.5f)};
    auto bad = in;
    bad.num_tokens = 2;
    check(&bad);
    bad = in;
    bad.hidden_size = 32;
    check(&bad);
    bad = in;
    bad.hidden.pop_back();
    check(&bad);
    auto good = st1.execute(ok, &in);
    REQUIRE(good);
    CHECK(good->output.sampled.size() == 1);
  }
}

TEST_CASE("a failed collective returns transport_failed and the step can be retried") {
  const auto cfg = small_config();
  grid base{cfg, 1, 1};
  const auto want = run_script(base, mixed_script(), cfg.vocab_size);
  for (int tp : {1, 2}) {
    CAPTURE(tp);
    grid g{cfg, tp, 1};
    auto sc = mixed_script();
    for (uint64_t k = 0; k < 4; ++k) {
      auto s = sc.next(k, cfg.vocab_size);
      if (k == 2) { // new, cached and finished requests: the shard must roll back all
        g.groups[0]->fail_next(1);
        auto failed = g.step(s);
        REQUIRE(!failed);
        CHECK_MESSAGE(code_of(failed.error()) == errc::transport_failed,
                      describe(failed.error()));
      }
      auto out = g.step(s);
      REQUIRE_MESSAGE(out, describe(out.error()));
      CHECK(out->sampled == want[k].sampled);
      CHECK(bit_equal(out->hidden, want[k].hidden));
      sc.record(*out);
    }
  }
  SUBCASE("on a later pipeline stage") {
    grid g{cfg, 2, 2};
    g.groups[1]->error_on_collective(true);
    auto out = g.step(mixed_script().next(0, cfg.vocab_size));
    REQUIRE(!out);
    CHECK(code_of(out.error()) == errc::transport_failed);
    CHECK(g.shards[1][0]->live_requests() == 0);
  }
}

TEST_CASE("finished requests free their KV cache") {
  auto cfg = small_config();
  solo_collective solo;
  reference_model m;
  REQUIRE(!m.load(cfg, {}, solo));
  scheduler_output s;
  s.new_requests = {{"a", {1, 2}}, {"b", {3}}};
  REQUIRE(m.execute(s, nullptr));
  CHECK(m.live_requests() == 2);
  scheduler_output fin;
  fin.finished = {"a", "never-seen"};
  auto r = m.execute(fin, nullptr);
  REQUIRE(r);
  CHECK(r->output.req_ids.empty());
  CHECK(m.live_requests() == 1);
  scheduler_output again; // "a" is gone: decoding it fails, re-adding it works
  again.cached_requests = {{"a", 1}};
  CHECK(code_of(m.execute(again, nullptr).error()) == errc::invalid_argument);
  again = {};
  again.new_requests = {{"a", {4}}};
  CHECK(m.execute(again, nullptr));
  CHECK(m.live_requests() == 2);
}

TEST_CASE("an empty step returns an empty result on every stage") {
  const auto cfg = small_config();
  solo_collective solo;
  reference_model s0, s1;
  REQUIRE(!s0.load(cfg, {0, 1, 0, 2}, solo));
  REQUIRE(!s1.load(cfg, {0, 1, 1, 2}, solo));
  scheduler_output s;
  s.step_id = 42;
  auto a = s0.execute(s, nullptr);
  REQUIRE(a);
  CHECK(a->to_next.num_tokens == 0);
  CHECK(a->to_next.hidden.empty());
  auto b = s1.execute(s, &a->to_next);
  REQUIRE(b);
  CHECK(b->output.step_id == 42);
  CHECK(b->output.req_ids.empty());
}

TEST_CASE("a model without layers embeds, norms and samples") {
  auto cfg = small_config();
  cfg.num_layers = 0;
  grid base{cfg, 1, 1};
  const auto want = run_script(base, mixed_script(), cfg.vocab_size);
  grid g{cfg, 2, 3};
  const auto got = run_script(g, mixed_script(), cfg.vocab_size);
  for (size_t k = 0; k < want.size(); ++k) {
    CHECK(got[k].sampled == want[k].sampled);
    CHECK(bit_equal(got[k].hidden, want[k].hidden));
  }
  CHECK(g.groups[0]->calls() == 0); // no layers, no collectives
  // More stages than layers: the empty stages pass hidden states through.
  cfg.num_layers = 2;
  grid two{cfg, 1, 1};
  grid wide{cfg, 1, 3};
  auto w1 = run_script(two, mixed_script(), cfg.vocab_size);
  auto w2 = run_script(wide, mixed_script(), cfg.vocab_size);
  for (size_t k = 0; k < w1.size(); ++k)
    CHECK(w1[k].sampled == w2[k].sampled);
}

TEST_CASE("re-prefilling prompt plus generated tokens continues exactly as decoding does") {
  // Recovery after a lost worker drops every KV cache and re-prefills each live request
  // with its prompt and the tokens it has generated (recompute, as vLLM preempts). That
  // is only invisible to users if the model gives the same tokens both ways.
  const auto cfg = small_config(11);
  for (auto [tp, pp] : {std::pair{1, 1}, {2, 1}, {1, 2}}) {
    CAPTURE(tp);
    CAPTURE(pp);
    grid dec{cfg, tp, pp};
    auto prompt = prompt_of(9, 3, cfg.vocab_size);
    std::vector<int32_t> tokens; // generated by plain decoding
    scheduler_output s;
    s.new_requests.push_back({"r", prompt});
    for (uint64_t k = 0; k < 8; ++k) {
      s.step_id = k;
      auto out = dec.step(s);
      REQUIRE_MESSAGE(out, describe(out.error()));
      tokens.push_back(out->sampled.at(0));
      s.new_requests.clear();
      s.cached_requests = {{"r", tokens.back()}};
    }
    for (size_t cut : {size_t{1}, size_t{3}, size_t{6}}) {
      CAPTURE(cut);
      grid re{cfg, tp, pp};
      scheduler_output r;
      auto full = prompt;
      // The re-prefilled prompt ends with the last token generated before the cut; the
      // step that follows samples token `cut` again.
      full.insert(full.end(), tokens.begin(), tokens.begin() + static_cast<long>(cut));
      r.new_requests.push_back({"r", full});
      std::vector<int32_t> again(tokens.begin(), tokens.begin() + static_cast<long>(cut));
      for (uint64_t k = cut; k < tokens.size(); ++k) {
        r.step_id = k;
        auto out = re.step(r);
        REQUIRE_MESSAGE(out, describe(out.error()));
        again.push_back(out->sampled.at(0));
        r.new_requests.clear();
        r.cached_requests = {{"r", again.back()}};
      }
      CHECK(again == tokens);
    }
  }
}
