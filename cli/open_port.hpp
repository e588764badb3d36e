// A free TCP port for the rendezvous of a new process group, chosen like the seed's
// get_open_port: bind port 0 and read back what the kernel picked. Another process may
// take it before it is used; the seed accepts that race and so do we.
#pragma once

#include <caf/expected.hpp>

namespace cafex::cli {

/// A port that was free on 0.0.0.0 a moment ago; errc::transport_failed otherwise.
caf::expected<int> get_open_port();

} // namespace cafex::cli
