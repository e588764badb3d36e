// bench_caf_pingpong: where a cafex collective_rpc round trip spends its time. Bare CAF
// 0.17 request/response between two processes on 127.0.0.1 with cafex's own CAF
// configuration (actors/system_config: moderate-poll-attempts=0, middleman.workers=0,
// heartbeats), adding one ingredient of cafex's RPC path at a time, beside a raw loopback
// TCP ping-pong measured in the same run.
//
//   bench_caf_pingpong [--warmup 200] [--iterations 2000] [--only SUBSTR]
//                      [--set KEY=VALUE]... [--json]
//
// --set overrides one CAF option on top of cafex's configuration in both processes
// (numbers are sizes, "50us"/"10ms" durations, anything else an atom), e.g.
// --set scheduler.max-threads=1 --set scheduler.policy=sharing. --only runs the rows
// whose name contains SUBSTR (the raw TCP rows always run).
//
// Rows (each a separate path; "remote" is the peer process):
//   actor->remote            an event-based actor requests from a scheduled remote actor
//                            (no blocking thread: CAF's floor for one round trip)
//   scoped, inf              one reused scoped_actor, request with no timeout
//   scoped, timeout          ... with a 60 s timeout (a clock entry per request)
//   scoped/call, timeout     a new scoped_actor per call (what executor::impl::ask does)
//   scoped -> detached       reused scoped_actor, no timeout, remote actor detached
//   scoped -> relay -> remote     reused scoped_actor, no timeout, through a relay actor
//                            in this process that forwards with a response promise
//                            (the driver actor hop), remote scheduled
//   cafex shape              scoped_actor per call with timeout -> relay (timeout) ->
//                            detached remote, strings in and out: collective_rpc to one
//                            worker without the JSON
// and, in-process, the JSON work of one collective_rpc("noop") (dump args, parse args,
// dump result, parse result).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/system_config.hpp"
#include "bench/raw_tcp.hpp"
#include "runtime/error.hpp"
#include "bench/report.hpp"
#include "bench/flags.hpp"

using namespace cafex::bench;
using clock_type = std::chrono::steady_clock;

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using call_atom = caf::atom_constant<caf::atom("call")>;
using run_atom = caf::atom_constant<caf::atom("run")>;

