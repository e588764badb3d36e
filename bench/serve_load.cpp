// Load for cafex-serve on loopback: for each concurrency level, C client threads (one
// keep-alive connection each) send completions until --requests finished; prints
// requests/s, p50/p99 latency and, from /metrics before and after, the executor's own
// mean step time and batch size, so the service's overhead is visible.
//
//   bench_serve_load --port 8000 --concurrency 1,8,32 --requests 256 --max-tokens 16
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "runtime/stats.hpp"
#include "runtime/models/workload.hpp"
#include "bench/flags.hpp"

using cafex::serve::http_client;

namespace {

double sample(const std::string& text, const std::string& name) {
  auto pos = text.find("\n" + name + " ");
  if (pos == std::string::npos)
    return 0;
  return std::stod(text.substr(pos + name.size() + 2));
}

struct snapshot {
  double steps = 0, step_seconds = 0, step_requests = 0;
};

bool take(http_client& c, snapshot& s) {
  auto r = c.request("GET", "/metrics");
  if (!r.transport_ok || r.status != 200)
    return false;
  s.steps = sample(r.body, "cafex_step_latency_seconds_count");
  s.step_seconds = sample(r.body, "cafex_step_latency_seconds_sum");
  s.step_requests = sample(r.body, "cafex_step_requests_total");
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 8000, requests = 256, max_tokens = 16;
  std::vector<int> levels = {1, 8, 32};
  bool stream = false;
  cafex::cli::arg_parser flags("bench_serve_load", "load on cafex-serve over loopback");
  flags.flag({{"--host"}, "HOST", "the service's address", "127.0.0.1"})
    .flag({{"--port"}, "P", "the service's port", "8000"})
    .flag({{"--concurrency"}, "N,N,..", "client counts", "1,8,32"})
    .flag({{"--requests"}, "N", "requests per client count", "256"})
    .flag({{"--max-tokens"}, "N", "max_tokens of each request", "16"})
    .flag({{"--stream"}, "", "stream the completions", ""});
  cafex::bench::parse_flags(flags, argc, argv, [&](const cafex::cli::parsed_args& a) {
    host = a.get("--host", host);
    port = static_cast<int>(a.get_int("--port", 8000, 1, 65535));
    if (a.has("--concurrency"))
      levels = cafex::cli::parse_int_list(a.get("--concurrency"), "--concurrency");
    requests = static_cast<int>(a.get_int("--requests", 256, 1, 100000000));
    max_tokens = static_cast<int>(a.get_int("--max-tokens", 16, 1, 1000000));
    stream = a.has("--stream");
  });
  http_client probe(host, static_cast<uint16_t>(port), std::chrono::seconds(10));
  std::printf("| clients | requests | req/s | p50 ms | p99 ms | tokens/s | steps | mean batch "
              "| step ms (executor) | p50 / (tokens x step) "
              "|\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (int c : levels) {
    snapshot before, after;
    if (!take(probe, before)) {
      std::fprintf(stderr, "error: cannot read http://%s:%d/metrics\n", host.c_str(), port);
      return 1;
    }
    std::atomic<int> next{0}, failed{0};
    std::vector<std::vector<double>> lat(c);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < c; ++t)
      pool.emplace_back([&, t] {
        http_client cl(host, static_cast<uint16_t>(port), std::chrono::seconds(60));
        for (int i; (i = next++) < requests;) {
          auto prompt = cafex::demo_workload::prompt(3, i, 512);
          auto body = nlohmann::json{{"prompt", prompt},
                                     {"max_tokens", max_tokens},
                                     {"stream", stream}}
                        .dump();
          auto s = std::chrono::steady_clock::now();
          auto r = cl.request("POST", "/v1/completions", body);
          if (!r.transport_ok || r.status != 200) {
            ++failed;
            continue;
          }
          lat[t].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
              .count());
        }
      });
    for (auto& th : pool)
      th.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    take(probe, after);
    std::vector<double> all;
    for (auto& v : lat)
      all.insert(all.end(), v.begin(), v.end());
    double steps = after.steps - before.steps;
    double step_ms = steps > 0 ? (after.step_seconds - before.step_seconds) / steps * 1000 : 0;
    double batch = steps > 0 ? (after.step_requests - before.step_requests) / steps : 0;
    double p50 = cafex::percentile(all, 50);
    std::printf("| %d | %zu | %.1f | %.2f | %.2f | %.0f | %.0f | %.1f | %.3f | %.2f |\n", c,
                all.size(), all.size() / secs, p50, cafex::percentile(all, 99),
                all.size() * max_tokens / secs, steps, batch, step_ms,
                step_ms > 0 ? p50 / (max_tokens * step_ms) : 0);
    if (failed > 0)
      std::printf("(%d request(s) failed)\n", failed.load());
    std::fflush(stdout);
  }
  return 0;
}
