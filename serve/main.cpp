// cafex-serve: an HTTP completion service that embeds the cafex executor.
//
//   cafex-serve --listen 127.0.0.1:8000 --tp 2
//   curl -s localhost:8000/v1/completions -d '{"prompt":[1,2,3],"max_tokens":8}'
//
// The program is also its own worker program (`cafex-serve worker ...`), the host-worker
// pattern of cafex/worker.hpp. Threads: main runs the io_context (HTTP, batching, step
// completions); a monitor thread polls health; CAF runs the executor. SIGTERM/SIGINT:
// stop accepting, let accepted requests finish (or fail them at --drain-timeout), shut
// the executor down, exit 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "batcher.hpp"
#include "cafex/asio.hpp"
#include "cafex/executor.hpp"
#include "cafex/worker.hpp"
#include "cli/args.hpp"
#include "cli/run_flags.hpp"
#include "http_server.hpp"
#include "openapi.hpp"
#include "runtime/logging.hpp"
#include "runtime/models/hf/hf_config.hpp"
#include "runtime/os/signals.hpp"

using namespace cafex;
namespace net = boost::asio;

namespace {

struct serve_options {
  executor_options exec;
  std::string address = "127.0.0.1";
  uint16_t port = 8000;
  serve::batcher_options batch;
  serve::request_limits limits;
  size_t max_body_bytes = 1 << 20;
  std::string api_key;
  std::chrono::milliseconds drain_timeout{30000};
  std::chrono::milliseconds health_interval{200};
};

cli::arg_parser serve_parser() {
  cli::arg_parser p("cafex-serve",
                    "OpenAI-compatible completion service on the cafex executor: POST "
                    "/v1/completions ({\"prompt\": [ids], \"max_tokens\": N, ...}), GET "
                    "/v1/models, GET /health, GET /metrics, GET /openapi.json. Takes the "
                    "cluster and model flags of cafex run (--model DIR serves a checkpoint).");
  p.flag({{"--listen"},
          "ADDR:PORT",
          "where to serve HTTP (port 0: any free port)",
          "127.0.0.1:8000"})
    .flag({{"--max-batch"}, "N", "requests per step", "32"})
    .flag({{"--max-queued"}, "N", "waiting requests (choices) before 503, >= 1", "1024"})
    .flag({{"--max-tokens-limit"}, "N", "largest max_tokens a request may ask", "1024"})
    .flag({{"--max-body-bytes"}, "N", "largest request body", "1048576"})
    .flag({{"--drain-timeout"}, "SECONDS", "on SIGTERM: time accepted requests get", "30"})
    .flag({{"--health-interval-ms"}, "MS", "how often health is polled", "200"})
    .flag({{"--served-model-name"},
           "NAME",
           "the model's id in the API (`model`, /v1/models)",
           "the --model value as given, else cafex-reference"})
    .flag({{"--api-key"},
           "KEY",
           "every route but /health needs 'Authorization: Bearer KEY' (else $CAFEX_API_KEY)",
           ""});
  cli::add_executor_flags(p);
  return p;
}

serve_options options_from(const cli::parsed_args& a) {
  serve_options o;
  o.exec = cli::executor_options_from(a);
  // Like the cluster's HOST:PORT, but port 0 (any free port) is allowed here.
  auto listen = a.get("--listen", "127.0.0.1:8000");
  auto colon = listen.rfind(':');
  char* end = nullptr;
  long port = colon == std::string::npos ? -1
                                         : std::strtol(listen.c_str() + colon + 1, &end, 10);
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size() || *end != '\0'
      || port < 0 || port > 65535)
    throw cli::usage_error{"--listen expects ADDR:PORT (e.g. 127.0.0.1:8000, port 0 for any), "
                           "got '"
                           + listen + "'"};
  o.address = listen.substr(0, colon);
  o.port = static_cast<uint16_t>(port);
  o.batch.max_batch = a.get_int("--max-batch", 32, 1, 4096);
  if (a.has("--max-queued") && a.get("--max-queued") == "0")
    throw cli::usage_error{"--max-queued 0 would refuse every request: give at least 1 (the "
                           "requests, counted per choice, that may wait for a step)"};
  o.batch.max_queued = a.get_int("--max-queued", 1024, 1, 1 << 20);
  o.batch.max_in_flight = max_concurrent_batches(o.exec);
  // With --on-worker-failure restart, requests survive a lost worker: re-prefilled.
  o.batch.recompute_on_failure = o.exec.on_worker_failure == failure_policy::restart;
  o.limits.vocab_size = o.exec.model.vocab_size;
  o.limits.max_seq_len = o.exec.model.max_seq_len;
  o.limits.max_tokens_limit = static_cast<int>(
    a.get_int("--max-tokens-limit", 1024, 1, o.exec.model.max_seq_len - 1));
  o.limits.default_max_tokens = std::min(16, o.limits.max_tokens_limit);
  o.limits.max_choices = static_cast<int>(std::min<size_t>(64, o.batch.max_queued));
  o.batch.max_model_len = o.exec.model.max_seq_len;
  if (a.has("--model")) {
    // executor_options_from read this config.json already; here: the EOS ids.
    auto hf = hf::load_hf_config(o.exec.model.path);
    if (!hf)
      throw cli::usage_error{"--model: " + describe(hf.error())};
    o.batch.eos_ids = hf->eos_token_ids;
  }
  o.limits.model_name = a.get("--served-model-name",
                              a.has("--model") ? a.get("--model") : "cafex-reference");
  if (o.limits.model_name.empty())
    throw cli::usage_error{"--served-model-name must not be empty"};
  o.api_key = a.get("--api-key", "");
  if (o.api_key.empty())
    if (const char* env = std::getenv("CAFEX_API_KEY"))
      o.api_key = env;
  o.max_body_bytes = a.get_int("--max-body-bytes", 1 << 20, 64, 1L << 30);
  o.drain_timeout = std::chrono::milliseconds(
    static_cast<long>(a.get_double("--drain-timeout", 30, 0, 86400) * 1000));
  o.health_interval = std::chrono::milliseconds(
    a.get_int("--health-interval-ms", 200, 10, 60000));
  return o;
}

