#include "runtime/logging.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include <unistd.h>

namespace cafex {

namespace {

log_severity severity_of(spdlog::level::level_enum lvl) {
  switch (lvl) {
    case spdlog::level::trace: return log_severity::trace;
    case spdlog::level::debug: return log_severity::debug;
    case spdlog::level::info: return log_severity::info;
    case spdlog::level::warn: return log_severity::warn;
    case spdlog::level::err: return log_severity::error;
    default: return log_severity::critical;
  }
}

/// Hands each line's text to the host's callback (spdlog serialises calls to sink_it_).
class callback_sink : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit callback_sink(log_callback fn) : fn_(std::move(fn)) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    fn_(severity_of(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

private:
  log_callback fn_;
};

/// One JSON object per line on stderr: {"time","role","pid","level","msg"} (the
/// machine-readable form of the text lines, for log shippers).
class json_stderr_sink : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit json_stderr_sink(std::string role) : role_(std::move(role)) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      msg.time.time_since_epoch())
                      .count()
                    % 1000;
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char when[40];
    const auto n = std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(when + n, sizeof when - n, ".%03dZ", static_cast<int>(ms));
    nlohmann::json j{{"time", when},
                     {"role", role_},
                     {"pid", static_cast<int64_t>(::getpid())},
                     {"level", to_string(severity_of(msg.level))},
                     {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    // Invalid UTF-8 in a message is replaced, never an exception on the logging path.
    auto line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

private:
  std::string role_;
};

struct logging_state {
  std::mutex mtx;
  std::string role = "driver";
  /// The default logger is the stderr logger that init_logging made for `role`.
  bool ours_on_stderr = false;
  /// Replaced default loggers, kept alive: spdlog::info() on another thread may still
  /// hold the raw pointer it read just before the swap.
  std::vector<std::shared_ptr<spdlog::logger>> retired;
};

logging_state& state() {
  static logging_state s;
  return s;
}

} // namespace

const char* to_string(log_severity x) {
  switch (x) {
    case log_severity::trace: return "trace";
    case log_severity::debug: return "debug";
    case log_severity::info: return "info";
    case log_severity::warn: return "warn";
    case log_severity::error: return "error";
    case log_severity::critical: return "critical";
  }
  return "?";
}

caf::error init_logging(const std::string& level, const std::string& role, log_callback sink) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    return make_error(errc::invalid_argument,
                      "unknown log level '" + level
                        + "'; use trace, debug, info, warn, error or off");
  auto& s = state();
  std::lock_guard<std::mutex> guard{s.mtx};
  if (!sink && s.ours_on_stderr && s.role == role) {
    spdlog::default_logger_raw()->set_level(lvl); // atomic: no swap needed
    return caf::none;
  }
  auto name = "cafex-" + role + "-" + std::to_string(::getpid());
  const bool to_stderr = !sink;
  std::shared_ptr<spdlog::logger> logger;
  if (!to_stderr) {
    logger = std::make_shared<spdlog::logger>(name, std::make_shared<callback_sink>(
                                                      std::move(sink)));
  } else if (log_format() == "json") {
    logger = std::make_shared<spdlog::logger>(name, std::make_shared<json_stderr_sink>(role));
  } else {
    logger = std::make_shared<spdlog::logger>(
      name, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("[%H:%M:%S.%e] [" + role + " %P] [%^%l%$] %v");
  }
  logger->set_level(lvl);
  if (auto old = spdlog::default_logger())
    s.retired.push_back(std::move(old));
  spdlog::set_default_logger(logger);
  s.role = role;
  s.ours_on_stderr = to_stderr;
  return caf::none;
}

caf::error set_log_format(const std::string& format) {
  if (format != "text" && format != "json")
    return make_error(errc::invalid_argument,
                      "unknown log format '" + format + "'; use text or json");
  // The environment carries it to every process this one starts (workers read it in
  // their own init_logging).
  // Called while the process parses its flags, before it starts threads of its own.
  ::setenv("CAFEX_LOG_FORMAT", format.c_str(), 1); // NOLINT(concurrency-mt-unsafe)
  return caf::none;
}

std::string log_format() {
  const char* f = std::getenv("CAFEX_LOG_FORMAT");
  return f != nullptr && std::string(f) == "json" ? "json" : "text";
}

std::string logging_role() {
  auto& s = state();
  std::lock_guard<std::mutex> guard{s.mtx};
  return s.role;
}

} // namespace cafex
