#include "runtime/error.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/message.hpp>

namespace cafex {

const char* to_string(errc x) {
  switch (x) {
    case errc::none: return "none";
    case errc::invalid_argument: return "invalid_argument";
    case errc::invalid_config: return "invalid_config";
    case errc::placement_failed: return "placement_failed";
    case errc::unknown_method: return "unknown_method";
    case errc::method_failed: return "method_failed";
    case errc::timeout: return "timeout";
    case errc::worker_lost: return "worker_lost";
    case errc::node_lost: return "node_lost";
    case errc::spawn_failed: return "spawn_failed";
    case errc::version_mismatch: return "version_mismatch";
    case errc::unauthorized: return "unauthorized";
    case errc::not_ready: return "not_ready";
    case errc::transport_failed: return "transport_failed";
    case errc::model_failed: return "model_failed";
    case errc::too_many_in_flight: return "too_many_in_flight";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string what) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(what))};
}

errc code_of(const caf::error& err) {
  if (!err || err.category() != error_category)
    return errc::none;
  return static_cast<errc>(err.code());
}

std::string message_of(const caf::error& err) {
  if (err && err.category() == error_category && err.context().match_elements<std::string>()) {
    const auto& text = err.context().get_as<std::string>(0);
    const std::string code = to_string(static_cast<errc>(err.code()));
    return text.compare(0, code.size() + 2, code + ": ") == 0 ? text.substr(code.size() + 2)
                                                              : text;
  }
  return describe(err);
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == error_category) {
    std::string out = to_string(static_cast<errc>(err.code()));
    const auto& ctx = err.context();
    if (ctx.match_elements<std::string>()) {
      const auto& text = ctx.get_as<std::string>(0);
      // A message built from another error's description already names the code.
      if (text.compare(0, out.size() + 2, out + ": ") == 0)
        return text;
      out += ": " + text;
    }
    return out;
  }
  return caf::to_string(err);
}

} // namespace cafex
