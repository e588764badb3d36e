#include "runtime/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include <unistd.h>

namespace cafex {

caf::error init_logging(const std::string& level, const std::string& role) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    return make_error(errc::invalid_argument,
                      "unknown log level '" + level
                        + "'; use trace, debug, info, warn, error or off");
  auto logger = spdlog::stderr_color_mt("cafex-" + role + "-" + std::to_string(::getpid()));
  logger->set_pattern("[%H:%M:%S.%e] [" + role + " %P] [%^%l%$] %v");
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  return caf::none;
}

} // namespace cafex
