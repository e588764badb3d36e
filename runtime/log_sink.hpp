// Where cafex's log lines go when a host wants them (executor_options::log_sink). Public
// and free of spdlog: a host forwards the lines to its own logger without depending on
// the one cafex uses.
#pragma once

#include <functional>
#include <string_view>

namespace cafex {

/// The severity of one log line, lowest first (the names of --log-level).
enum class log_severity { trace, debug, info, warn, error, critical };

/// "trace", "debug", "info", "warn", "error", "critical".
const char* to_string(log_severity x);

/// Receives one line: its severity and the message text (no timestamp, no newline).
/// Called from cafex's threads, possibly several at once: it must be thread-safe, must
/// not block for long, and must not call back into the executor.
using log_callback = std::function<void(log_severity, std::string_view message)>;

} // namespace cafex
