// cafex-serve end to end on loopback with the embedded default cluster (tp=2): exact
// tokens for 32 concurrent clients, 400s for every bad request, /health and /metrics,
// /health 503 after a worker dies, and a SIGTERM under load that loses no request.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <regex>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "processes.hpp"
#include "serve_process.hpp"
#include "runtime/models/reference_model.hpp"
#include "runtime/models/workload.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using json = nlohmann::json;
using serve::http_client;
using serve::http_reply;
using test::service;

namespace {

std::vector<int32_t> reference_tokens(const std::vector<int32_t>& prompt, int n) {
  reference_model m;
  solo_collective solo;
  REQUIRE_FALSE(m.load(model_config{}, shard_info{}, solo));
  std::vector<int32_t> out;
  scheduler_output s;
  s.new_requests.push_back({"r", prompt});
  for (int i = 0; i < n; ++i) {
    auto r = m.execute(s, nullptr);
    REQUIRE(r);
    out.push_back(r->output.sampled.at(0));
    s = {};
    s.cached_requests.push_back({"r", out.back()});
  }
  return out;
}

std::string body_for(const std::vector<int32_t>& prompt, int max_tokens, bool stream) {
  // Greedy, to compare with the reference model's argmax (OpenAI's default samples).
  return json{{"prompt", prompt},
              {"max_tokens", max_tokens},
              {"stream", stream},
              {"temperature", 0}}
    .dump();
}

/// What one completion returned: every token it got and how it ended.
struct outcome {
  bool transport_ok = false;
  std::string transport_error;
  int status = 0;
  std::vector<int32_t> tokens;
  bool completed = false; ///< a final answer with all tokens
  bool errored = false;   ///< an error response or error event
  std::string error;
};

outcome complete(http_client& c, const std::vector<int32_t>& prompt, int max_tokens,
                 bool stream) {
  outcome o;
  auto r = c.request("POST", "/v1/completions", body_for(prompt, max_tokens, stream));
  o.transport_ok = r.transport_ok;
  o.transport_error = r.error;
  o.status = r.status;
  if (!r.transport_ok)
    return o;
  if (!stream || r.status != 200) {
    auto j = json::parse(r.body, nullptr, false);
    if (r.status == 200 && j.is_object()) {
      o.tokens = j.at("choices").at(0).at("token_ids").get<std::vector<int32_t>>();
      o.completed = j.at("choices").at(0).at("finish_reason") == "length";
    } else {
      o.errored = j.is_object() && j.contains("error");
      o.error = r.body;
    }
    return o;
  }
  // OpenAI's stream: text_completion chunks (one token each), an error object if the
  // request failed, then [DONE].
  bool saw_done_marker = false, finished = false;
  for (auto& [event, data] : r.events) {
    if (data == "[DONE]") {
      saw_done_marker = true;
      continue;
    }
    auto j = json::parse(data);
    if (j.contains("error")) {
      o.errored = true;
      o.error = data;
      continue;
    }
    CHECK(j.at("object") == "text_completion");
    const auto& ch = j.at("choices").at(0);
    CHECK(ch.at("index") == 0);
    for (auto t : ch.at("token_ids"))
      o.tokens.push_back(t.get<int32_t>());
    finished = !ch.at("finish_reason").is_null();
  }
  o.completed = saw_done_marker && finished && !o.errored;
  return o;
}

int status_of(const http_reply& r) {
  return r.transport_ok ? r.status : -1;
}

std::string metric_text(const service& s) {
  auto c = s.client(10s);
  auto r = c.request("GET", "/metrics");
  REQUIRE(r.transport_ok);
  REQUIRE(r.status == 200);
  return r.body;
}

/// The value of the first sample whose "name{labels}" starts with `key`; -1 if absent.
double metric(const std::string& text, const std::string& key) {
  size_t pos = 0;
  while ((pos = text.find(key, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      auto sp = text.find(' ', pos);
      return std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
    }
    ++pos;
  }
  return -1;
}

} // namespace

TEST_CASE("32 concurrent clients get the reference tokens while bad requests get 400s") {
  service svc({"--max-body-bytes", "65536"});
  constexpr int clients = 32;
  std::vector<std::vector<int32_t>> prompts(clients), want(clients);
  for (int i = 0; i < clients; ++i) {
    prompts[i] = demo_workload::prompt(11, i, 512);
    want[i] = reference_tokens(prompts[i], 4 + i % 9);
  }
  std::vector<outcome> got(clients);
  std::vector<std::thread> pool;
  for (int i = 0; i < clients; ++i)
    pool.emplace_back([&, i] {
      auto c = svc.client();
      got[i] = complete(c, prompts[i], static_cast<int>(want[i].size()), i % 2 == 1);
    });
  // Bad requests, sent while the 32 run: each a 400 that says what is wrong.
  struct bad_case {
    std::string body;
    std::string says;
  };
  std::vector<bad_case> bad = {
    {"{\"prompt\": [1, 2", "malformed JSON"},
    {"[1, 2]", "must be a JSON object"},
    {"{\"max_tokens\": 4}", "missing field 'prompt'"},
    {"{\"prompt\": \"hello\"}", "no tokenizer"},
    {"{\"prompt\": [1, \"x\"]}", "prompt[1] is text"},
    {"{\"prompt\": []}", "'prompt' is empty"},
    {"{\"prompt\": [512]}", "out of range [0, 511]"},
    {"{\"prompt\": [1], \"max_tokens\": 0}", "out of range"},
    {"{\"prompt\": [1], \"max_tokens\": 100000}", "out of range"},
    {"{\"prompt\": [1], \"max_tokens\": \"4\"}", "'max_tokens' must be an integer"},
    {"{\"prompt\": [1], \"stream\": 1}", "'stream' must be true or false"},
  };
  {
    auto c = svc.client(20s);
    for (auto& b : bad) {
      auto r = c.request("POST", "/v1/completions", b.body);
      CHECK_MESSAGE(status_of(r) == 400, b.body << " -> " << r.status << " " << r.error);
      CHECK_MESSAGE(r.body.find(b.says) != std::string::npos, b.body << " -> " << r.body);
    }
    std::string big(100000, ' ');
    auto r = c.raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                   + std::to_string(big.size()) + "\r\n\r\n" + big);
    CHECK_MESSAGE(status_of(r) == 413, r.error);
    CHECK(r.body.find("exceeds 65536 bytes") != std::string::npos);
    r = c.raw("NOT HTTP AT ALL\r\n\r\n");
    CHECK_MESSAGE(status_of(r) == 400, r.error);
    CHECK(r.body.find("malformed HTTP request") != std::string::npos);
    CHECK(status_of(c.request("GET", "/v1/completions")) == 405);
    CHECK(status_of(c.request("GET", "/nope")) == 404);
  }
  for (auto& t : pool)
    t.join();
  for (int i = 0; i < clients; ++i) {
    INFO("client " << i << (i % 2 ? " (stream)" : "") << ": " << got[i].transport_error
                   << got[i].error);
    CHECK(got[i].status == 200);
    CHECK(got[i].completed);
    CHECK(got[i].tokens == want[i]);
  }
  // Still serving, healthy, and the metrics parse.
  auto c = svc.client(10s);
  auto again = complete(c, prompts[0], 3, false);
  CHECK(again.tokens == std::vector<int32_t>(want[0].begin(), want[0].begin() + 3));
  auto h = c.request("GET", "/health");
  CHECK(status_of(h) == 200);
  CHECK(json::parse(h.body).at("status") == "healthy");
  auto text = metric_text(svc);
  std::regex sample(
    R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_]+="[^"]*"(,[a-zA-Z_]+="[^"]*")*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  size_t lines = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#')
      continue;
    ++lines;
    CHECK_MESSAGE(std::regex_match(line, sample), line);
  }
  CHECK(lines > 20);
  CHECK(metric(text, "cafex_step_latency_seconds_count") > 0);
  CHECK(metric(text, "cafex_step_latency_seconds_bucket{le=\"+Inf\"}")
        == metric(text, "cafex_step_latency_seconds_count"));
  CHECK(metric(text, "cafex_workers{state=\"healthy\"}") == 2);
  CHECK(metric(text, "cafex_executor_state{state=\"healthy\"}") == 1);
  CHECK(metric(text, "cafex_executor_state{state=\"failed\"}") == 0);
  CHECK(metric(text, "cafex_worker_state{rank=\"0\"") == 1);
  CHECK(metric(text, "cafex_worker_state{rank=\"1\"") == 1);
  CHECK(metric(text, "cafex_recoveries_total") == 0);
  CHECK(metric(text, "cafex_tokens_per_second") >= 0);
  CHECK(metric(text, "cafex_workers{state=\"dead\"}") == 0);
  CHECK(metric(text, "cafex_steps_in_flight") >= 0);
  CHECK(metric(text, "cafex_step_failures_total{kind=\"worker_lost\"}") == 0);
  CHECK(metric(text, "cafex_requests_accepted_total") == clients + 1);
  CHECK(metric(text, "cafex_http_responses_total{code=\"400\"}") == bad.size() + 1);
  CHECK(metric(text, "cafex_http_responses_total{code=\"413\"}") == 1);
  CHECK(svc.terminate() == 0);
}

