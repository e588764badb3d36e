// Load for cafex-serve on loopback: for each concurrency level, C client threads send
// completions until --requests finished (keep-alive connections; with --stream, one
// connection per streamed request, read as it arrives); prints requests/s, output
// tokens/s, p50/p99 latency, with --stream vLLM's benchmark_serving measures (TTFT:
// time to first token; TPOT: time per output token after the first), and, from /metrics
// before and after, the executor's own mean step time and batch size, so the service's
// overhead over max_tokens x step time is visible.
//
//   bench_serve_load --port 8000 --concurrency 1,8,32,128 --requests 256 --max-tokens 16
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

/// One streamed completion on its own connection, read as it arrives.
struct streamed {
  bool ok = false;
  double ttft_ms = 0, total_ms = 0;
  int tokens = 0;
};

streamed stream_once(const std::string& host, int port, const std::string& body) {
  using clock = std::chrono::steady_clock;
  streamed out;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return out;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  auto t0 = clock::now();
  std::string req = "POST /v1/completions HTTP/1.1\r\nHost: " + host
                    + "\r\nContent-Type: application/json\r\nContent-Length: "
                    + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0
      || ::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return out;
  }
  std::string got;
  char buf[16384];
  size_t scanned = 0;
  bool done = false;
  const auto deadline = t0 + std::chrono::seconds(120);
  while (!done && clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0)
      continue;
    auto n = ::read(fd, buf, sizeof(buf));
    if (n <= 0)
      break;
    got.append(buf, static_cast<size_t>(n));
    // Count the chunks that carry a token ("token_ids":[N]) as they arrive.
    for (size_t at; (at = got.find("\"token_ids\":[", scanned)) != std::string::npos;) {
      if (out.tokens++ == 0)
        out.ttft_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
      scanned = at + 1;
    }
    done = got.find("data: [DONE]") != std::string::npos;
  }
  ::close(fd);
  out.total_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  out.ok = done && got.rfind("HTTP/1.1 200", 0) == 0
           && got.find("\"error\"") == std::string::npos;
  return out;
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
  std::printf("| clients | requests | req/s | p50 ms | p99 ms | tokens/s | TTFT p50 ms | TTFT "
              "p99 ms | TPOT p50 ms | steps | mean batch | step ms (executor) | p50 / "
              "(tokens x step) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int c : levels) {
    snapshot before, after;
    if (!take(probe, before)) {
      std::fprintf(stderr, "error: cannot read http://%s:%d/metrics\n", host.c_str(), port);
      return 1;
    }
    std::atomic<int> next{0}, failed{0};
    std::vector<std::vector<double>> lat(c), ttft(c), tpot(c);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < c; ++t)
      pool.emplace_back([&, t] {
        http_client cl(host, static_cast<uint16_t>(port), std::chrono::seconds(60));
        for (int i; (i = next++) < requests;) {
          auto prompt = cafex::demo_workload::prompt(3, i, 512);
          auto body = nlohmann::json{{"prompt", prompt},
                                     {"max_tokens", max_tokens},
                                     {"stream", stream},
                                     {"temperature", 0},
                                     {"ignore_eos", true}}
                        .dump();
          if (stream) {
            auto r = stream_once(host, port, body);
            if (!r.ok || r.tokens != max_tokens) {
              ++failed;
              continue;
            }
            lat[t].push_back(r.total_ms);
            ttft[t].push_back(r.ttft_ms);
            if (r.tokens > 1)
              tpot[t].push_back((r.total_ms - r.ttft_ms) / (r.tokens - 1));
            continue;
          }
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
    std::vector<double> all, first, per_token;
    for (int t = 0; t < c; ++t) {
      all.insert(all.end(), lat[t].begin(), lat[t].end());
      first.insert(first.end(), ttft[t].begin(), ttft[t].end());
      per_token.insert(per_token.end(), tpot[t].begin(), tpot[t].end());
    }
    auto pct = [](std::vector<double>& v, double p) {
      return v.empty() ? 0.0 : cafex::percentile(v, p);
    };
    double steps = after.steps - before.steps;
    double step_ms = steps > 0 ? (after.step_seconds - before.step_seconds) / steps * 1000 : 0;
    double batch = steps > 0 ? (after.step_requests - before.step_requests) / steps : 0;
    double p50 = pct(all, 50);
    std::printf("| %d | %zu | %.1f | %.2f | %.2f | %.0f | %.2f | %.2f | %.3f | %.0f | %.1f | "
                "%.3f | %.2f |\n",
                c, all.size(), all.size() / secs, p50, pct(all, 99),
                all.size() * max_tokens / secs, pct(first, 50), pct(first, 99),
                pct(per_token, 50), steps, batch, step_ms,
                step_ms > 0 ? p50 / (max_tokens * step_ms) : 0);
    if (failed > 0)
      std::printf("(%d request(s) failed)\n", failed.load());
    std::fflush(stdout);
  }
  return 0;
}