namespace {

// Extra CAF options from --set, applied in both processes.
std::vector<std::pair<std::string, std::string>> overrides;

void apply_overrides(caf::actor_system_config& cfg) {
  for (auto& [k, v] : overrides) {
    auto num = v.find_first_not_of("0123456789");
    if (num == std::string::npos) {
      cfg.set(k, static_cast<size_t>(std::stoull(v)));
    } else if (num > 0 && (v.substr(num) == "us" || v.substr(num) == "ms")) {
      auto n = std::stoll(v.substr(0, num));
      cfg.set(k, caf::timespan{v.substr(num) == "us" ? std::chrono::microseconds(n)
                                                     : std::chrono::milliseconds(n)});
    } else {
      cfg.set(k, caf::atom_from_string(v));
    }
  }
}

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

caf::behavior pong() {
  return {
    [](ping_atom, int32_t x) { return x + 1; },
    [](call_atom, const std::string& method, const std::string& args) {
      return std::string("null");
    },
  };
}

// Forwards a call to `dest` and answers through a response promise, like the driver.
caf::behavior relay(caf::event_based_actor* self, caf::actor dest, bool with_timeout) {
  return {
    [=](call_atom, const std::string& method,
        const std::string& args) -> caf::result<std::string> {
      auto rp = self->make_response_promise<std::string>();
      auto timeout = with_timeout ? caf::duration{std::chrono::seconds(60)}
                                  : caf::duration{caf::infinite};
      self->request(dest, timeout, call_atom::value, method, args)
        .then([rp](std::string& s) mutable { rp.deliver(std::move(s)); },
              [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
      return rp;
    },
  };
}

// Runs n sequential requests from inside an event-based actor and answers the samples.
struct loop_state {
  std::vector<double> samples;
  int left = 0;
  int warmup = 0;
  caf::response_promise rp;
};

void loop_step(caf::stateful_actor<loop_state>* self, caf::actor dest) {
  auto t0 = clock_type::now();
  self->request(dest, caf::infinite, ping_atom::value, int32_t{1})
    .then(
      [=](int32_t) {
        auto us = us_since(t0);
        auto& st = self->state;
        if (st.warmup > 0)
          --st.warmup;
        else
          st.samples.push_back(us);
        if (--st.left == 0)
          st.rp.deliver(std::move(st.samples));
        else
          loop_step(self, dest);
      },
      [=](caf::error& e) { self->state.rp.deliver(std::move(e)); });
}

caf::behavior looper(caf::stateful_actor<loop_state>* self, caf::actor dest) {
  return {
    [=](run_atom, int32_t warmup, int32_t n) -> caf::result<std::vector<double>> {
      self->state.samples.clear();
      self->state.left = warmup + n;
      self->state.warmup = warmup;
      self->state.rp = self->make_response_promise();
      loop_step(self, dest);
      return self->state.rp;
    },
  };
}

// The peer process: a scheduled and a detached pong, published on two ports.
[[noreturn]] void run_server(int port_fd) {
  cafex::system_config cfg;
  apply_overrides(cfg);
  caf::actor_system sys{cfg};
  auto scheduled = sys.spawn(pong);
  auto detached = sys.spawn<caf::detached>(pong);
  auto p1 = sys.middleman().publish(scheduled, 0, "127.0.0.1");
  auto p2 = sys.middleman().publish(detached, 0, "127.0.0.1");
  uint16_t ports[2] = {p1 ? *p1 : uint16_t{0}, p2 ? *p2 : uint16_t{0}};
  if (write(port_fd, ports, sizeof(ports)) != sizeof(ports))
    _exit(1);
  // Serve until the parent kills us (SIGTERM) or dies (PR_SET_PDEATHSIG).
  for (;;)
    pause();
}

struct result_row {
  std::string name;
  latency_stats s;
};

} // namespace

int main(int argc, char** argv) {
  int warmup = 200, iterations = 2000;
  bool as_json = false;
  std::string only;
  cafex::cli::arg_parser flags("bench_caf_pingpong",
                               "where a collective_rpc round trip spends its time");
  flags.flag({{"--warmup"}, "N", "round trips before measuring", "200"})
    .flag({{"--iterations"}, "N", "measured round trips per row", "2000"})
    .flag({{"--only"}, "SUBSTR", "run only the rows whose name contains SUBSTR", ""})
    .flag(
      {{"--set"}, "KEY=VALUE", "override one CAF option in both processes (repeatable)", ""})
    .flag({{"--json"}, "", "print one JSON object", ""});
  parse_flags(flags, argc, argv, [&](const cafex::cli::parsed_args& a) {
    warmup = static_cast<int>(a.get_int("--warmup", 200, 0, 100000000));
    iterations = static_cast<int>(a.get_int("--iterations", 2000, 1, 100000000));
    only = a.get("--only");
    as_json = a.has("--json");
    for (const auto& kv : a.get_all("--set")) {
      auto eq = kv.find('=');
      if (eq == std::string::npos)
        throw cafex::cli::usage_error{"--set expects KEY=VALUE, got '" + kv + "'"};
      overrides.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
  });
  // Both children before any thread exists.
  auto peer = raw_tcp_peer::start();
  if (!peer) {
    std::fprintf(stderr, "error: raw TCP peer: %s\n", cafex::describe(peer.error()).c_str());
    return 1;
  }
  auto raw_pingpong = [&](int warm, int n) {
    auto xs = (*peer)->roundtrip_us(static_cast<size_t>(n), 64, static_cast<size_t>(warm));
    if (!xs) {
      std::fprintf(stderr, "error: raw TCP ping-pong: %s\n",
                   cafex::describe(xs.error()).c_str());
      std::exit(1);
    }
    return latency_of(std::move(*xs));
  };
  int pipefd[2];
  if (pipe(pipefd) != 0)
    return 1;
  std::fflush(nullptr);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0)
    return 1;
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    close(pipefd[0]);
    run_server(pipefd[1]);
  }
  close(pipefd[1]);
  uint16_t ports[2] = {0, 0};
  if (read(pipefd[0], ports, sizeof(ports)) != sizeof(ports) || !ports[0] || !ports[1]) {
    std::fprintf(stderr, "error: the peer process did not publish its actors\n");
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 1;
  }
  double load_before = load_average_1m();
  std::vector<result_row> rows;
  rows.push_back({"raw TCP ping-pong (before)", raw_pingpong(warmup, iterations)});

  // JSON work of one collective_rpc("noop"), in-process.
  if (only.empty() || std::string("JSON").find(only) != std::string::npos) {
    std::vector<double> samples;
    nlohmann::json args = nullptr;
    for (int i = 0; i < warmup + iterations; ++i) {
      auto t0 = clock_type::now();
      auto s = args.dump();
      auto parsed = nlohmann::json::parse(s);
      auto result = nlohmann::json().dump();
      std::vector<nlohmann::json> out;
      out.push_back(nlohmann::json::parse(result));
      auto us = us_since(t0);
      if (i >= warmup)
        samples.push_back(us);
    }
    rows.push_back({"JSON of one noop call (in-process)", latency_of(samples)});
  }

  {
    cafex::system_config cfg;
    apply_overrides(cfg);
    caf::actor_system sys{cfg};
    auto& mm = sys.middleman();
    auto scheduled = mm.remote_actor("127.0.0.1", ports[0]);
    auto detached = mm.remote_actor("127.0.0.1", ports[1]);
    if (!scheduled || !detached) {
      std::fprintf(stderr, "error: remote_actor failed\n");
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
      return 1;
    }
    const std::string method = "noop", args = "null";
    auto wanted = [&](const std::string& name) {
      return only.empty() || name.find(only) != std::string::npos;
    };
    auto blocking = [&](const std::string& name, bool per_call, bool timeout,
                        const caf::actor& dest) {
      if (!wanted(name))
        return;
      std::vector<double> samples;
      caf::scoped_actor reused{sys};
      auto d = timeout ? caf::duration{std::chrono::seconds(60)}
                       : caf::duration{caf::infinite};
      for (int i = 0; i < warmup + iterations; ++i) {
        auto t0 = clock_type::now();
        auto call = [&](caf::scoped_actor& self) {
          self->request(dest, d, call_atom::value, method, args)
            .receive([](std::string&) {},
                     [&](caf::error& e) {
                       std::fprintf(stderr, "error: %s\n", sys.render(e).c_str());
                       std::exit(1);
                     });
        };
        if (per_call) {
          caf::scoped_actor self{sys};
          call(self);
        } else {
          call(reused);
        }
        auto us = us_since(t0);
        if (i >= warmup)
          samples.push_back(us);
      }
      rows.push_back({name, latency_of(samples)});
    };

    if (wanted("actor->remote")) {
      auto loop = sys.spawn(looper, *scheduled);
      caf::scoped_actor self{sys};
      self->request(loop, caf::infinite, run_atom::value, int32_t{warmup}, int32_t{iterations})
        .receive(
          [&](std::vector<double>& s) {
            rows.push_back({"actor->remote", latency_of(s)});
          },
          [&](caf::error& e) { std::fprintf(stderr, "error: %s\n", sys.render(e).c_str()); });
      self->send_exit(loop, caf::exit_reason::user_shutdown);
    }
    blocking("scoped, inf -> remote", false, false, *scheduled);
    blocking("scoped, timeout -> remote", false, true, *scheduled);
    blocking("scoped/call, timeout -> remote", true, true, *scheduled);
    blocking("scoped, inf -> detached remote", false, false, *detached);
    auto relay_plain = sys.spawn(relay, *scheduled, false);
    blocking("scoped, inf -> relay -> remote", false, false, relay_plain);
    auto relay_cafex = sys.spawn(relay, *detached, true);
    blocking("cafex shape (see header)", true, true, relay_cafex);
    rows.push_back({"raw TCP ping-pong (after)", raw_pingpong(warmup, iterations)});
    caf::anon_send_exit(relay_plain, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(relay_cafex, caf::exit_reason::user_shutdown);
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  double load_after = load_average_1m();
  double raw = rows.front().s.p50;

  if (as_json) {
    nlohmann::json j;
    j["machine"] = machine_summary();
    j["load_1m"] = {{"before", load_before}, {"after", load_after}};
    j["warmup"] = warmup;
    j["iterations"] = iterations;
    j["caf_overrides"] = nlohmann::json::object();
    for (auto& [k, v] : overrides)
      j["caf_overrides"][k] = v;
    j["results"] = nlohmann::json::array();
    for (auto& r : rows)
      j["results"].push_back({{"path", r.name},
                              {"p50_us", r.s.p50},
                              {"p99_us", r.s.p99},
                              {"mean_us", r.s.mean},
                              {"p50_vs_raw", r.s.p50 / raw}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("machine: %s; load (1 min) %.2f before, %.2f after\n", machine_summary().c_str(),
              load_before, load_after);
  for (auto& [k, v] : overrides)
    std::printf("CAF option override: %s = %s\n", k.c_str(), v.c_str());
  std::printf(
    "%d warm-up + %d timed round trips per row; ratio = p50 / raw TCP p50 (before)\n\n",
    warmup, iterations);
  std::printf("%-36s %10s %10s %10s %8s\n", "path", "p50 us", "p99 us", "mean us", "ratio");
  for (auto& r : rows)
    std::printf("%-36s %10.1f %10.1f %10.1f %7.2fx\n", r.name.c_str(), r.s.p50, r.s.p99,
                r.s.mean, r.s.p50 / raw);
  return 0;
}