TEST_CASE("/health turns 503 within seconds when a worker is killed") {
  service svc({});
  auto c = svc.client(10s);
  REQUIRE(status_of(c.request("GET", "/health")) == 200);
  auto workers = test::children_of(svc.pid);
  REQUIRE(workers.size() == 2);
  REQUIRE(kill(workers[0], SIGKILL) == 0);
  http_reply h;
  bool turned = test::wait_until(
    [&] {
      h = c.request("GET", "/health");
      return status_of(h) == 503;
    },
    5s);
  CHECK_MESSAGE(turned, "/health still " << h.status << " " << h.body);
  auto j = json::parse(h.body);
  CHECK(j.at("status") == "degraded");
  CHECK(j.at("reason").get<std::string>().find("dead") != std::string::npos);
  // Completions fail with a clear error instead of hanging.
  auto r = complete(c, {1, 2, 3}, 4, false);
  CHECK(r.status == 503);
  CHECK(r.error.find("gone") != std::string::npos);
  auto text = metric_text(svc);
  CHECK(metric(text, "cafex_workers{state=\"dead\"}") == 1);
  CHECK(metric(text, "cafex_executor_state{state=\"degraded\"}") == 1);
  CHECK(metric(text, "cafex_step_failures_total{kind=\"worker_lost\"}") >= 1);
  CHECK(svc.terminate() == 0);
}

