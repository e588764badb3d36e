// Logging setup: one spdlog logger to stderr, its level from --log-level.
#pragma once

#include <string>

#include <caf/error.hpp>

namespace cafex {

/// Sets the process-wide log level and a pattern that names the process role.
/// Levels: trace, debug, info, warn, error, off.
caf::error init_logging(const std::string& level, const std::string& role);

} // namespace cafex
