// Logging setup: every cafex process (driver, node agent, worker, service) logs through
// spdlog's default logger, to stderr in one format, at the level of --log-level (or
// executor_options::log_level); a host may take the lines itself through a log_callback.
#pragma once

#include <string>

#include <caf/error.hpp>

#include "runtime/log_sink.hpp"

namespace cafex {

/// Sets the process-wide log level and where lines go: stderr with the pattern
/// "[12:34:56.789] [<role> <pid>] [<level>] <text>" (empty `sink`), or `sink`.
/// Levels: trace, debug, info, warn, error, off; errc::invalid_argument on another.
/// Safe to call again (an executor started in a cafex program does): with the same role
/// and no sink it only changes the level, so threads that log meanwhile are unaffected.
caf::error init_logging(const std::string& level, const std::string& role,
                        log_callback sink = {});

/// "text" (the default) or "json": lines on stderr become one JSON object each,
/// {"time","role","pid","level","msg"}. Set before init_logging; kept in the environment
/// (CAFEX_LOG_FORMAT) so that the processes this one starts log the same way.
/// errc::invalid_argument for another value.
caf::error set_log_format(const std::string& format);

/// The format in effect: CAFEX_LOG_FORMAT=json gives "json", anything else "text".
std::string log_format();

/// The role the last init_logging named in this process; "driver" before any call (a
/// host that embeds an executor is its driver).
std::string logging_role();

} // namespace cafex