TEST_CASE("with --on-worker-failure restart: /health back to 200, streams survive the kill") {
  service svc({"--on-worker-failure", "restart"});
  auto c = svc.client(10s);
  REQUIRE(status_of(c.request("GET", "/health")) == 200);
  // Two long streams, so that the kill lands while they run.
  constexpr int clients = 2;
  constexpr int max_tokens = 600;
  std::vector<std::vector<int32_t>> prompts(clients);
  std::vector<outcome> got(clients);
  std::vector<std::thread> pool;
  for (int i = 0; i < clients; ++i) {
    prompts[i] = demo_workload::prompt(5, i, 512);
    pool.emplace_back([&, i] {
      auto cc = svc.client(120s);
      got[i] = complete(cc, prompts[i], max_tokens, true);
    });
  }
  REQUIRE(test::wait_until(
    [&] { return metric(metric_text(svc), "cafex_step_latency_seconds_count") >= 50; }, 30s));
  auto workers = test::children_of(svc.pid);
  REQUIRE(workers.size() == 2);
  REQUIRE(kill(workers[1], SIGKILL) == 0);
  http_reply h;
  bool back = test::wait_until(
    [&] {
      h = c.request("GET", "/health");
      return status_of(h) == 200 && test::children_of(svc.pid).size() == 2;
    },
    20s);
  CHECK_MESSAGE(back, "/health still " << h.status << " " << h.body);
  for (auto& t : pool)
    t.join();
  auto text = metric_text(svc);
  // The survivor's collective may fail first (transport_failed), or the driver may see
  // the death first (worker_lost): either way one failed step, then recovery.
  CHECK(metric(text, "cafex_step_failures_total{kind=\"worker_lost\"}")
          + metric(text, "cafex_step_failures_total{kind=\"transport_failed\"}")
        >= 1);
  CHECK(metric(text, "cafex_recoveries_total") >= 1);
  // The streams saw a pause, not an error: the batcher re-prefilled them after recovery,
  // and the tokens are exactly the reference model's.
  for (int i = 0; i < clients; ++i) {
    CAPTURE(i);
    CHECK_MESSAGE(got[i].completed, got[i].error);
    CHECK(got[i].tokens == reference_tokens(prompts[i], max_tokens));
  }
  CHECK(svc.terminate() == 0);
}

