// Test hosts made of network namespaces: the implementation moved to cli/netns_hosts
// (`cafex chaos` uses it too); tests keep their spelling.
#pragma once

#include "chaos/netns_hosts.hpp"

namespace cafex::test {
using netns_hosts = ::cafex::netns_hosts;
} // namespace cafex::test