int run_service(const serve_options& o) {
  auto ex = executor::start(o.exec);
  if (!ex) {
    // The error itself says that start-up failed, and in which phase.
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    return 1;
  }
  // Declared first, destroyed last: pending handlers may own sessions (see http_server).
  net::io_context ioc{1};
  serve::service_metrics metrics;
  serve::health_monitor health{**ex, o.health_interval};
  serve::batcher_observer obs;
  obs.step_ok = [&](std::chrono::nanoseconds t, size_t n) { metrics.step_ok(t, n); };
  obs.step_failed = [&](const caf::error& e) {
    auto c = code_of(e);
    metrics.step_failed(c == errc::none ? "other" : to_string(c));
  };
  serve::batcher* paused_batch = nullptr; // set below; the batcher calls `paused` later
  obs.paused = [&] {
    metrics.recovery();
    // Off the event loop: the health monitor says when the executor is ready again.
    health.when_ready(
      [&](bool ok, const std::string& why) {
        net::post(ioc, [&, ok, why] {
          if (ok)
            paused_batch->resume();
          else
            // Dead for good (the recovery gave up) or not back in time: every queued and
            // later request gets a 503 at once, and a drain does not wait for them.
            paused_batch->fail_for_good(
              make_error(errc::worker_lost,
                         why
                           + "; the executor gave up (--max-restarts): restart "
                             "cafex-serve"));
        });
      },
      o.exec.start_timeout + std::chrono::seconds(30));
  };
  executor& exr = **ex;
  serve::batcher batch{o.batch,
                       [&](const scheduler_output& step, serve::step_done done) {
                         async_execute_model(exr, step, ioc, std::move(done));
                       },
                       obs};
  paused_batch = &batch;
  auto state = std::make_shared<serve::service_state>(batch, metrics, health);
  state->limits = o.limits;
  state->max_body_bytes = o.max_body_bytes;
  state->api_key = o.api_key;
  state->created = static_cast<int64_t>(std::time(nullptr));
  state->openapi = serve::openapi_document(o.limits, !o.api_key.empty());
  serve::http_server server{ioc, state};
  if (auto err = server.listen(o.address, o.port)) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    health.stop();
    (*ex)->shutdown();
    return 2;
  }
  std::printf("cafex-serve listening on %s:%u (model %s, tp=%d pp=%d%s)\n", o.address.c_str(),
              server.port(), o.limits.model_name.c_str(), o.exec.parallel.tensor_parallel_size,
              o.exec.parallel.pipeline_parallel_size, o.api_key.empty() ? "" : ", API key");
  std::fflush(stdout);

  // Shutdown: drain, then stop the loop once no request and no connection is left.
  bool stopping = false;
  net::steady_timer deadline{ioc};
  auto maybe_stop = [&] {
    if (stopping && batch.idle() && server.sessions() == 0)
      ioc.stop();
  };
  batch.on_idle(maybe_stop);
  state->on_session_end = [&] { net::post(ioc, maybe_stop); };
  net::signal_set signals{ioc, SIGTERM, SIGINT};
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec)
      return;
    spdlog::warn("signal {}: draining {} request(s), {} connection(s)", sig,
                 batch.queued() + batch.running(), server.sessions());
    stopping = true;
    server.drain();
    batch.drain();
    deadline.expires_after(o.drain_timeout);
    deadline.async_wait([&](boost::system::error_code ec) {
      if (ec)
        return;
      batch.fail_all(make_error(errc::not_ready, "the service shut down before this request "
                                                 "finished (drain deadline passed)"));
      // Slow clients get a few seconds to take their error, then the loop stops.
      deadline.expires_after(std::chrono::seconds(5));
      deadline.async_wait([&](boost::system::error_code ec) {
        if (!ec)
          ioc.stop();
      });
    });
    maybe_stop();
  });
  ioc.run();
  state->on_session_end = nullptr;
  batch.on_idle(nullptr);
  health.stop();
  (*ex)->shutdown();
  std::printf("cafex-serve stopped: %llu request(s) accepted\n",
              static_cast<unsigned long long>(batch.accepted()));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // A client or worker that vanishes mid-write is an EPIPE to handle, never a SIGPIPE.
  ignore_sigpipe();
  if (argc > 1 && std::string(argv[1]) == "worker")
    return worker_main(argc, argv, 2); // this program is also its worker program
  auto parser = serve_parser();
  serve_options opts;
  try {
    auto args = parser.parse(argc, argv, 1);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      return 0;
    }
    if (!args.positional.empty())
      throw cli::usage_error{"unexpected argument '" + args.positional.front() + "'"};
    opts = options_from(args);
  } catch (const cli::usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  if (auto err = init_logging(opts.exec.log_level, "serve")) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 2;
  }
  try {
    return run_service(opts);
  } catch (const std::exception& e) {
    // Nothing is expected to throw here; if it does, say so instead of std::terminate.
    std::fprintf(stderr, "error: cafex-serve: %s\n", e.what());
    return 1;
  }
}