TEST_CASE(
  "after a failed recovery every request gets a 503 at once, and SIGTERM does not wait") {
  // Issue #14, item 6: the second completion after a given-up recovery hung with no bytes
  // (the batcher stayed paused), and SIGTERM waited the whole 30 s drain for it.
  service svc({"--on-worker-failure", "restart", "--max-restarts", "1"});
  auto c = svc.client(10s);
  auto health_is = [&](const std::string& want, http_reply& h) {
    return test::wait_until(
      [&] {
        h = c.request("GET", "/health");
        auto j = json::parse(h.body, nullptr, false);
        return h.transport_ok && j.is_object() && j.value("status", "") == want;
      },
      20s);
  };
  http_reply h;
  REQUIRE(health_is("healthy", h));
  auto workers = test::children_of(svc.pid);
  REQUIRE(workers.size() == 2);
  pid_t first = workers[1];
  REQUIRE(kill(first, SIGKILL) == 0);
  // The one recovery --max-restarts allows: back to healthy with a new worker.
  REQUIRE(test::wait_until(
    [&] {
      auto now = test::children_of(svc.pid);
      return now.size() == 2 && std::find(now.begin(), now.end(), first) == now.end();
    },
    20s));
  // A completion sent now waits for the recovery and is served: it has ended.
  CHECK(complete(c, {1, 2, 3}, 4, false).status == 200);
  REQUIRE(health_is("healthy", h));
  workers = test::children_of(svc.pid);
  REQUIRE(workers.size() == 2);
  REQUIRE(kill(workers[0], SIGKILL) == 0);
  CHECK_MESSAGE(health_is("failed", h), "/health: " << h.status << " " << h.body);
  CHECK(status_of(h) == 503);
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    auto t0 = std::chrono::steady_clock::now();
    auto r = complete(c, {1, 2, 3}, 4, i == 1);
    REQUIRE_MESSAGE(r.transport_ok, "completion " << i << " hung: " << r.transport_error);
    CHECK(r.status == 503);
    CHECK_MESSAGE(r.error.find("gave up") != std::string::npos, r.error);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  }
  auto t0 = std::chrono::steady_clock::now();
  CHECK(svc.terminate(20s) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("SIGTERM under load: every accepted request completes or gets an error") {
  service svc({"--max-batch", "8", "--drain-timeout", "2"});
  constexpr int clients = 24;
  constexpr int max_tokens = 40;
  std::vector<std::vector<int32_t>> prompts(clients), want(clients);
  for (int i = 0; i < clients; ++i) {
    prompts[i] = demo_workload::prompt(5, i, 512);
    want[i] = reference_tokens(prompts[i], max_tokens);
  }
  std::vector<outcome> got(clients);
  std::vector<std::thread> pool;
  for (int i = 0; i < clients; ++i)
    pool.emplace_back([&, i] {
      auto c = svc.client();
      got[i] = complete(c, prompts[i], max_tokens, i % 2 == 0);
    });
  // Every request accepted (so none may vanish), then the signal.
  bool accepted = test::wait_until(
    [&] { return metric(metric_text(svc), "cafex_requests_accepted_total") >= clients; }, 30s);
  REQUIRE(accepted);
  auto rc = svc.terminate();
  for (auto& t : pool)
    t.join();
  CHECK(rc == 0);
  int completed = 0, errored = 0;
  for (int i = 0; i < clients; ++i) {
    INFO("client " << i << ": status " << got[i].status << " " << got[i].transport_error
                   << got[i].error);
    CHECK(got[i].transport_ok);
    CHECK((got[i].completed || got[i].errored));
    // Whatever arrived is a prefix of the reference answer.
    REQUIRE(got[i].tokens.size() <= want[i].size());
    CHECK(std::equal(got[i].tokens.begin(), got[i].tokens.end(), want[i].begin()));
    if (got[i].completed)
      CHECK(got[i].tokens == want[i]);
    completed += got[i].completed;
    errored += got[i].errored;
  }
  MESSAGE(completed << " completed, " << errored << " failed with an error at shutdown");
  CHECK(completed + errored == clients);
}
